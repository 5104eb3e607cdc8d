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

import argparse
import re
import time
import urllib.request

import numpy as np
import pyarrow as pa

from bench.sidecar import SERVER_CORE, Sidecar, free_port, peak_rss_mb, wait_idle
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=12_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--max-clusters", type=int, default=4096)
    p.add_argument("--bundle", default=None)
    args = p.parse_args(argv)
    texts = lines(args.lines, seed=0)
    metrics_port = free_port()
    extra = ["--max-clusters", str(args.max_clusters), "--metrics-port", str(metrics_port)]
    side = Sidecar(args.bundle, SERVER_CORE, extra=extra)
    try:
        with Client(f"127.0.0.1:{side.port}") as client:
            client.wait_ready(120)
            times = []
            for start in range(0, len(texts), args.batch):
                t0 = time.perf_counter()
                client.label(pa.table({"body": texts[start : start + args.batch]}))
                times.append(time.perf_counter() - t0)
            wait_idle(side.proc.pid)
            t0 = time.perf_counter()
            client.label(pa.table({"body": texts}), batch_size=args.batch)
            replay_s = time.perf_counter() - t0
            clusters = client.clusters()
            active = int(np.asarray(clusters.column("active")).sum())
            cap_hits = metric(metrics_port, "logclust_cluster_cap_hits_total")
            rss = peak_rss_mb(side.proc.pid)
    finally:
        side.stop()
    t = np.asarray(times)
    print(
        "| lines | clusters held | cap | cap hits | new-line batches p50 / max s "
        "| replay (all placed) lines/s | peak RSS MB |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    print(
        f"| {len(texts):,} | {active:,} | {args.max_clusters:,} | {cap_hits:,.0f} "
        f"| {np.median(t):.2f} / {t.max():.2f} | {len(texts) / replay_s:,.0f} | {rss:.0f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
