"""Clusters as users get them: every loghub-2k system streamed through a real sidecar.

Each system is its own `source`; k is never given. Every system's lines are sent in
batches, several passes, the digits of each pass after the first re-drawn; the rows of
the last pass are scored against the ground-truth templates (ARI, grouping accuracy,
clusters vs templates, share of rows -1, template accuracy). Drain3 streams the same
lines (default settings) in the same run. The demo's HTTP traffic is streamed too
(ARI after its first 1,000 rows, share of rows -1 there).

    python -m bench.stream_quality [--data ../shared/data/loghub-2k] [--passes 3]
        [--format content|raw] [--report models/default/REPORT.md]

`--format raw` sends the raw lines (headers included) with the system's `log_format`
preset, as `logclust send --log-format` does; `content` sends the message part.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.peers import has_drain3
from bench.harness.report import Output, Table, fmt
from bench.harness.sidecar import in_process_server
from bench.workloads import has_loghub
from logclust.cli.traffic import generate_traffic
from logclust.client import Client
from logclust.cluster.labeler import Labeler
from logclust.cluster.quality import ari
from logclust.server.config import ServerConfig
from logclust.sidecar.config import StreamLabelerConfig
from logclust.text.log_format import LogFormat, apply_log_format
from training.data import LogSet, default_data_dir, load_loghub
from training.evaluate.report import write_section
from training.evaluate.streaming import passes, score, template_accuracy

HELD_OUT = "Android"
# A smoke run streams these systems' first `SMOKE_LINES` lines.
SMOKE_SYSTEMS = ("HDFS", "Android")
SMOKE_LINES = 150


def drain_stream(lines_by_pass: list[list[str]]) -> tuple[list[int], dict[int, str]]:
    """Drain3 (default settings) over every pass; ids of the last pass and templates
    (every line its own cluster, no templates, in a smoke run without drain3)."""
    if not has_drain3():
        return list(range(len(lines_by_pass[-1]))), {}
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    miner = TemplateMiner(config=cfg)
    ids: list[int] = []
    for lines in lines_by_pass:
        ids = [miner.add_log_message(line)["cluster_id"] for line in lines]
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return ids, templates


def stream_system(
    client: Client, name: str, lines_by_pass: list[list[str]], batch: int, log_format: str | None
) -> np.ndarray:
    """Sends every pass of one system as source `name`; ids of the last pass."""
    ids = np.zeros(0, np.int32)
    for lines in lines_by_pass:
        table = pa.table({"body": pa.array(lines, pa.string()), "source": [name] * len(lines)})
        if log_format is not None:
            table = apply_log_format(LogFormat.resolve(log_format), table)
        out = client.label(table, batch_size=batch)
        ids = out.column("cluster_id").to_numpy()
    return ids


def log_sets(args: argparse.Namespace) -> dict[str, LogSet]:
    """The loghub systems to stream (a few lines of two in a smoke run; none there
    without loghub)."""
    if args.smoke:
        if not has_loghub(args.data):
            return {}
        sets = load_loghub(args.data)
        return {
            n: LogSet(
                n,
                ls.raw[:SMOKE_LINES],
                ls.content[:SMOKE_LINES],
                (ls.templates or [])[:SMOKE_LINES],
                (ls.template_texts or [])[:SMOKE_LINES],
            )
            for n, ls in sets.items()
            if n in SMOKE_SYSTEMS
        }
    return load_loghub(args.data)


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    sets = log_sets(args)
    labeler = Labeler.load(args.bundle)
    config = ServerConfig(listen="127.0.0.1:0", labeler=StreamLabelerConfig(max_sources=64))
    rows: dict[str, dict[str, float]] = {}
    with in_process_server(config, labeler) as addr, Client(addr) as client:
        for name, ls in sets.items():
            rows[name] = stream_one(client, name, ls, args)
        rows["HTTP"] = http_stream(client, args.http_rows, args.seed)
    return rows


def stream_one(client: Client, name: str, ls: LogSet, args: argparse.Namespace) -> dict[str, float]:
    """One system through the sidecar and through Drain3: the scores of the last pass."""
    lines = ls.raw if args.format == "raw" else ls.content
    by_pass = passes(lines, args.passes, seed=args.seed)
    t0 = time.perf_counter()
    ids = stream_system(client, name, by_pass, args.batch, name if args.format == "raw" else None)
    seconds = time.perf_counter() - t0
    templates = {r["cluster_id"]: r["template"] for r in client.clusters(source=name).to_pylist()}
    truth, texts = ls.templates or [], ls.template_texts or []
    mine = score(truth, ids.tolist())
    # Drain3 gets the message part either way (it has no header parser).
    d_ids, d_templates = drain_stream(passes(ls.content, args.passes, args.seed))
    drain = score(truth, d_ids)
    print(
        f"{name:10s} ARI {mine.ari:.3f} (Drain3 {drain.ari:.3f})  clusters "
        f"{mine.clusters}/{mine.templates}  -1 {mine.unassigned:.2%}",
        flush=True,
    )
    return {
        **{f"logclust_{k}": v for k, v in mine.to_dict().items()},
        "logclust_ta": template_accuracy(texts, ids.tolist(), templates),
        **{f"drain3_{k}": v for k, v in drain.to_dict().items()},
        "drain3_ta": template_accuracy(texts, d_ids, d_templates),
        "seconds": seconds,
    }


def http_stream(client: Client, n: int, seed: int) -> dict[str, float]:
    """The demo's traffic as its own source: ARI and -1 share after the first 1,000 rows."""
    traffic = generate_traffic(n, seed=seed)
    table = traffic.set_column(
        traffic.schema.get_field_index("source"), "source", pa.array(["http"] * n)
    )
    out = client.label(table, batch_size=500)
    ids = out.column("cluster_id").to_numpy()[1000:]
    kinds = out.column("kind").to_pylist()[1000:]
    got = {
        "logclust_ari": ari(kinds, ids.tolist()),
        "logclust_clusters": float(len(set(ids.tolist()) - {-1})),
        "logclust_templates": float(len(set(kinds))),
        "logclust_unassigned": float((ids == -1).mean()),
    }
    print(
        f"HTTP       ARI {got['logclust_ari']:.3f}  clusters {got['logclust_clusters']:.0f}/"
        f"{got['logclust_templates']:.0f}  -1 {got['logclust_unassigned']:.3%}",
        flush=True,
    )
    return got


