"""The semantic channel: a static piece table distilled from the teacher (training only).

Next-token training on a few thousand distinct log lines teaches the decoder the surface
of log formats, not what words mean: its max-pooled embedding puts "file not found" in
two formats far apart. The channel carries meaning from a general sentence-embedding
model (the teacher) with no training data at all, the way static distillation does:

1. every tokenizer piece is embedded by the teacher on its own (`_piece_texts`);
2. a line's vector is the SIF-weighted mean of its pieces' vectors (weight
   `a / (a + p(piece))`, with p from the unigram tokenizer's own log-probabilities, so
   frequent pieces and placeholders count little);
3. a ridge map from those means to the teacher's sentence embeddings of the training
   lines aligns the table with the teacher's sentence space (the penalty is chosen on
   held-out lines);
4. the table is projected onto the top `dim` principal directions of the teacher's
   sentence embeddings, so it stays small;
5. Adam tunes the table rows so the pooled lines point where the teacher's (projected)
   sentence embeddings do, keeping the epoch with the best held-out cosine.

Steps 2 to 4 are linear, so the whole channel folds into one `(vocab, dim)` table and one
`(vocab,)` weight vector, which the exported encoder gathers and averages over the real
tokens (`training.model.SemanticPool`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from logclust.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from training.config import SemanticConfig

logger = logging.getLogger(__name__)

EmbedFn = Callable[[Sequence[str]], np.ndarray]
FILE = "semantic.npz"


@dataclass
class SemanticTable:
    """What the encoder needs (`table`, `weights`) and how it was made (`stats`)."""

    table: np.ndarray  # (vocab, dim) float32
    weights: np.ndarray  # (vocab,) float32, 0 for the special ids
    stats: dict[str, float] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        keys = sorted(self.stats)
        np.savez(
            path,
            table=self.table,
            weights=self.weights,
            stat_keys=np.array(keys),
            stat_values=np.array([self.stats[k] for k in keys], np.float64),
        )

    @classmethod
    def load(cls, path: Path) -> SemanticTable:
        with np.load(path) as z:
            stats = dict(zip(z["stat_keys"].tolist(), z["stat_values"].tolist(), strict=True))
            return cls(z["table"].astype(np.float32), z["weights"].astype(np.float32), stats)


def _piece_texts(tok: Tokenizer) -> list[str]:
    """Each piece as the teacher should read it (word-start marker dropped)."""
    out = []
    for i in range(tok.vocab_size):
        p = tok.piece(i)
        out.append(p.replace("\u2581", " ").strip() or p)
    return out


def sif_weights(tok: Tokenizer, a: float) -> np.ndarray:
    """`a / (a + p)` per piece, p from the tokenizer's unigram log-probabilities."""
    p = np.exp(np.array([tok.score(i) for i in range(tok.vocab_size)], np.float64))
    w = a / (a + p)
    w[[PAD_ID, UNK_ID, BOS_ID, EOS_ID]] = 0.0
    return w.astype(np.float32)


def pool_matrix(rows: Sequence[Sequence[int]], weights: np.ndarray) -> sparse.csr_matrix:
    """Sparse `(n, vocab)` matrix whose product with a table is each row's weighted mean."""
    lengths = np.fromiter((len(r) for r in rows), np.int64, count=len(rows))
    ids = np.fromiter((i for r in rows for i in r), np.int64, count=int(lengths.sum()))
    line = np.repeat(np.arange(len(rows)), lengths)
    w = weights[ids].astype(np.float64)
    total = np.bincount(line, weights=w, minlength=len(rows))
    coef = w / np.maximum(total[line], 1e-9)
    return sparse.csr_matrix((coef, (line, ids)), shape=(len(rows), len(weights)))


