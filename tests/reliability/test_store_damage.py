"""A damaged store is explained, not a crash loop (issue 27): corrupt, truncated, garbage,
foreign or newer files give one line naming the file and what to do; `--store-recover`
moves the file aside; a truncated latency record is skipped; a full disk is reported as
such and the flush retried with nothing lost."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from logclust.client import Client
from logclust.sidecar.store import DB_NAME, StoreDamagedError, StoreError, StoreFullError
from tests.reliability.conftest import start

ROWS = 200


def _filled(store: Path) -> Path:
    """A store holding `ROWS` rows of latency in two sources (closed: WAL checkpointed)."""
    srv, port = start(store_dir=str(store))
    with srv, Client(f"127.0.0.1:{port}") as client:
        for source in ("a", "b"):
            body = [f"currency_code=EUR user={i}" for i in range(ROWS // 2)]
            client.label(
                pa.table(
                    {"body": body, "latency_ms": [4.0] * len(body), "source": [source] * len(body)}
                )
            )
    return store / DB_NAME


def _garbage(db: Path) -> None:
    db.write_bytes(random.Random(0).randbytes(db.stat().st_size))


def _half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _foreign(db: Path) -> None:
    db.unlink()
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE users (name TEXT)")


def _newer(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


DAMAGE: dict[str, tuple[Callable[[Path], None], type[StoreError], str]] = {
    "garbage": (_garbage, StoreDamagedError, "not a database"),
    "half-truncated": (_half, StoreDamagedError, "--store-recover"),
    "foreign": (_foreign, StoreDamagedError, "not a logclust store"),
    "newer": (_newer, StoreError, "newer logclust"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_store_names_the_file_and_what_to_do(tmp_path: Path, kind: str) -> None:
    damage, error, words = DAMAGE[kind]
    db = _filled(tmp_path)
    damage(db)
    with pytest.raises(error) as e:
        start(store_dir=str(tmp_path))
    message = str(e.value)
    assert str(db) in message and words in message and "\n" not in message


def test_store_recover_moves_the_file_aside_and_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _filled(tmp_path)
    _half(db)
    with caplog.at_level(logging.WARNING):
        srv, _ = start(store_dir=str(tmp_path), store_recover=True)
    with srv:
        assert srv.sidecar.latency().num_rows == 0
    aside = sorted(tmp_path.glob(f"{DB_NAME}.damaged-*"))
    assert len(aside) == 1 and aside[0].stat().st_size > 0
    assert any(
        "moved it to" in r.getMessage() and str(aside[0]) in r.getMessage() for r in caplog.records
    )


def test_flipped_bytes_never_crash_the_start(tmp_path: Path) -> None:
    db = _filled(tmp_path)
    data = bytearray(db.read_bytes())
    rng = random.Random(1)
    for _ in range(100):
        data[rng.randrange(100, len(data))] ^= 0xFF
    db.write_bytes(bytes(data))
    try:
        srv, _ = start(store_dir=str(tmp_path))
    except StoreDamagedError as e:
        assert str(db) in str(e)
    else:
        with srv:
            assert srv.sidecar.latency().num_rows >= 0


def test_a_truncated_latency_record_is_skipped_like_a_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _filled(tmp_path)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE sketches SET data = substr(data, 1, 20) WHERE source = 'a'")
    with caplog.at_level(logging.WARNING):
        srv, _ = start(store_dir=str(tmp_path))
    with srv:
        counts = srv.sidecar.latency().to_pydict()
    assert set(counts["source"]) == {"b"} and sum(counts["count"]) == ROWS // 2
    assert any("ignoring stored latency window" in r.getMessage() for r in caplog.records)


def test_a_store_truncated_to_zero_bytes_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _filled(tmp_path)
    os.truncate(db, 0)
    with caplog.at_level(logging.WARNING):
        srv, _ = start(store_dir=str(tmp_path))
    with srv:
        assert srv.sidecar.latency().num_rows == 0
    assert any(str(db) in r.getMessage() and "0 bytes" in r.getMessage() for r in caplog.records)


def test_disk_full_is_reported_and_the_flush_retried(tmp_path: Path) -> None:
    srv, port = start(store_dir=str(tmp_path), flush_interval_s=5.0)
    store = srv.store
    with srv, Client(f"127.0.0.1:{port}") as client:
        srv.sidecar.flush()
        with store._lock:  # type: ignore[attr-defined]
            pages = store._conn.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
            store._conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]
        # One row per 10 s window of the last 5.5 hours: 2,000 sketches to save.
        now_ms = int(time.time() * 1000)
        times = pa.array([now_ms - 10_000 * i for i in range(2000)], pa.timestamp("ms"))
        body = ["checkout order=1"] * 2000
        client.label(pa.table({"body": body, "latency_ms": [7.0] * 2000, "time": times}))
        with pytest.raises(StoreFullError, match="Disk full .*SQLITE_FULL.*next flush retries"):
            srv.sidecar.flush()
        with store._lock:  # type: ignore[attr-defined]
            store._conn.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[attr-defined]
        srv.sidecar.flush()  # the retry saves what the failed flush held
    srv, _ = start(store_dir=str(tmp_path))
    with srv:
        assert sum(srv.sidecar.latency().column("count").to_pylist()) == 2000


def _serve(store: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "logclust.cli.main", "serve", "--listen", "127.0.0.1:0"]
    return subprocess.run(
        [*cmd, "--store", str(store), *flags], capture_output=True, text=True, timeout=120
    )


def test_serve_exits_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    db = _filled(tmp_path)
    _garbage(db)
    done = _serve(tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if str(db) in line]
    assert len(lines) == 1 and "--store-recover" in lines[0], done.stderr
