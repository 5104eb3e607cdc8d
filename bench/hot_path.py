"""Where a sidecar batch's time goes, stage by stage, in one process on one core.

    python -m bench.hot_path [--code DIR] [--bundle DIR]

Runs `Sidecar.label_ipc` (decode, label, record, encode: what one `Label` request does,
without gRPC) over 1,000-row batches of the loghub replay, the Online Boutique traffic and
a cold stream, after a warm-up (one replay pass; 20 boutique batches; one cold batch) and
after refits end,
and prints milliseconds per batch for each stage, the cache hit rates and what one refit
costs. `--code DIR` runs another checkout of
the package instead (one with this layout, `logclust/sidecar/` and the rest: `git archive
<commit> | tar -x -C /tmp/base`, then `--code /tmp/base`), so the two can be compared
stage by stage on the same machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORE = 0


class Timers:
    """Wraps methods so their wall time adds up per stage, each stage's own time only:
    a wrapped call made inside another (the model inside the embedding cache inside the
    assignment) counts for the inner stage, not twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per open call: time spent in wrapped calls below it

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                self.seconds[stage] += took - self._inner.pop()
                if self._inner:
                    self._inner[-1] += took

        setattr(owner, name, timed)


def stages(bundle: str | None, payloads: list[bytes], warm: int) -> dict[str, float]:
    from logclust.cli import service as cli_service
    from logclust.cluster.labeler import Labeler
    from logclust.cluster.source import SourceClusterer
    from logclust.embed.bundle import Bundle
    from logclust.latency.book import LatencyBook
    from logclust.sidecar.core import Sidecar
    from logclust.sidecar.metrics import Metrics
    from logclust.sidecar.store import MemoryStore
    from logclust.sidecar.stream_labeler import StreamLabeler
    from logclust.wire import ipc

    # The encoder batch `logclust serve` uses (64, the Labeler default, in older code).
    batch = getattr(cli_service, "SERVE_ENCODER_BATCH", 64)
    labeler = Labeler(Bundle.load(bundle), batch_size=batch)
    # The default config is the server's (`ServerConfig().labeler`), in older code too.
    side = Sidecar(StreamLabeler(labeler), MemoryStore(), Metrics())
    for data in payloads[:warm]:
        side.label_ipc(data)
    side.wait_for_refits()
    clusterer = next(iter(side.labeler.stream.sources.values()))
    start = time.perf_counter()
    clusterer._compute_fit(*clusterer._reservoir())
    fit_s = time.perf_counter() - start
    t = Timers()
    t.wrap(ipc, "decode_ipc", "decode + validate")
    t.wrap(ipc, "encode_ipc", "encode response")
    masks = getattr(side.labeler.stream, "masks", None)
    if masks is not None:
        name = "distinct_keys" if hasattr(masks, "distinct_keys") else "mask_distinct"
        t.wrap(masks, name, "mask + dedupe")
    else:
        t.wrap(side.labeler.stream.embedder.masker, "mask", "mask + dedupe")
    t.wrap(side.labeler.stream.embedder, "embed_masked", "model (cache misses)")
    t.wrap(side.labeler.stream.cache, "embed", "embedding cache")
    t.wrap(SourceClusterer, "assign", "assign + stats")
    t.wrap(LatencyBook, "record", "latency sketches")
    t.wrap(Metrics, "observe_batch", "metrics")
    measured = payloads[warm:]
    caches = [c for c in (masks, side.labeler.stream.cache) if c is not None]
    before = [(c.hits, c.misses) for c in caches]
    start = time.perf_counter()
    for data in measured:
        side.label_ipc(data)
    total = time.perf_counter() - start
    hit_rates = {}
    for cache, (hits, misses) in zip(caches, before, strict=True):
        h, m = cache.hits - hits, cache.misses - misses
        name = "digit-shape cache" if cache is masks else "embedding cache"
        hit_rates[f"{name} hits (of distinct values)"] = h / max(h + m, 1)
    out = {k: v / len(measured) * 1e3 for k, v in t.seconds.items()}
    out["other"] = total / len(measured) * 1e3 - sum(out.values())
    out["total"] = total / len(measured) * 1e3
    out["rows/s"] = len(measured) * 1000 / total
    return out | hit_rates | {"one refit (k search + KMeans), s": fit_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--code", default=None, help="directory holding another `logclust` package")
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    p.add_argument("--batches", type=int, default=40, help="timed batches per workload")
    p.add_argument("--cold-batches", type=int, default=2, help="timed cold-stream batches")
    p.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub-2k",
        help="loghub-2k folder (default: %(default)s)",
    )
    args = p.parse_args()
    os.sched_setaffinity(0, {CORE})
    if args.code:
        sys.path.insert(0, args.code)
    from bench.workloads import cold, loghub_lines, replay
    from logclust.cli.traffic import BOUTIQUE_KINDS, generate_traffic
    from logclust.wire import contract

    print(f"code: {os.path.dirname(os.path.dirname(contract.__file__))}")
    one_pass = len(loghub_lines(args.data))
    lines = replay(one_pass + args.batches * 1000, data_dir=args.data)
    import pyarrow as pa

    rep = pa.table({"body": pa.array(lines, pa.string())})
    shop = generate_traffic(20_000 + args.batches * 1000, kinds=BOUTIQUE_KINDS)
    chill = pa.table({"body": pa.array(cold((1 + args.cold_batches) * 1000), pa.string())})
    runs = {
        "replay": stages(args.bundle, _ipc(rep), one_pass // 1000),
        "boutique": stages(args.bundle, _ipc(shop), 20),
        "cold": stages(args.bundle, _ipc(chill), 1),
    }
    print("\n| stage (ms per 1,000-row batch) | " + " | ".join(runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    keys = dict.fromkeys(k for r in runs.values() for k in r)  # every stage any run had
    for key in keys:
        if key == "rows/s":
            continue
        cells = [_cell(key, r.get(key, 0.0)) for r in runs.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("| rows/s (no gRPC) | " + " | ".join(f"{r['rows/s']:,.0f}" for r in runs.values()) + " |")


def _cell(key: str, value: float) -> str:
    if "hits" in key:
        return f"{value:.2%}"
    return f"{value:.2f}"


def _ipc(table: Any) -> list[bytes]:
    from logclust.wire import ipc

    return [ipc.encode_ipc(t) for t in ipc.iter_slices(table, 1000)]


if __name__ == "__main__":
    main()
