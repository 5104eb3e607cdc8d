"""One id per kind across a fleet: three real sidecars with one catalog.

    python -m bench.fleet [--data ../shared/data/loghub-2k] [--clusters 5000]

The loghub train systems' lines (each system its own `source`, a latency per row drawn
from a lognormal per template) build a catalog (`logclust catalog build`'s code). Three
`logclust serve` child processes without a catalog, then three with `--catalog`, each get
every line in another order. Printed: the share of ground-truth templates whose rows get
the same (majority) id on all three sidecars, without and with the catalog; the fleet's
p99 per cluster (catalog ids and local kinds' fleet-unique ids alike) from
`logclust latency --addr A --addr B --addr C`'s merge (`logclust.cli.fleet_query`)
against numpy's exact p99 over every row of that id; the file size, load time and added
RSS of a catalog of `--clusters` clusters (free-text lines, about one cluster each, in a
spawned process); placement speed with and without the catalog, in this process, in the
same run (first pass: every text new; second: all placed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.procs import SERVER_CORE, in_process
from bench.harness.report import fmt
from bench.harness.sidecar import Sidecar
from bench.many_clusters import lines as free_text
from bench.workloads import has_loghub
from logclust.cli.fleet_query import fleet_latency
from logclust.client import Client
from logclust.cluster.catalog import read_catalog, write_catalog
from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.labeler import Labeler
from logclust.cluster.router import StreamClusters
from training.data import TRAIN_SYSTEMS, default_data_dir, load_loghub

SMOKE_SYSTEMS = ("HDFS", "Linux")
SMOKE_LINES = 150
SIDECARS = 3
# Passes of the steady state (every text placed) timed; the best is kept.
STEADY_PASSES = 5


def sample(data: Path, smoke: bool) -> pa.Table:
    """`body`, `source`, `template` and `latency_ms` of every line (loghub, or a few
    synthetic kinds without it in a smoke run)."""
    rng = np.random.default_rng(0)
    if not has_loghub(data):
        if not smoke:
            raise SystemExit(f"bench.fleet needs loghub-2k. Received: --data {data}")
        body = [f"job {i % 7} finished in {i} ms on node{i % 3}" for i in range(300)]
        tpl = [f"kind{i % 7}" for i in range(300)]
        src = ["synthetic"] * 300
    else:
        systems = SMOKE_SYSTEMS if smoke else TRAIN_SYSTEMS
        body, src, tpl = [], [], []
        for name, logs in load_loghub(data, systems).items():
            n = SMOKE_LINES if smoke else len(logs)
            body += logs.content[:n]
            src += [name] * n
            tpl += [f"{name}:{t}" for t in (logs.templates or [""] * len(logs))[:n]]
    codes = np.unique(np.asarray(tpl), return_inverse=True)[1]
    scale = np.exp(rng.normal(3.0, 1.0, codes.max() + 1))[codes]  # ms, per template
    latency = scale * rng.lognormal(0.0, 0.5, len(body))
    return pa.table({"body": body, "source": src, "template": tpl, "latency_ms": latency})


def feed(table: pa.Table, catalog: str | None, batch: int) -> list[tuple[Sidecar, np.ndarray]]:
    """Three sidecars, each fed `table` in its own order; each with the id of every row
    (in `table`'s order). The caller stops them."""
    out = []
    extra = ["--catalog", catalog] if catalog else []
    for seed in range(SIDECARS):
        side = Sidecar(None, SERVER_CORE, extra=extra, quiet_s=0.3)
        order = np.random.default_rng(seed).permutation(table.num_rows)
        ids = np.empty(table.num_rows, np.int64)
        with Client(side.addr) as client:
            client.wait_ready(120)
            sent = table.take(order).drop_columns(["template"])
            got = client.label(sent, batch_size=batch).column("cluster_id").to_numpy()
        ids[order] = got
        out.append((side, ids))
    return out


def agreement(table: pa.Table, runs: list[np.ndarray]) -> float:
    """Share of templates whose rows' majority id is the same on every sidecar."""
    tpl = np.asarray(table.column("template").to_pylist())
    same = 0
    names = np.unique(tpl)
    for name in names:
        rows = tpl == name
        same += len({_majority(r[rows]) for r in runs}) == 1
    return same / len(names)


def _majority(ids: np.ndarray) -> int:
    """The most common id (the smallest of a tie); ids may be 63-bit local ids."""
    values, counts = np.unique(ids, return_counts=True)
    return int(values[counts.argmax()])


def p99_errors(table: pa.Table, addrs: list[str], ids: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Relative error of the fleet's merged p99 per (source, cluster) against numpy's,
    and how many of those clusters are local kinds (merged by their fleet-unique ids)."""
    lat = table.column("latency_ms").to_numpy()
    src = np.asarray(table.column("source").to_pylist())
    merged = fleet_latency(addrs, [0.99], since_s=86400.0).table.to_pylist()
    errs, local = [], 0
    for row in merged:
        local += bool(row["local"])
        mine = np.concatenate([lat[(src == row["source"]) & (i == row["cluster_id"])] for i in ids])
        exact = float(np.quantile(mine, 0.99))
        errs.append(abs(row["p99"] - exact) / exact)
    return np.asarray(errs), local


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


def _load_cost(path: str, dim: int, queue: Queue[Any]) -> None:
    """In a fresh process: seconds and RSS KiB to read a catalog (the file's bytes kept,
    checked), then with every source started from it (its clusters' centroids,
    templates and descriptions, which a sidecar that learned those kinds holds too)."""
    import gc

    from logclust.cluster.config import StreamClusterConfig

    gc.collect()
    before = _rss_kb()
    t0 = time.perf_counter()
    catalog = read_catalog(path)
    read_s, read_kb = time.perf_counter() - t0, _rss_kb() - before
    held = [catalog.clusterer(s, StreamClusterConfig(), 0.5) for s in catalog.states]
    took = time.perf_counter() - t0
    queue.put((read_s, read_kb, took, _rss_kb() - before, sum(c.k for c in held)))


def speed(lab: Labeler, table: pa.Table, catalog: Any, batch: int) -> tuple[float, float]:
    """Lines/s of a first pass (texts new) and of the best of `STEADY_PASSES` more (all
    placed), in this process."""
    sc = StreamClusters(lab, None, 64, lab.threshold)
    sc.use_catalog(catalog)
    parts = [
        (b.column("body").combine_chunks(), b.column("source").combine_chunks())
        for b in (table.slice(lo, batch) for lo in range(0, table.num_rows, batch))
    ]
    times = []
    for _ in range(1 + STEADY_PASSES):
        t0 = time.perf_counter()
        for body, src in parts:
            sc.label(body, src, np.zeros(len(body), np.int64))
        times.append(time.perf_counter() - t0)
    return table.num_rows / times[0], table.num_rows / min(times[1:])


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.split("\n\n")[0], "fleet")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--clusters", type=int, default=5000, help="clusters of the load test")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="placement speed runs of each")
    args = p.parse_args(argv)
    cli.smoke(args, clusters=200, repeats=1)
    table = sample(args.data, args.smoke)
    lab = Labeler.load()
    work = tempfile.mkdtemp(prefix="logclust-fleet-")
    path = os.path.join(work, "fleet.catalog")
    t0 = time.perf_counter()
    catalog = build_catalog([table.select(["body", "source"])], lab)
    build_s = time.perf_counter() - t0
    write_catalog(catalog, path)
    plain = feed(table, None, args.batch)
    for side, _ in plain:
        side.stop()
    served = feed(table, path, args.batch)
    try:
        errs, local = p99_errors(table, [s.addr for s, _ in served], [i for _, i in served])
    finally:
        for side, _ in served:
            side.stop()
    big = os.path.join(work, "big.catalog")
    texts = free_text(int(args.clusters * 1.1), seed=0)
    sources = [f"app{i % 2}" for i in range(len(texts))]  # under max_clusters each
    write_catalog(build_catalog([pa.table({"body": texts, "source": sources})], lab), big)
    read_s, read_kb, load_s, load_kb, held = in_process(_load_cost, big, lab.dim)
    big_mb = os.path.getsize(big) / 1e6
    shutil.rmtree(work, ignore_errors=True)
    runs: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
    for _ in range(args.repeats):  # alternated, the best of each kept: the machine is shared
        for name, c in (("without", None), ("with", catalog)):
            runs[name].append(speed(lab, table, c, args.batch))
    rates = {k: (max(r[0] for r in v), max(r[1] for r in v)) for k, v in runs.items()}
    with cli.output(args, "fleet") as out:
        out.header(lines=f"{table.num_rows:,} in {len(catalog.states)} sources")
        t = out.table(["", "without catalog", "with catalog"], title="Same template, same id")
        t.add(
            "templates with one id on all 3 sidecars",
            fmt(100 * agreement(table, [i for _, i in plain]), ".1f", " %"),
            fmt(100 * agreement(table, [i for _, i in served]), ".1f", " %"),
        )
        t.add(
            "first pass lines/s (in process)",
            fmt(rates["without"][0], ",.0f"),
            fmt(rates["with"][0], ",.0f"),
        )
        t.add(
            "later passes lines/s (in process, best)",
            fmt(rates["without"][1], ",.0f"),
            fmt(rates["with"][1], ",.0f"),
        )
        out.show(t)
        f = out.table(["figure", "value"], title="Fleet latency and catalog cost")
        f.add("catalog clusters (build)", fmt(catalog.clusters, ","))
        f.add("catalog build s", fmt(build_s, ".2f"))
        f.add(
            "fleet p99 within 2% of numpy (clusters)", f"{int((errs <= 0.02).sum())} / {errs.size}"
        )
        f.add("... of which local kinds (ids the catalog lacks)", fmt(local, ","))
        f.add("fleet p99 worst relative error", fmt(100 * float(errs.max(initial=0)), ".2f", " %"))
        f.add("large catalog clusters / file MB", f"{held:,} / {big_mb:.1f}")
        f.add("large catalog read s / added RSS MB", f"{read_s:.3f} / {read_kb / 1024:.1f}")
        f.add("... and every source started s / MB", f"{load_s:.3f} / {load_kb / 1024:.1f}")
        out.show(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
