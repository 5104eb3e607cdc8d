"""External ids of local kinds (`logclust.cluster.local_ids`): content-derived and
fleet-unique, never a catalog id, unique within a sidecar, kept across a catalog
restart and in the saved state."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.local_ids import LOCAL_BIT, LocalIds, is_local_id, local_id
from logclust.cluster.router import StreamClusters
from logclust.cluster.state import from_bytes, to_bytes
from logclust.latency.book import group_rows
from tests.cluster.streams import run
from tests.fakes import FakeLabeler, fake_traffic

CFG = StreamClusterConfig(background_consolidation=False)


def test_ids_depend_on_source_and_text_only() -> None:
    a = local_id("frontend", "disk <NUM> failed")
    assert a == local_id("frontend", "disk <NUM> failed") >= LOCAL_BIT
    assert a < 2**63  # a non-negative int64
    others = {local_id("backend", "disk <NUM> failed"), local_id("frontend", "disk gone")}
    assert a not in others and len(others) == 2
    assert is_local_id(a) and not is_local_id(2**31 - 1)


def test_names_are_unique_within_a_source_and_external_is_total() -> None:
    ids = LocalIds("s", first=5)
    # Two clusters opened by one text (possible after a memo eviction): two names.
    assert ids.name(["same", "same"], np.array([5, 6], np.int32))
    assert not ids.name(["same"], np.array([5], np.int32))  # nothing new
    assert ids.of[5] == local_id("s", "same") != ids.of[6]
    out = ids.external(np.array([0, 4, 5, 6, -1, 9], np.int32), lambda c: None)
    assert out.dtype == np.int64
    assert out[:2].tolist() == [0, 4] and out[4] == -1  # catalog ids as they are
    assert out[2] == ids.of[5] and out[3] == ids.of[6] and out[5] >= LOCAL_BIT  # 9 named now
    assert len(set(ids.of.values())) == 3


def test_a_restart_keeps_names_and_moves_a_reopened_kind() -> None:
    old = LocalIds("s", first=2)
    old.name(["a", "b"], np.array([2, 3], np.int32))
    new = LocalIds("s", first=2)
    new.carry(old)  # the clusters 2 and 3 are gone; their names stay for the history
    assert new.external(np.array([2, 3]), None).tolist() == [old.of[2], old.of[3]]
    new.name(["b"], np.array([7], np.int32))  # kind b opened again
    assert new.of[7] == old.of[3] and new.moved == {3: 7}
    back = LocalIds.from_doc("s", new.to_doc())
    assert back.of == new.of and back.moved == {3: 7}
    back.name(["a"], np.array([8], np.int32))
    assert back.of[8] == old.of[2] and back.moved == {3: 7, 2: 8}
    with pytest.raises(ValueError, match="Malformed local ids"):
        LocalIds.from_doc("s", {"first": 0, "of": [[1, "12"]]})


def test_a_stream_under_a_catalog_names_its_local_kinds_and_saves_them() -> None:
    sample = fake_traffic(600, seed=0).drop_columns(["kind"])
    catalog = build_catalog([sample], FakeLabeler(), CFG, {"files": {}})
    sc = StreamClusters(FakeLabeler(), CFG)
    sc.use_catalog(catalog)
    table = pa.table(
        {
            "body": ["disk 3 failed", "<a><b>new</b></a>", "job 4 done"],
            "source": ["frontend"] * 2 + ["jobs"],
        }
    )
    ids = run(sc, table)
    codes = np.array([0, 0, 1])
    ext = sc.external_rows(["frontend", "jobs"], codes, ids)
    assert (ext >= LOCAL_BIT).all() and len(set(ext.tolist())) == 3
    assert sc.external_ids("frontend", np.array([0])).tolist() == [0]  # a catalog id
    clus = sc.sources["frontend"]
    again = from_bytes(to_bytes(clus), CFG, clus.dim, clus.threshold)
    assert again.local_ids is not None and again.local_ids.of == clus.local_ids.of  # type: ignore[union-attr]
    plain = StreamClusters(FakeLabeler(), CFG)  # no catalog: ids leave as they are
    plain_ids = run(plain, table)
    assert not plain.translating
    assert (
        plain.external_rows(["frontend", "jobs"], codes, plain_ids).tolist() == plain_ids.tolist()
    )


def test_group_rows_numbers_wide_ids() -> None:
    codes = np.array([0, 1, 0, 1, 0])
    wide = np.array([5, LOCAL_BIT + 7, 5, LOCAL_BIT + 7, LOCAL_BIT + 9])
    groups, inv = group_rows(codes, wide)
    assert groups.tolist() == [[0, 5], [0, LOCAL_BIT + 9], [1, LOCAL_BIT + 7]]
    assert inv.tolist() == [0, 2, 0, 2, 1]
