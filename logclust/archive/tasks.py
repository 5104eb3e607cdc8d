"""What one Spark task runs: Arrow record batches in, the same batches with `cluster_id`
and `cluster_distance` out (pyarrow, numpy and LiteRT only; no pyspark, no TensorFlow).

A Python worker process keeps one labeler per bundle in a module-level cache, so the
bundle is loaded once per process, not once per task or batch; its embedding cache
carries across batches, so each distinct masked text is encoded once per process (an
archive repeats a few thousand masked texts millions of times). Centroids come from the
driver, never from the worker's own fit, so every partition uses the same ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.cluster.clustering import ClusterModel
from logclust.cluster.labeler import Labeler
from logclust.embed.embedding_cache import EmbeddingCache
from logclust.wire.contract import CLUSTER_DISTANCE, CLUSTER_ID

# Masked texts kept per worker process (x embedding_dim float32: 384 -> ~150 MB at most,
# touched only as it fills).
CACHE_TEXTS = 100_000


@dataclass(frozen=True)
class TaskSpec:
    """Everything a task needs, small enough to ship in the task closure.

    Attributes:
        bundle: bundle folder as the executors see it (None: the installed default).
        variant: encoder variant (None: the bundle's default).
        text_column: the column to label.
    """

    bundle: str | None
    variant: str | None
    text_column: str


@dataclass
class _Worker:
    labeler: Labeler
    cache: EmbeddingCache


_WORKERS: dict[tuple[str | None, str | None], _Worker] = {}


def worker(bundle: str | None, variant: str | None) -> _Worker:
    """The process's labeler and embedding cache for a bundle (loaded on first use)."""
    key = (bundle, variant)
    if key not in _WORKERS:
        lab = Labeler.load(bundle, variant=variant)
        _WORKERS[key] = _Worker(lab, EmbeddingCache(lab, CACHE_TEXTS))
    return _WORKERS[key]


def output_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` plus `cluster_id` (int32) and `cluster_distance` (float32)."""
    for name in (CLUSTER_ID, CLUSTER_DISTANCE):
        if name in schema.names:
            raise ValueError(f"Input already has a {name} column. Received: {schema.names}")
    return schema.append(pa.field(CLUSTER_ID, pa.int32())).append(
        pa.field(CLUSTER_DISTANCE, pa.float32())
    )


def label_batch(batch: pa.RecordBatch, spec: TaskSpec, clusters: ClusterModel) -> pa.RecordBatch:
    """One batch with the two columns added; null texts get id -1 and distance NaN."""
    idx = batch.schema.get_field_index(spec.text_column)
    if idx < 0:
        raise ValueError(
            f"No text column {spec.text_column!r} in the batch. Received: {batch.schema.names}"
        )
    texts = batch.column(idx)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"The text column must hold strings. Received: type={texts.type}")
    w = worker(spec.bundle, spec.variant)
    valid = pc.is_valid(texts).to_numpy(zero_copy_only=False)
    masked = w.labeler.masker.mask(texts.filter(pc.is_valid(texts)) if texts.null_count else texts)
    enc = masked.dictionary_encode()
    emb = w.cache.embed(enc.dictionary.to_pylist())
    ids_u, dist_u = clusters.assign(emb)  # per distinct text, then gathered per row
    rows = enc.indices.to_numpy(zero_copy_only=False)
    ids = np.full(len(texts), -1, np.int32)
    dist = np.full(len(texts), np.nan, np.float32)
    ids[valid], dist[valid] = ids_u[rows], dist_u[rows]
    arrays = [*batch.columns, pa.array(ids, pa.int32()), pa.array(dist, pa.float32())]
    return pa.RecordBatch.from_arrays(arrays, schema=output_schema(batch.schema))


def label_batches(
    batches: Iterator[pa.RecordBatch], spec: TaskSpec, centroids: np.ndarray, radii: np.ndarray
) -> Iterator[pa.RecordBatch]:
    """The body of a `mapInArrow` task: each batch labelled against the driver's centroids."""
    clusters = ClusterModel(centroids, radii)
    for batch in batches:
        yield label_batch(batch, spec, clusters)
