"""Centres of a sample of unit points with k never given (`fit_centres`): spherical
KMeans, the prediction strength of a k, and the silhouette.

Choosing k: **prediction strength** (Tibshirani and Walther, 2005). The sample is cut in
two halves; each half is clustered with k centres, and the second half's rows are also
assigned to the first half's centres. A k is right when, in each cluster of the second
half, nearly every pair of rows is also kept together by the first half's centres (the
clusters are found again, not cut out of a blob). A k is stable when its strength
reaches `strength` (0.8 by default, the paper's); each strength is the median of 3
random halvings, each half the best of 4 KMeans runs. The k in use needs a little less
(`_KEEP`): topics that lie close together have a strength that wavers around the bar
from one sample to the next, and each flip of k renames a topic's rows. Of the stable
ks, the largest whose mean silhouette is within 5% of the best wins (a k that cuts a
topic in two is stable too when the topic has parts, but its silhouette drops; two
close topics score about as well merged as apart, and apart is the safer guess). With
topics known, k is sought within two of their number (a refit moves a few topics, at a
fraction of the full search's cost).

Free text whose topics overlap too much has no stable k: then the fewest topics whose
silhouette is within 10% of the best is taken when it reaches `min_silhouette` (the
silhouette of overlapping topics creeps up with k as they are cut finer), else the
sample is one topic (one kind of text, however worded: a silhouette of random splits of
a blob stays near 0.03; below 64 rows, always one topic).
"""

from __future__ import annotations

import numpy as np

