"""The fleet catalog: its file (round trip, bad files named), ids that do not depend on
the order rows come in, local ids apart from catalog ids, and swaps under load."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.catalog import (
    _PREFIX,
    CATALOG_MAGIC,
    CATALOG_VERSION,
    Catalog,
    CatalogError,
    read_catalog,
    write_catalog,
)
from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.cluster.state import STATE_MAGIC
from logclust.wire import contract
from tests.cluster.streams import run
from tests.fakes import FakeLabeler, fake_traffic

CFG = StreamClusterConfig(background_consolidation=False)
MANIFEST = {"files": {"encoder.tflite": {"sha256": "ab" * 32}}}


def _catalog(rows: int = 600, seed: int = 0) -> tuple[Catalog, pa.Table]:
    table = fake_traffic(rows, seed=seed).drop_columns(["kind"])
    return build_catalog([table], FakeLabeler(), CFG, MANIFEST), table


def _ids_by_kind(table: pa.Table, ids: np.ndarray) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for kind, cid in zip(table.column("kind").to_pylist(), ids.tolist(), strict=True):
        out.setdefault(kind, set()).add(cid)
    return out


def test_file_round_trip(tmp_path: Path) -> None:
    catalog, _ = _catalog()
    path = tmp_path / "fleet.catalog"
    digest = write_catalog(catalog, path)
    back = read_catalog(path)
    assert back.digest == digest == catalog.digest
    assert dict(back.next_ids) == dict(catalog.next_ids) and back.clusters > 3
    assert dict(back.states) == dict(catalog.states)
    assert back.settings["max_clusters"] == CFG.max_clusters


def test_same_kind_same_id_whatever_the_order() -> None:
    catalog, _ = _catalog()
    table = fake_traffic(600, seed=1)
    seen = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(table.num_rows)
        t = table.take(order)
        sc = StreamClusters(FakeLabeler(), CFG)
        sc.use_catalog(catalog)
        seen.append(_ids_by_kind(t, run(sc, t, batch=100)))
        assert not any(sc.is_local("frontend", i) for ids in seen[-1].values() for i in ids)
    assert seen[0] == seen[1] == seen[2]
    # Without the catalog, arrival order numbers the kinds: the orders disagree.
    plain = []
    for seed in range(2):
        t = table.take(np.random.default_rng(seed).permutation(table.num_rows))
        plain.append(_ids_by_kind(t, run(StreamClusters(FakeLabeler(), CFG), t, batch=100)))
    assert plain[0] != plain[1]


def test_new_kind_gets_a_local_id() -> None:
    catalog, _ = _catalog()
    sc = StreamClusters(FakeLabeler(), CFG)
    sc.use_catalog(catalog)
    ids = run(sc, pa.table({"body": ["<a><b>new kind of body</b></a>"], "source": ["frontend"]}))
    assert ids[0] >= catalog.next_ids["frontend"]
    assert sc.is_local("frontend", int(ids[0])) and not sc.is_local("frontend", 0)


def test_swapped_catalogs_under_load_lose_and_mislabel_nothing() -> None:
    catalog, _ = _catalog()
    other, _ = _catalog(seed=3)  # another build: another digest, ids of its own
    table = fake_traffic(2000, seed=2)
    sc = StreamClusters(FakeLabeler(), CFG)
    sc.use_catalog(catalog)
    want = {k: min(v) for k, v in _ids_by_kind(table, run(sc, table)).items()}
    probe = StreamClusters(FakeLabeler(), CFG)
    probe.use_catalog(other)
    want_other = {k: min(v) for k, v in _ids_by_kind(table, run(probe, table)).items()}
    results: list[tuple[pa.Table, np.ndarray]] = []
    stop = threading.Event()
    done = threading.Condition()

    def feed() -> None:
        while not stop.is_set():
            part = table.slice(len(results) * 97 % (table.num_rows - 100), 100)
            ids = run(sc, part, batch=100)
            with done:
                results.append((part, ids))
                done.notify_all()

    threads = [threading.Thread(target=feed) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(10):
        n = len(results)
        sc.use_catalog(other if i % 2 == 0 else catalog)
        with done:  # batches labelled under this catalog
            assert done.wait_for(lambda n=n: len(results) >= n + 2, timeout=60)
    stop.set()
    for t in threads:
        t.join()
    rows = sum(p.num_rows for p, _ in results)
    assert all(len(ids) == p.num_rows for p, ids in results)
    counted = sum(c.rows_seen for c in sc.sources.values())
    assert counted == sum(c.counters().size.sum() for c in sc.sources.values())
    assert counted == rows + table.num_rows > table.num_rows  # none lost
    for part, ids in results:  # each batch wholly one catalog's ids
        got = _ids_by_kind(part, ids)
        assert all(len(v) == 1 for v in got.values())
        ok_one = all(v == {want[k]} for k, v in got.items())
        ok_other = all(v == {want_other[k]} for k, v in got.items())
        assert ok_one or ok_other


def _write_bad(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "bad.catalog"
    p.write_bytes(data)
    return p


def test_bad_files_are_named_with_what_is_wrong(tmp_path: Path) -> None:
    catalog, _ = _catalog()
    good = tmp_path / "good.catalog"
    write_catalog(catalog, good)
    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    cases = {
        "truncated": data[:-100],
        "corrupted": bytes(flipped),
        "not a logclust catalog": b"PAR1" + b"\0" * 100,
        "empty": b"",
        "format version": data[:16] + (9).to_bytes(4, "little") + data[20:],
    }
    for what, bad in cases.items():
        p = _write_bad(tmp_path, bad)
        with pytest.raises(CatalogError, match=what) as err:
            read_catalog(p)
        assert str(p) in str(err.value)
    with pytest.raises(CatalogError, match="cannot be read"):
        read_catalog(tmp_path / "missing.catalog")
    assert data.startswith(CATALOG_MAGIC)


def _repack(data: bytes, version: int, edit: Callable[[dict[str, Any], bytes], bytes]) -> bytes:
    """A catalog file's bytes with its header and payload edited (`edit(header, payload)`
    changes the header in place and returns the new payload), checksummed again."""
    body = data[_PREFIX.size :]
    (n,) = struct.unpack_from("<Q", body)
    header = json.loads(body[8 : 8 + n])
    payload = edit(header, body[8 + n :])
    head = json.dumps(header).encode()
    new = struct.pack("<Q", len(head)) + head + payload
    digest = hashlib.sha256(new).digest()
    return _PREFIX.pack(CATALOG_MAGIC, version, len(new), digest) + new


def test_states_are_held_compressed_and_checked(tmp_path: Path) -> None:
    catalog, _ = _catalog()
    good = tmp_path / "good.catalog"
    write_catalog(catalog, good)
    data = good.read_bytes()
    raw = {name: catalog.state_bytes(name) for name in catalog.states}
    assert all(r.startswith(STATE_MAGIC) for r in raw.values())
    assert sum(map(len, catalog.states.values())) < sum(map(len, raw.values()))

    def as_v1(header: dict[str, Any], payload: bytes) -> bytes:
        offset = 0
        for s in header["sources"]:
            s["offset"], s["bytes"] = offset, len(raw[s["name"]])
            offset += s["bytes"]
        return b"".join(raw[s["name"]] for s in header["sources"])

    v1 = read_catalog(_write_bad(tmp_path, _repack(data, 1, as_v1)))  # version 1 still read
    assert {n: v1.state_bytes(n) for n in v1.states} == raw

    def lying(header: dict[str, Any], payload: bytes) -> bytes:
        header["sources"][0]["state_bytes"] += 1
        return payload

    def garbled(header: dict[str, Any], payload: bytes) -> bytes:
        s = header["sources"][0]
        return payload[: s["offset"]] + b"x" * s["bytes"] + payload[s["offset"] + s["bytes"] :]

    for edit, what in ((lying, "another length"), (garbled, "does not inflate")):
        p = _write_bad(tmp_path, _repack(data, CATALOG_VERSION, edit))
        with pytest.raises(CatalogError, match=what) as err:
            read_catalog(p)
        assert str(p) in str(err.value)


def test_empty_catalog_and_other_bundle_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs sample rows"):
        build_catalog([pa.table({"body": pa.array([], pa.string())})], FakeLabeler(), CFG, {})
    catalog, _ = _catalog()
    with pytest.raises(CatalogError, match="another model bundle"):
        catalog.check_bundle("cd" * 32, "fleet.catalog")
    catalog.check_bundle(catalog.bundle, "fleet.catalog")
    with pytest.raises(ValueError, match="dimension"):
        StreamClusters(FakeLabeler(dim=64), CFG).use_catalog(catalog)


def test_a_catalog_cut_otherwise_than_the_sidecar_is_refused() -> None:
    """Templates of messages never match whole lines: a catalog built with or without
    headers serves only sidecars that agree; one that records nothing (built before the
    cut) was of whole lines."""
    catalog, _ = _catalog()
    assert catalog.settings["keep_headers"] is False
    StreamClusters(FakeLabeler(), CFG).use_catalog(catalog)
    keep = dataclasses.replace(CFG, keep_headers=True)
    with pytest.raises(ValueError, match="built without log headers.*--no-keep-headers"):
        StreamClusters(FakeLabeler(), keep).use_catalog(catalog)
    old = dataclasses.replace(
        catalog, settings={k: v for k, v in catalog.settings.items() if k != "keep_headers"}
    )
    with pytest.raises(ValueError, match="built with log headers.*--keep-headers"):
        StreamClusters(FakeLabeler(), CFG).use_catalog(old)
    StreamClusters(FakeLabeler(), keep).use_catalog(old)


def test_a_build_on_a_base_keeps_its_ids() -> None:
    base, table = _catalog()
    more = fake_traffic(600, seed=9).drop_columns(["kind"])
    extra = pa.table({"body": ["<a><b>new kind</b></a>"] * 3, "source": ["frontend"] * 3})
    grown = build_catalog([more, extra], FakeLabeler(), CFG, MANIFEST, base=base)
    assert grown.next_ids["frontend"] == base.next_ids["frontend"] + 1  # one new kind
    ids = []
    for catalog in (base, grown):
        sc = StreamClusters(FakeLabeler(), CFG)
        sc.use_catalog(catalog)
        ids.append(run(sc, table).tolist())
    assert ids[0] == ids[1]


def test_a_batch_placed_before_a_swap_is_counted_after_it() -> None:
    """Placed under one catalog, counted after the source started from another: its
    rows land in the clusterer serving now (which carried the counters over)."""
    catalog, _ = _catalog()
    other, _ = _catalog(seed=3)
    table = fake_traffic(300, seed=4)
    sc = StreamClusters(FakeLabeler(), CFG)
    sc.use_catalog(catalog)
    run(sc, table)
    placed = sc.place(
        table.column("body").combine_chunks(),
        contract.source_column(table),
        contract.time_ms_column(table, 0),
    )
    assert sc.use_catalog(other)  # the sources start again from the other catalog
    sc.count(placed)
    counted = sum(c.rows_seen for c in sc.sources.values())
    assert counted == 2 * table.num_rows
    assert counted == sum(c.counters().size.sum() for c in sc.sources.values())
