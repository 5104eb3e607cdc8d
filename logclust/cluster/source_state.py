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
