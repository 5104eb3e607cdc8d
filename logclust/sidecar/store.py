"""Persistence of latency sketches and per-source cluster state.

The sidecar keeps everything it answers from in memory and saves what changed every
flush interval (default 1 s) through a two-method interface, `save_state(delta)` and
`load_state()`. `SqliteStore` writes one SQLite file in WAL mode: a transaction commits
atomically, so after `kill -9` the store holds every flush that finished and at most the
last interval is lost. `MemoryStore` keeps the same data in dicts and is the test fake.

Values are opaque bytes produced by their owners (`DDSketch.to_bytes`,
`logclust.cluster.state.to_bytes`); neither format uses pickle.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from logclust.latency.book import SketchKey

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_NAME = "logclust.sqlite3"
# A crash loses at most one interval of data, so the interval stays short.
MAX_FLUSH_INTERVAL_S = 5.0
# Bytes of a source's state written at a time (see `_write_blob`).
BLOB_CHUNK = 1 << 20
# The tables of a logclust store (a file with other tables is someone else's).
TABLES = frozenset({"meta", "sketches", "sources", "source_counters"})


class StoreError(Exception):
    """The store cannot be used: one line naming the file, what is wrong and what to do."""


class StoreDamagedError(StoreError):
    """The store file is corrupt, truncated, not a database, or not logclust's:
    `serve --store-recover` moves it aside and starts empty."""


class StoreFullError(StoreError):
    """A flush failed for want of disk space (ENOSPC, SQLITE_FULL); the state stays in
    memory and the next flush retries it."""


def damaged(path: Path, what: str) -> StoreDamagedError:
    """The error of a damaged store file, saying what to do."""
    return StoreDamagedError(
        f"Store {path} {what}. Move it aside (or delete it) to start empty, or restart "
        "with --store-recover to do so and keep it beside as a .damaged-<time> file"
    )


def _is_full(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def move_aside(directory: str | Path) -> Path:
    """Renames a damaged store's files to `<name>.damaged-<UTC time>` (its -wal and -shm
    files alike); returns the new name of the main file."""
    path = Path(directory) / DB_NAME
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{DB_NAME}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(DB_NAME + suffix)
        if part.exists():
            part.rename(target.with_name(target.name + suffix))
    return target


@dataclass
class StoreDelta:
    """What changed since the last flush.

    Attributes:
        sketches: full encoded sketch per key (an upsert replaces the stored one).
        sources: encoded cluster state per source (when more than its counters changed).
        expire_before_ms: sketches whose window starts before this are deleted.
        forget_sources: sources deleted with their sketches (after the upserts).
        counters: encoded counters per source (`logclust.cluster.state.counters_bytes`),
            applied over the stored state at load.
    """

    sketches: dict[SketchKey, bytes] = field(default_factory=dict)
    sources: dict[str, bytes] = field(default_factory=dict)
    expire_before_ms: int | None = None
    forget_sources: list[str] = field(default_factory=list)
    counters: dict[str, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.sketches
            or self.sources
            or self.counters
            or self.expire_before_ms is not None
            or self.forget_sources
        )


@dataclass
class StoreSnapshot:
    """Everything a store holds."""

    sketches: dict[SketchKey, bytes] = field(default_factory=dict)
    sources: dict[str, bytes] = field(default_factory=dict)
    counters: dict[str, bytes] = field(default_factory=dict)


class StateStore(Protocol):
    """Persistence interface of the sidecar."""

    def save_state(self, delta: StoreDelta) -> None:
        """Applies `delta` atomically."""
        ...

    def load_state(self) -> StoreSnapshot:
        """Returns everything saved so far."""
        ...


class MemoryStore:
    """`StateStore` in dicts: the default without `--store` and the test fake."""

    def __init__(self) -> None:
        self._snapshot = StoreSnapshot()
        self._lock = threading.Lock()
        self.saves = 0

    def save_state(self, delta: StoreDelta) -> None:
        with self._lock:
            self._snapshot.sketches.update(delta.sketches)
            self._snapshot.sources.update(delta.sources)
            self._snapshot.counters.update(delta.counters)
            if delta.expire_before_ms is not None:
                cutoff = delta.expire_before_ms
                for key in [k for k in self._snapshot.sketches if k[2] < cutoff]:
                    del self._snapshot.sketches[key]
            gone = set(delta.forget_sources)
            for key in [k for k in self._snapshot.sketches if k[0] in gone]:
                del self._snapshot.sketches[key]
            for name in gone:
                self._snapshot.sources.pop(name, None)
                self._snapshot.counters.pop(name, None)
            self.saves += 1

    def load_state(self) -> StoreSnapshot:
        with self._lock:
            snap = self._snapshot
            return StoreSnapshot(dict(snap.sketches), dict(snap.sources), dict(snap.counters))

    def close(self) -> None:
        """Nothing to release."""


def _write_blob(conn: sqlite3.Connection, source: str, data: bytes) -> None:
    """Upserts a source's state through SQLite's incremental blob I/O, `BLOB_CHUNK` at a
    time from `data` itself. Bound as a parameter, the blob is copied whole first
    (`SQLITE_TRANSIENT`), and the flush's RSS would spike by the state's size
    (`python -m bench.many_clusters` holds thousands of clusters)."""
    cur = conn.execute(
        "INSERT OR REPLACE INTO sources VALUES (?, zeroblob(?))", (source, len(data))
    )
    if not data:
        return
    view = memoryview(data)
    with conn.blobopen("sources", "data", cur.lastrowid) as blob:  # type: ignore[arg-type]
        for start in range(0, len(data), BLOB_CHUNK):
            blob.write(view[start : start + BLOB_CHUNK])


class SqliteStore:
    """`StateStore` in `<directory>/logclust.sqlite3` (WAL journal, NORMAL sync).

    WAL with `synchronous=NORMAL` survives a crash of the process (not necessarily of the
    machine) with every committed transaction intact.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        # Cluster templates and exemplars are masked text, but still the service's data:
        # owner-only, like a database's files. SQLite gives its -wal and -shm files the
        # database file's permissions.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.directory / DB_NAME
        if self.path.exists() and self.path.stat().st_size == 0:
            logger.warning(
                "store %s is empty (0 bytes: truncated, or never written): starting with "
                "no saved state",
                self.path,
            )
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        for f in (self.path, *self.directory.glob(DB_NAME + "-*")):
            f.chmod(0o600)
        self._lock = threading.Lock()
        # One connection shared by the flusher thread and the caller, guarded by the lock.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._check()
            self._create()
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise damaged(self.path, f"is damaged or not a database ({e})") from None
        except StoreError:
            self._conn.close()
            raise

    def _check(self) -> None:
        """Refuses a corrupt or truncated file (`PRAGMA quick_check`: every page of the
        b-trees read, not the values), someone else's database, or a newer schema."""
        c = self._conn
        problems = [row[0] for row in c.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise damaged(self.path, f"is corrupt or truncated ({'; '.join(problems)})")
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if names and ("meta" not in names or names - TABLES):
            raise damaged(self.path, f"is not a logclust store (tables {sorted(names)})")
        if "meta" not in names:
            return
        row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = None if row is None else str(row[0])
        if version == str(SCHEMA_VERSION):
            return
        if version is not None and version.isdigit() and int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"Store {self.path} was written by a newer logclust (schema version "
                f"{version}; this one reads {SCHEMA_VERSION}): run that version, or point "
                f"--store to another directory. Received: schema_version={version}"
            )
        raise damaged(self.path, f"has an unknown schema version. Received: {version!r}")

    def _create(self) -> None:
        with self._lock:
            c = self._conn
            c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            c.execute(
                "CREATE TABLE IF NOT EXISTS sketches (source TEXT NOT NULL, cluster INTEGER "
                "NOT NULL, window_ms INTEGER NOT NULL, data BLOB NOT NULL, "
                "PRIMARY KEY (source, cluster, window_ms))"
            )
            c.execute(
                "CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, data BLOB NOT NULL)"
            )
            # Added beside `sources` (same schema version: a store without it has none).
            c.execute(
                "CREATE TABLE IF NOT EXISTS source_counters "
                "(source TEXT PRIMARY KEY, data BLOB NOT NULL)"
            )
            c.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def save_state(self, delta: StoreDelta) -> None:
        """Applies `delta` in one transaction.

        Raises:
            StoreFullError: the disk (or the file's page limit) is full; nothing of the
                delta was written.
            sqlite3.Error: any other failure of the database (nothing written).
        """
        with self._lock:
            try:
                self._save(delta)
            except (sqlite3.Error, OSError) as e:
                if _is_full(e):
                    raise StoreFullError(
                        f"Disk full (ENOSPC/SQLITE_FULL) saving to {self.path}: free space; "
                        f"the state stays in memory and the next flush retries ({e})"
                    ) from None
                raise

    def _save(self, delta: StoreDelta) -> None:
        c = self._conn
        c.execute("BEGIN")
        try:
            c.executemany(
                "INSERT OR REPLACE INTO sketches VALUES (?, ?, ?, ?)",
                [(s, cid, w, data) for (s, cid, w), data in delta.sketches.items()],
            )
            for name, data in delta.sources.items():
                _write_blob(c, name, data)
            c.executemany(
                "INSERT OR REPLACE INTO source_counters VALUES (?, ?)",
                list(delta.counters.items()),
            )
            if delta.expire_before_ms is not None:
                c.execute("DELETE FROM sketches WHERE window_ms < ?", (delta.expire_before_ms,))
            gone = [(name,) for name in delta.forget_sources]
            c.executemany("DELETE FROM sketches WHERE source = ?", gone)
            c.executemany("DELETE FROM sources WHERE source = ?", gone)
            c.executemany("DELETE FROM source_counters WHERE source = ?", gone)
            c.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does): a second ROLLBACK
            # would raise "no transaction is active" and hide the real error.
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def load_state(self) -> StoreSnapshot:
        """Everything saved.

        Raises:
            StoreDamagedError: a page cannot be read (the file is damaged).
        """
        with self._lock:
            try:
                c = self._conn
                sketches = {
                    (s, int(cid), int(w)): bytes(data)
                    for s, cid, w, data in c.execute("SELECT * FROM sketches")
                }
                sources = {s: bytes(d) for s, d in c.execute("SELECT * FROM sources")}
                counters = {s: bytes(d) for s, d in c.execute("SELECT * FROM source_counters")}
            except sqlite3.DatabaseError as e:
                raise damaged(self.path, f"cannot be read ({e})") from None
        return StoreSnapshot(sketches, sources, counters)

    def close(self) -> None:
        """Checkpoints the WAL into the main file and closes the connection."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()


class PeriodicFlusher:
    """Calls `flush` every `interval_s` on a daemon thread, and once more on `stop()`.

    A failing flush is logged and retried at the next tick; the caller's flush is
    responsible for keeping unsaved changes (see `LatencyBook.mark_dirty`). Flushes never
    overlap (the periodic one, `flush_now()` and the one of `stop()`).

    `flushes` counts the flushes that finished without error (`logclust_flushes_total`),
    and `wait_for_next_flush()` returns once a flush that began after the call has saved:
    a caller waits for the save instead of sleeping past the interval.
    """

    def __init__(self, flush: Callable[[], None], interval_s: float = 1.0) -> None:
        if not 0.0 < interval_s <= MAX_FLUSH_INTERVAL_S:
            raise ValueError(
                f"interval_s must be in (0, {MAX_FLUSH_INTERVAL_S}]. "
                f"Received: interval_s={interval_s}"
            )
        self._flush = flush
        self.interval_s = interval_s
        # Flushes that finished without error.
        self.flushes = 0
        self._begun = 0  # flushes begun (their sequence numbers)
        self._saved = 0  # sequence number of the last flush that finished without error
        self._one_at_a_time = threading.Lock()
        self._flushed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logclust-flush", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._safe_flush()

    def _safe_flush(self) -> None:
        try:
            self.flush_now()
        except (sqlite3.Error, OSError, ValueError, StoreError) as e:
            logger.error("flush failed, retrying next interval: %s", e)

    def flush_now(self) -> None:
        """Flushes in the calling thread, after any flush under way; errors propagate."""
        with self._one_at_a_time:
            with self._flushed:
                self._begun += 1
                sequence = self._begun
            self._flush()
            with self._flushed:
                self.flushes += 1
                self._saved = sequence
                self._flushed.notify_all()

    def wait_for_next_flush(self, timeout: float | None = None) -> bool:
        """Blocks until a flush that began after this call has finished without error
        (what was recorded before the call is then saved); False on timeout."""
        with self._flushed:
            after = self._begun
            return self._flushed.wait_for(lambda: self._saved > after, timeout)

    def stop(self) -> None:
        """Stops the thread and flushes a last time."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._safe_flush()
