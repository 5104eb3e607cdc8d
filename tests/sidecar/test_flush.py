"""A flush saves what changed, and keeps for the next one what the store did not take."""

from __future__ import annotations

import pyarrow as pa
import pytest

from logclust.sidecar.core import Sidecar
from logclust.sidecar.store import MemoryStore, StoreDelta
from logclust.sidecar.stream_labeler import StreamLabeler, StreamLabelerConfig
from tests.fakes import FakeLabeler, fake_traffic


class FlakyStore(MemoryStore):
    """`MemoryStore` whose next `fail` saves raise, as a full disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0

    def save_state(self, delta: StoreDelta) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        super().save_state(delta)


def _batch(rows: int, seed: int) -> pa.Table:
    t = fake_traffic(rows, seed=seed)
    return t.select(["body", "source", "latency_ms"])


def test_a_failed_flush_leaves_the_changes_for_the_next_one() -> None:
    store = FlakyStore()
    sidecar = Sidecar(StreamLabeler(FakeLabeler(), StreamLabelerConfig()), store)
    sidecar.label(_batch(300, seed=1))
    store.fail = 1
    with pytest.raises(OSError, match="disk full"):
        sidecar.flush()
    assert store.load_state().sources == {}
    sidecar.flush()  # the clusters of the failed flush, whole
    saved = store.load_state()
    assert set(saved.sources) == {"frontend"} and set(saved.counters) == {"frontend"}
    restored = Sidecar(StreamLabeler(FakeLabeler(), StreamLabelerConfig()), store)
    assert restored.describe() == sidecar.describe()

    sidecar.label(_batch(300, seed=1))  # the same texts: counters only
    store.fail = 1
    with pytest.raises(OSError):
        sidecar.flush()
    before = store.load_state()
    sidecar.flush()
    after = store.load_state()
    assert after.sources == before.sources  # the model did not change: not written again
    assert after.counters != before.counters
    assert Sidecar(StreamLabeler(FakeLabeler(), StreamLabelerConfig()), store).describe() == (
        sidecar.describe()
    )
