"""What the Spark tasks run: Arrow record batches in, Arrow record batches out (pyarrow,
numpy and LiteRT only; no pyspark, no TensorFlow).

Labelling runs in two steps so that each distinct masked text is encoded once over the
whole job (an archive repeats a few thousand masked texts millions of times, and the
encoder is the cost):

1. `mask_batches` adds a `MASKED` column (cheap, any partitioning);
2. the driver shuffles rows by that column, so every distinct masked text lives in one
   partition only; `assign_batches` then embeds each distinct text of its partition once
   (the process's embedding cache carries across batches and tasks), assigns it against
   the driver's centroids and drops the helper column.

`label_batches` chains both in one process (no shuffle): the same ids, for tests and
single-partition use.

A Python worker process keeps one labeler per bundle in a module-level cache, so the
bundle is loaded once per process, not once per task or batch. Centroids come from the
driver, never from the worker's own fit, so every partition uses the same ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.cluster.clustering import ClusterModel
from logclust.cluster.labeler import Labeler
from logclust.cluster.templates import TemplateIndex
from logclust.embed.embedding_cache import EmbeddingCache
from logclust.wire.contract import CLUSTER_DISTANCE, CLUSTER_ID

# Masked texts kept per worker process (x embedding_dim float32: 384 -> ~150 MB at most,
# touched only as it fills).
CACHE_TEXTS = 100_000
# The helper column between the two steps; dropped before the output.
MASKED = "_logclust_masked"


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


def _check_new(schema: pa.Schema, names: tuple[str, ...]) -> None:
    for name in names:
        if name in schema.names:
            raise ValueError(f"Input already has a {name} column. Received: {schema.names}")


def masked_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` plus the helper column `MASKED` (string, null where the text is null)."""
    _check_new(schema, (MASKED,))
    return schema.append(pa.field(MASKED, pa.string()))


def output_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` plus `cluster_id` (int32) and `cluster_distance` (float32)."""
    _check_new(schema, (CLUSTER_ID, CLUSTER_DISTANCE))
    return schema.append(pa.field(CLUSTER_ID, pa.int32())).append(
        pa.field(CLUSTER_DISTANCE, pa.float32())
    )


def _strings(batch: pa.RecordBatch, column: str) -> pa.Array:
    idx = batch.schema.get_field_index(column)
    if idx < 0:
        raise ValueError(f"No text column {column!r} in the batch. Received: {batch.schema.names}")
    texts = batch.column(idx)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"The text column must hold strings. Received: type={texts.type}")
    return texts


def mask_batch(batch: pa.RecordBatch, spec: TaskSpec) -> pa.RecordBatch:
    """One batch with the `MASKED` column added (null texts stay null)."""
    texts = _strings(batch, spec.text_column)
    labeler = worker(spec.bundle, spec.variant).labeler
    valid = pc.is_valid(texts) if texts.null_count else None
    # Through the worker's digit-shape cache (exact; each shape masked once per process).
    distinct, rows = labeler.mask_distinct(texts.filter(valid) if valid is not None else texts)
    masked = distinct.take(pa.array(rows)).cast(pa.string())
    if valid is not None:  # masked valid texts scattered back to their rows; nulls stay null
        masked = pc.replace_with_mask(pa.nulls(len(texts), pa.string()), valid, masked)
    return pa.RecordBatch.from_arrays([*batch.columns, masked], schema=masked_schema(batch.schema))


def assign_batch(batch: pa.RecordBatch, spec: TaskSpec, clusters: ClusterModel) -> pa.RecordBatch:
    """A masked batch with `MASKED` replaced by the two label columns; each distinct
    masked text is embedded once (and only if the process has not embedded it before).
    Null masked texts get id -1 and distance NaN."""
    masked = _strings(batch, MASKED)
    w = worker(spec.bundle, spec.variant)
    valid = pc.is_valid(masked).to_numpy(zero_copy_only=False)
    enc = (masked.filter(pc.is_valid(masked)) if masked.null_count else masked).dictionary_encode()
    texts = enc.dictionary.to_pylist()
    ids_u = clusters.template_ids(texts)  # lines that fit a template need no embedding
    dist_u = np.zeros(len(texts), np.float32)
    need = np.flatnonzero(ids_u < 0)
    if need.size:  # per distinct text, then gathered per row
        ids_u[need], dist_u[need] = clusters.assign(w.cache.embed([texts[i] for i in need]))
    rows = enc.indices.to_numpy(zero_copy_only=False)
    ids = np.full(len(masked), -1, np.int32)
    dist = np.full(len(masked), np.nan, np.float32)
    ids[valid], dist[valid] = ids_u[rows], dist_u[rows]
    keep = batch.drop_columns([MASKED])
    arrays = [*keep.columns, pa.array(ids, pa.int32()), pa.array(dist, pa.float32())]
    return pa.RecordBatch.from_arrays(arrays, schema=output_schema(keep.schema))


def mask_batches(batches: Iterator[pa.RecordBatch], spec: TaskSpec) -> Iterator[pa.RecordBatch]:
    """The body of the first `mapInArrow` task: each batch with `MASKED` added."""
    for batch in batches:
        yield mask_batch(batch, spec)


def assign_batches(
    batches: Iterator[pa.RecordBatch],
    spec: TaskSpec,
    centroids: np.ndarray,
    radii: np.ndarray,
    templates: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The body of the second `mapInArrow` task: masked batches labelled against the
    driver's clusters (centroids, and the templates of a fit as `TemplateIndex.to_doc`),
    `MASKED` dropped."""
    index = None if templates is None else TemplateIndex.from_doc(templates)
    clusters = ClusterModel(centroids, radii, index)
    for batch in batches:
        yield assign_batch(batch, spec, clusters)


def label_batches(
    batches: Iterator[pa.RecordBatch],
    spec: TaskSpec,
    centroids: np.ndarray,
    radii: np.ndarray,
    templates: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Both steps in one process, row order kept: each batch labelled against the
    driver's clusters."""
    return assign_batches(mask_batches(batches, spec), spec, centroids, radii, templates)
