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

With `[semantic] targets = "message"` the targets are the teacher's embeddings of each
loghub line's message instead (`message_targets`: header and placeholders dropped,
identifiers split), and with `tune_weights` step 5 tunes each piece's weight as well.

Steps 2 to 4 are linear, so the whole channel folds into one `(vocab, dim)` table and one
`(vocab,)` weight vector, which the exported encoder gathers and averages over the real
tokens (`training.model.SemanticPool`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
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


_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
_SEPARATOR = re.compile(r"[_.$/\\]+|(?<=\w)-(?=\w)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def teacher_text(masked: str) -> str:
    """A masked line as the teacher should read it: placeholders dropped, identifiers
    split into words (`NameSystem.addStoredBlock` -> `Name System add Stored Block`)."""
    t = _CAMEL.sub(" ", _SEPARATOR.sub(" ", _PLACEHOLDER.sub(" ", masked)))
    return " ".join(t.split())


def message_targets(
    texts: Sequence[str],
    messages: Mapping[str, str],
    targets: np.ndarray,
    teacher: EmbedFn,
) -> np.ndarray:
    """Teacher targets of what each line says: for a line of `messages` (masked line ->
    its masked message, the line without its header), the teacher's embedding of that
    message's `teacher_text`; other lines keep their `targets` row. The channel then
    learns to place a line by its message, not by its header or format."""
    idx = [i for i, t in enumerate(texts) if t in messages]
    out = np.array(targets, np.float32, copy=True)
    if idx:
        out[idx] = teacher([teacher_text(messages[texts[i]]) for i in idx])
    return out


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
    lines = _Lines(tok.encode(texts, max_len), tok.vocab_size)
    table, weights, tuned_cos, epochs = _tune(table, weights, lines, y, tr, va, cfg, rng)
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


class _Lines:
    """Token ids of lines, flattened, so the pool coefficients follow new piece weights."""

    def __init__(self, rows: Sequence[Sequence[int]], vocab: int) -> None:
        lengths = np.fromiter((len(r) for r in rows), np.int64, count=len(rows))
        self.ids = np.fromiter((i for r in rows for i in r), np.int64, count=int(lengths.sum()))
        self.starts = np.concatenate([[0], np.cumsum(lengths)])
        self.vocab = vocab

    def pool(self, idx: np.ndarray, weights: np.ndarray) -> sparse.csr_matrix:
        """Pool matrix of lines `idx` (in that order) under `weights`."""
        spans = [np.arange(self.starts[i], self.starts[i + 1]) for i in idx]
        pos = np.concatenate(spans) if spans else np.zeros(0, np.int64)
        line = np.repeat(np.arange(len(idx)), [len(x) for x in spans])
        ids = self.ids[pos]
        w = weights[ids].astype(np.float64)
        total = np.bincount(line, weights=w, minlength=len(idx))
        coef = w / np.maximum(total[line], 1e-12)
        return sparse.csr_matrix((coef, (line, ids)), shape=(len(idx), self.vocab))


def _tune(
    table: np.ndarray,
    weights: np.ndarray,
    lines: _Lines,
    y: np.ndarray,
    tr: np.ndarray,
    va: np.ndarray,
    cfg: SemanticConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Adam on the table rows (and, with `cfg.tune_weights`, on the log of each piece's
    weight): mean cosine between the pooled rows and the targets `y`; keeps the epoch
    with the best held-out cosine.

    Returns:
        (table, weights, held-out cosine, best epoch).
    """

    def val_cos(t: np.ndarray, w: np.ndarray) -> float:
        return _cosine(np.asarray(lines.pool(va, w) @ t), y[va])

    base = weights.astype(np.float64)
    u = np.zeros(len(base))  # log-weight offsets; special ids keep weight 0
    best = (table.copy(), weights.copy())
    best_cos, best_epoch = val_cos(table, weights), 0
    opt_t, opt_u = _Adam(table.shape, cfg.tune_lr), _Adam(u.shape, cfg.tune_weight_lr)
    for epoch in range(1, cfg.tune_epochs + 1):
        order = rng.permutation(tr)
        for i in range(0, len(order), cfg.tune_batch):
            b = order[i : i + cfg.tune_batch]
            w = base * np.exp(u)
            a = lines.pool(b, w)
            p = np.asarray(a @ table)
            norm = np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
            ph, yh = p / norm, _unit(y[b])
            dp = -(yh - np.sum(ph * yh, axis=1, keepdims=True) * ph) / norm / len(p)
            table = table - opt_t.step(np.asarray(a.T @ dp))
            if cfg.tune_weights:
                # d loss / d u_k = sum over lines of a_lk * dp_l . (t_k - p_l)
                at_dp = np.asarray(a.T @ dp)
                g = np.sum(at_dp * table, axis=1) - np.asarray(a.T @ np.sum(dp * p, axis=1))
                u = np.clip(u - opt_u.step(g), -cfg.weight_range, cfg.weight_range)
        w = (base * np.exp(u)).astype(np.float32)
        cos = val_cos(table, w)
        logger.info("semantic tuning epoch %d: held-out cosine %.4f", epoch, cos)
        if cos > best_cos:
            best, best_cos, best_epoch = (table.copy(), w), cos, epoch
        elif epoch - best_epoch >= cfg.tune_patience:
            break
    return best[0], best[1], best_cos, best_epoch


class _Adam:
    def __init__(self, shape: tuple[int, ...], lr: float) -> None:
        self.m, self.v, self.t, self.lr = np.zeros(shape), np.zeros(shape), 0, lr

    def step(self, g: np.ndarray) -> np.ndarray:
        """The update to subtract for gradient `g`."""
        b1, b2 = 0.9, 0.999
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        m_hat, v_hat = self.m / (1 - b1**self.t), self.v / (1 - b2**self.t)
        out: np.ndarray = self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        return out
