"""DDSketch accuracy against exact numpy quantiles, exact merging, encoding, windowed book."""

from __future__ import annotations

import numpy as np
import pytest

from logclust.latency.book import PENDING_ROWS, LatencyBook, check_window, quantile_column_name
from logclust.latency.ddsketch import DDSketch
from logclust.latency.pending import PendingRows

QS = (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).lognormal(1.0, 1.5, 50_000),
        np.random.default_rng(1).exponential(100.0, 10_001),
        np.concatenate([np.full(100, 0.2), np.random.default_rng(2).pareto(1.5, 900) * 40]),
        np.array([5.0]),
        np.array([0.0, 0.0, 3.0, 1e6]),
    ],
)
def test_quantiles_within_relative_accuracy_of_numpy(values: np.ndarray) -> None:
    sketch = DDSketch(0.01)
    sketch.add(values)
    exact = np.quantile(values, QS)
    approx = np.array(sketch.quantiles(QS))
    np.testing.assert_array_less(np.abs(approx - exact), 0.01 * exact + 1e-9)
    assert sketch.count == values.size
    assert sketch.min == values.min() and sketch.max == values.max()


def test_merge_is_exact() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.lognormal(2, 1, n) for n in (10, 1000, 5000)]
    whole = DDSketch()
    whole.add(np.concatenate(parts))
    merged = DDSketch()
    for p in parts:
        s = DDSketch()
        s.add(p)
        merged.merge(s)
    assert merged.count == whole.count and merged.zero_count == whole.zero_count
    assert merged.offset == whole.offset
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merged.quantiles(QS) == whole.quantiles(QS)


def test_merge_needs_same_accuracy() -> None:
    with pytest.raises(ValueError, match="same accuracy"):
        DDSketch(0.01).merge(DDSketch(0.02))


def test_bytes_round_trip_and_bad_bytes() -> None:
    s = DDSketch()
    s.add(np.random.default_rng(4).lognormal(0, 2, 3000))
    s.add([0.0])
    back = DDSketch.from_bytes(s.to_bytes())
    assert back.quantiles(QS) == s.quantiles(QS)
    assert (back.count, back.sum, back.zero_count) == (s.count, s.sum, s.zero_count)
    with pytest.raises(ValueError, match="Not a DDSketch"):
        DDSketch.from_bytes(b"X" * 100)
    with pytest.raises(ValueError, match="too short"):
        DDSketch.from_bytes(b"DDS1")


def test_rejects_negative_and_skips_nan() -> None:
    s = DDSketch()
    with pytest.raises(ValueError, match="Received"):
        s.add([1.0, -2.0])
    s.add([np.nan, 2.0])
    assert s.count == 1
    assert np.isnan(DDSketch().quantiles([0.5])[0])
    with pytest.raises(ValueError, match="Received: q=1.5"):
        s.quantiles([1.5])


def test_bins_are_capped() -> None:
    s = DDSketch(0.01, max_bins=64)
    s.add(np.geomspace(1e-3, 1e6, 5000))
    assert s.counts.size <= 64
    # The high quantiles keep their accuracy when the low buckets collapse.
    assert s.quantiles([0.99])[0] == pytest.approx(
        np.quantile(np.geomspace(1e-3, 1e6, 5000), 0.99), rel=0.01
    )


def test_quantile_column_names() -> None:
    assert [quantile_column_name(q) for q in (0.5, 0.99, 0.999)] == ["p50", "p99", "p99_9"]


