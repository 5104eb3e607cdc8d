"""Test doubles: an embedder with the `Labeler` interface that needs no model files."""

from __future__ import annotations

import time
import zlib

import numpy as np
import pyarrow as pa

from logclust.cli.traffic import generate_traffic
from logclust.text.masking import Masker

# Request kinds whose masked texts the fake's trigram embedding keeps within its threshold
# of each other and apart from the rest (search and free-text feedback need a real model).
FAKE_KINDS = (
    "add_to_cart",
    "checkout",
    "set_currency",
    "login",
    "place_order",
    "get_product",
    "add_review",
    "update_address",
    "signup",
    "review",
)


def fake_traffic(rows: int, seed: int = 0, **kwargs: object) -> pa.Table:
    """The demo's traffic (`generate_traffic`) without the kinds the fake cannot tell
    apart (about `rows * 0.83` rows)."""
    t = generate_traffic(rows, seed=seed, **kwargs)  # type: ignore[arg-type]
    return t.filter(pa.compute.is_in(t.column("kind"), pa.array(FAKE_KINDS)))


class FakeLabeler:
    """Deterministic hashed character-trigram embedding of masked text, L2-normalised.

    Trigrams make texts that share most of their characters (same keys, a different
    currency code) close, as a trained model would, and different request shapes far.

    Same surface as `logclust.cluster.labeler.Labeler` for the sidecar: `masker`, `dim`,
    `embed_masked` (and `embed`). Counts calls so tests can check the cache.
    """

    def __init__(self, dim: int = 256) -> None:
        self.masker = Masker()
        self.dim = dim
        # Trigram embeddings of one request kind lie within 0.5 of each other, other
        # kinds 0.7 and more apart (search and free text aside: see tests/cluster).
        self.threshold: float | None = 0.6
        self.calls = 0
        self.rows_embedded = 0

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        texts = masked.to_pylist()
        self.calls += 1
        self.rows_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            padded = f"^{text or ''}$"
            for j in range(len(padded) - 2):
                h = zlib.crc32(padded[j : j + 3].encode())
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def embed(self, texts: list[str] | pa.Array) -> np.ndarray:
        arr = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())
        return self.embed_masked(self.masker.mask(arr))


class SlowLabeler(FakeLabeler):
    """`FakeLabeler` that takes `delay_s` per model call plus `per_text_s` per text (the
    GIL is free while it waits): batches stay in flight, bursts take time."""

    def __init__(self, delay_s: float = 0.0, per_text_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.per_text_s = per_text_s

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        time.sleep(self.delay_s + self.per_text_s * len(masked))
        return super().embed_masked(masked)
