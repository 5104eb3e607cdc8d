"""Measurements of a bundle: clustering quality against templates and the semantic probe,
next-token accuracy, Keras vs TFLite parity, encoder throughput."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from logclust.cluster.labeler import Labeler
from logclust.cluster.quality import ari, grouping_accuracy
from logclust.embed.bundle import Bundle
from logclust.text.masking import Masker
from logclust.text.tokenizer import Tokenizer, pad
from training import data as data_mod
from training import teacher
from training.config import ModelConfig
from training.evaluate.baselines import drain_ids, kmeans_ids, tfidf

SEEDS = (0, 1, 2, 3, 4)  # KMeans restarts differ by a few hundredths of ARI: report means


def over_seeds(truth: list[str], x: Any, k: int) -> dict[str, float]:
    """Mean ARI and GA (and the ARI's spread) of KMeans over `SEEDS`."""
    preds = [list(kmeans_ids(x, k, seed)) for seed in SEEDS]
    aris = [ari(truth, p) for p in preds]
    return {
        "ari": float(np.mean(aris)),
        "ari_std": float(np.std(aris)),
        "ga": float(np.mean([grouping_accuracy(truth, p) for p in preds])),
    }


def split_parts(emb: np.ndarray, d_model: int) -> dict[str, np.ndarray]:
    """The decoder part and the semantic-channel part of bundle embeddings, each unit length."""
    out = {}
    for name, part in (("decoder", emb[:, :d_model]), ("channel", emb[:, d_model:])):
        if part.shape[1]:
            out[name] = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
    return out


def cluster_quality(
    lab: Labeler, sets: dict[str, data_mod.LogSet], parts: bool = False
) -> dict[str, dict[str, float]]:
    """Per system: ARI and grouping accuracy of the three methods on masked messages
    (KMeans methods: mean over `SEEDS`); with `parts`, also each part of the embedding."""
    out = {}
    for name, ls in sets.items():
        assert ls.templates is not None
        masked = lab.masker.mask_texts(ls.content)
        k = len(set(ls.templates))
        emb = lab.embed_masked(masked)
        inputs: dict[str, Any] = {"logclust": emb, "tfidf": tfidf(masked)}
        if parts and lab.dim > lab.bundle.d_model:
            inputs.update(split_parts(emb, lab.bundle.d_model))
        row: dict[str, float] = {}
        for m, x in inputs.items():
            for key, v in over_seeds(ls.templates, x, min(k, len(set(masked)))).items():
                row[f"{m}_{key}"] = v
        drain = drain_ids(masked)
        row["drain3_ari"] = ari(ls.templates, drain)
        row["drain3_ga"] = grouping_accuracy(ls.templates, drain)
        row["templates"] = k
        out[name] = row
    return out


PROBE = Path(__file__).resolve().parents[1] / "semantic_probe.tsv"


def read_probe(path: Path = PROBE) -> tuple[list[str], list[str]]:
    """(groups, lines) of the hand-written cross-format probe (`#` lines are comments)."""
    rows = [
        ln.split("\t", 1)
        for ln in path.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    return [g for g, _ in rows], [t for _, t in rows]


def semantic_probe(lab: Labeler, path: Path = PROBE) -> dict[str, float]:
    """Mean ARI over `SEEDS` of KMeans (k = number of groups) on the probe: logclust, each
    part of its embedding, TF-IDF, the teacher."""
    groups, lines = read_probe(path)
    k = len(set(groups))
    masked = lab.masker.mask_texts(lines)
    emb = lab.embed_masked(masked)
    inputs: dict[str, Any] = {"logclust": emb, "tfidf": tfidf(masked)}
    if lab.dim > lab.bundle.d_model:
        inputs.update(split_parts(emb, lab.bundle.d_model))
    if teacher.available():
        with tempfile.TemporaryDirectory() as tmp:
            inputs["teacher_minilm"] = teacher.teacher_embeddings(masked, Path(tmp))
    return {m: over_seeds(groups, x, k)["ari"] for m, x in inputs.items()}


def parity(bundle_dir: Path, encode: Any, lab: Labeler, texts: list[str]) -> dict[str, float]:
    """Cosine between the Keras encoder's and the TFLite embeddings (min, mean) per variant."""
    import tensorflow as tf

    rows = lab.tokenizer.encode(lab.masker.mask_texts(texts), lab.bundle.max_len)
    ids, _ = pad(rows)
    ref = encode(tf.constant(ids)).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    res = {}
    for v in ("f32", "int8"):
        got = Labeler.load(bundle_dir, variant=v).embed(texts)
        cos = np.sum(ref * got, axis=1)
        res[f"{v}_min"], res[f"{v}_mean"] = float(cos.min()), float(cos.mean())
    return res


def throughput(bundle_dir: Path, texts: list[str], repeats: int = 2) -> dict[str, float]:
    """Encoder lines/s on one thread over distinct masked lines, per variant."""
    res = {}
    for v in ("f32", "int8"):
        lab = Labeler.load(bundle_dir, variant=v, num_threads=1)
        rows = lab.tokenizer.encode(lab.masker.mask_texts(texts), lab.bundle.max_len)
        lab.encoder.encode(rows[:64], lab.bundle.max_len)
        t = time.perf_counter()
        for _ in range(repeats):
            lab.encoder.encode(rows, lab.bundle.max_len)
        res[v] = repeats * len(rows) / (time.perf_counter() - t)
    return res


def next_token(
    bundle: Bundle, weights: Path, android: data_mod.LogSet, val_texts: list[str]
) -> tuple[Any, dict[str, float]]:
    """The decoder rebuilt from `weights` and its next-token accuracy on held-out Android
    (every raw line, masked) and on the validation lines."""
    from training.model import build
    from training.train import next_token_accuracy

    mcfg = ModelConfig(**bundle.manifest["model_config"])
    model = build(mcfg)
    model.load_weights(str(weights))
    tok = Tokenizer.load(bundle.file("tokenizer.model"))
    masked = Masker(bundle.masking).mask_texts(android.raw)
    uniq, counts = np.unique(np.asarray(masked, dtype=object), return_counts=True)
    acc = {
        "android_raw": next_token_accuracy(model, tok, list(uniq), mcfg.max_len - 1, list(counts)),
        "validation": next_token_accuracy(model, tok, val_texts, mcfg.max_len - 1),
    }
    return model, acc
