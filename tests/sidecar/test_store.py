"""Both stores behave alike; SQLite survives reopening; the flusher flushes on time and on stop."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from logclust.sidecar.store import (
    BLOB_CHUNK,
    MemoryStore,
    PeriodicFlusher,
    SqliteStore,
    StoreDelta,
    StoreError,
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "state")
    yield s
    s.close()


def test_save_load_upsert_and_expire(store) -> None:  # type: ignore[no-untyped-def]
    assert store.load_state().sketches == {}
    store.save_state(StoreDelta({("a", 1, 0): b"x", ("a", 1, 10_000): b"y"}, {"a": b"state"}))
    store.save_state(StoreDelta({("a", 1, 10_000): b"z"}, {}, expire_before_ms=5_000))
    snap = store.load_state()
    assert snap.sketches == {("a", 1, 10_000): b"z"}
    assert snap.sources == {"a": b"state"}


def test_sqlite_survives_reopen_in_wal_mode(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.save_state(StoreDelta({("src", -1, 20_000): b"\x00\x01"}, {"src": b"\xff"}))
    # No close(): a killed process never checkpoints; the WAL must still be read back.
    again = SqliteStore(tmp_path)
    assert again.load_state().sketches == {("src", -1, 20_000): b"\x00\x01"}
    again.close()
    s.close()


def test_sqlite_refuses_other_schema_version(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    s._conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    s.close()
    with pytest.raises(StoreError, match="newer logclust.*Received: schema_version=99"):
        SqliteStore(tmp_path)


def test_empty_delta_is_falsy() -> None:
    assert not StoreDelta()
    assert StoreDelta(expire_before_ms=0)


def test_flusher_runs_periodically_and_on_stop() -> None:
    calls: list[int] = []
    ticked = threading.Event()

    def flush() -> None:
        calls.append(1)
        if len(calls) >= 2:
            ticked.set()

    f = PeriodicFlusher(flush, interval_s=0.05)
    f.start()
    assert ticked.wait(5)
    f.stop()
    n = len(calls)
    assert n >= 3  # two ticks and the final flush
    f.stop()  # idempotent enough: one more flush, no error
    assert len(calls) == n + 1


def test_flusher_survives_a_failing_flush() -> None:
    calls: list[int] = []

    def flush() -> None:
        calls.append(1)
        raise OSError("disk full")

    f = PeriodicFlusher(flush, interval_s=0.01)
    f.start()
    f.stop()
    assert calls


def test_flush_now_counts_saves_and_lets_errors_through() -> None:
    fail = [False]

    def flush() -> None:
        if fail[0]:
            raise OSError("disk full")

    f = PeriodicFlusher(flush, interval_s=5.0)  # never started: only flush_now flushes
    f.flush_now()
    assert f.flushes == 1
    fail[0] = True
    with pytest.raises(OSError, match="disk full"):
        f.flush_now()
    assert f.flushes == 1 and not f.wait_for_next_flush(timeout=0)


def test_waiting_for_the_next_flush_skips_the_one_under_way() -> None:
    entered, gate = threading.Event(), threading.Event()
    calls: list[int] = []

    def flush() -> None:
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            assert gate.wait(30)

    f = PeriodicFlusher(flush, interval_s=5.0)
    first = threading.Thread(target=f.flush_now)
    first.start()
    assert entered.wait(30)  # flush 1 is under way: it began before the waiter asks
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(f.wait_for_next_flush(30)))
    waiter.start()
    gate.set()
    first.join(30)
    assert f.flushes == 1 and not waited  # flush 1 may have missed what came before
    f.flush_now()
    waiter.join(30)
    assert waited == [True] and f.flushes == 2


def test_the_periodic_flush_is_waited_for() -> None:
    f = PeriodicFlusher(lambda: None, interval_s=0.05)
    f.start()
    try:
        assert f.wait_for_next_flush(60) and f.flushes >= 1
    finally:
        f.stop()


@pytest.mark.parametrize("interval", [0.0, -1.0, 60.0])
def test_flusher_interval_is_bounded(interval: float) -> None:
    with pytest.raises(ValueError, match="Received: interval_s="):
        PeriodicFlusher(lambda: None, interval)


def test_store_files_are_owner_only(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "state")
    s.save_state(StoreDelta({("a", 1, 0): b"x"}, {"a": b"y"}, 0))
    files = sorted((tmp_path / "state").iterdir())
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files), files
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    s.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_counters_are_kept_beside_the_state_and_forgotten_with_it(
    kind: str, tmp_path: Path
) -> None:
    s = MemoryStore() if kind == "memory" else SqliteStore(tmp_path)
    s.save_state(StoreDelta(sources={"a": b"state", "b": b"other"}, counters={"a": b"c1"}))
    s.save_state(StoreDelta(counters={"a": b"c2", "b": b"c3"}))  # counters alone
    snap = s.load_state()
    assert snap.sources == {"a": b"state", "b": b"other"}
    assert snap.counters == {"a": b"c2", "b": b"c3"}
    s.save_state(StoreDelta(forget_sources=["a"]))
    snap = s.load_state()
    assert snap.sources == {"b": b"other"} and snap.counters == {"b": b"c3"}


def test_sqlite_writes_large_states_in_chunks_and_replaces_them(tmp_path: Path) -> None:
    big = os.urandom(2 * BLOB_CHUNK + 12345)  # three chunks, the last one partial
    s = SqliteStore(tmp_path)
    s.save_state(StoreDelta(sources={"a": big, "b": b"", "c": b"x"}))
    s.save_state(StoreDelta(sources={"c": big[:100]}))  # replaced, shorter
    s.close()
    snap = SqliteStore(tmp_path).load_state()
    assert snap.sources == {"a": big, "b": b"", "c": big[:100]}
