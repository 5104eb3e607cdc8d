"""Arrow tables from the sidecar's responses (client side: no server code).

Besides the conversions, the summaries a person reads: the clusters ranked by rows
(`rank_by_rows`) and the rest merged into one "other" row per window
(`merge_latency_rows`). A Latency answer carries quantiles, not sketches, so the merged
quantiles are upper bounds (`upper_quantile`), never a guessed average.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from logclust.proto import logclust_pb2 as pb

GROUP_ID = "group_id"
# Latency columns besides the quantiles (`p50`, `p99_9`, ...).
_QUANTILE_NAME = re.compile(r"p(\d+(?:_\d+)?)")

ClusterKey = tuple[str, int]


def clusters_to_table(response: pb.ClustersResponse) -> pa.Table:
    """The Clusters response as an Arrow table."""
    cs = list(response.clusters)
    ts = pa.timestamp("ms", tz="UTC")
    table = pa.table(
        {
            "source": pa.array([c.source for c in cs], pa.string()),
            "cluster_id": pa.array([c.cluster_id for c in cs], pa.int64()),
            "group_id": pa.array([c.group_id for c in cs], pa.int64()),
            "size": pa.array([c.size for c in cs], pa.int64()),
            "first_seen": pa.array([c.first_seen_unix_ms or None for c in cs], pa.int64()).cast(ts),
            "last_seen": pa.array([c.last_seen_unix_ms or None for c in cs], pa.int64()).cast(ts),
            "template": pa.array([c.template for c in cs], pa.string()),
            "exemplars": pa.array([list(c.exemplars) for c in cs], pa.list_(pa.string())),
            "active": pa.array([c.active for c in cs], pa.bool_()),
            "merged_into": pa.array(
                [None if c.merged_into < 0 else c.merged_into for c in cs], pa.int64()
            ),
            "rows_per_s": pa.array([c.rows_per_s for c in cs], pa.float64()),
            "rows_per_s_before": pa.array([c.rows_per_s_before for c in cs], pa.float64()),
            "local": pa.array([c.local for c in cs], pa.bool_()),
        }
    )
    return table


def groups_table(clusters: pa.Table, max_exemplars: int = 3) -> pa.Table:
    """A row per group (source, group_id) of `Client.clusters()`: its active clusters,
    rows, their templates (largest cluster first) and up to `max_exemplars` exemplars,
    taken from its clusters in turn."""
    by: dict[tuple[str, int], list[dict[str, object]]] = {}
    for r in clusters.to_pylist():
        if r["active"]:
            by.setdefault((r["source"], r["group_id"]), []).append(r)
    rows = []
    for (source, gid), members in sorted(by.items()):
        members.sort(key=lambda r: -int(r["size"]))  # type: ignore[call-overload]
        pool = [list(r["exemplars"]) for r in members]  # type: ignore[call-overload]
        exemplars: list[str] = []
        while len(exemplars) < max_exemplars and any(pool):
            for ex in pool:
                if ex and len(exemplars) < max_exemplars:
                    exemplars.append(ex.pop(0))
        rows.append(
            {
                "source": source,
                "group_id": gid,
                "clusters": [r["cluster_id"] for r in members],
                "size": sum(int(r["size"]) for r in members),  # type: ignore[call-overload]
                "templates": list(dict.fromkeys(str(r["template"]) for r in members)),
                "exemplars": exemplars,
            }
        )
    schema = pa.schema(
        [
            ("source", pa.string()),
            ("group_id", pa.int64()),
            ("clusters", pa.list_(pa.int32())),
            ("size", pa.int64()),
            ("templates", pa.list_(pa.string())),
            ("exemplars", pa.list_(pa.string())),
        ]
    )
    return pa.Table.from_pylist(rows, schema)


def cluster_descriptions(clusters: pa.Table) -> dict[ClusterKey, str]:
    """`(source, cluster id)` -> template and one exemplar unlike it, from `Client.clusters()`."""
    out = {}
    for r in clusters.to_pylist():
        ex = next((e for e in r["exemplars"] if e != r["template"]), "")
        out[(r["source"], r["cluster_id"])] = r["template"] + (f"  e.g. {ex}" if ex else "")
    return out


def cluster_templates(clusters: pa.Table) -> dict[ClusterKey, str]:
    """`(source, cluster id)` -> template, or its first exemplar when the template is empty."""
    out = {}
    for r in clusters.to_pylist():
        text = r["template"] or next(iter(r["exemplars"] or []), "")
        out[(r["source"], r["cluster_id"])] = text
    return out


def cluster_groups(clusters: pa.Table) -> dict[ClusterKey, int]:
    """`(source, cluster id)` -> group id; empty when the answer carries no group ids."""
    if GROUP_ID not in clusters.column_names:
        return {}
    rows = clusters.select(["source", "cluster_id", GROUP_ID]).to_pylist()
    return {(r["source"], r["cluster_id"]): r[GROUP_ID] for r in rows}


def quantile_columns(latency: pa.Table) -> dict[str, float]:
    """The quantile columns of a Latency answer and their quantiles (`p99_9` -> 0.999)."""
    out = {}
    for name in latency.column_names:
        m = _QUANTILE_NAME.fullmatch(name)
        if m:
            out[name] = float(m.group(1).replace("_", ".")) / 100
    return out


def rank_by_rows(latency: pa.Table) -> list[tuple[ClusterKey, int]]:
    """`((source, cluster id), rows)` over all windows, most rows first (ties: by key)."""
    rows: dict[ClusterKey, int] = {}
    keys = zip(
        latency.column("source").to_pylist(),
        latency.column("cluster_id").to_pylist(),
        latency.column("count").to_pylist(),
        strict=True,
    )
    for source, cid, n in keys:
        rows[(source, cid)] = rows.get((source, cid), 0) + n
    return sorted(rows.items(), key=lambda kv: (-kv[1], kv[0]))


def quantile_bounds(
    q: float,
    counts: Sequence[int],
    quantiles: Sequence[float],
    values: np.ndarray,
    mins: Sequence[float],
) -> tuple[float, float]:
    """Bounds `(low, high)` of the q-quantile of several clusters' rows taken together.

    Each cluster is known by its rows, its min and a few of its quantiles (`values[i, j]`
    is cluster i's `quantiles[j]`; give its max as the quantile 1.0). At or past its j-th
    quantile at least `quantiles[j]` of a cluster's rows lie at or below a value, and
    below it fewer than that share: summing these guaranteed shares over the clusters
    brackets the merged quantile (within the sketches' relative accuracy). With the p99
    alone `high` is at most the largest p99; each further quantile tightens the bracket.

    Args:
        q: the quantile, in [0, 1].
        counts: rows per cluster, (n,).
        quantiles: the quantiles known per cluster, (k,), one of them 1.0.
        values: (n, k) the clusters' values of those quantiles.
        mins: (n,) the clusters' smallest values.
    """
    order = np.argsort(quantiles)
    qs = np.asarray(quantiles, np.float64)[order]
    vals = np.maximum.accumulate(np.asarray(values, np.float64)[:, order], axis=1)  # (n, k)
    w = np.asarray(counts, np.float64)[:, None]
    need = q * float(np.sum(counts)) * (1 - 1e-12)  # sums of floats round
    # At or past value j a cluster has at least qs[j] of its rows below: the first value
    # where the sum reaches q bounds the quantile from above.
    high = _first_reaching(vals, w * np.diff(qs, prepend=0.0), need)
    # Below value j it has fewer than qs[j + 1] (below its min none): below the first value
    # where the sum reaches q, fewer than q of all rows lie.
    starts = np.concatenate([np.asarray(mins, np.float64)[:, None], vals[:, :-1]], axis=1)
    low = _first_reaching(starts, w * np.diff(qs, prepend=0.0), need)
    return min(low, high), high


def _first_reaching(values: np.ndarray, gains: np.ndarray, need: float) -> float:
    """The smallest of `values` where the sum of `gains` at or below it reaches `need`."""
    flat = np.argsort(values, axis=None, kind="stable")
    reached = np.cumsum(gains.ravel()[flat])
    at = min(int(np.searchsorted(reached, need)), reached.size - 1)
    return float(values.ravel()[flat][at])


def merge_latency_rows(latency: pa.Table) -> pa.Table:
    """Several clusters' Latency rows merged into one row per window (or one row).

    Columns: `window_start` (when windowed), `count` (the sum), `min` and `max` (exact),
    `mean` (weighted by rows), and for each quantile column such as `p99` its bounds
    `p99_low` and `p99_high` (`quantile_bounds`): a Latency answer carries quantiles, not
    sketches, so the merged quantile itself is not known.
    """
    windowed = "window_start" in latency.column_names
    names = quantile_columns(latency)
    by_window: dict[object, list[dict[str, object]]] = {}
    for r in latency.to_pylist():
        by_window.setdefault(r["window_start"] if windowed else None, []).append(r)
    out: list[dict[str, object]] = []
    for window in sorted(by_window, key=lambda w: (w is None, w)):  # type: ignore[arg-type]
        out.append(_merge_rows(by_window[window], names, window if windowed else None))
    fields = [latency.schema.field("window_start")] if windowed else []
    fields += [pa.field("count", pa.int64())]
    fields += [pa.field(c, pa.float64()) for c in ("min", "max", "mean")]
    for name in names:
        fields += [pa.field(f"{name}_low", pa.float64()), pa.field(f"{name}_high", pa.float64())]
    return pa.Table.from_pylist(out, schema=pa.schema(fields))


def _merge_rows(
    rows: list[dict[str, object]], names: dict[str, float], window: object
) -> dict[str, object]:
    counts = [int(r["count"]) for r in rows]  # type: ignore[call-overload]
    mins = [float(r["min"]) for r in rows]  # type: ignore[arg-type]
    maxs = [float(r["max"]) for r in rows]  # type: ignore[arg-type]
    total = sum(counts)
    merged: dict[str, object] = {} if window is None else {"window_start": window}
    merged["count"] = total
    merged["min"], merged["max"] = min(mins), max(maxs)
    weighted = sum(float(r["mean"]) * n for r, n in zip(rows, counts, strict=True))  # type: ignore[arg-type]
    merged["mean"] = weighted / max(total, 1)
    values = np.array([[r[c] for c in names] + [m] for r, m in zip(rows, maxs, strict=True)])
    for name, q in names.items():
        low, high = quantile_bounds(q, counts, [*names.values(), 1.0], values, mins)
        merged[f"{name}_low"], merged[f"{name}_high"] = low, high
    return merged
