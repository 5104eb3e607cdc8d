"""A source with thousands of clusters: peak RSS and batch times of the sidecar.

    python -m bench.many_clusters [--lines 12000] [--batch 500] [--max-clusters 4096]

`logclust serve` (default bundle, a temporary `--store`, pinned to core 0) receives one
source of free-text lines drawn from a vocabulary (`feedback`-like sentences, about one
new cluster per line at the shipped threshold), so the source holds thousands of
clusters and reaches `--max-clusters`. Prints clusters held, cap hits (from the Prometheus
endpoint), the sidecar's peak RSS (`VmHWM`) and batch times; then replays the same lines
once more (every text already placed) to time the steady state with that many clusters.
"""

from __future__ import annotations

import re
import time
import urllib.request

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.ports import free_port
from bench.harness.procs import SERVER_CORE, peak_rss_mb
from bench.harness.report import fmt
from bench.harness.sidecar import Sidecar
from logclust.client import Client

_WORDS = (
    "the a my your our cart order payment card shipping address delivery late slow fast "
    "broken lost refund cancel reset password login account email phone number item "
    "product price discount coupon code review rating stars size color blue red green "
    "jacket shoes lamp table chair desk phone charger cable bag watch strap sofa rug "
    "mug pan pot knife fork spoon plate bowl cup glass bottle towel soap candle clock "
    "mirror frame vase plant seeds soil hose rake drill saw hammer nail screw tape glue "
    "paper pen pencil notebook book lamp bulb battery remote camera lens tripod speaker "
    "headphones keyboard mouse monitor printer ink router modem tablet laptop case cover "
    "never arrived damaged wrong missing again please help thanks great awful really very"
).split()


def lines(n: int, seed: int) -> list[str]:
    """`n` distinct free-text lines of 5 to 12 words."""
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        k = int(rng.integers(5, 13))
        out[" ".join(rng.choice(_WORDS, k))] = None
    return list(out)


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    m = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text.decode(), re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.split("\n\n")[0], "many_clusters")
    p.add_argument("--lines", type=int, default=12_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--max-clusters", type=int, default=4096)
    p.add_argument("--bundle", default=None)
    args = p.parse_args(argv)
    args.quiet_s = 1.0
    cli.smoke(args, lines=300, batch=100, max_clusters=128, quiet_s=0.2)
    texts = lines(args.lines, seed=0)
    metrics_port = free_port()
    extra = ["--max-clusters", str(args.max_clusters), "--metrics-port", str(metrics_port)]
    with Sidecar(args.bundle, SERVER_CORE, extra=extra, quiet_s=args.quiet_s) as side:
        with Client(side.addr) as client:
            client.wait_ready(120)
            times = []
            for start in range(0, len(texts), args.batch):
                t0 = time.perf_counter()
                client.label(pa.table({"body": texts[start : start + args.batch]}))
                times.append(time.perf_counter() - t0)
            side.wait_idle()
            t0 = time.perf_counter()
            client.label(pa.table({"body": texts}), batch_size=args.batch)
            replay_s = time.perf_counter() - t0
            clusters = client.clusters()
            active = int(np.asarray(clusters.column("active")).sum())
            cap_hits = metric(metrics_port, "logclust_cluster_cap_hits_total")
            rss = peak_rss_mb(side.pid)
    t = np.asarray(times)
    with cli.output(args, "many_clusters") as out:
        table = out.table(
            [
                "lines",
                "clusters held",
                "cap",
                "cap hits",
                "new-line batches p50 / max s",
                "replay (all placed) lines/s",
                "peak RSS MB",
            ]
        )
        table.add(
            fmt(len(texts), ","),
            fmt(active, ","),
            fmt(args.max_clusters, ","),
            fmt(cap_hits, ",.0f"),
            f"{np.median(t):.2f} / {t.max():.2f}",
            fmt(len(texts) / replay_s, ",.0f"),
            fmt(rss, ".0f"),
        )
        out.show(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
