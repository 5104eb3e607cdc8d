"""The state codec (`logclust.cluster.state`): round trips, states written by earlier
versions of the code, counters-only saves, and saves counted only once confirmed."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster import state as codec
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.cluster.source import SourceClusterer
from tests.cluster.streams import VectorEmbedder, angle, at, run, saved
from tests.fakes import FakeLabeler, fake_traffic

CFG = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
DATA = Path(__file__).parent / "data"
# What loading each stored state gave the code that wrote `states.json`. The states were
# written by the code of their format: format 1 by the k-search clusterer, format 2 by the
# distance clusterer before `pack_state`, format 3 by the single-module clusterer this
# codec was split from (with its counters saved after).
EXPECTED: dict[str, dict[str, Any]] = json.loads((DATA / "states.json").read_text())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_states_written_by_earlier_code_load_as_they_did(name: str) -> None:
    want = EXPECTED[name]
    cfg = StreamClusterConfig(
        background_consolidation=False, reservoir_size=300, template_members=4, templates=False
    )
    sc = StreamClusters(FakeLabeler(dim=32), cfg, threshold=want["threshold"])
    counters = {"frontend": (DATA / "counters_v3.bin").read_bytes()} if "v3" in name else {}
    sc.load_states({"frontend": (DATA / name).read_bytes()}, counters)
    c = sc.sources["frontend"]
    c.last_batch_ms = 1_700_000_000_000 + int(name[len("state_v")])
    described = c.describe()
    got = {
        "threshold": want["threshold"],
        "dirty": c.dirty,  # older formats are written again at the next flush
        "model_dirty": c.model_dirty,
        "k": c.k,
        "aliases": sorted([g, t] for g, t in c.aliases.items()),
        "rows_seen": c.rows_seen,
        "consolidations": c.consolidations,
        "sizes": {str(s.cluster_id): s.size for s in described},
        "templates": {str(s.cluster_id): s.template for s in described},
        # The same bytes as the code before the split wrote for this state.
        "state_sha256": _sha(codec.to_bytes(c)),
        "counters_sha256": _sha(codec.counters_bytes(c)),
    }
    probe = fake_traffic(300, seed=12).slice(0, 100)
    ids, _, _, _ = sc.label(
        probe.column("body").combine_chunks(),
        pa.array(["frontend"] * 100),
        np.zeros(100, np.int64),
    )
    got["probe_ids"] = ids.tolist()
    assert got == want


def test_a_state_in_the_current_format_round_trips_to_the_same_bytes() -> None:
    data = (DATA / "state_v3.bin").read_bytes()
    clus = codec.from_bytes(data, CFG, dim=32, threshold=1.1)
    assert codec.to_bytes(clus) == data
    meta, arrays = codec.unpack_state(data)
    assert codec.pack_state(meta, arrays) == data


def test_state_round_trip_keeps_ids_and_aliases() -> None:
    vectors = {"a": at(0.0), "b": at(angle(0.45)), "c": at(np.pi / 2)}
    emb = VectorEmbedder(vectors)
    sc = StreamClusters(emb, CFG)
    ids = run(sc, pa.table({"body": ["a", "b", "c", "a"]}))
    src = sc.sources["default"]
    src.aliases[int(ids[1])] = int(ids[0])
    restored = StreamClusters(emb, CFG)
    restored.load_states(*saved(sc))
    again = restored.sources["default"]
    assert again.aliases == src.aliases and again.k == src.k
    assert not again.dirty  # what was loaded is what the store holds
    assert run(restored, pa.table({"body": ["c", "a"]})).tolist() == [ids[2], ids[0]]


def test_state_of_another_dimension_is_ignored() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    run(sc, fake_traffic(300))
    other = StreamClusters(FakeLabeler(dim=32), CFG)
    other.load_states(*saved(sc))
    assert other.sources == {}
    with pytest.raises(ValueError, match="Received: version=3, dim=256"):
        codec.from_bytes(codec.to_bytes(sc.sources["frontend"]), CFG, dim=32, threshold=0.5)


def test_state_of_format_2_still_loads_and_a_truncated_one_is_refused() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    run(sc, fake_traffic(300))
    src = sc.sources["frontend"]
    meta, arrays = codec.unpack_state(codec.to_bytes(src))
    # Format 2 (before pack_state): the same document, unit centroids, in an .npz.
    buf = io.BytesIO()
    # Format 2 came before groups: its document has none.
    doc = json.dumps({**{k: v for k, v in meta.items() if k != "groups"}, "version": 2}).encode()
    np.savez(
        buf,
        meta=np.frombuffer(doc, np.uint8),
        centroids=src._table.unit,
        counts=arrays["counts"],
        ids=arrays["ids"],
    )
    old = codec.from_bytes(buf.getvalue(), CFG, dim=256, threshold=src.threshold)
    assert old.dirty and old.model_dirty  # written again in the current format
    assert old.describe() == src.describe()
    np.testing.assert_allclose(old._table.unit, src._table.unit, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="lies outside"):
        codec.from_bytes(codec.to_bytes(src)[:-5], CFG, dim=256, threshold=src.threshold)
    with pytest.raises(ValueError, match="has dtype"):
        codec.unpack_state(codec.pack_state({}, {"x": np.zeros(2, np.float64)}))


def test_a_steady_stream_saves_counters_only_and_restores_them() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    t = fake_traffic(300)
    run(sc, t)
    first = sc.dirty_parts()["frontend"]
    sc.mark_saved({"frontend": first})
    assert first.model is not None  # new clusters: the whole state
    run(sc, t)  # the same texts again: only sizes and times move
    parts = sc.dirty_parts()
    sc.mark_saved(parts)
    model, counters = parts["frontend"].model, parts["frontend"].counters
    assert model is None and len(counters) < len(first.model) / 4
    assert sc.dirty_parts() == {}  # nothing since
    restored = StreamClusters(FakeLabeler(), CFG)
    restored.load_states({"frontend": first.model}, {"frontend": counters})
    got, want = restored.sources["frontend"], sc.sources["frontend"]
    assert got.describe() == want.describe()
    assert got.rows_seen == want.rows_seen == 2 * len(t)
    # Counters of ids the state does not have are refused, the state kept.
    other = StreamClusters(FakeLabeler(), CFG)
    other.load_states({"frontend": first.model}, {"frontend": b"junk"})
    assert other.sources["frontend"].rows_seen == len(t)
    with pytest.raises(ValueError, match="do not fit"):
        codec.load_counters(SourceClusterer("frontend", CFG, 256, 0.6), counters)


def test_parts_count_as_saved_only_once_confirmed() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    t = fake_traffic(300)
    run(sc, t)
    unconfirmed = sc.dirty_parts()  # a save that failed: never given to mark_saved
    again = sc.dirty_parts()
    assert again["frontend"].model == unconfirmed["frontend"].model is not None
    run(sc, t.slice(0, 10))  # a batch while the store writes
    sc.mark_saved(again)
    after = sc.dirty_parts()["frontend"]
    assert after.model is None  # the model was saved; the batch's counters were not
    assert after.revision > again["frontend"].revision
    sc.mark_saved({"frontend": after})
    assert sc.dirty_parts() == {}
    # A source dropped and opened again is not marked by the parts of the one before.
    sc.forget("frontend")
    run(sc, t.slice(0, 10))
    sc.mark_saved(again)
    assert sc.dirty_parts()["frontend"].model is not None
