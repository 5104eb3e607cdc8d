"""Folding sidecar stores into one catalog: the result does not depend on the order of
the stores, and the kinds they learned get one id each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.sidecar.catalog_fold import fold_stores
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.core import Sidecar
from logclust.sidecar.store import SqliteStore
from logclust.sidecar.stream_labeler import StreamLabeler
from tests.cluster.streams import run
from tests.fakes import FakeLabeler, fake_traffic

CLUSTERS = StreamClusterConfig(background_consolidation=False)
MANIFEST = {"files": {}}


def _store(directory: Path, table: pa.Table) -> None:
    """A sidecar's store after `table` went through it."""
    store = SqliteStore(directory)
    side = Sidecar(StreamLabeler(FakeLabeler(), StreamLabelerConfig(clusters=CLUSTERS)), store)
    side.label(table.drop_columns(["kind"]))
    side.flush()
    store.close()


def test_two_orders_of_stores_give_the_same_catalog(tmp_path: Path) -> None:
    table = fake_traffic(800, seed=3)
    stores = []
    for seed in range(2):
        order = np.random.default_rng(seed).permutation(table.num_rows)
        stores.append(tmp_path / f"s{seed}")
        _store(stores[-1], table.take(order).slice(0, 500))
    ab = fold_stores(stores, FakeLabeler(), CLUSTERS, MANIFEST)
    ba = fold_stores(stores[::-1], FakeLabeler(), CLUSTERS, MANIFEST)
    assert ab.digest == ba.digest and ab.clusters >= 5
    ids = []
    for catalog in (ab, ba):  # served: each kind one id, the same from either fold
        sc = StreamClusters(FakeLabeler(), CLUSTERS)
        sc.use_catalog(catalog)
        got = run(sc, table)
        kinds: dict[str, set[int]] = {}
        for kind, cid in zip(table.column("kind").to_pylist(), got.tolist(), strict=True):
            kinds.setdefault(kind, set()).add(cid)
        assert not any(sc.is_local("frontend", i) for v in kinds.values() for i in v)
        ids.append(kinds)
    assert ids[0] == ids[1]


def test_a_folder_that_is_not_a_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Not a sidecar store"):
        fold_stores([tmp_path], FakeLabeler(), CLUSTERS, MANIFEST)
