"""Baselines the bundle is compared with: TF-IDF + KMeans (scikit-learn) and Drain3."""

from __future__ import annotations

from typing import Any

import numpy as np
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer


def kmeans_ids(x: Any, k: int, seed: int = 0) -> np.ndarray:
    """scikit-learn's KMeans labels (the reference the bundle's clusters are scored with)."""
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def tfidf(texts: list[str]) -> Any:
    """Sparse TF-IDF rows of masked texts, tokens split at spaces and punctuation."""
    return TfidfVectorizer(token_pattern=r"[^\s=:,;()\[\]{}\"']+").fit_transform(texts)


def drain_ids(texts: list[str]) -> list[int]:
    """Drain3's cluster id of each text, default settings, in order."""
    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    miner = TemplateMiner(config=cfg)
    return [miner.add_log_message(t)["cluster_id"] for t in texts]
