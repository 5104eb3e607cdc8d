"""Sidecar end to end over loopback gRPC, side by side with Drain3; prints Markdown tables.

    python -m bench.sidecar [--bundle DIR] [--replay-rows 300000] [--cold-batches 3]

Setup: `logclust serve` (default bundle, a temporary `--store`) runs in its own process
pinned to core 0; this process is the client, pinned to core 1, and streams pre-encoded
1,000-row Arrow batches over one `Label` stream. Every run starts a fresh sidecar.

For each workload:

1. **Warm-up** (not timed): the first batches fit the stream clusters (warm-up fit) and
   fill the caches; for the replay, one whole pass over the loghub train systems. Then
   the client waits until the sidecar's CPU is idle (refits done).
2. **Throughput**: batches pipelined (`--depth` in flight) so the sidecar never waits for
   the client; records/s over the whole phase.
3. **Latency**: one batch in flight; p50 and p99 of send-to-response time per batch (for
   the cold stream, whose batches take seconds, the timed batches themselves).
4. **Peak RSS** of the sidecar (`VmHWM` from /proc) after the run.

Peers, each in its own process pinned to core 0, best of `PEER_REPEATS` runs: Drain3
(`TemplateMiner`, default config) fed the same replay lines in-process after the same
warm-up pass, and the encoder alone (`Encoder.encode`, one thread, the faster of batch 8
and 64, after one untimed pass) on the cold lines the sidecar labelled, already masked
and tokenized, so its rate is the model's own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.workloads import cold, loghub_lines, replay
from logclust.wire import ipc

SERVER_CORE = 0
CLIENT_CORE = 1
# Encoder-alone batch sizes tried; the fastest is the yardstick.
ENCODER_BATCHES = (8, 64)
# The peers are timed this many times and their best run is kept (a strict yardstick).
PEER_REPEATS = 2


@dataclass
class Workload:
    name: str
    warmup: list[pa.Table]
    measured: list[pa.Table]  # throughput phase
    latency: list[pa.Table]  # latency phase (one batch in flight)
    depth: int


@dataclass
class RunResult:
    name: str
    rows: int
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    latency_batches: int
    peak_rss_mb: float
    server_cpu_s: float


def batches(table: pa.Table, size: int) -> list[pa.Table]:
    return list(ipc.iter_slices(table, size))


def body_table(lines: list[str]) -> pa.Table:
    return pa.table({"body": pa.array(lines, pa.string())})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of every thread of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Current resident set size of `pid` (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_idle(pid: int, quiet_s: float = 1.0, timeout_s: float = 120.0) -> None:
    """Returns once `pid` used under 5% of a core for `quiet_s` (refits finished)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        before = proc_cpu_s(pid)
        time.sleep(quiet_s)
        if proc_cpu_s(pid) - before < 0.05 * quiet_s:
            return


class Sidecar:
    """`logclust serve` in a child process pinned to one core, with a temporary store."""

    def __init__(
        self,
        bundle: str | None,
        core: int,
        code: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.store = tempfile.mkdtemp(prefix="logclust-bench-")
        self.port = free_port()
        exe = shutil.which("logclust", path=str(Path(sys.executable).parent))
        cmd = [exe] if exe else [sys.executable, "-m", "logclust.cli.main"]
        cmd += ["serve", "--listen", f"127.0.0.1:{self.port}", "--store", self.store]
        if bundle:
            cmd += ["--bundle", bundle]
        cmd += extra or []
        env = dict(os.environ)
        if code:  # another checkout of the package (see --code)
            env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            )
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Set before exec, so every thread the server starts inherits it.
            preexec_fn=lambda: os.sched_setaffinity(0, {core}),
        )

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.store, ignore_errors=True)


def stream(client: object, payloads: list[bytes], depth: int) -> tuple[float, np.ndarray]:
    """Sends IPC payloads over one Label stream with at most `depth` in flight.

    Returns the phase's wall time and each batch's send-to-response seconds.
    """
    from logclust.proto import logclust_pb2 as pb

    if not payloads:
        return 0.0, np.zeros(0)
    slots = threading.Semaphore(depth)
    sent = np.zeros(len(payloads))
    done = np.zeros(len(payloads))

    def requests() -> Iterator[pb.LabelRequest]:
        for i, data in enumerate(payloads):
            slots.acquire()
            sent[i] = time.perf_counter()
            yield pb.LabelRequest(batch_id=str(i), arrow_ipc=data)

    start = time.perf_counter()
    n = 0
    for n, response in enumerate(client._stub.Label(requests())):  # type: ignore[attr-defined]
        done[n] = time.perf_counter()
        slots.release()
        if response.batch_id != str(n):
            raise RuntimeError(f"response {response.batch_id} out of order (expected {n})")
    if n != len(payloads) - 1:
        raise RuntimeError(f"{n + 1} responses for {len(payloads)} batches")
    return done[-1] - start, done - sent


