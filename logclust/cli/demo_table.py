"""The demo's printed table: the kinds an SRE asks about, not hundreds of singletons.

The clusters with the most rows (at most `TOP_CLUSTERS`, each holding at least
`SHOWN_SHARE` of the rows) are listed one by one. When the sidecar answers with group
ids, the smaller clusters are then summed per group (free text: many clusters, one
meaning). One last line sums what is left. All lines are sorted slowest first.

A line of several clusters has no sketch of its own on the client: its sketch column is
the upper bound of their merged p99 (`logclust.client.tables.quantile_bounds`), marked
`<=`, next to the exact p99 of the rows sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from logclust.client.tables import GROUP_ID, merge_latency_rows

# Clusters listed one by one: the most rows first, at most this many ...
TOP_CLUSTERS = 12
# ... each holding at least this share of the rows.
SHOWN_SHARE = 0.005
# Groups of smaller clusters listed: at most this many, each holding this share of rows.
TOP_GROUPS = 8
GROUP_SHARE = 0.001
DESCRIPTION_CHARS = 100


@dataclass(frozen=True)
class Line:
    """One printed line: a cluster, or several clusters summed."""

    clusters: list[int]
    group: int | None
    rows: int
    p99: float  # the cluster's sketch p99, or for several the upper bound of their p99
    exact_p99: float  # numpy p99 of the rows sent
    description: str

    @property
    def merged(self) -> bool:
        return len(self.clusters) > 1


@dataclass(frozen=True)
class Summary:
    """The lines to print, and the rest summed."""

    lines: list[Line]
    rest: Line | None
    groups_known: bool
    rest_kinds: dict[str, int]  # true kind -> rows of the rest, most first (when known)


def summarize(
    table: pa.Table,
    ids: np.ndarray,
    latency_ms: np.ndarray,
    latency: pa.Table,
    kinds: list[str] | None = None,
) -> Summary:
    """The demo's lines from its per-cluster table.

    Args:
        table: per cluster (`logclust.cli.demo._p99_table`): `cluster_id`, `count`, `p99`,
            `exact_p99`, `description`, and `group_id` when the sidecar answers with groups.
        ids: each row's cluster id (merged ids replaced as latency reports them), (n,).
        latency_ms: each row's latency, (n,).
        latency: the Latency answer (one row per cluster, its quantiles).
        kinds: each row's true kind, where known (the demo's traffic), to say what the
            rest is.
    """
    rows = table.to_pylist()
    total = max(sum(r["count"] for r in rows), 1)
    by_rows = sorted(rows, key=lambda r: (-r["count"], r["cluster_id"]))
    top = [r for r in by_rows[:TOP_CLUSTERS] if r["count"] >= SHOWN_SHARE * total]
    rest = by_rows[len(top) :]
    lines = [_cluster_line(r) for r in top]
    groups_known = GROUP_ID in table.column_names
    if groups_known:
        grouped, rest = _groups(rest, total)
        lines += [_merged_line(g, ids, latency_ms, latency) for g in grouped]
    lines.sort(key=lambda line: (-line.p99, -line.rows))
    left = _merged_line(rest, ids, latency_ms, latency) if rest else None
    rest_kinds: dict[str, int] = {}
    if left is not None and kinds is not None:
        mine = np.asarray(kinds, object)[np.isin(ids, left.clusters)]
        names, counts = np.unique(mine.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        rest_kinds = {str(names[i]): int(counts[i]) for i in order}
    return Summary(lines, left, groups_known, rest_kinds)


def render(summary: Summary) -> list[str]:
    """The table as text lines."""
    group = f"{'group':>7} " if summary.groups_known else ""
    out = [
        f"{group}{'cluster':>7} {'rows':>7} {'p99 ms':>10} {'exact p99':>10} {'rel err':>8}  "
        "description"
    ]
    for line in summary.lines:
        gid = f"{'' if line.group is None else line.group:>7} " if group else ""
        if line.merged:
            cid, p99, err = f"{len(line.clusters)} cl", f"<={line.p99:.3f}", "-"
            desc = f"{len(line.clusters)} clusters, e.g. {line.description}"
        else:
            cid, p99, desc = str(line.clusters[0]), f"{line.p99:.3f}", line.description
            err = f"{abs(line.p99 - line.exact_p99) / line.exact_p99:.2%}"
        out.append(
            f"{gid}{cid:>7} {line.rows:>7} {p99:>10} {line.exact_p99:>10.3f} {err:>8}  "
            f"{_shorten(desc, DESCRIPTION_CHARS)}"
        )
    if summary.rest is not None:
        r = summary.rest
        n = len(r.clusters)
        kinds = ", ".join(f"{k} {c}" for k, c in list(summary.rest_kinds.items())[:3])
        more = "" if len(summary.rest_kinds) <= 3 else ", ..."
        out.append(
            f"{group and ' ' * len(group)}{'':>7} {r.rows:>7} rows in {n} smaller "
            f"cluster{'s' * (n != 1)}{f' (true kind: {kinds}{more})' if kinds else ''}: "
            f"p99 <= {r.p99:.3f} ms (exact {r.exact_p99:.3f}); `logclust clusters` lists them"
        )
    return out


def _groups(rest: list[dict], total: int) -> tuple[list[list[dict]], list[dict]]:
    """The smaller clusters summed per group: (groups shown, clusters left)."""
    by_group: dict[int, list[dict]] = {}
    for r in rest:
        by_group.setdefault(r[GROUP_ID], []).append(r)
    ranked = sorted(by_group.values(), key=lambda g: (-sum(r["count"] for r in g), g[0][GROUP_ID]))
    shown = [g for g in ranked[:TOP_GROUPS] if sum(r["count"] for r in g) >= GROUP_SHARE * total]
    kept = {id(r) for g in shown for r in g}
    return shown, [r for r in rest if id(r) not in kept]


def _cluster_line(r: dict) -> Line:
    return Line(
        clusters=[r["cluster_id"]],
        group=r.get(GROUP_ID),
        rows=r["count"],
        p99=r["p99"],
        exact_p99=r["exact_p99"],
        description=r["description"],
    )


def _merged_line(
    rs: list[dict], ids: np.ndarray, latency_ms: np.ndarray, latency: pa.Table
) -> Line:
    """Several clusters as one line: rows summed, the exact p99 of their rows, and the
    upper bound of their p99 from the quantiles Latency gave (one cluster: its own)."""
    if len(rs) == 1:
        return _cluster_line(rs[0])
    cids = [r["cluster_id"] for r in rs]
    exact = float(np.quantile(latency_ms[np.isin(ids, cids)], 0.99))
    col = latency.column("cluster_id")
    mine = latency.filter(pa.compute.is_in(col, pa.array(cids, col.type)))
    high = merge_latency_rows(mine).column("p99_high")[0].as_py()
    biggest = max(rs, key=lambda r: (r["count"], -r["cluster_id"]))
    groups = {r.get(GROUP_ID) for r in rs}
    return Line(
        clusters=cids,
        group=groups.pop() if len(groups) == 1 else None,
        rows=sum(r["count"] for r in rs),
        p99=high,
        exact_p99=exact,
        description=biggest["description"],
    )


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
