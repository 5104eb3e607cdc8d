"""`Labeler`: text in, embeddings and cluster ids out (serving path, no TensorFlow)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa

from logclust.cluster import clustering
from logclust.cluster.clustering import ClusterModel, radii_of
from logclust.cluster.config import FALLBACK_THRESHOLD, StreamClusterConfig
from logclust.cluster.source import SourceClusterer
from logclust.cluster.templates import TemplateIndex
from logclust.embed.bundle import Bundle, BundleError
from logclust.embed.encoder import Encoder
from logclust.text.mask_cache import MaskCache
from logclust.text.masking import Masker
from logclust.text.prose import PLACEHOLDER
from logclust.text.tokenizer import Tokenizer

Texts: TypeAlias = Sequence[str] | pa.Array | pa.ChunkedArray


def _as_string_array(texts: Texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray | pa.Array):
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise TypeError(f"texts must be a string array. Received: type={texts.type}")
        arr = texts
    elif isinstance(texts, str):
        raise TypeError("texts must be a sequence of str, not one str. Received: str")
    else:
        arr = pa.array(list(texts), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    if arr.null_count:
        raise ValueError(f"texts must not hold nulls. Received: {arr.null_count} null(s)")
    return arr


class Labeler:
    """Embeds and labels lines with a model bundle.

    Embeddings are the encoder's max-pooled last layer, L2-normalised (float32).
    """

    def __init__(
        self, bundle: Bundle, variant: str | None = None, num_threads: int = 1, batch_size: int = 64
    ) -> None:
        self.bundle = bundle
        self.masker = Masker(bundle.masking)
        self.tokenizer = Tokenizer.load(bundle.file("tokenizer.model"))
        self.encoder = Encoder(bundle.encoder_path(variant), num_threads, batch_size)
        if self.encoder.dim != bundle.dim:
            raise BundleError(
                f"Encoder output width {self.encoder.dim} differs from the manifest's "
                f"embedding_dim. Received: embedding_dim={bundle.dim}"
            )
        arrays = bundle.centroids()
        self.clusters: ClusterModel | None = None if arrays is None else ClusterModel(*arrays)
        self._masks: MaskCache | None = None

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        variant: str | None = None,
        num_threads: int = 1,
        batch_size: int = 64,
    ) -> Labeler:
        """Loads a bundle (the shipped default when `path` is None)."""
        return cls(Bundle.load(path), variant, num_threads, batch_size)

    @property
    def dim(self) -> int:
        return self.bundle.dim

    @property
    def threshold(self) -> float | None:
        """The bundle's calibrated clustering threshold (None: not calibrated)."""
        return self.bundle.threshold

    @property
    def group_threshold(self) -> float | None:
        """The bundle's calibrated group threshold (None: not calibrated)."""
        return self.bundle.group_threshold

    @property
    def semantic_from(self) -> int:
        """Where the semantic channel starts in an embedding (`Bundle.semantic_from`)."""
        return self.bundle.semantic_from

    @property
    def prose_embed(self) -> Callable[[list[str]], np.ndarray] | None:
        """Masked prose texts' `(n, dim)` points from the bundle's word vectors
        (`logclust.text.prose_vectors`), placeholders left out; None when the bundle has
        no such table (prose is then placed by its embedding)."""
        table = self.bundle.prose_vectors
        if table is None:
            return None
        return lambda texts: table.embed([PLACEHOLDER.sub(" ", t) for t in texts])

    @property
    def masks(self) -> MaskCache:
        """The masker behind a digit-shape cache (`logclust.text.mask_cache`: exact, each
        shape masked once, bounded), made on first use: logs repeat their shapes, so it
        masks far faster than row by row (`python -m bench.label_costs`)."""
        if self._masks is None:
            self._masks = MaskCache(self.masker)
        return self._masks

    def mask_distinct(self, texts: Texts) -> tuple[pa.Array, np.ndarray]:
        """`(distinct masked texts, each row's index into them)` of raw texts, masking each
        digit shape once: a log line is cut to its message (`logclust.text.header`), as the
        sidecar cuts it unless `keep_headers`."""
        return self.masks.mask_distinct(_as_string_array(texts))

    def embed(self, texts: Texts) -> np.ndarray:
        """`(n, dim)` float32 embeddings of raw texts (masked here first)."""
        distinct, rows = self.mask_distinct(texts)
        return self.embed_masked(distinct)[rows]

    def embed_masked(self, masked: Texts) -> np.ndarray:
        """Embeddings of already-masked texts (as `mask_distinct` gives them: a log line's
        message, `logclust.text.header`); each distinct text is encoded once."""
        arr = _as_string_array(masked)
        if len(arr) == 0:
            return np.zeros((0, self.dim), np.float32)
        enc = arr.dictionary_encode()
        uniq: list[str] = enc.dictionary.to_pylist()
        rows = self.tokenizer.encode(uniq, self.bundle.max_len)
        emb = self.encoder.encode(rows, self.bundle.max_len)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb[enc.indices.to_numpy(zero_copy_only=False)]

    def fit(
        self, texts: Texts, k: int | None = None, seed: int = 0, threshold: float | None = None
    ) -> ClusterModel:
        """Fits clusters on `texts` and keeps them.

        With `k` None, clusters are found as the sidecar finds them, by the same rules
        (`logclust.cluster.source`): word templates first, then distance (`threshold`,
        default the bundle's calibrated one), then one consolidation; the model keeps
        the templates, so `label` places a line that fits one without its embedding.
        With `k` given, KMeans with k clusters.
        """
        arr = _as_string_array(texts)
        if len(arr) == 0:
            raise ValueError("fit needs at least one text. Received: 0 texts")
        if k is not None:
            self.clusters = clustering.fit(self.embed(arr), k=k, seed=seed)
            return self.clusters
        # Distinct masked texts in the order they first appear, as a stream meets them.
        distinct, _ = self.mask_distinct(arr)
        tau = threshold or self.threshold or FALLBACK_THRESHOLD
        self.clusters = self._fit_as_stream(distinct.to_pylist(), self.embed_masked(distinct), tau)
        return self.clusters

    def _fit_as_stream(self, texts: list[str], x: np.ndarray, tau: float) -> ClusterModel:
        """The stream's rules over `texts` (embeddings `x`) in one source, one
        consolidation, then every text placed again; clusters as rows, each centroid the
        mean of its distinct texts."""
        n = len(texts)
        config = StreamClusterConfig(
            threshold=tau,
            max_clusters=max(4096, n),
            reservoir_size=max(1, n),
            background_consolidation=False,
            cache_size=max(16_384, n),
            memo_size=max(16_384, n),
        )
        clus = SourceClusterer("fit", config, self.dim, tau)
        inv, now = np.arange(n), np.zeros(n, np.int64)
        clus.assign(texts, lambda idx: x[idx], inv, now)
        job = clus.consolidation_job()
        if job is not None:
            clus.apply_consolidation(job, job.run())
        ids, _ = clus.assign(texts, lambda idx: x[idx], inv, now)
        live, rows = np.unique(ids, return_inverse=True)
        row_of = {int(c): r for r, c in enumerate(live.tolist())}
        sums = np.zeros((len(live), self.dim), np.float32)
        np.add.at(sums, rows, x)  # the mean of each cluster's distinct texts
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        dist = np.linalg.norm(x - centroids[rows], axis=1)
        templates = None
        if clus.template_index is not None:
            templates = TemplateIndex.from_doc(clus.template_index.to_doc())
            templates.remap(row_of)
        return ClusterModel(centroids, radii_of(rows, dist, len(live)), templates)

    def label(self, texts: Texts) -> np.ndarray:
        """int32 cluster id of each text (nearest centroid).

        Each distinct masked text is embedded and assigned once and its id gathered per
        row: an archive repeats a few thousand masked texts a million times, and the
        `(rows, dim)` embeddings (1.5 GB at 1M rows) and `(rows, k)` distances per row
        were most of the memory and of the time after masking and encoding.
        """
        if self.clusters is None:
            raise ValueError("No clusters: call fit() first or load a bundle with centroids.")
        distinct, rows = self.mask_distinct(texts)
        ids = self.clusters.template_ids(distinct.to_pylist())
        need = np.flatnonzero(ids < 0)
        if need.size:
            ids[need], _ = self.clusters.assign(self.embed_masked(distinct.take(pa.array(need))))
        return ids[rows]