def run_sidecar(work: Workload, bundle: str | None, code: str | None) -> RunResult:
    from logclust.client import Client

    side = Sidecar(bundle, SERVER_CORE, code)
    try:
        with Client(side.addr, timeout_s=600) as client:
            client.wait_ready(120)
            check = client.label(work.warmup[0])
            assert check.num_rows == work.warmup[0].num_rows and "cluster_id" in check.column_names
            encode = ipc.encode_ipc
            stream(client, [encode(t) for t in work.warmup[1:]], work.depth)
            wait_idle(side.proc.pid)
            payloads = [encode(t) for t in work.measured]
            cpu0 = proc_cpu_s(side.proc.pid)
            wall, lat = stream(client, payloads, work.depth)
            cpu = proc_cpu_s(side.proc.pid) - cpu0
            if work.latency:
                _, lat = stream(client, [encode(t) for t in work.latency], 1)
        rows = sum(t.num_rows for t in work.measured)
        return RunResult(
            work.name,
            rows,
            rows / wall,
            float(np.percentile(lat, 50) * 1e3),
            float(np.percentile(lat, 99) * 1e3),
            len(lat),
            peak_rss_mb(side.proc.pid),
            cpu,
        )
    finally:
        side.stop()


def drain3_rate(warmup: list[str], lines: list[str], out: mp.Queue) -> None:  # type: ignore[type-arg]
    os.sched_setaffinity(0, {SERVER_CORE})
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    best = (0.0, 0)
    for _ in range(PEER_REPEATS):
        miner = TemplateMiner(config=TemplateMinerConfig())  # the defaults, no drain3.ini read
        for line in warmup:
            miner.add_log_message(line)
        start = time.perf_counter()
        for line in lines:
            miner.add_log_message(line)
        rate = len(lines) / (time.perf_counter() - start)
        best = max(best, (rate, len(miner.drain.clusters)))
    out.put(best)


def _encoder_rate(bundle: str | None, lines: list[str], out: mp.Queue) -> None:  # type: ignore[type-arg]
    os.sched_setaffinity(0, {SERVER_CORE})
    from logclust.cluster.labeler import Labeler
    from logclust.embed.encoder import Encoder

    lab = Labeler.load(bundle)
    rows = lab.tokenizer.encode(lab.masker.mask_texts(lines), lab.bundle.max_len)
    best = (0.0, 0)
    for batch in ENCODER_BATCHES:
        enc = Encoder(lab.bundle.encoder_path(), num_threads=1, batch_size=batch)
        enc.encode(rows, lab.bundle.max_len)  # every shape set up once, out of the timing
        for _ in range(PEER_REPEATS):
            start = time.perf_counter()
            enc.encode(rows, lab.bundle.max_len)
            best = max(best, (len(rows) / (time.perf_counter() - start), batch))
    out.put((*best, float(np.mean([len(r) for r in rows]))))


def in_process(target: object, *args: object) -> tuple[float, ...]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))  # type: ignore[arg-type]
    proc.start()
    result = queue.get()
    proc.join()
    return result  # type: ignore[no-any-return]


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"{os.cpu_count()} cores, {model or platform.processor()}, Python "
        f"{platform.python_version()}, load average before the run {' '.join(load)}"
    )


def bundle_summary(path: str | None) -> str:
    from logclust.embed.bundle import Bundle

    bundle = Bundle.load(path)
    name = bundle.encoder_path().name
    sha = bundle.manifest["files"][name]["sha256"]
    return f"{bundle.path} ({name}, sha256 {sha[:12]})"


def print_header(module: str, bundle: str | None, **before_bundle: str) -> None:
    """What every benchmark prints first: machine, date, the command, what ran (each
    keyword as a `key words: value` line), the bundle."""
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"command: python -m bench.{module} {' '.join(sys.argv[1:])}".rstrip())
    for key, value in before_bundle.items():
        print(f"{key.replace('_', ' ')}: {value}")
    print(f"bundle: {bundle_summary(bundle)}")


