from __future__ import annotations

import numpy as np
import pytest

from logclust.cluster.reservoir import Reservoir


def _fill(res: Reservoir, rows: int, batch: int) -> list[int]:
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        keys = [str(start + i) for i in range(n)]
        res.offer(start, keys, lambda idx: np.zeros((idx.size, 2), np.float32), np.arange(n))
    return [int(t) for t in res.contents(rows)[1]]


@pytest.mark.parametrize("batch", [7, 100, 1000])
def test_every_row_is_kept_with_equal_chance(batch: int) -> None:
    """Algorithm L in blocks: over many seeds, early, middle and late rows are kept alike."""
    rows, cap, seeds = 6000, 100, 120
    kept = np.zeros(rows)
    for seed in range(seeds):
        got = _fill(Reservoir(cap, 2, seed), rows, batch)
        assert len(set(got)) == cap  # no row twice, no slot empty
        kept[got] += 1
    expected = seeds * cap / rows  # 2 per row
    thirds = [part.mean() for part in np.array_split(kept, 3)]
    assert all(abs(t - expected) < 0.15 * expected for t in thirds), thirds


def test_filling_keeps_every_row_and_embeds_only_accepted_rows() -> None:
    res = Reservoir(10, 3, seed=0)
    asked: list[int] = []

    def embed(idx: np.ndarray) -> np.ndarray:
        asked.extend(idx.tolist())
        return np.repeat(idx[:, None].astype(np.float32), 3, axis=1)

    keys = ["a", "b", "c"]
    res.offer(0, keys, embed, np.array([0, 1, 2, 1]))  # 4 rows, 3 distinct texts
    emb, texts = res.contents(4)
    assert texts.tolist() == ["a", "b", "c", "b"] and emb[:, 0].tolist() == [0, 1, 2, 1]
    asked.clear()
    res.offer(4, keys, embed, np.zeros(10_000, np.int64))  # full: few rows accepted
    assert 0 < len(asked) < 100
    with pytest.raises(ValueError, match="Received: capacity=0"):
        Reservoir(0, 3)