# Rows below which the silhouette is too noisy to choose k by (a sample of 64 rows
# already tells a few topics apart when their points do; below, one topic).
_SILHOUETTE_ROWS = 64
# Halvings of the sample for the prediction strength, and k-means++ seeds for each half
# (one KMeans run caught in a poor optimum otherwise decides a k).
_SPLITS = 3
_HALF_SEEDS = 4
# How far below `strength` the k in use stays stable: the strength of a k whose topics
# lie close together wavers around the bar from one sample to the next, and each flip
# of k renames a topic's rows.
_KEEP = 0.1
# Silhouettes within this share of the best count as tied. Among stable ks (`_TIED`)
# the most topics win: two close topics score about as well merged as apart, and
# prediction strength vouches for each; a k that cuts a topic in two scores clearly
# less. With no stable k (`_TIED_BLOB`) the fewest win: the silhouette of overlapping
# topics creeps up with k as it cuts them finer.
_TIED = 0.05
_TIED_BLOB = 0.1
# Rows a topic of the silhouette's k needs on average: in a sample of 128 rows of one
# kind of text, eight chance clusters of 16 rows reach a silhouette of 0.08.
_SILHOUETTE_ROWS_PER_K = 16


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of `x` scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kmeans(
    x: np.ndarray, k: int, seed: int, iters: int = 25, init: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`(labels, centres)` of spherical KMeans on unit rows `x`, from the centres `init`
    or else from k-means++ seeds."""
    c = _seeds(x, k, seed) if init is None else init.astype(np.float32, copy=True)
    labels = np.full(len(x), -1)
    for _ in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        if (new == labels).all():
            break
        labels = new
        onehot = np.eye(k, dtype=np.float32)[labels]
        sums = onehot.T @ x
        filled = onehot.sum(0) > 0
        c[filled] = unit_rows(sums[filled])
    return labels, c


def _seeds(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++: `(k, dim)` rows of `x`, each drawn by its squared distance to the
    rows drawn before."""
    rng = np.random.default_rng(seed)
    n = len(x)
    centres = [x[int(rng.integers(n))]]
    d2 = np.full(n, np.inf)
    for _ in range(1, k):
        d2 = np.minimum(d2, np.maximum(2.0 - 2.0 * (x @ centres[-1]), 0.0))
        total = float(d2.sum())
        pick = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres.append(x[pick])
    return np.stack(centres)


def silhouette(dist: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean silhouette of `labels` given the pairwise distances `dist`."""
    onehot = np.eye(k, dtype=dist.dtype)[labels]  # (n, k)
    sums = dist @ onehot  # (n, k): summed distance of each row to each cluster
    counts = onehot.sum(0)
    rows = np.arange(len(labels))
    own = counts[labels]
    a = sums[rows, labels] / np.maximum(own - 1, 1)
    mean = sums / np.maximum(counts, 1)
    mean[rows, labels] = np.inf
    mean[:, counts == 0] = np.inf
    b = mean.min(1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[own <= 1] = 0.0
    return float(s.mean())


def _best(
    x: np.ndarray, k: int, seeds: int, init: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`(labels, centres)` of the KMeans run (k-means++ seeds `0..seeds-1`, and `init`
    when given) whose rows lie closest to their centres."""
    runs = [kmeans(x, k, s) for s in range(seeds)]
    if init is not None and len(init) == k:
        runs.append(kmeans(x, k, -1, init=init))
    return max(runs, key=lambda r: float(np.max(x @ r[1].T, axis=1).sum()))


def prediction_strength(x: np.ndarray, k: int, rng: np.random.Generator) -> float:
    """The prediction strength of `k` on unit rows `x` (see the module docstring): the
    least share, over the second half's clusters, of pairs of rows that the first
    half's centres keep together; the median over `_SPLITS` random halvings."""
    out = []
    for _ in range(_SPLITS):
        order = rng.permutation(len(x))
        first, second = x[order[::2]], x[order[1::2]]
        _, centres = _best(first, k, _HALF_SEEDS)
        labels, _ = _best(second, k, _HALF_SEEDS)
        kept = np.argmax(second @ centres.T, axis=1)
        worst = 1.0
        for j in range(k):
            rows = kept[labels == j]
            n = rows.size
            if n < 2:
                continue
            same = np.bincount(rows, minlength=k).astype(np.float64)
            worst = min(worst, float((same * (same - 1)).sum() / (n * (n - 1))))
        out.append(worst)
    return float(np.median(out))


def fit_centres(
    x: np.ndarray,
    max_k: int,
    min_silhouette: float,
    strength: float = 0.8,
    current: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """`(k, dim)` unit centres of the unit rows `x`, k never given (see the module
    docstring). `current`: centres in use, refined as they are beside the k-means++
    seeds when their k is chosen, so the topics known compete whole; their k stays
    stable down to `strength - _KEEP`. `seed` draws the halves (the same sample and
    seed give the same centres)."""
    rng = np.random.default_rng(seed)
    ks = range(2, max_k + 1)
    held = 0 if current is None else len(current)
    if held > 1:  # topics move a few at a refit
        ks = range(max(2, held - 2), min(max_k, held + 2) + 1)
    stable = []
    for k in ks:
        if len(x) >= 32 * k:
            bar = strength - _KEEP if k == held else strength
            if prediction_strength(x, k, rng) >= bar:
                stable.append(k)
    if stable:
        got = None
        if len(stable) > 1:  # the most topics of about the best silhouette
            got = _by_silhouette(x, stable, -1.0, current, most=True)
        return got if got is not None else _best(x, max(stable), 3, current)[1]
    if len(x) >= _SILHOUETTE_ROWS:
        fits = [k for k in ks if len(x) >= _SILHOUETTE_ROWS_PER_K * k]
        got = _by_silhouette(x, fits, min_silhouette, current, most=False)
        if got is not None:
            return got
    return unit_rows(x.sum(0, keepdims=True))


def _by_silhouette(
    x: np.ndarray, ks: list[int], floor: float, current: np.ndarray | None, most: bool
) -> np.ndarray | None:
    """The centres of the most (`most`) or else the fewest topics (k in `ks`) whose
    mean silhouette is above `floor` and tied with the best (`_TIED`, `_TIED_BLOB`),
    each topic more than a few stray rows; None when no k qualifies."""
    dist = np.sqrt(np.maximum(2.0 - 2.0 * (x @ x.T), 0.0))
    np.fill_diagonal(dist, 0.0)
    smallest = max(3, len(x) // 40)
    scored: list[tuple[float, np.ndarray]] = []
    for k in ks:
        labels, c = _best(x, k, 3, current)
        if np.bincount(labels, minlength=k).min() >= smallest:
            score = silhouette(dist, labels, k)
            if score > floor:
                scored.append((score, c))
    if not scored:
        return None
    top = max(score for score, _ in scored)
    bar = top - abs(top) * (_TIED if most else _TIED_BLOB)
    tied = [c for score, c in scored if score >= bar]  # in order of k; holds the best
    return tied[-1] if most else tied[0]
