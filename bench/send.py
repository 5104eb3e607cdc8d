"""End to end as a user runs it: `logclust send FILE --out OUT.parquet` from another process.

    python -m bench.send [--rows 960000] [--bundle DIR] [--batch-size 10000] [--runs 2]
                         [--send-code DIR]

`logclust serve` (default bundle, a temporary `--store`) runs pinned to core 0 and is
warmed with one pass over the loghub train systems (not timed; then its CPU goes idle).
The replay (`bench.workloads.replay`, fields re-drawn every pass) is written to a text
file, one line per record, and `logclust send FILE --addr ... --out OUT.parquet` runs as
a child process pinned to core 1: wall time from its start to its exit (start-up, reading
the file, the stream, writing Parquet), its own CPU (`wait4` rusage) and the sidecar's
(`/proc/PID/stat` utime + stime) over that wall time. Drain3 (`TemplateMiner`, default
config, core 0, best of two) takes the same lines after the same warm-up pass.

`--send-code DIR` also times `send` from another checkout of the package (`git archive
<commit> logclust | tar -x -C DIR`) against the same sidecar, in the same run.

Also printed: how many batches `Client.label_stream` keeps in flight (handed to gRPC and
not answered yet, at each answer) and its rows/s in this process against one batch at a
time, which shows whether the gRPC request iterator pipelines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.harness import cli
from bench.harness.code import add_code_arg, code_env, logclust_command
from bench.harness.peers import drain3_rate
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, need_two_cores, pin, proc_cpu_s
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar, body_table
from bench.workloads import loghub_lines, replay
from logclust.client import Client
from logclust.wire import ipc


@dataclass
class SendRun:
    code: str
    wall_s: float
    send_cpu_s: float
    sidecar_cpu_s: float
    rows: int


def time_send(side: Sidecar, path: Path, out: Path, batch: int, code: str | None) -> SendRun:
    """One `logclust send` child pinned to the client core; its wall and CPU times."""
    cmd, env = logclust_command(code), code_env(code)
    cmd += ["send", str(path), "--addr", side.addr, "--out", str(out), "--batch-size", str(batch)]
    cpu0 = proc_cpu_s(side.pid)
    start = time.perf_counter()
    # Pinned to the client core by inheritance (this thread is). No `preexec_fn`: it makes
    # Popen fork() with this process's gRPC threads alive, and gRPC's fork handler can
    # crash the child before exec (epoll_wait on a descriptor close_fds closed, SIGABRT;
    # grpc/grpc#43055); without it Python starts the child by vfork.
    assert os.sched_getaffinity(0) == {CLIENT_CORE}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()  # drained so the progress line never blocks the child
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"logclust send ({code or 'this checkout'}) failed ({proc.returncode}): "
            f"{err.decode()[-2000:]}"
        )
    rows = pq.read_metadata(out).num_rows
    sidecar = proc_cpu_s(side.pid) - cpu0
    return SendRun(code or "this checkout", wall, usage.ru_utime + usage.ru_stime, sidecar, rows)


def in_flight(client: Client, table: pa.Table, batch: int) -> tuple[np.ndarray, float]:
    """Batches handed to gRPC and not answered at each answer of `label_stream`, and its
    rows/s (this process, no file reading or writing)."""
    handed = [0]
    depth: list[int] = []

    def counted() -> Iterator[pa.Table]:
        for piece in ipc.iter_slices(table, batch):
            handed[0] += 1
            yield piece

    start = time.perf_counter()
    for n, _ in enumerate(client.label_stream(counted())):
        depth.append(handed[0] - n - 1)
    return np.array(depth), table.num_rows / (time.perf_counter() - start)


def one_at_a_time(client: Client, table: pa.Table, batch: int) -> float:
    """Rows/s of `label_stream` when the next batch waits for the previous answer."""
    answered = threading.Semaphore(0)

    def gated() -> Iterator[pa.Table]:
        for i, piece in enumerate(ipc.iter_slices(table, batch)):
            if i:
                answered.acquire()
            yield piece

    start = time.perf_counter()
    for _ in client.label_stream(gated()):
        answered.release()
    return table.num_rows / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__, "send")
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    p.add_argument("--rows", type=int, default=960_000, help="replay lines in the file")
    p.add_argument("--batch-size", type=int, default=10_000, help="send's --batch-size")
    p.add_argument("--runs", type=int, default=2, help="send runs per checkout")
    add_code_arg(p, "--send-code", "also time send from this checkout")
    args = p.parse_args(argv)
    args.quiet_s, args.repeats = 1.0, 2
    cli.smoke(args, rows=2000, batch_size=500, runs=1, quiet_s=0.2, repeats=1)
    need_two_cores("one for the sidecar, one for send")
    pin(CLIENT_CORE)
    with cli.output(args, "send") as out:
        out.header(args.bundle)
        one_pass = len(loghub_lines(smoke=args.smoke))
        lines = replay(one_pass + args.rows, seed=0, smoke=args.smoke)
        warm, measured = lines[:one_pass], lines[one_pass:]
        work = Path(tempfile.mkdtemp(prefix="logclust-send-"))
        try:
            runs, startup, depth, piped, serial = send_runs(out, args, warm, measured, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        drain_rate, _ = drain3_rate(warm, measured, args.repeats, optional=args.smoke)
        report(out, args, runs, startup, drain_rate, depth, piped, serial)


def send_runs(
    out: Output, args: argparse.Namespace, warm: list[str], measured: list[str], work: Path
) -> tuple[list[SendRun], SendRun, np.ndarray, float, float]:
    """Every `send` run against one warm sidecar, then `label_stream` in this process."""
    path, parquet = work / "replay.log", work / "out.parquet"
    path.write_text("\n".join(measured) + "\n")
    tiny = work / "one.log"
    tiny.write_text(measured[0] + "\n")
    out.fact("file", f"{len(measured):,} lines, {path.stat().st_size / 1e6:.1f} MB")
    runs: list[SendRun] = []
    with Sidecar(args.bundle, SERVER_CORE, quiet_s=args.quiet_s) as side:
        with Client(side.addr, timeout_s=600) as client:
            client.wait_ready(120)
            client.label(body_table(warm), 1000)
            side.wait_idle()
            startup = time_send(side, tiny, work / "one.parquet", args.batch_size, None)
            codes = [None] + ([args.send_code] if args.send_code else [])
            for _ in range(args.runs):
                for code in codes:  # interleaved, so both see the same machine
                    runs.append(time_send(side, path, parquet, args.batch_size, code))
            table = body_table(measured)
            depth, piped = in_flight(client, table, args.batch_size)
            serial = one_at_a_time(client, table, args.batch_size)
    return runs, startup, depth, piped, serial


def report(
    out: Output,
    args: argparse.Namespace,
    runs: list[SendRun],
    startup: SendRun,
    drain_rate: float,
    depth: np.ndarray,
    piped: float,
    serial: float,
) -> None:
    table = out.table(
        [
            "send from",
            "wall s",
            "rows/s",
            "vs Drain3",
            "send CPU s",
            "sidecar CPU s",
            "sidecar CPU share",
        ],
        f"`logclust send FILE --out OUT.parquet`, {args.rows:,} replay lines",
        f"send on core {CLIENT_CORE} (`--batch-size {args.batch_size}`), sidecar on core "
        f"{SERVER_CORE} (warm); Drain3 {drain_rate:,.0f} lines/s on the same lines.",
    )
    for r in runs:
        if r.rows != args.rows:
            raise RuntimeError(f"{r.rows} rows written for {args.rows}")
        rate = r.rows / r.wall_s
        table.add(
            r.code,
            fmt(r.wall_s, ".2f"),
            fmt(rate, ",.0f"),
            fmt(rate / drain_rate, ".1f", "x"),
            fmt(r.send_cpu_s, ".2f"),
            fmt(r.sidecar_cpu_s, ".2f"),
            fmt(r.sidecar_cpu_s / r.wall_s, ".0%"),
        )
    out.show(table)
    out.line(
        f"\nStart-up (send of a one-line file, this checkout): {startup.wall_s:.2f} s wall, "
        f"{startup.send_cpu_s:.2f} s CPU."
    )
    out.line(
        f"`Client.label_stream` in this process: batches in flight at each answer median "
        f"{np.median(depth):.0f}, max {depth.max()} (first answer: {depth[0]}); "
        f"{piped:,.0f} rows/s, against {serial:,.0f} rows/s one batch at a time."
    )


if __name__ == "__main__":
    main()
