"""Where grouping accuracy is lost, for one loghub system streamed through a real sidecar.

The system is streamed as `bench.stream_quality` streams it (a `logclust serve` child
process, k never given, 5 passes with digits re-drawn, last pass scored). Lists the
worst errors of the last pass, most lines first: true templates split over several
clusters (each cluster with example lines), and clusters merging several true
templates (each template with example lines). Every line of either costs GA.

    python -m bench.ga_errors --system Linux [--top 10] [--examples 2] [--passes 5]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Hashable
from pathlib import Path

from bench.harness import cli
from bench.harness.procs import SERVER_CORE
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar
from bench.stream_quality import SMOKE_LINES, Labelled, drain_stream, sidecar_stream, smoke_sets
from bench.workloads import has_loghub, synthetic_set
from logclust.client import Client
from training.data import LogSet, default_data_dir, load_loghub
from training.evaluate.grouping import GroupingError, ga, merges, splits
from training.evaluate.streaming import passes

# A cell shows at most this many characters of a line.
CELL_CHARS = 140


def cell(text: str) -> str:
    """A log line as a Markdown table cell: pipes escaped, cut to `CELL_CHARS`."""
    text = " ".join(text.split())
    if len(text) > CELL_CHARS:
        text = text[: CELL_CHARS - 1] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def examples(rows: list[int], lines: list[str], n: int) -> list[str]:
    """Up to `n` distinct lines among `rows`, in stream order."""
    return list(dict.fromkeys(lines[i] for i in rows))[:n]


def split_table(
    out: Output, errors: list[GroupingError], ls: LogSet, got: Labelled, args: argparse.Namespace
) -> None:
    """Templates split over several clusters: a row per (template, cluster)."""
    t = out.table(
        ["true template", "lines", "cluster", "its lines", "cluster template", "example lines"],
        title=f"{ls.name}: true templates split over several clusters",
    )
    rows_of: dict[tuple[Hashable, Hashable], list[int]] = defaultdict(list)
    for i, (truth, cid) in enumerate(zip(ls.templates or [], got.ids, strict=True)):
        rows_of[(truth, cid)].append(i)
    text_of = dict(zip(ls.templates or [], ls.template_texts or [], strict=True))
    for e in errors[: args.top]:
        for j, (piece, n) in enumerate(e.parts):
            t.add(
                f"{e.key} {cell(text_of.get(str(e.key), ''))}" if j == 0 else "",
                fmt(e.lines, "d") if j == 0 else None,
                str(piece),
                fmt(n, "d"),
                cell(got.templates.get(int(str(piece)), "")),
                "<br>".join(
                    cell(x) for x in examples(rows_of[(e.key, piece)], ls.content, args.examples)
                ),
            )
    out.show(t)


def merge_table(
    out: Output, errors: list[GroupingError], ls: LogSet, got: Labelled, args: argparse.Namespace
) -> None:
    """Clusters holding several true templates: a row per (cluster, template)."""
    t = out.table(
        ["cluster", "lines", "cluster template", "true template", "its lines", "example lines"],
        title=f"{ls.name}: clusters merging several true templates",
    )
    rows_of: dict[tuple[Hashable, Hashable], list[int]] = defaultdict(list)
    for i, (truth, cid) in enumerate(zip(ls.templates or [], got.ids, strict=True)):
        rows_of[(cid, truth)].append(i)
    text_of = dict(zip(ls.templates or [], ls.template_texts or [], strict=True))
    for e in errors[: args.top]:
        for j, (kind, n) in enumerate(e.parts):
            t.add(
                str(e.key) if j == 0 else "",
                fmt(e.lines, "d") if j == 0 else None,
                cell(got.templates.get(int(str(e.key)), "")) if j == 0 else "",
                f"{kind} {cell(text_of.get(str(kind), ''))}",
                fmt(n, "d"),
                "<br>".join(
                    cell(x) for x in examples(rows_of[(e.key, kind)], ls.content, args.examples)
                ),
            )
    out.show(t)


def load_system(args: argparse.Namespace) -> LogSet:
    if args.smoke:  # without loghub, lines of a few synthetic kinds (figures meaningless)
        sets = smoke_sets(args.data)
        return sets["Android"] if sets else synthetic_set(SMOKE_LINES)
    if not has_loghub(args.data):
        raise SystemExit(f"no loghub-2k data in {args.data} (give --data)")
    return load_loghub(args.data, [args.system])[args.system]


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.split("\n\n")[0], "ga_errors")
    p.add_argument("--system", default="Linux", help="the loghub system (folder name)")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="errors listed of each kind")
    p.add_argument("--examples", type=int, default=2, help="example lines per piece")
    args = p.parse_args(argv)
    cli.smoke(args, passes=2, batch=100, top=3)
    ls = load_system(args)
    truth = ls.templates or []
    with cli.output(args, "ga_errors") as out:
        out.header(args.bundle, system=ls.name, passes=str(args.passes))
        with Sidecar(args.bundle, SERVER_CORE) as side, Client(side.addr) as client:
            client.wait_ready(120)
            got = sidecar_stream(
                client, ls.name, passes(ls.content, args.passes, args.seed), args.batch
            )
        drain = drain_stream(passes(ls.content, args.passes, args.seed))
        split, merge = splits(truth, got.ids), merges(truth, got.ids)
        t = out.table(
            [
                "system",
                "lines",
                "templates",
                "clusters",
                "GA",
                "Drain3 GA",
                "split templates",
                "their lines",
                "merging clusters",
                "their lines",
            ],
            title="Summary (last pass)",
        )
        t.add(
            ls.name,
            fmt(len(truth), "d"),
            fmt(len(set(truth)), "d"),
            fmt(len(set(got.ids) - {-1}), "d"),
            fmt(ga(truth, got.ids), ".3f"),
            fmt(ga(truth, drain.ids), ".3f"),
            fmt(len(split), "d"),
            fmt(sum(e.lines for e in split), "d"),
            fmt(len(merge), "d"),
            fmt(sum(e.lines for e in merge), "d"),
        )
        out.show(t)
        split_table(out, split, ls, got, args)
        merge_table(out, merge, ls, got, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
