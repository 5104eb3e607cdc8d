"""`LatencyBook.max_bytes`: the oldest windows leave memory first, and the estimate the
bound is checked against stays exact through records, expiry, forget and load."""

from __future__ import annotations

import numpy as np
import pytest

from logclust.latency.book import SKETCH_BUCKET_BYTES, SKETCH_FIXED_BYTES, LatencyBook

WINDOW = 10_000


def _record(book: LatencyBook, windows: range, clusters: int = 4, source: str = "s") -> None:
    """One row per (cluster, window), latencies 1..1000 ms (many buckets)."""
    t = np.repeat(np.array(windows, np.int64) * WINDOW, clusters)
    cid = np.tile(np.arange(clusters), len(windows))
    lat = np.random.default_rng(len(t)).uniform(1.0, 1000.0, len(t))
    book.record([source], np.zeros(len(t), np.int64), cid, t, lat, now_ms=int(t.max()))
    book.merge_pending()  # into the sketches, where the bound applies


def _exact(book: LatencyBook) -> int:
    return sum(
        SKETCH_FIXED_BYTES + SKETCH_BUCKET_BYTES * s.counts.size
        for s in book._sketches.values()  # noqa: SLF001 (the estimate against its parts)
    )


def test_oldest_windows_leave_first_under_the_bound() -> None:
    cap = 40 * (SKETCH_FIXED_BYTES + SKETCH_BUCKET_BYTES)  # about 40 one-bucket sketches
    book = LatencyBook(window_ms=WINDOW, retention_ms=10**9, max_bytes=cap)
    for w in range(0, 100, 5):
        _record(book, range(w, w + 5))
        assert book.bytes == _exact(book) <= cap
    assert book.evicted_sketches == 4 * 100 - len(book._sketches)  # noqa: SLF001
    windows = book.query(window_ms=WINDOW).column("window_start").to_numpy().astype(np.int64)
    # What is left is the newest windows, without a gap.
    assert windows.max() == 99 * WINDOW
    assert set(windows.tolist()) == set(range(windows.min(), 100 * WINDOW, WINDOW))


def test_the_estimate_follows_expiry_forget_and_load() -> None:
    book = LatencyBook(window_ms=WINDOW, retention_ms=10**9)
    _record(book, range(10), source="a")
    _record(book, range(10), source="b")
    assert book.bytes == _exact(book) > 0 and book.evicted_sketches == 0
    book.forget("a")
    assert book.bytes == _exact(book)
    saved = book.take_dirty()
    book.expire(now_ms=10**9 + 5 * WINDOW)
    assert book.bytes == _exact(book)
    small = LatencyBook(window_ms=WINDOW, retention_ms=10**9, max_bytes=book.bytes or 1)
    small.load(saved)  # the 40 sketches of b (10 windows), of which the newest fit
    assert small.bytes == _exact(small) <= small.max_bytes  # type: ignore[operator]
    assert min(k[2] for k in small._sketches) >= 5 * WINDOW  # noqa: SLF001
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        LatencyBook(max_bytes=0)
