"""The placement memo and the per-id statistics of one source."""

from __future__ import annotations

import numpy as np

from logclust.cluster.id_stats import IdStats
from logclust.cluster.memo import PlacementMemo


def test_the_memo_returns_what_was_stored_and_follows_a_remap() -> None:
    memo = PlacementMemo()
    keys = ["a", "b", "c"]
    slot, miss = memo.find(keys, limit=10)
    assert slot.tolist() == [-1, -1, -1] and miss.tolist() == [0, 1, 2]
    memo.store(keys, slot, miss, np.array([0, 1, 2], np.int32), np.array([0.1, 0.2, 0.3]))
    slot, miss = memo.find(["c", "a", "d"], limit=10)
    assert miss.tolist() == [2]  # only the new text
    ids, dist = memo.values(slot[:2])
    assert ids.tolist() == [2, 0] and np.allclose(dist, [0.3, 0.1])
    memo.remap(np.array([0, 0, -1], np.int32))  # 1 merged into 0, 2 split: place again
    slot, miss = memo.find(keys, limit=10)
    assert miss.tolist() == [2]
    assert memo.values(slot[:2])[0].tolist() == [0, 0]
    memo.find(["x"] * 10, limit=10)  # past the limit: emptied first
    assert len(memo) == 0


def test_id_stats_add_batches_and_merge() -> None:
    st = IdStats(template_members=2)
    keys = ["user <NUM> in", "user <NUM> out", "disk full"]
    uid = np.array([0, 0, 1])
    ids = np.array([0, 0, 1, 0])
    assert st.add_batch(keys, uid, ids, np.array([5, 7, 6, 9]))  # new clusters: changed
    assert [(s.cluster_id, s.size, s.first_seen_ms, s.last_seen_ms) for s in st.describe()] == [
        (0, 3, 5, 9),
        (1, 1, 6, 6),
    ]
    assert not st.add_batch(keys, uid, np.array([1]), np.array([10]))  # counters only
    st.merge(1, into=0)
    merged = {s.cluster_id: s for s in st.describe()}
    assert merged[0].size == 5 and merged[1].merged_into == 0 and not merged[1].active
    # Its two members already fill the cap: the merged one's do not join.
    assert merged[0].members == keys[:2] and merged[0].template == "user <NUM> <*>"
