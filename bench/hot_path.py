"""Where a sidecar batch's time goes, stage by stage, in one process on one core.

    python -m bench.hot_path [--code DIR] [--bundle DIR] [--batches 40] [--cold-batches 2]
                             [--batch 1000]

Runs `Sidecar.label_ipc` (decode, label, record, encode: what one `Label` request does,
without gRPC) over 1,000-row batches of the loghub replay, the Online Boutique traffic and
a cold stream, after a warm-up (one replay pass; 20 boutique batches; one cold batch) and
after consolidations end, and prints milliseconds per batch for each stage, the cache hit
rates and what one consolidation of the source costs (timed after the batches).
`--code DIR` runs the `logclust` package of another checkout instead (one with this
layout, `logclust/sidecar/` and the rest: `git archive <commit> | tar -x -C /tmp/base`,
then `--code /tmp/base`); the workloads stay this checkout's, so the two can be compared
stage by stage on the same machine.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import cli
from bench.harness.code import add_code_arg, use_code
from bench.harness.procs import pin
from bench.harness.report import Output, fmt

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


def stages(bundle: str | None, payloads: list[bytes], warm: int, batch: int) -> dict[str, float]:
    """Milliseconds per batch of each stage over `payloads[warm:]`, after the others."""
    from logclust.cli.defaults import SERVE_ENCODER_BATCH
    from logclust.cluster.labeler import Labeler
    from logclust.embed.bundle import Bundle
    from logclust.sidecar.core import Sidecar
    from logclust.sidecar.metrics import Metrics
    from logclust.sidecar.store import MemoryStore
    from logclust.sidecar.stream_labeler import StreamLabeler
    from logclust.wire import ipc

    labeler = Labeler(Bundle.load(bundle), batch_size=SERVE_ENCODER_BATCH)
    # The default config is the server's (`ServerConfig().labeler`), in older code too.
    side = Sidecar(StreamLabeler(labeler), MemoryStore(), Metrics())
    for data in payloads[:warm]:
        side.label_ipc(data)
    side.wait_for_consolidations()
    stream = side.labeler.stream
    clusterer = next(iter(stream.sources.values()))
    t = Timers()
    # Module functions and instances (found from the running sidecar, not imported by
    # name), so that another checkout's layout of the same parts is timed alike.
    t.wrap(ipc, "decode_ipc", "decode + validate")
    t.wrap(ipc, "encode_ipc", "encode response")
    t.wrap(stream.masks, "distinct_keys", "mask + dedupe")
    t.wrap(stream.embedder, "embed_masked", "model (cache misses)")
    t.wrap(stream.cache, "embed", "embedding cache")
    t.wrap(type(clusterer), "assign", "assign + stats")
    t.wrap(side.labeler.book, "record", "latency sketches")
    t.wrap(side.metrics, "observe_batch", "metrics")
    measured = payloads[warm:]
    caches: dict[str, Any] = {"digit-shape cache": stream.masks, "embedding cache": stream.cache}
    before = {name: (c.hits, c.misses) for name, c in caches.items()}
    start = time.perf_counter()
    for data in measured:
        side.label_ipc(data)
    total = time.perf_counter() - start
    hit_rates = {}
    for name, cache in caches.items():
        h, m = cache.hits - before[name][0], cache.misses - before[name][1]
        hit_rates[f"{name} hits (of distinct values)"] = h / max(h + m, 1)
    out = {k: v / len(measured) * 1e3 for k, v in t.seconds.items()}
    out["other"] = total / len(measured) * 1e3 - sum(out.values())
    out["total"] = total / len(measured) * 1e3
    out["rows/s"] = len(measured) * batch / total
    start = time.perf_counter()
    # After the timing: it may change the model. The router runs it (older code: the
    # clusterer itself).
    if hasattr(stream, "consolidate_now"):
        stream.consolidate_now(next(iter(stream.sources)))
    else:
        clusterer.consolidate_now()  # type: ignore[attr-defined]
    fit_s = time.perf_counter() - start
    return out | hit_rates | {"one consolidation (k search + KMeans), s": fit_s}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, "hot_path")
    add_code_arg(p)
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    p.add_argument("--batches", type=int, default=40, help="timed batches per workload")
    p.add_argument("--cold-batches", type=int, default=2, help="timed cold-stream batches")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="loghub-2k folder (default: training.data.default_data_dir())",
    )
    p.add_argument("--boutique-warmup", type=int, default=20, help="untimed boutique batches")
    p.add_argument("--batch", type=int, default=1000, help="rows per batch")
    args = p.parse_args(argv)
    cli.smoke(args, batches=2, cold_batches=1, boutique_warmup=2, batch=100)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    pin(CORE)
    package = use_code(args.code)  # before anything below imports logclust
    from bench.workloads import cold, loghub_lines, replay
    from logclust.cli.traffic import BOUTIQUE_KINDS, generate_traffic

    with Output("hot_path", args.json) as out:
        out.fact("code", package)
        one_pass = len(loghub_lines(args.data, smoke=args.smoke))
        b = args.batch
        n = args.batches * b
        lines = replay(one_pass + n, data_dir=args.data, smoke=args.smoke)
        shop = generate_traffic(args.boutique_warmup * b + n, kinds=BOUTIQUE_KINDS)
        chill = cold((1 + args.cold_batches) * b)
        runs = {
            "replay": stages(args.bundle, _ipc(lines, b), one_pass // b, b),
            "boutique": stages(args.bundle, _ipc(shop, b), args.boutique_warmup, b),
            "cold": stages(args.bundle, _ipc(chill, b), 1, b),
        }
        report(out, runs, b)


def report(out: Output, runs: dict[str, dict[str, float]], batch: int) -> None:
    table = out.table([f"stage (ms per {batch:,}-row batch)", *runs])
    keys = dict.fromkeys(k for r in runs.values() for k in r)  # every stage any run had
    for key in keys:
        if key == "rows/s":
            continue
        spec = ".2%" if "hits" in key else ".2f"
        table.add(key, *(fmt(r.get(key, 0.0), spec) for r in runs.values()))
    table.add("rows/s (no gRPC)", *(fmt(r["rows/s"], ",.0f") for r in runs.values()))
    out.show(table)


def _ipc(rows: Any, batch: int) -> list[bytes]:
    """IPC payloads of `batch` rows of a table or of a list of lines (a `body` column)."""
    import pyarrow as pa

    from logclust.wire import ipc

    table = pa.table({"body": pa.array(rows, pa.string())}) if isinstance(rows, list) else rows
    return [ipc.encode_ipc(t) for t in ipc.iter_slices(table, batch)]


if __name__ == "__main__":
    main()
