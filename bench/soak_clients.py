"""Soak under many clients (`bench.soak --clients N`): N heavy Label clients for
`--minutes`, the sidecar's RSS sampled every `--sample` seconds, and whether it levels off
(the last half within `--flat-pct`, under `--budget-mb`).

    python -m bench.soak_clients --minutes 10 --clients 32
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import pyarrow as pa

from bench.contention import HeavyClients
from bench.harness import cli
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, pin, proc_cpu_s, rss_mb
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar
from logclust.cli.traffic import generate_traffic
from logclust.client import Client
from logclust.wire import ipc

# Batches each client cycles through (distinct rows: new texts keep the caches busy).
POOL_BATCHES = 8


def add_client_args(p: argparse.ArgumentParser, clients: int) -> None:
    """The flags of this mode (`clients`: the default of `--clients`)."""
    p.add_argument("--clients", type=int, default=clients, help="heavy Label clients")
    p.add_argument("--client-rows", type=int, default=1000, help="rows a heavy client batch")
    p.add_argument("--flat-pct", type=float, default=5.0, help="RSS spread of the last half")
    p.add_argument("--budget-mb", type=float, default=400.0, help="the sidecar's budget")


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.splitlines()[0], "soak_clients")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--sample", type=float, default=20.0, help="seconds between samples")
    p.add_argument("--bundle", default=None)
    add_client_args(p, clients=32)
    args = p.parse_args(argv)
    cli.smoke(args, minutes=0.03, sample=0.5, clients=2, client_rows=50)
    return soak_clients(args, "soak_clients")


def client_pool(rows: int, i: int) -> list[bytes]:
    """Client `i`'s payloads: demo rows of source `soak-<i>`, no `time` (dated on receipt)."""
    table = generate_traffic(rows * POOL_BATCHES, seed=100 + i).drop_columns(["kind", "time"])
    table = table.set_column(
        table.schema.get_field_index("source"), "source", pa.array([f"soak-{i}"] * table.num_rows)
    )
    return [ipc.encode_ipc(t) for t in ipc.iter_slices(table, rows)]


def flat_verdict(
    samples: list[tuple[float, float]], minutes: float, pct: float, budget: float
) -> str:
    """`PASS`/`FAIL` with the figures: RSS of the last half within `pct` and under `budget`."""
    half = [rss for t, rss in samples if t >= minutes * 30]
    if not half:
        return "no samples in the last half"
    spread = 100 * (max(half) / min(half) - 1)
    ok = spread <= pct and max(half) <= budget
    return (
        f"{'PASS' if ok else 'FAIL'}: last half RSS {min(half):.0f}-{max(half):.0f} MB "
        f"(spread {spread:.1f}% vs {pct:g}%), max {max(half):.0f} MB vs budget {budget:g} MB"
    )


def soak_clients(args: argparse.Namespace, script: str = "soak") -> int:
    pin(CLIENT_CORE)
    pools = [client_pool(args.client_rows, i) for i in range(args.clients)]
    ctx = mp.get_context("spawn")
    with Sidecar(args.bundle, SERVER_CORE) as side, cli.output(args, script) as out:
        with Client(side.addr) as client:
            client.wait_ready(120)
            heavy = HeavyClients.spawn(ctx, side.addr, pools, nice=10)
            try:
                heavy.collect(args.clients, 300)  # connected
                heavy.go.set()
                heavy.collect(args.clients, 600)  # each has had an answer
                samples = run(args, side, client, out)
                heavy.stop.set()
                # Read before `close`: a client exits only once its result left the queue.
                results = heavy.collect(args.clients, 120)
            finally:
                heavy.close()
            rows = sum(n for h in results for _, n in h.done)
            refused = sum(len(h.refused) for h in results)
            out.line(
                f"heavy clients: {rows:,} rows labelled in {args.minutes:g} min "
                f"({rows / (args.minutes * 60):,.0f} rows/s), {refused} streams refused"
            )
            out.line(flat_verdict(samples, args.minutes, args.flat_pct, args.budget_mb))
    return 0


def run(
    args: argparse.Namespace, side: Sidecar, client: Client, out: Output
) -> list[tuple[float, float]]:
    """Samples until `--minutes` pass; returns (t, RSS MB) pairs."""
    table = out.table(
        [
            "t (s)",
            "rows in latency windows",
            "RSS (MB)",
            "CPU (% of a core)",
            "health (ms)",
            "Latency (ms)",
        ],
        title=f"{args.clients} heavy clients of {args.client_rows} rows",
        live=True,
    )
    t0 = last = time.monotonic()
    cpu0, samples = proc_cpu_s(side.pid), []
    while (now := time.monotonic()) < t0 + args.minutes * 60:
        time.sleep(max(0.0, min(args.sample, t0 + args.minutes * 60 - now)))
        now = time.monotonic()
        h0 = time.perf_counter()
        client.health()
        h1 = time.perf_counter()
        rows = int(sum(client.latency(since_s=3600).column("count").to_pylist()))
        h2 = time.perf_counter()
        cpu, rss = proc_cpu_s(side.pid), rss_mb(side.pid)
        samples.append((now - t0, rss))
        table.add(
            fmt(now - t0, ".0f"),
            fmt(rows, ","),
            fmt(rss, ".0f"),
            fmt(100 * (cpu - cpu0) / max(now - last, 1e-9), ".0f"),
            fmt(1000 * (h1 - h0), ".1f"),
            fmt(1000 * (h2 - h1), ".1f"),
        )
        cpu0, last = cpu, now
    return samples


if __name__ == "__main__":
    raise SystemExit(main())