def _book_with_data(now: int) -> tuple[LatencyBook, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    n = 6000
    t = now - 120_000 + rng.integers(0, 120_000, n)
    cid = rng.integers(0, 3, n).astype(np.int32)
    lat = rng.lognormal(1 + cid, 0.5)
    book = LatencyBook(window_ms=10_000, retention_ms=3600_000)
    codes = np.zeros(n, np.int32)
    assert book.record(["web"], codes, cid, t, lat, now) == n
    return book, t, cid, lat


def test_book_query_matches_numpy_overall_and_windowed() -> None:
    now = 1_700_000_000_000
    book, t, cid, lat = _book_with_data(now)
    table = book.query([0.5, 0.99])
    assert table.column_names == [
        "source",
        "cluster_id",
        "count",
        "min",
        "max",
        "mean",
        "p50",
        "p99",
    ]
    for row in table.to_pylist():
        mine = lat[cid == row["cluster_id"]]
        assert row["count"] == mine.size
        for q in (0.5, 0.99):
            exact = np.quantile(mine, q)
            assert abs(row[quantile_column_name(q)] - exact) <= 0.01 * exact
    minute = book.query([0.99], window_ms=60_000)
    assert "window_start" in minute.column_names
    assert sum(minute.column("count").to_pylist()) == t.size
    for row in minute.to_pylist():
        w = row["window_start"].timestamp() * 1000
        mine = lat[(cid == row["cluster_id"]) & (t // 60_000 * 60_000 == w)]
        assert abs(row["p99"] - np.quantile(mine, 0.99)) <= 0.01 * np.quantile(mine, 0.99)


def test_book_filters_range_and_source_and_checks_window() -> None:
    now = 1_700_000_000_000
    book, t, _, _ = _book_with_data(now)
    start = now - 30_000
    part = book.query([0.5], start_ms=start)
    # Base windows overlapping the range count whole.
    expected = np.count_nonzero(t // 10_000 * 10_000 + 10_000 > start)
    assert sum(part.column("count").to_pylist()) == expected
    assert book.query([0.5], source="other").num_rows == 0
    with pytest.raises(ValueError, match="multiple of the base window"):
        book.query([0.5], window_ms=15_000)


def test_book_retention_and_dirty_tracking() -> None:
    now = 1_700_000_000_000
    book, _, _, _ = _book_with_data(now)
    dirty = book.take_dirty()
    assert dirty and book.take_dirty() == {}
    book.expire(now + 3600_000 + 10_000)
    assert book.query([0.5]).num_rows == 0
    restored = LatencyBook(window_ms=10_000, retention_ms=3600_000)
    restored.load(dirty)
    again = _book_with_data(now)[0].query([0.5])
    got = restored.query([0.5])
    for col in ("source", "cluster_id", "count", "min", "max", "p50"):
        assert got.column(col).equals(again.column(col))


@pytest.mark.parametrize("pending_rows", [1, 1000, PENDING_ROWS])
def test_book_record_bins_all_groups_at_once_like_per_group_adds(pending_rows: int) -> None:
    # The vectorized record must build the very sketches that adding each
    # (source, cluster, window) group's values one group at a time builds, whether each
    # call enters the sketches at once (1), some calls wait for others (1000), or all
    # wait for the first reader (the default).
    rng = np.random.default_rng(5)
    n = 5000
    codes = rng.integers(0, 3, n)
    ids = rng.integers(-1, 40, n).astype(np.int32)
    times = 1_000_000 + rng.integers(0, 60_000, n)
    lat = rng.lognormal(1.0, 2.0, n)
    lat[rng.random(n) < 0.05] = 0.0  # zero bucket
    lat[rng.random(n) < 0.05] = np.nan  # not measured
    book = LatencyBook(window_ms=10_000, retention_ms=10**9, pending_rows=pending_rows)
    names = ["a", "b", "c"]
    # Three calls: later rows land in sketches that exist, inside and outside their range.
    recorded = 0
    for part in np.array_split(np.arange(n), [100, 1500]):
        recorded += book.record(
            names, codes[part], ids[part], times[part], lat[part], now_ms=1_100_000
        )
    assert recorded == int((~np.isnan(lat)).sum())
    measured = ~np.isnan(lat)
    expected: dict[tuple[str, int, int], DDSketch] = {}
    for i in np.flatnonzero(measured):
        key = (names[codes[i]], int(ids[i]), int(times[i] // 10_000 * 10_000))
        expected.setdefault(key, DDSketch(0.01)).add([lat[i]])
    book.merge_pending()
    got = book._sketches
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]
        assert (have.offset, have.zero_count, have.count) == (
            want.offset,
            want.zero_count,
            want.count,
        )
        np.testing.assert_array_equal(have.counts, want.counts)
        assert (have.min, have.max) == (want.min, want.max)
        assert have.sum == pytest.approx(want.sum, rel=1e-12)
    with pytest.raises(ValueError, match="finite and >= 0"):
        book.record(names, codes[:1], ids[:1], times[:1], np.array([-1.0]), 1_100_000)


def test_rows_too_far_ahead_or_behind_are_counted_not_recorded() -> None:
    book = LatencyBook(window_ms=10_000, retention_ms=3600_000, max_skew_ms=60_000)
    now = 1_700_000_000_000
    times = np.array([now, now + 30_000, now + 10**12, now - 7200_000], np.int64)
    n = book.record(["s"], np.zeros(4, np.int64), np.zeros(4, np.int32), times, np.ones(4), now)
    assert n == 2 and (book.early_rows, book.late_rows) == (1, 1)
    assert sum(book.query().column("count").to_pylist()) == 2


def test_quantile_count_is_capped() -> None:
    book = LatencyBook()
    with pytest.raises(ValueError, match="At most 64 quantiles"):
        book.query(quantiles=[0.5] * 1_000_000)


def test_rows_waiting_to_enter_the_sketches_are_seen_by_every_reader() -> None:
    book = LatencyBook(window_ms=10_000, retention_ms=10**9)
    now = 2_000_000
    t = np.full(3, now - 5_000, np.int64)
    lat = np.array([1.0, 2.0, 4.0])
    book.record(["a", "b"], np.array([0, 1, 0]), np.array([3, 3, 3]), t, lat, now)
    assert book._sketches == {}  # noqa: SLF001 - waiting
    assert book.query([0.5]).column("count").to_pylist() == [2, 1]
    book.record(["b", "a"], np.array([0, 1]), np.array([3, 3]), t[:2], lat[:2], now)
    assert set(book.take_dirty()) == {("a", 3, now - 10_000), ("b", 3, now - 10_000)}
    book.record(["a"], np.array([0]), np.array([3]), t[:1], lat[:1], now)
    book.forget("a")  # its waiting row too
    assert book.query([0.5]).column("source").to_pylist() == ["b"]
    assert book.query([0.5]).column("count").to_pylist() == [2]


def test_pending_rows_number_sources_across_batches_and_say_when_full() -> None:
    pending = PendingRows(limit=5)
    assert not pending.add(["x", "y"], np.array([1, 0, 1]), np.array([1.0, 2.0, 3.0]), [7, 8, 9])
    assert pending.add(["y"], np.array([0, 0]), np.array([4.0, 5.0]), np.array([1, 2]))
    taken = pending.take()
    assert taken is not None
    names, (sources, column, values) = taken
    assert [names[i] for i in sources] == ["y", "x", "y", "y", "y"]
    assert column.tolist() == [7, 8, 9, 1, 2] and values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert pending.take() is None and pending.rows == 0


def test_one_check_of_the_window_and_its_retention() -> None:
    check_window(10, 10)
    with pytest.raises(ValueError, match="Received: window_s=0, retention_s=60"):
        check_window(0, 60)
    with pytest.raises(ValueError, match="Received: window_ms=10000, retention_ms=5000"):
        LatencyBook(window_ms=10_000, retention_ms=5_000)
    with pytest.raises(ValueError, match="max_skew_ms=-1"):
        LatencyBook(max_skew_ms=-1)
