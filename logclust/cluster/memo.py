"""The placement memo of one source: what the current model gave each text.

A steady stream repeats its texts; the memo lets each be placed once, not once per batch.
An entry holds the stable id a text was given and its distance to that cluster's centroid
at the time. A consolidation rewrites merged ids to their survivors and marks the texts of
split clusters (id -1) to be placed again (`remap`).
"""

from __future__ import annotations

from itertools import repeat

import numpy as np


class PlacementMemo:
    """Text -> (stable id, distance), in growing arrays indexed by a slot per text."""

    def __init__(self) -> None:
        self._slot: dict[str, int] = {}  # text -> slot of _uid / _dist
        self._uid = np.zeros(0, np.int32)  # -1: place the text again
        self._dist = np.zeros(0, np.float32)

    def __len__(self) -> int:
        return len(self._slot)

    def texts(self) -> dict[str, int]:
        """Text -> slot. Read without a lock only to skip work: a text found here may
        still be placed again."""
        return self._slot

    def find(self, keys: list[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """`(slot, miss)`: each key's slot (-1 when not held), and the indices of the keys
        to place (not held, or marked to place again). Past `limit` texts the memo is
        emptied first."""
        if len(self._slot) + len(keys) > limit:
            self._slot.clear()
        slot = np.fromiter(map(self._slot.get, keys, repeat(-1)), np.int64, len(keys))
        held = slot >= 0
        stale = np.zeros(len(keys), bool)
        stale[held] = self._uid[slot[held]] < 0
        return slot, np.flatnonzero(~held | stale)

    def store(
        self, keys: list[str], slot: np.ndarray, miss: np.ndarray, uid: np.ndarray, d: np.ndarray
    ) -> None:
        """Records the placement `(uid, d)` of `keys[miss]`; fills `slot` in place."""
        new = miss[slot[miss] < 0]
        start = len(self._slot)
        if start + new.size > self._uid.size:
            grow = max(2 * self._uid.size, start + new.size)
            self._uid = np.resize(self._uid, grow)
            self._dist = np.resize(self._dist, grow)
        slot[new] = np.arange(start, start + new.size)
        self._slot.update(
            zip([keys[i] for i in new.tolist()], range(start, start + new.size), strict=True)
        )
        self._uid[slot[miss]] = uid
        self._dist[slot[miss]] = d

    def values(self, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(ids, distances)` of held slots."""
        return self._uid[slot], self._dist[slot]

    def remap(self, to: np.ndarray) -> None:
        """Rewrites each held id `i` to `to[i]` (-1: place the text again)."""
        held = self._uid[: len(self._slot)]
        live = held >= 0
        held[live] = to[held[live]]
