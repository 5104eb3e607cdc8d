"""Bounded cache masked text -> embedding in front of the model (CLOCK eviction).

A stream repeats a small set of masked texts (one per log template and field shape), so
after a short warm-up nearly every distinct text of a batch is a hit and the model only
sees what is new. Lookups are one dict probe per distinct text of the batch (never per
row); embeddings live in one preallocated ring, so a batch of hits is a numpy gather.

Eviction is CLOCK (second chance), not FIFO: a text hit since the hand last passed it is
skipped once. A burst of texts seen once (a deploy, a new feature's messages) then takes
the slots of other texts seen once, not those of the steady stream's texts, which were
hit in between. With FIFO, a burst of new texts on one stream evicted a light stream's
texts from the cache of the default budget, and its next batches re-embedded them
(`python -m bench.novelty` runs such a burst beside a light client).
"""

from __future__ import annotations

from itertools import repeat
from typing import Protocol

import numpy as np
import pyarrow as pa

from logclust.text.masking import Masker


class Embedder(Protocol):
    """What the clusterer needs from a labeler (`logclust.cluster.labeler.Labeler` fits)."""

    @property
    def masker(self) -> Masker: ...

    @property
    def dim(self) -> int: ...

    @property
    def threshold(self) -> float | None:
        """The model's calibrated clustering threshold (None: not calibrated)."""
        ...

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        """L2-normalised float32 `(n, dim)` embeddings of already-masked strings."""
        ...


class EmbeddingCache:
    """Masked text -> embedding for the last `capacity` texts embedded.

    Args:
        embedder: computes the misses (`embed_masked`).
        capacity: texts kept; the oldest not hit since the hand last passed it is evicted
            first (CLOCK). The ring holds
            `capacity * dim` float32 values, touched (resident) only as it fills.
    """

    def __init__(self, embedder: Embedder, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive. Received: capacity={capacity}")
        self.embedder = embedder
        self.capacity = capacity
        self._ring = np.zeros((capacity, embedder.dim), np.float32)
        self._keys: list[str | None] = [None] * capacity
        self._index: dict[str, int] = {}
        self._next = 0  # the clock's hand
        self._hit = np.zeros(capacity, bool)  # hit since the hand last passed the slot
        self.hits = 0
        self.misses = 0

    def embed(self, keys: list[str], touch: bool = True) -> np.ndarray:
        """Embeddings `(u, dim)` of distinct masked texts; only misses reach the model.

        Args:
            keys: the distinct texts as Python strings (an Arrow array is built for the
                misses only).
            touch: hits count as a use for the eviction (False for a second look-up of
                a batch's texts: not a use again).
        """
        slots = np.fromiter(map(self._index.get, keys, repeat(-1)), np.int64, len(keys))
        miss_idx = np.flatnonzero(slots < 0)
        self.hits += len(keys) - miss_idx.size
        self.misses += miss_idx.size
        if miss_idx.size == 0:
            self._hit[slots] |= touch
            return self._ring[slots]
        out = np.empty((len(keys), self.embedder.dim), np.float32)
        hit = slots >= 0
        self._hit[slots[hit]] |= touch
        out[hit] = self._ring[slots[hit]]
        misses = pa.array([keys[i] for i in miss_idx.tolist()], pa.string())
        emb = np.asarray(self.embedder.embed_masked(misses))
        out[miss_idx] = emb
        keep = miss_idx[-self.capacity :]
        self._insert([keys[i] for i in keep.tolist()], emb[-self.capacity :])
        return out

    def touch(self, keys: list[str]) -> None:
        """Counts a use of the held `keys` for the eviction, without a look-up (texts a
        stream placed from its memo: their embeddings are needed again when a merge or a
        split makes the stream place them anew)."""
        slots = np.fromiter(map(self._index.get, keys, repeat(-1)), np.int64, len(keys))
        self._hit[slots[slots >= 0]] = True

    @property
    def size(self) -> int:
        """Texts held now."""
        return len(self._index)

    def _victims(self, n: int) -> np.ndarray:
        """`n` (<= capacity) distinct slots for new texts, in the clock's order: slots not
        hit since the hand last passed them; hit ones passed over lose their mark. When
        fewer than `n` are unmarked, every mark is spent in one turn and the rest are
        taken in order after them."""
        if n == 0:
            return np.zeros(0, np.int64)
        order = (self._next + np.arange(self.capacity)) % self.capacity
        marked = self._hit[order]
        free = np.flatnonzero(~marked)
        if free.size >= n:
            last = int(free[n - 1])
            self._hit[order[: last + 1]] = False
            self._next = int(order[(last + 1) % self.capacity])
            return order[free[:n]]
        taken = np.flatnonzero(marked)[: n - free.size]
        self._hit[:] = False
        self._next = int(order[(int(taken[-1]) + 1) % self.capacity])
        return np.concatenate([order[free], order[taken]])

    def _insert(self, keys: list[str], emb: np.ndarray) -> None:
        slots = self._victims(len(keys))
        for slot, key in zip(slots.tolist(), keys, strict=True):
            old = self._keys[slot]
            if old is not None:
                self._index.pop(old, None)
            self._keys[slot] = key
            self._index[key] = slot
        self._ring[slots] = emb
