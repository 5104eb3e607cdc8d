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
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.code import add_code_arg
from bench.harness.peers import drain3_rate
from bench.harness.procs import (
    CLIENT_CORE,
    SERVER_CORE,
    in_process,
    need_two_cores,
    peak_rss_mb,
    pin,
    proc_cpu_s,
)
from bench.harness.report import fmt
from bench.harness.sidecar import Sidecar, batches, body_table, stream
from bench.workloads import cold, loghub_lines, replay
from logclust.client import Client
from logclust.wire import ipc

# Encoder-alone batch sizes tried; the fastest is the yardstick.
ENCODER_BATCHES = (8, 64)
# The encoder alone is timed this many times and its best run is kept.
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


def run_sidecar(work: Workload, args: argparse.Namespace) -> RunResult:
    with Sidecar(args.bundle, SERVER_CORE, args.code, quiet_s=args.quiet_s) as side:
        with Client(side.addr, timeout_s=600) as client:
            client.wait_ready(120)
            check = client.label(work.warmup[0])
            assert check.num_rows == work.warmup[0].num_rows and "cluster_id" in check.column_names
            encode = ipc.encode_ipc
            stream(client, [encode(t) for t in work.warmup[1:]], work.depth)
            side.wait_idle()
            payloads = [encode(t) for t in work.measured]
            cpu0 = proc_cpu_s(side.pid)
            wall, lat = stream(client, payloads, work.depth)
            cpu = proc_cpu_s(side.pid) - cpu0
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
            peak_rss_mb(side.pid),
            cpu,
        )


def _encoder_rate(bundle: str | None, lines: list[str], repeats: int, out: Any) -> None:
    pin(SERVER_CORE)
    from logclust.cluster.labeler import Labeler
    from logclust.embed.encoder import Encoder

    lab = Labeler.load(bundle)
    rows = lab.tokenizer.encode(lab.masker.mask_texts(lines), lab.bundle.max_len)
    best = (0.0, 0)
    for batch in ENCODER_BATCHES:
        enc = Encoder(lab.bundle.encoder_path(), num_threads=1, batch_size=batch)
        enc.encode(rows, lab.bundle.max_len)  # every shape set up once, out of the timing
        for _ in range(repeats):
            start = time.perf_counter()
            enc.encode(rows, lab.bundle.max_len)
            best = max(best, (len(rows) / (time.perf_counter() - start), batch))
    out.put((*best, float(np.mean([len(r) for r in rows]))))


def workloads(
    args: argparse.Namespace,
) -> tuple[list[Workload], list[str], list[str], list[str]]:
    from logclust.cli.traffic import BOUTIQUE_KINDS, generate_traffic

    b = args.batch
    one_pass = len(loghub_lines(smoke=args.smoke))
    n_lat = args.latency_batches * b
    lines = replay(one_pass + args.replay_rows + n_lat, seed=0, smoke=args.smoke)
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


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, "sidecar")
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    add_code_arg(p)
    p.add_argument("--batch", type=int, default=1000, help="rows per batch")
    p.add_argument("--depth", type=int, default=4, help="batches in flight (throughput)")
    p.add_argument("--replay-rows", type=int, default=300_000)
    p.add_argument("--boutique-warmup", type=int, default=20_000)
    p.add_argument("--boutique-rows", type=int, default=200_000)
    p.add_argument("--cold-batches", type=int, default=3)
    p.add_argument("--latency-batches", type=int, default=200)
    args = p.parse_args(argv)
    args.quiet_s, args.repeats = 1.0, PEER_REPEATS
    cli.smoke(
        args,
        batch=100,
        replay_rows=500,
        boutique_warmup=200,
        boutique_rows=500,
        cold_batches=1,
        latency_batches=3,
        quiet_s=0.2,
        repeats=1,
    )
    if args.cold_batches < 1:
        p.error(
            f"--cold-batches must be at least 1 (the cold stream is timed over them). "
            f"Received: {args.cold_batches}"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    need_two_cores()
    pin(CLIENT_CORE)
    with cli.output(args, "sidecar") as out:
        out.header(args.bundle, sidecar_code=args.code or "this checkout")
        work, replay_warm, replay_measured, cold_measured = workloads(args)
        results = [run_sidecar(w, args) for w in work]
        table = out.table(
            [
                "workload",
                "rows timed",
                "records/s",
                "batch p50 ms",
                "batch p99 ms",
                "sidecar CPU s",
                "peak RSS MB",
            ],
            "Sidecar end to end",
            f"{args.batch:,}-row batches over loopback gRPC; sidecar pinned to core "
            f"{SERVER_CORE}, client to core {CLIENT_CORE}; warm-up excluded (see above).",
        )
        for r in results:
            table.add(
                r.name,
                fmt(r.rows, ","),
                fmt(r.rows_per_s, ",.0f"),
                fmt(r.p50_ms, ".2f"),
                fmt(r.p99_ms, ".2f"),
                fmt(r.server_cpu_s, ".2f"),
                fmt(r.peak_rss_mb, ".0f"),
            )
        out.show(table)
        drain_rate, drain_clusters = drain3_rate(
            replay_warm, replay_measured, args.repeats, optional=args.smoke
        )
        enc_rate, enc_batch, mean_tokens = in_process(
            _encoder_rate, args.bundle, cold_measured, args.repeats
        )
        ours, cold_e2e = results[0].rows_per_s, results[2].rows_per_s
        peer = out.table(["system", "lines/s on the replay", "logclust / Drain3"], "Peer: Drain3")
        peer.add(
            f"Drain3 `TemplateMiner` (default config, {drain_clusters} clusters)",
            fmt(drain_rate, ",.0f"),
            None,
        )
        peer.add(
            "logclust sidecar, end to end over gRPC",
            fmt(ours, ",.0f"),
            fmt(ours / drain_rate, ".1f", "x"),
        )
        out.show(peer)
        enc = out.table(["", "lines/s", "share"], "Cold stream vs encoder alone")
        enc.add(
            f"encoder alone (`Encoder.encode`, one thread, batch {enc_batch:.0f}), same cold "
            f"lines ({mean_tokens:.1f} tokens on average)",
            fmt(enc_rate, ",.0f"),
            "100%",
        )
        enc.add(
            "sidecar end to end, cold stream",
            fmt(cold_e2e, ",.0f"),
            fmt(cold_e2e / enc_rate, ".0%"),
        )
        out.show(enc)


if __name__ == "__main__":
    main()
