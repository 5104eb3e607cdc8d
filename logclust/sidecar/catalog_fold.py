"""Folds the stores of sidecars (running or stopped) into one catalog.

Each store holds, per source, its clusters' masked members (`ClusterStats.members`, up
to `template_members` a cluster). The members of every store are pooled per source,
deduplicated and sorted, then clustered by the stream's own rules (`build_catalog`): the
same rules that place rows match the stores' clusters, and the result does not depend on
the order the stores are given in (the pool is the same set, read in the same order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from logclust.cluster.catalog import Catalog
from logclust.cluster.catalog_build import Premasked, build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.state import decode_state
from logclust.embed.embedding_cache import Embedder
from logclust.sidecar.store import DB_NAME, SqliteStore
from logclust.text.mask_cache import MaskCache
from logclust.wire import contract


def store_members(directory: str | Path, dim: int) -> dict[str, set[str]]:
    """Per source, the masked members of every live cluster a store holds.

    Raises:
        ValueError: not a store folder, or a state of another embedding dimension.
        StoreError: a damaged store.
    """
    path = Path(directory)
    if not (path / DB_NAME).is_file():
        raise ValueError(f"Not a sidecar store: {path / DB_NAME} is missing. Received: {path}")
    store = SqliteStore(path)
    try:
        snapshot = store.load_state()
    finally:
        store.close()
    out: dict[str, set[str]] = {}
    for source, data in snapshot.sources.items():
        try:
            state, _ = decode_state(data, dim)
        except (ValueError, KeyError) as e:
            raise ValueError(f"Store {path}: the state of source {source!r}: {e}") from e
        texts = out.setdefault(source, set())
        for st in state.stats:
            if st.merged_into is None:
                texts.update(st.members)
    return out


def fold_stores(
    directories: Sequence[str | Path],
    embedder: Embedder,
    config: StreamClusterConfig | None = None,
    manifest: Mapping[str, Any] | None = None,
    extra: Sequence[pa.Table] = (),
    base: Catalog | None = None,
) -> Catalog:
    """The catalog of the stores in `directories` (and of `extra` sample tables).

    Raises:
        ValueError: a folder that is not a store, or stores with no clusters at all.
    """
    pooled: dict[str, set[str]] = {}
    for d in directories:
        for source, texts in store_members(d, embedder.dim).items():
            pooled.setdefault(source, set()).update(texts)
    body, sources = [], []
    for source in sorted(pooled):
        members = sorted(pooled[source])
        body += members
        sources += [source] * len(members)
    table = pa.table(
        {"body": pa.array(body, pa.string()), "source": pa.array(sources, pa.string())}
    )
    # Sample rows given too are masked here as a sidecar masks them; then every text is
    # clustered as it is (`Premasked`).
    masks = MaskCache(embedder.masker, messages=not (config is not None and config.keep_headers))
    masked = [_masked(t, masks) for t in extra]
    return build_catalog([table, *masked], Premasked(embedder), config, manifest, base)


def _masked(table: pa.Table, masks: MaskCache) -> pa.Table:
    distinct, rows = masks.mask_distinct(contract.column_array(table, contract.BODY))
    return pa.table({"body": distinct.take(rows), "source": contract.source_column(table)})
