"""What one source's clusterer exports for the store (`SourceClusterer.state` and
`counters`), and takes back when restored; `logclust.cluster.state` encodes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from logclust.cluster.descriptions import ClusterStats
from logclust.cluster.threshold import Centroids


@dataclass(frozen=True)
class SourceState:
    """The clusters of a source as a state saves them. Arrays are the clusterer's own
    (no copy): encode them while no other call can change the clusterer."""

    source: str
    dim: int
    threshold: float | None  # None: not recorded (format 1); a restored source takes its own
    next_id: int
    rows_seen: int
    last_batch_ms: int | None  # None: unknown (older formats), the clusterer's own stamp
    cap_hits: int
    consolidations: int
    aliases: dict[int, int]
    stats: list[ClusterStats]  # with sizes and times
    table: Centroids
    ids: np.ndarray  # (k,) int32 stable id of each row of `table`
    templates: dict[str, Any] | None = None  # `TemplateIndex.to_doc()`; None: none kept
    groups: dict[str, Any] | None = None  # `GroupIndex.to_doc()`; None: saved before groups
    # `LocalIds.to_doc()`: the external ids of local kinds (None: no fleet catalog served).
    local_ids: dict[str, Any] | None = None


@dataclass(frozen=True)
class SourceCounters:
    """What a steady stream changes: rows seen and each id's size and first/last time."""

    rows_seen: int
    last_batch_ms: int
    cap_hits: int
    next_id: int
    size: np.ndarray  # (next_id,) int64
    first: np.ndarray  # (next_id,) int64
    last: np.ndarray  # (next_id,) int64


class Revisions:
    """Changes, counted. `revision` grows with every change; the model revision is that
    of the last change to the clusters themselves (centroids, ids, aliases, members), not
    only to their counters (sizes, times). A steady stream changes counters alone, and a
    flush then writes the counters (a few bytes a cluster), not the whole state. The
    saved revisions are those the store confirmed holding."""

    def __init__(self) -> None:
        self._revision = self._model_revision = 1
        self._saved = self._saved_model = 0

    def bump(self, model: bool) -> None:
        """Counts a change (to the clusters themselves when `model`)."""
        self._revision += 1
        if model:
            self._model_revision = self._revision

    @property
    def revision(self) -> int:
        """Grows with every change; what `mark_saved` is given back."""
        return self._revision

    @property
    def dirty(self) -> bool:
        """Anything changed since the last save the store confirmed."""
        return self._revision > self._saved

    @property
    def model_dirty(self) -> bool:
        """The clusters themselves changed since the last confirmed save, not only their
        counters: the whole state must be saved, not only `counters()`."""
        return self._model_revision > self._saved_model

    def mark_saved(self, revision: int, model: bool) -> None:
        """The store holds this source as of `revision` (its counters; its whole state
        too when `model`): changes made since stay unsaved."""
        self._saved = max(self._saved, revision)
        if model:
            self._saved_model = max(self._saved_model, revision)
