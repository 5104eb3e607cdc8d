"""Helpers of the stream clustering tests: feeding a router, embedders that put texts
exactly where a test wants them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from logclust.cluster.router import StreamClusters
from logclust.text.masking import Masker
from logclust.wire import contract, ipc


def run(sc: StreamClusters, table: pa.Table, batch: int = 250) -> np.ndarray:
    """Labels `table` in batches of `batch` rows; the ids of every row."""
    out = []
    for part in ipc.iter_slices(table, batch):
        ids, _, _, _ = sc.label(
            part.column("body").combine_chunks(),
            contract.source_column(part),
            contract.time_ms_column(part, 0),
        )
        out.append(ids)
    return np.concatenate(out)


def saved(sc: StreamClusters) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """`(states, counters)` as a flush saves them (`load_states` arguments), marked saved."""
    parts = sc.dirty_parts()
    sc.mark_saved(parts)
    states = {name: p.model for name, p in parts.items() if p.model is not None}
    return states, {name: p.counters for name, p in parts.items()}


def with_source(table: pa.Table, source: str) -> pa.Table:
    """`table` with every row from `source`."""
    column = pa.array([source] * len(table), pa.string())
    if "source" in table.column_names:
        return table.set_column(table.column_names.index("source"), "source", column)
    return table.append_column("source", column)


class VectorEmbedder:
    """Embeds a masked text by a table lookup: tests place texts exactly where they want."""

    def __init__(self, vectors: dict[str, np.ndarray], threshold: float = 0.4) -> None:
        self.masker = Masker()
        self.vectors = {k: v / np.linalg.norm(v) for k, v in vectors.items()}
        self.dim = len(next(iter(vectors.values())))
        self.threshold: float | None = threshold

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        return np.stack([self.vectors[t] for t in masked.to_pylist()]).astype(np.float32)


def at(angle: float, dim: int = 8) -> np.ndarray:
    """A unit vector at `angle` radians from e0 in the e0-e1 plane (distance 2 sin(a/2))."""
    v = np.zeros(dim)
    v[0], v[1] = np.cos(angle), np.sin(angle)
    return v


def angle(distance: float) -> float:
    """The angle between two unit vectors `distance` apart."""
    return 2.0 * np.arcsin(distance / 2.0)


def merging_vectors() -> dict[str, np.ndarray]:
    """b lies 0.45 from a (beyond the 0.4 threshold: its own cluster). Members arrive on
    the sides facing each other (aa, bb), so the two running means end up 0.3 apart:
    within the threshold, one cluster by the rule, which a consolidation restores."""
    return {"a": at(0.0), "b": at(angle(0.45)), "aa": at(angle(0.15)), "bb": at(angle(0.30))}
