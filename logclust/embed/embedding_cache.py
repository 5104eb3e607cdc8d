"""Bounded cache masked text -> embedding in front of the model (FIFO eviction).

A stream repeats a small set of masked texts (one per log template and field shape), so
after a short warm-up nearly every distinct text of a batch is a hit and the model only
sees what is new. Lookups are one dict probe per distinct text of the batch (never per
row); embeddings live in one preallocated ring, so a batch of hits is a numpy gather.
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
        capacity: texts kept; the oldest is evicted first. The ring holds
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
        self._next = 0
        self.hits = 0
        self.misses = 0

    def embed(self, keys: list[str]) -> np.ndarray:
        """Embeddings `(u, dim)` of distinct masked texts; only misses reach the model.

        Args:
            keys: the distinct texts as Python strings (an Arrow array is built for the
                misses only).
        """
        slots = np.fromiter(map(self._index.get, keys, repeat(-1)), np.int64, len(keys))
        miss_idx = np.flatnonzero(slots < 0)
        self.hits += len(keys) - miss_idx.size
        self.misses += miss_idx.size
        if miss_idx.size == 0:
            return self._ring[slots]
        out = np.empty((len(keys), self.embedder.dim), np.float32)
        hit = slots >= 0
        out[hit] = self._ring[slots[hit]]
        misses = pa.array([keys[i] for i in miss_idx.tolist()], pa.string())
        emb = np.asarray(self.embedder.embed_masked(misses))
        out[miss_idx] = emb
        keep = miss_idx[-self.capacity :]
        self._insert([keys[i] for i in keep.tolist()], emb[-self.capacity :])
        return out

    @property
    def size(self) -> int:
        """Texts held now."""
        return len(self._index)

    def _insert(self, keys: list[str], emb: np.ndarray) -> None:
        slots = (self._next + np.arange(len(keys))) % self.capacity
        for slot, key in zip(slots.tolist(), keys, strict=True):
            old = self._keys[slot]
            if old is not None:
                self._index.pop(old, None)
            self._keys[slot] = key
            self._index[key] = slot
        self._ring[slots] = emb
        self._next = int((self._next + len(keys)) % self.capacity)
