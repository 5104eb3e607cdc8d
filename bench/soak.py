"""Soak: RSS and CPU of `logclust serve` over N minutes at a fixed rate (issue 11).

`logclust serve` (default bundle, a temporary `--store`, pinned to one core) receives the
demo's traffic (`generate_traffic`: new users, products and free text keep arriving, so
the caches and reservoirs fill) at `--rate` rows/s in batches of `--batch` rows over one
Label stream, while a prober checks health and queries latency each `--sample` seconds.
Prints a markdown table: time, rows sent, RSS, CPU share over the last interval, health
and Latency round trips.

    python -m bench.soak --minutes 3 --rate 200

With `--clients N` (N > 1) the load is N heavy Label clients instead (processes of their
own, as in `bench.contention`, one source each, back to back with one batch in flight,
rows dated now so that latency windows keep opening): the table then has the rows
labelled so far, and a verdict line checks that RSS levels off, the last half of the run
within `--flat-pct` (max over min) and under the memory budget.

    python -m bench.soak --minutes 10 --clients 32    # or: python -m bench.soak_clients
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyarrow as pa

from bench.harness import cli
from bench.harness.procs import SERVER_CORE, proc_cpu_s, rss_mb
from bench.harness.report import fmt
from bench.harness.sidecar import Sidecar
from bench.soak_clients import add_client_args, soak_clients
from logclust.cli.traffic import generate_traffic
from logclust.client import Client


def paced(table: pa.Table, batch: int, rate: float, until: float) -> Iterator[pa.Table]:
    """Slices of `table` (cycled) at `rate` rows/s until the monotonic time `until`."""
    start, sent = time.monotonic(), 0
    while time.monotonic() < until:
        offset = sent % max(table.num_rows - batch, 1)
        yield table.slice(offset, batch)
        sent += batch
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.splitlines()[0], "soak")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=200.0, help="rows per second")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--sample", type=float, default=20.0, help="seconds between samples")
    p.add_argument("--bundle", default=None)
    add_client_args(p, clients=1)
    args = p.parse_args(argv)
    cli.smoke(args, minutes=0.03, rate=500.0, sample=0.5, client_rows=50)
    if args.clients > 1:
        return soak_clients(args)
    traffic = generate_traffic(int(args.rate * args.minutes * 60) + args.batch, seed=7)
    with Sidecar(args.bundle, SERVER_CORE) as side, cli.output(args, "soak") as out:
        with Client(side.addr) as client:
            client.wait_ready(120)
            client.label(traffic.slice(0, args.batch))  # model loaded, first batch done
            t0 = time.monotonic()
            until = t0 + args.minutes * 60
            table = out.table(
                [
                    "t (s)",
                    "rows sent",
                    "RSS (MB)",
                    "CPU (% of a core)",
                    "health (ms)",
                    "Latency (ms)",
                ],
                live=True,
            )
            cpu0, last, sent = proc_cpu_s(side.pid), t0, 0
            for labelled in client.label_stream(paced(traffic, args.batch, args.rate, until)):
                sent += labelled.num_rows
                now = time.monotonic()
                if now - last < args.sample:
                    continue
                h0 = time.perf_counter()
                client.health()
                h1 = time.perf_counter()
                client.latency(since_s=300)
                h2 = time.perf_counter()
                cpu = proc_cpu_s(side.pid)
                table.add(
                    fmt(now - t0, ".0f"),
                    fmt(sent, ","),
                    fmt(rss_mb(side.pid), ".0f"),
                    fmt(100 * (cpu - cpu0) / (now - last), ".0f"),
                    fmt(1000 * (h1 - h0), ".1f"),
                    fmt(1000 * (h2 - h1), ".1f"),
                )
                cpu0, last = cpu, now
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
