"""Builds a catalog (`logclust.cluster.catalog`) from sample traffic, by the stream's rules.

The rows go through the same `StreamClusters` a sidecar runs (templates, then distance at
the bundle's threshold; k never given), in the order given, then one consolidation per
source; the clusters that result are the catalog's, with the ids they got.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from logclust.cluster.catalog import Catalog, bundle_id, catalog_of
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.embed.embedding_cache import Embedder
from logclust.text.masking import Masker, MaskingConfig
from logclust.wire import contract

# Rows labelled at once while building (bounds the memory of one step).
BUILD_BATCH_ROWS = 8192
# Sources a build keeps (each gets its own clusters in the catalog).
BUILD_MAX_SOURCES = 4096


class Premasked:
    """`embedder` for texts masked already (stores keep masked members): masking again
    is not the identity (`<NUM>` would become `<*>`), so its masker keeps them as they
    are, and `build_catalog` does not cut them to their messages again."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder
        self.masker = Masker(MaskingConfig(rules=(), structured=False, collapse_whitespace=False))
        self.dim = embedder.dim
        self.threshold = embedder.threshold

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        return self.inner.embed_masked(masked)


def build_catalog(
    tables: Iterable[pa.Table],
    embedder: Embedder,
    config: StreamClusterConfig | None = None,
    manifest: Mapping[str, Any] | None = None,
    base: Catalog | None = None,
) -> Catalog:
    """The catalog of `tables` (each with `body` and an optional `source` column).

    Args:
        tables: sample traffic, clustered in this order.
        embedder: the model (a `Labeler`); its bundle's manifest names the catalog's
            bundle unless `manifest` is given.
        config: clustering settings (the sidecar's defaults when None).
        base: the catalog served now: its clusters start the build, so its kinds keep
            their ids and new kinds get ids above them.

    Raises:
        ValueError: no rows at all, or a table that breaks the contract.
    """
    config = dataclasses.replace(config or StreamClusterConfig(), background_consolidation=False)
    # Premasked texts are cut to their messages already (or kept whole): not cut again.
    premasked = isinstance(embedder, Premasked)
    run = dataclasses.replace(config, keep_headers=True) if premasked else config
    stream = StreamClusters(embedder, run, BUILD_MAX_SOURCES, embedder.threshold)
    stream.use_catalog(base)
    rows = 0
    for table in tables:
        contract.validate_schema(table.schema)
        for batch in table.to_batches(BUILD_BATCH_ROWS):
            t = pa.Table.from_batches([batch])
            body = contract.column_array(t, contract.BODY)
            stream.label(body, contract.source_column(t), np.zeros(t.num_rows, np.int64))
            rows += t.num_rows
    if rows == 0:
        raise ValueError("A catalog needs sample rows. Received: 0 rows")
    for name in stream.sources:
        stream.consolidate_now(name)
    if manifest is None:
        inner = embedder.inner if isinstance(embedder, Premasked) else embedder
        manifest = inner.bundle.manifest  # type: ignore[attr-defined]
    return catalog_of(stream.sources, bundle_id(manifest), embedder.dim, config)