def pooled(rows: Sequence[Sequence[int]], table: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the table rows of each id row (numpy reference of the encoder)."""
    return np.asarray(pool_matrix(rows, weights) @ table.astype(np.float64))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def build(
    tok: Tokenizer,
    texts: Sequence[str],
    teacher: EmbedFn,
    cfg: SemanticConfig,
    max_len: int,
    text_targets: np.ndarray | None = None,
) -> SemanticTable:
    """The channel for `tok` from the teacher's piece and sentence embeddings of `texts`
    (masked training lines; `text_targets` are their teacher embeddings when known)."""
    if len(texts) < 20:
        raise ValueError(f"The semantic channel needs at least 20 lines. Received: {len(texts)}")
    pieces = np.asarray(teacher(_piece_texts(tok)), np.float64)
    weights = sif_weights(tok, cfg.sif_a)
    target = np.asarray(teacher(list(texts)) if text_targets is None else text_targets, np.float64)
    pool = pool_matrix(tok.encode(texts, max_len), weights)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(texts))
    n_val = max(1, int(len(texts) * cfg.val_fraction))
    va, tr = order[:n_val], order[n_val:]
    lam, align = _align(_unit(np.asarray(pool @ pieces)), target, tr, va, cfg.ridge_grid)
    centred = target - target.mean(axis=0)
    dim = min(cfg.dim, centred.shape[1])
    proj = np.linalg.svd(centred, full_matrices=False)[2][:dim].T  # teacher's top directions
    table = pieces @ align @ proj
    y = target @ proj
    ridge_cos = _cosine(np.asarray(pool[va] @ table), y[va])
    table, tuned_cos, epochs = _tune(table, pool, y, tr, va, cfg, rng)
    stats = {
        "ridge_lambda": lam,
        "val_cosine_ridge": ridge_cos,
        "val_cosine_to_teacher": tuned_cos,
        "tune_epochs": float(epochs),
        "dim": float(dim),
        "train_lines": float(len(tr)),
        "val_lines": float(len(va)),
    }
    logger.info(
        "semantic channel: dim %d, ridge %.3g, held-out cosine to teacher %.3f (ridge %.3f)",
        dim,
        lam,
        tuned_cos,
        ridge_cos,
    )
    return SemanticTable(table.astype(np.float32), weights, stats)


def _align(
    x: np.ndarray, target: np.ndarray, tr: np.ndarray, va: np.ndarray, grid: Sequence[float]
) -> tuple[float, np.ndarray]:
    """The ridge map from pooled piece vectors to sentence embeddings, fitted on `tr`,
    with the penalty of `grid` that points held-out lines closest to the teacher."""
    scores = {lam: _cosine(x[va] @ _ridge(x[tr], target[tr], lam), target[va]) for lam in grid}
    lam = max(scores, key=lambda k: scores[k])
    return lam, _ridge(x[tr], target[tr], lam)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(_unit(a) * _unit(b), axis=1)))


def _tune(
    table: np.ndarray,
    pool: sparse.csr_matrix,
    y: np.ndarray,
    tr: np.ndarray,
    va: np.ndarray,
    cfg: SemanticConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, int]:
    """Adam on the table rows: mean cosine between the pooled rows and the teacher's
    projected sentence embeddings; keeps the epoch with the best held-out cosine."""
    best, best_cos, best_epoch = table.copy(), _cosine(np.asarray(pool[va] @ table), y[va]), 0
    m, v = np.zeros_like(table), np.zeros_like(table)
    b1, b2, t = 0.9, 0.999, 0
    for epoch in range(1, cfg.tune_epochs + 1):
        order = rng.permutation(tr)
        for i in range(0, len(order), cfg.tune_batch):
            a = pool[order[i : i + cfg.tune_batch]]
            p = np.asarray(a @ table)
            norm = np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
            ph, yh = p / norm, _unit(y[order[i : i + cfg.tune_batch]])
            dp = -(yh - np.sum(ph * yh, axis=1, keepdims=True) * ph) / norm / len(p)
            g = np.asarray(a.T @ dp)
            t += 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            step = cfg.tune_lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
            table = table - step
        cos = _cosine(np.asarray(pool[va] @ table), y[va])
        logger.info("semantic tuning epoch %d: held-out cosine %.4f", epoch, cos)
        if cos > best_cos:
            best, best_cos, best_epoch = table.copy(), cos, epoch
        elif epoch - best_epoch >= cfg.tune_patience:
            break
    return best, best_cos, best_epoch
