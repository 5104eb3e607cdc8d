"""Client-side tables built from the sidecar's responses."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from logclust.client.tables import (
    GROUP_ID,
    cluster_descriptions,
    cluster_groups,
    clusters_to_table,
    merge_latency_rows,
    quantile_bounds,
    quantile_columns,
    rank_by_rows,
)
from logclust.latency.book import LatencyBook
from logclust.proto import logclust_pb2 as pb


def _response() -> pb.ClustersResponse:
    return pb.ClustersResponse(
        clusters=[
            pb.ClusterInfo(
                source="web",
                cluster_id=3,
                size=10,
                first_seen_unix_ms=1_700_000_000_000,
                last_seen_unix_ms=0,
                template="currency_code=<*>",
                active=True,
                exemplars=["currency_code=<*>", "currency_code=EUR"],
            )
        ]
    )


def test_clusters_to_table_types_and_unknown_times() -> None:
    t = clusters_to_table(_response())
    assert t.schema.field("first_seen").type == pa.timestamp("ms", tz="UTC")
    row = t.to_pylist()[0]
    assert row["cluster_id"] == 3 and row["size"] == 10 and row["active"]
    assert row["last_seen"] is None  # 0 on the wire means never
    assert row["exemplars"] == ["currency_code=<*>", "currency_code=EUR"]


def test_descriptions_show_an_exemplar_unlike_the_template() -> None:
    desc = cluster_descriptions(clusters_to_table(_response()))
    assert desc == {("web", 3): "currency_code=<*>  e.g. currency_code=EUR"}


def test_group_ids_appear_when_the_contract_has_them() -> None:
    t = clusters_to_table(_response())
    has = GROUP_ID in pb.ClusterInfo.DESCRIPTOR.fields_by_name
    assert (GROUP_ID in t.column_names) == has
    assert cluster_groups(t) == ({("web", 3): 0} if has else {})


def test_quantile_columns_and_rank_by_rows() -> None:
    t = pa.table(
        {
            "source": ["a", "a", "b", "a"],
            "cluster_id": pa.array([1, 2, 1, 1], pa.int32()),
            "count": pa.array([5, 9, 9, 5], pa.int64()),
            "p50": [1.0] * 4,
            "p99_9": [1.0] * 4,
            "mean": [1.0] * 4,
        }
    )
    assert quantile_columns(t) == {"p50": 0.5, "p99_9": pytest.approx(0.999)}
    assert rank_by_rows(t) == [(("a", 1), 10), (("a", 2), 9), (("b", 1), 9)]


@pytest.mark.parametrize("seed", range(20))
def test_quantile_bounds_hold_the_exact_quantile(seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [rng.lognormal(rng.uniform(0, 4), 1, rng.integers(1, 300)) for _ in range(30)]
    exact = np.quantile(np.concatenate(parts), 0.99, method="inverted_cdf")
    qs = [0.5, 0.9, 0.99, 0.999, 1.0]
    values = np.array([np.quantile(p, qs, method="inverted_cdf") for p in parts])
    counts, mins = [p.size for p in parts], [p.min() for p in parts]
    low, high = quantile_bounds(0.99, counts, qs, values, mins)
    assert low <= exact <= high
    # The p99 alone: at most the largest p99, still a bracket.
    low1, high1 = quantile_bounds(0.99, counts, [0.99, 1.0], values[:, [2, 4]], mins)
    assert low1 <= low and high <= high1 <= values[:, 2].max()
    assert low1 <= exact


def test_quantile_bounds_of_one_cluster_are_its_own() -> None:
    low, high = quantile_bounds(0.99, [7], [0.99, 1.0], np.array([[5.0, 9.0]]), [1.0])
    assert high == 5.0 and low <= 5.0


def test_merged_rows_bracket_the_exact_p99_of_real_sketches() -> None:
    rng = np.random.default_rng(1)
    n, window = 20_000, 60_000
    cid = rng.zipf(1.6, n).clip(max=300).astype(np.int32)
    lat = rng.lognormal(np.log(cid.astype(np.float64)), 0.7)
    now = 1_700_000_000_000
    t = now - 3 * window + rng.integers(0, 3 * window, n)
    book = LatencyBook(window_ms=window, retention_ms=3600_000)
    book.record(["web"], np.zeros(n, np.int32), cid, t, lat, now)
    over_time = book.query([0.5, 0.9, 0.99, 0.999], window_ms=window)
    merged = merge_latency_rows(over_time)
    assert merged.column("count").to_pylist() == [
        int(np.sum(t // window == w)) for w in np.unique(t // window)
    ]
    for r, w in zip(merged.to_pylist(), np.unique(t // window), strict=True):
        mine = lat[t // window == w]
        exact = float(np.quantile(mine, 0.99))
        assert r["p99_low"] * 0.99 <= exact <= r["p99_high"] * 1.01  # the sketches' 1%
        assert r["min"] == pytest.approx(mine.min()) and r["max"] == pytest.approx(mine.max())
        assert r["mean"] == pytest.approx(mine.mean())
    assert merge_latency_rows(book.query([0.99])).num_rows == 1  # not windowed: one row
