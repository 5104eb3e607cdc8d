"""Weighted k-means in numpy alone (`Labeler.fit` with k given, the bundle's default
centroids).

Serving never imports scikit-learn or SciPy (large libraries whose memory stays resident
once imported), so the fit lives here instead.
The algorithm follows scikit-learn's `KMeans` (greedy k-means++ seeding, Lloyd
iterations, the best of `n_init` runs by inertia, empty clusters re-seeded from the
farthest points) closely enough that its labels agree on separable data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KMeansResult:
    """One k-means fit.

    Attributes:
        centroids: `(k, dim)` in the input's precision (float32 or float64).
        labels: `(n,)` int64 index of each row's centroid.
        inertia: weighted sum of squared distances of rows to their centroid.
    """

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float


def _dtype(x: np.ndarray) -> type:
    """float32 rows are fitted in float32 (half the memory, as scikit-learn does), any
    other input in float64."""
    return np.float32 if np.asarray(x).dtype == np.float32 else np.float64


def sq_distances(
    x: np.ndarray, c: np.ndarray, x_sq: np.ndarray | None = None, c_sq: np.ndarray | None = None
) -> np.ndarray:
    """`(n, k)` squared Euclidean distances `|x|^2 - 2 x.c + |c|^2`, one matrix product for
    the whole batch. Not clipped: float cancellation can leave values just below zero.

    Args:
        x: `(n, dim)` rows.
        c: `(k, dim)` centres.
        x_sq: `|x|^2` per row when the caller has it already.
        c_sq: `|c|^2` per centre when the caller has it already.
    """
    x_sq = np.einsum("ij,ij->i", x, x) if x_sq is None else x_sq
    c_sq = np.einsum("ij,ij->i", c, c) if c_sq is None else c_sq
    return x_sq[:, None] - 2.0 * (x @ c.T) + c_sq[None, :]


def _sq_dist(x: np.ndarray, x_sq: np.ndarray, c: np.ndarray) -> np.ndarray:
    """`sq_distances` clipped at zero."""
    return np.maximum(sq_distances(x, c, x_sq), 0.0)


def _kmeans_plusplus(
    x: np.ndarray, x_sq: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Greedy k-means++: each new centre is the best of a few weighted draws."""
    n = len(x)
    trials = 2 + int(np.log(k))
    centers = [int(rng.choice(n, p=w / w.sum()))]
    closest = _sq_dist(x, x_sq, x[centers[:1]])[:, 0]  # (n,)
    for _ in range(1, k):
        cum = np.cumsum(w * closest)
        if cum[-1] <= 0.0:  # every row sits on a centre: any row will do
            cand = rng.choice(n, trials)
        else:
            cand = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1]), n - 1)
        d = np.minimum(closest[None, :], _sq_dist(x, x_sq, x[cand]).T)  # (trials, n)
        best = int(np.argmin(d @ w))
        closest = d[best]
        centers.append(int(cand[best]))
    return x[centers].copy()


def _lloyd(
    x: np.ndarray, x_sq: np.ndarray, w: np.ndarray, c: np.ndarray, max_iter: int, tol: float
) -> KMeansResult:
    k = len(c)
    for _ in range(max_iter):
        d2 = _sq_dist(x, x_sq, c)
        labels = np.argmin(d2, axis=1)
        onehot = np.zeros((k, len(x)), x.dtype)
        onehot[labels, np.arange(len(x))] = w
        mass = onehot.sum(axis=1)
        new = onehot @ x
        empty = np.flatnonzero(mass <= 0.0)
        nonempty = mass > 0.0
        new[nonempty] /= mass[nonempty, None]
        if empty.size:
            # Re-seed each empty cluster at one of the rows worst served by its centroid.
            far = np.argsort(-d2[np.arange(len(x)), labels], kind="stable")[: empty.size]
            new[empty] = x[far]
        shift = float(np.sum((new - c) ** 2))
        c = new
        if shift <= tol and not empty.size:
            break
    d2 = _sq_dist(x, x_sq, c)
    labels = np.argmin(d2, axis=1)
    inertia = float(np.dot(w, d2[np.arange(len(x)), labels]))
    return KMeansResult(c, labels, inertia)


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    n_init: int = 4,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> KMeansResult:
    """Weighted k-means, the lowest-inertia of `n_init` k-means++ starts.

    Args:
        x: `(n, dim)` rows, `n >= k`.
        k: number of clusters.
        n_init: independent starts; the one with the lowest inertia is kept.
        seed: seeds `np.random.default_rng`, so equal inputs give equal fits.
        sample_weight: `(n,)` non-negative weights with a positive sum; None weighs rows equally.
        max_iter: Lloyd iterations per start.
        tol: stop once the centroids move less than `tol` times the mean per-feature
            variance (squared, summed), as scikit-learn does.
    """
    if x.ndim != 2 or not 1 <= k <= x.shape[0]:
        raise ValueError(
            f"kmeans needs (n, dim) rows with 1 <= k <= n. Received: shape={x.shape}, k={k}"
        )
    if n_init < 1:
        raise ValueError(f"n_init must be at least 1. Received: n_init={n_init}")
    xf: np.ndarray = np.asarray(x, _dtype(x))
    w = np.ones(len(xf)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != (len(xf),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            "sample_weight must be (n,) non-negative with a positive sum. "
            f"Received: shape={w.shape}"
        )
    # Centring keeps x.c and |x|^2 of similar size, so the expanded distance stays accurate.
    mean = np.average(xf, axis=0, weights=w).astype(xf.dtype)
    xf = xf - mean
    x_sq = np.einsum("ij,ij->i", xf, xf)
    abs_tol = tol * float(np.mean(np.var(xf, axis=0)))
    rng = np.random.default_rng(seed)
    best: KMeansResult | None = None
    for _ in range(n_init):
        start = _kmeans_plusplus(xf, x_sq, w, k, rng)
        run = _lloyd(xf, x_sq, w, start, max_iter, abs_tol)
        if best is None or run.inertia < best.inertia:
            best = run
    assert best is not None
    return KMeansResult(best.centroids + mean, best.labels, best.inertia)