def results_table(
    out: Output, rows: dict[str, dict[str, float]], args: argparse.Namespace
) -> Table:
    """The results as a table (its note says how they were made)."""
    note = (
        f"Streamed through a real sidecar, k never given, {args.passes} passes (digits "
        f"re-drawn after the first), `--format {args.format}`, last pass scored; Drain3 "
        "(default settings) streams the same lines. Command: `python -m bench.stream_quality"
        f" --format {args.format}`."
    )
    t = out.table(
        [
            "stream",
            "templates",
            "clusters",
            "ARI",
            "Drain3 ARI",
            "GA",
            "Drain3 GA",
            "template acc.",
            "Drain3 template acc.",
            "rows -1",
        ],
        note=note,
    )
    logs = [n for n in rows if n != "HTTP"]
    for n in logs:
        r = rows[n]
        t.add(
            f"{n} (held out)" if n == HELD_OUT else n,
            fmt(r["logclust_templates"], ".0f"),
            fmt(r["logclust_clusters"], ".0f"),
            fmt(r["logclust_ari"], ".3f"),
            fmt(r["drain3_ari"], ".3f"),
            fmt(r["logclust_ga"], ".3f"),
            fmt(r["drain3_ga"], ".3f"),
            fmt(r["logclust_ta"], ".3f"),
            fmt(r["drain3_ta"], ".3f"),
            fmt(r["logclust_unassigned"], ".2%"),
        )
    train = [rows[n] for n in logs if n != HELD_OUT]
    if train:

        def mean(key: str) -> float:
            return float(np.mean([r[key] for r in train]))

        t.add(
            "**train mean**",
            None,
            None,
            f"**{mean('logclust_ari'):.3f}**",
            fmt(mean("drain3_ari"), ".3f"),
            fmt(mean("logclust_ga"), ".3f"),
            fmt(mean("drain3_ga"), ".3f"),
            fmt(mean("logclust_ta"), ".3f"),
            fmt(mean("drain3_ta"), ".3f"),
            None,
        )
    if "HTTP" in rows:
        r = rows["HTTP"]
        t.add(
            "HTTP demo traffic (after 1,000 rows)",
            fmt(r["logclust_templates"], ".0f"),
            fmt(r["logclust_clusters"], ".0f"),
            fmt(r["logclust_ari"], ".3f"),
            "-",
            None,
            None,
            None,
            None,
            fmt(r["logclust_unassigned"], ".3%"),
        )
    return t


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.split("\n\n")[0], "stream_quality")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--http-rows", type=int, default=20_000)
    p.add_argument("--format", choices=("content", "raw"), default="content")
    p.add_argument("--report", type=Path, default=None, help="write the table into this file")
    args = p.parse_args(argv)
    cli.smoke(args, passes=2, batch=100, http_rows=1500)
    with cli.output(args, "stream_quality") as out:
        t = results_table(out, run(args), args)
        out.line()
        out.show(t)
    if args.report is not None:
        text = f"{t.note}\n\n{t.markdown()}\n"
        title = f"## Streaming quality, k never given (`--format {args.format}`)\n\n"
        write_section(args.report, f"stream-{args.format}", title + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
