"""The demo's printed table: top clusters, groups of the smaller ones, one line for the rest."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from logclust.cli import demo, demo_table
from logclust.cli.demo_table import TOP_CLUSTERS, render, summarize


def _rows() -> tuple[pa.Table, np.ndarray, np.ndarray, pa.Table]:
    """Twelve big clusters 0..11 (200 rows each, the slowest is 5), two groups of
    singletons (7: clusters 100..119, 8: 120..134) and five lone singletons 200..204."""
    rng = np.random.default_rng(0)
    sizes = {c: 200 for c in range(12)} | {c: 1 for c in [*range(100, 135), *range(200, 205)]}
    ids = np.repeat(np.array(list(sizes), np.int32), list(sizes.values()))
    scale = np.where(ids == 5, 100.0, np.where(ids < 12, 10.0, 30.0))
    lat = rng.lognormal(0, 0.3, ids.size) * scale
    group = {c: 50 + c for c in range(12)} | {c: 7 if c < 120 else 8 for c in range(100, 135)}
    group |= {c: 300 + c for c in range(200, 205)}
    latency, table = [], []
    for c in sizes:
        mine = lat[ids == c]
        p99 = float(np.quantile(mine, 0.99))
        latency.append(
            {"source": "web", "cluster_id": c, "count": mine.size, "min": mine.min()}
            | {"max": mine.max(), "mean": mine.mean(), "p99": p99}
        )
        table.append(
            {"cluster_id": c, "group_id": group[c], "count": mine.size, "p99": p99 * 1.004}
            | {"exact_p99": p99, "rel_error": 0.004, "description": f"kind {c} <*>"}
        )
    answer = pa.Table.from_pylist(latency).cast(
        pa.schema(
            [("source", pa.string()), ("cluster_id", pa.int32()), ("count", pa.int64())]
            + [(c, pa.float64()) for c in ("min", "max", "mean", "p99")]
        )
    )
    return pa.Table.from_pylist(table), ids, lat, answer


def test_groups_of_smaller_clusters_get_one_line_each() -> None:
    table, ids, lat, latency = _rows()
    summary = summarize(table, ids, lat, latency)
    singles = [line for line in summary.lines if not line.merged]
    merged = {line.group: line for line in summary.lines if line.merged}
    assert len(singles) == TOP_CLUSTERS and set(merged) == {7, 8}
    assert merged[7].rows == 20 and len(merged[7].clusters) == 20
    mine = lat[(ids >= 100) & (ids < 120)]
    assert merged[7].exact_p99 == np.quantile(mine, 0.99) <= merged[7].p99  # a bound
    assert summary.rest is not None and summary.rest.rows == 5
    p99 = [line.p99 for line in summary.lines]
    assert p99 == sorted(p99, reverse=True) and summary.lines[0].clusters == [5]  # slowest
    text = render(summary)
    assert text[0].split()[:3] == ["group", "cluster", "rows"]
    assert any(" 20 cl " in t and "20 clusters, e.g. kind " in t and " <=" in t for t in text)
    assert "5 rows in 5 smaller clusters: p99 <= " in text[-1]
    assert len(text) == 1 + TOP_CLUSTERS + 2 + 1


def test_without_group_ids_the_rest_is_one_line() -> None:
    table, ids, lat, latency = _rows()
    kinds = ["free" if i >= 100 else "form" for i in ids.tolist()]
    kinds[-1] = "odd"
    summary = summarize(table.drop_columns(["group_id"]), ids, lat, latency, kinds)
    assert len(summary.lines) == TOP_CLUSTERS and not summary.groups_known
    text = render(summary)
    assert "group" not in text[0]
    assert (
        text[-1]
        .strip()
        .startswith("40 rows in 40 smaller clusters (true kind: free 39, odd 1): p99 <= ")
    )
    exact = np.quantile(lat[ids >= 100], 0.99)
    assert f"(exact {exact:.3f})" in text[-1]


def test_a_small_run_lists_only_clusters_over_the_share() -> None:
    table, ids, lat, latency = _rows()
    small = table.filter(pa.compute.less(table.column("cluster_id"), 3))
    summary = summarize(small, ids, lat, latency)
    assert len(summary.lines) == 3 and summary.rest is None
    assert demo_table.SHOWN_SHARE * 600 < 200


def test_group_ids_from_the_label_answer_when_clusters_lack_them() -> None:
    labelled = pa.table({"source": ["w"] * 4, "group_id": pa.array([4, 4, 9, 4], pa.int32())})
    ids = np.array([1, 1, 2, 1], np.int32)
    clusters = pa.table({"source": pa.array([], pa.string())})
    assert demo._group_ids(labelled, ids, clusters) == {("w", 1): 4, ("w", 2): 9}
    assert demo._group_ids(labelled.drop_columns(["group_id"]), ids, clusters) == {}