def workloads(
    args: argparse.Namespace,
) -> tuple[list[Workload], list[str], list[str], list[str]]:
    from logclust.cli.traffic import BOUTIQUE_KINDS, generate_traffic

    b = args.batch
    one_pass = len(loghub_lines())
    n_lat = args.latency_batches * b
    lines = replay(one_pass + args.replay_rows + n_lat, seed=0)
    warm, measured = lines[:one_pass], lines[one_pass : one_pass + args.replay_rows]
    rep = Workload(
        "(a) loghub replay, fields re-drawn every pass",
        batches(body_table(warm), b),
        batches(body_table(measured), b),
        batches(body_table(lines[one_pass + args.replay_rows :]), b),
        args.depth,
    )
    # The three kinds of earlier runs (the demo's other kinds bring free text: new lines).
    shop = generate_traffic(
        args.boutique_warmup + args.boutique_rows + n_lat, seed=0, kinds=BOUTIQUE_KINDS
    )
    w, m = args.boutique_warmup, args.boutique_rows
    boutique = Workload(
        "(b) Online Boutique (add-to-cart, checkout, currency)",
        batches(shop.slice(0, w), b),
        batches(shop.slice(w, m), b),
        batches(shop.slice(w + m), b),
        args.depth,
    )
    n_cold = args.cold_batches * b
    cold_lines = cold(b + n_cold, seed=0)
    cold_work = Workload(
        "(c) cold stream, almost every line new",
        batches(body_table(cold_lines[:b]), b),
        batches(body_table(cold_lines[b : b + n_cold]), b),
        [],  # one batch in flight already: latency comes from the timed batches
        1,
    )
    return [rep, boutique, cold_work], warm, measured, cold_lines[b:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    p.add_argument(
        "--code",
        default=None,
        help="run the sidecar from another checkout of the package, e.g. the code before\n"
        "the speed work: git archive b6d6ede | tar -x -C /tmp/base; --code /tmp/base",
    )
    p.add_argument("--batch", type=int, default=1000, help="rows per batch")
    p.add_argument("--depth", type=int, default=4, help="batches in flight (throughput)")
    p.add_argument("--replay-rows", type=int, default=300_000)
    p.add_argument("--boutique-warmup", type=int, default=20_000)
    p.add_argument("--boutique-rows", type=int, default=200_000)
    p.add_argument("--cold-batches", type=int, default=3)
    p.add_argument("--latency-batches", type=int, default=200)
    args = p.parse_args()
    if args.cold_batches < 1:
        p.error(
            f"--cold-batches must be at least 1 (the cold stream is timed over them). "
            f"Received: {args.cold_batches}"
        )
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the sidecar, one for the client")
    os.sched_setaffinity(0, {CLIENT_CORE})

    print_header("sidecar", args.bundle, sidecar_code=args.code or "this checkout")
    work, replay_warm, replay_measured, cold_measured = workloads(args)
    results = [run_sidecar(w, args.bundle, args.code) for w in work]
    print("\n## Sidecar end to end\n")
    print(
        f"{args.batch:,}-row batches over loopback gRPC; sidecar pinned to core "
        f"{SERVER_CORE}, client to core {CLIENT_CORE}; warm-up excluded (see above)."
    )
    print(
        "\n| workload | rows timed | records/s | batch p50 ms | batch p99 ms "
        "| sidecar CPU s | peak RSS MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r.name} | {r.rows:,} | {r.rows_per_s:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.server_cpu_s:.2f} | {r.peak_rss_mb:.0f} |"
        )
    drain_rate, drain_clusters = in_process(drain3_rate, replay_warm, replay_measured)
    enc_rate, enc_batch, mean_tokens = in_process(_encoder_rate, args.bundle, cold_measured)
    ours, cold_e2e = results[0].rows_per_s, results[2].rows_per_s
    print("\n## Peer: Drain3\n")
    print("| system | lines/s on the replay | logclust / Drain3 |")
    print("| --- | --- | --- |")
    print(
        f"| Drain3 `TemplateMiner` (default config, {drain_clusters} clusters) | "
        f"{drain_rate:,.0f} | |"
    )
    print(f"| logclust sidecar, end to end over gRPC | {ours:,.0f} | {ours / drain_rate:.1f}x |")
    print("\n## Cold stream vs encoder alone\n")
    print("| | lines/s | share |")
    print("| --- | --- | --- |")
    print(
        f"| encoder alone (`Encoder.encode`, one thread, batch {enc_batch:.0f}), same cold lines "
        f"({mean_tokens:.1f} tokens on average) | "
        f"{enc_rate:,.0f} | 100% |"
    )
    print(f"| sidecar end to end, cold stream | {cold_e2e:,.0f} | {cold_e2e / enc_rate:.0%} |")


if __name__ == "__main__":
    main()
