"""The arithmetic of sampling by cluster (`logclust.sidecar.sampling`): seeded phases,
grouping rows by cluster, latency strata and what they keep, segment positions, and the
water level that shares a budget among clusters. Pure functions on arrays."""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np

# Rows of one source decided with one water level and one decay step: short segments
# while a source is young (its counts change fast), then `SEGMENT_ROWS`.
FIRST_SEGMENT_ROWS = 16
SEGMENT_ROWS = 1024
# The tail stratum: rows above a cluster's running TAIL_QUANTILE of latency are kept with
# probability min(1, TAIL_BOOST p), the body the rest (same expected kept rows, at least
# the floor). With the tail whole, a weighted p99 counts every row near it with weight 1:
# the p98 leaves room for the estimate's noise and for the window's own. TAIL_BOOST * F/4
# (the least p) >= 1: at F = 0.1 a tail is kept whole whatever the cluster's share.
TAIL_QUANTILE = 0.98
TAIL_BOOST = 50.0
assert (1.0 - TAIL_QUANTILE) * TAIL_BOOST >= 1.0  # the tail costs what the body gives up
# Strata of a cluster's rows, each drawn apart: the body, the tail, and the rows without
# a latency (kept at p, so that their count holds too).
BODY, TAIL, NO_LATENCY = 0, 1, 2
STRATA = 3
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), 0x9E3779B97F4A7C15


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 values (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


class Groups:
    """The rows of a part grouped by cluster id, from one stable sort.

    Attributes:
        order: `(m,)` rows by cluster id (ascending), stream order within.
        ids: `(u,)` distinct cluster ids, ascending.
        bounds: `(u + 1,)` where each cluster begins in `order`, then m.
        starts: `(u,)` where each cluster begins in `order`.
        per: `(u,)` rows per cluster.
        group: `(m,)` the index into `ids` of each row of `order`.
    """

    def __init__(self, ids: np.ndarray, key: np.ndarray) -> None:
        m = ids.size
        # A stable sort is one permutation whatever the algorithm or the key's type: `key`
        # is the ids as uint16 (a radix sort) when they fit.
        self.order = np.argsort(key, kind="stable")
        ordered = ids[self.order]
        new = np.empty(m + 1, bool)
        new[0] = new[m] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new[1:m])
        self.bounds = new.nonzero()[0]
        self.starts = self.bounds[:-1]
        self.ids = ordered[self.starts]
        self.per = self.bounds[1:] - self.starts
        self.group = np.add.accumulate(new[:m], dtype=np.intp)
        self.group -= 1


def sort_key(ids: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """What `Groups` sorts `ids` (from `lo` to `hi`) by: as uint16 when they fit (a
    radix sort), else as they are."""
    return ids.astype(np.uint16) if 0 <= lo and hi < 1 << 16 else ids


def phase_keys(key: int) -> np.ndarray:
    """`(STRATA,)` uint64: what seeds the phases of each stratum of a source with hash
    key `key` (`stratum_phases`)."""
    mask = 0xFFFFFFFFFFFFFFFF
    keys = [(key ^ (mask * (j > 0)) ^ (j << 32)) for j in range(STRATA)]
    return np.array([(k + _GOLDEN) & mask for k in keys], np.uint64)


def stratum_phases(keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`(u, STRATA)` phases of clusters `ids`, each stratum seeded by its `phase_keys`: a
    uniform phase in [0, 1) from a hash of (the stratum's key, id)."""
    x = _mix(ids.astype(np.uint64)[:, None] * _M2 + keys)  # wrapping, no warning on arrays
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def source_key(seed: int, source: str) -> int:
    """The 64-bit hash key of a source under `seed` (stable across processes)."""
    digest = hashlib.blake2b(f"{seed}\0{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _strata_p(p: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The body and tail probabilities of clusters with base probability `p`."""
    tail = np.minimum(1.0, TAIL_BOOST * p)
    body = np.maximum(np.minimum(p, floor), (p - (1.0 - TAIL_QUANTILE) * tail) / TAIL_QUANTILE)
    return body, tail


def tilt(p: np.ndarray, stratum: np.ndarray, split: np.ndarray, floor: float) -> np.ndarray:
    """Probabilities per stratum (`BODY`, `TAIL`, `NO_LATENCY`) for the rows that `split`
    marks (their cluster has a tail estimate and enough rows per window): the tail
    `TAIL_BOOST` times `p` (capped at 1), the body what is left of `p` for the same
    expected kept rows (at least `floor`, or p if lower); rows without a latency and
    rows of other clusters keep `p`."""
    body, tail = _strata_p(p, floor)
    tilted = np.choose(stratum, (body, tail, p))
    return np.where(split, tilted, p)


def kept_share(p: np.ndarray, split: np.ndarray, floor: float) -> np.ndarray:
    """The share of a cluster's rows expected kept at base probability `p`: p, or for a
    `split` cluster what its strata keep (more than p where the tail costs more than the
    body can give up)."""
    body, tail = _strata_p(p, floor)
    return np.where(split, TAIL_QUANTILE * body + (1.0 - TAIL_QUANTILE) * tail, p)


@functools.lru_cache(maxsize=64)
def _kept_at_floor(floor: float) -> float:
    """`kept_share` of a split cluster at p = `floor` (scalar arithmetic, the same)."""
    q = TAIL_QUANTILE
    tail = min(1.0, TAIL_BOOST * floor)
    body = max(min(floor, floor), (floor - (1.0 - q) * tail) / q)
    return q * body + (1.0 - q) * tail


def segment_quantiles(
    cix: np.ndarray, latency: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The clusters among `cix` (ascending) and the `TAIL_QUANTILE` of each one's
    latencies (all finite): the value at rank `floor(q (n - 1))` of its sorted ones."""
    by_value = np.argsort(latency)
    c = cix[by_value]
    key = c.astype(np.uint16) if k <= 1 << 16 else c  # a radix sort when it fits
    values = latency[by_value[np.argsort(key, kind="stable")]]  # by cluster, then value
    n = np.bincount(cix, minlength=k)
    at = np.flatnonzero(n)
    n = n[at]
    pick = np.cumsum(n) - n + (TAIL_QUANTILE * (n - 1)).astype(np.int64)
    return at, values[pick]


def segment_end(rows: int) -> int:
    """The row count where the segment holding row `rows` of a source ends: powers of
    two from `FIRST_SEGMENT_ROWS` up to `SEGMENT_ROWS`, then every `SEGMENT_ROWS`
    (fixed positions: decisions do not depend on the batches)."""
    if rows < SEGMENT_ROWS:
        end = FIRST_SEGMENT_ROWS
        while end <= rows:
            end *= 2
        return end
    return (rows // SEGMENT_ROWS + 1) * SEGMENT_ROWS


def water_level(
    counts: np.ndarray,
    target: float,
    floor: float = 0.0,
    split: np.ndarray | None = None,
    ascending: np.ndarray | None = None,
) -> float:
    """The level tau at which the clusters keep `target` rows: each cluster with `n`
    rows is kept at p = clip(tau / n, floor, 1), so it keeps `min(n, tau)` rows, or
    `floor * n` where the floor is higher, or what its strata keep (`kept_share`) for the
    clusters `split` marks; inf when every row fits, 0 when the floors alone exceed it.

    What a cluster keeps is piecewise linear in tau, so the sum is too: its breaks are
    sorted once and the level is read off between two of them (no iteration).

    Args:
        counts: `(k,)` non-negative rows per cluster.
        target: rows to keep, > 0.
        floor: the least p.
        split: `(k,)` the clusters whose tail is kept apart (None: none).
        ascending: `(k,)` indices that sort `counts`, or nearly (the last segment's
            order): a faster sort where no cluster is split, the same level.
    """
    some = counts > 0
    n = counts[some]
    total = float(n.sum())
    if target >= total:
        return math.inf
    on = None if split is None else split[some]
    if on is not None and not on.any():
        on = None
    # Rows kept at the floor (tau <= floor * n); a split cluster keeps its tail too.
    base = floor * total
    if on is not None:
        base += (_kept_at_floor(floor) - floor) * float(n[on].sum())
    if base >= target:
        return 0.0
    if on is None and ascending is not None:  # nearly sorted runs: a fast merge
        n = counts[ascending]
        n = n[n > 0]
    return _solve(*_sorted_breaks(*_breaks(n, on, floor)), base, target)


def sorted_level(total: float, n: np.ndarray, target: float, floor: float) -> float:
    """`water_level` of clusters none of which is split, from the sum of their counts
    (`float(counts[counts > 0].sum())`, in their own order) and their positive counts
    in ascending order `n`: the same level, without sorting them again."""
    if target >= total:
        return math.inf
    base = floor * total
    if base >= target:
        return 0.0
    if n.size * n[0] >= target:  # the level is below every count: only floors break
        level = _floor_level(n, base, target, floor)
        if level is not None:
            return level
    return _solve(*_sorted_breaks(*_breaks(n, None, floor)), base, target)


def _floor_level(n: np.ndarray, base: float, target: float, floor: float) -> float | None:
    """`sorted_level` where the level lies below every count: the breaks before it are
    the floors' alone (`floor * n`, in order; the counts' come after them, the least
    `n[0]`), the slope after the i-th is i, and the rows kept are summed as `_solve`
    sums them. None where the level is not found before `n[0]`."""
    at = floor * n
    summed = np.empty(at.size)  # the rows kept at at[i], less base
    summed[0] = 0.0
    np.add.accumulate(_counting(at.size - 1) * (at[1:] - at[:-1]), out=summed[1:])
    kept = summed + base
    i = int(np.searchsorted(kept, target))  # kept[i - 1] < target <= kept[i]
    if i == 0 or i == at.size or at[i - 1] > n[0]:
        return None
    if n[0] < at[i]:  # the next break is n[0]'s: the level must be reached by then
        at_least = (float(summed[i - 1]) + float(i) * (float(n[0]) - float(at[i - 1]))) + base
        if at_least < target:
            return None
    return float(at[i - 1] + (target - kept[i - 1]) / float(i))


_COUNTING = np.arange(1.0, 1025.0)


def _counting(k: int) -> np.ndarray:
    """`(k,)` float64: 1, 2, ..., k."""
    global _COUNTING
    if _COUNTING.size < k:
        _COUNTING = np.arange(1.0, max(k, 2 * _COUNTING.size) + 1.0)
    return _COUNTING[:k]


def _solve(at: np.ndarray, slope: np.ndarray, base: float, target: float) -> float:
    """The level where the rows kept, `base` at `at[0]` and growing by `slope[i]` on
    `[at[i], at[i + 1]]`, reach `target`."""
    kept = np.empty(at.size)  # the rows kept at at[i]
    kept[0] = 0.0
    np.add.accumulate(slope[:-1] * (at[1:] - at[:-1]), out=kept[1:])  # np.cumsum
    kept += base
    i = int(np.searchsorted(kept, target))  # kept[i - 1] < target <= kept[i]
    if i == 0:
        return float(at[0])
    return float(at[i - 1] + (target - kept[i - 1]) / slope[i - 1])


def _breaks(
    n: np.ndarray, on: np.ndarray | None, floor: float
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Where the slope of the rows kept changes, by how much, and whether every change is
    +/-1. Each cluster: slope 1 from floor * n to n; a split one slope (1 - q) *
    TAIL_BOOST (>= 1: its tail costs at least what its body gives up) until its tail is
    whole at n / TAIL_BOOST, then flat until p reaches what it keeps (q * floor + 1 - q),
    then 1."""
    k = n.size
    if on is None:
        at = np.empty(2 * k)
        np.multiply(floor, n, out=at[:k])
        at[k:] = n
        return at, _signs(k), True
    a = floor * n
    q = TAIL_QUANTILE
    b = np.maximum(a, n / TAIL_BOOST)
    c = np.maximum(b, n * (q * floor + 1.0 - q))
    s1 = (1.0 - q) * TAIL_BOOST
    ns, ss = n[~on], n[on]
    at = np.concatenate([a[~on], ns, a[on], b[on], c[on], ss])
    delta = np.repeat(
        np.array([1.0, -1.0, s1, -s1, 1.0, -1.0]),
        (ns.size, ns.size, ss.size, ss.size, ss.size, ss.size),
    )
    return at, delta, False


_PLUS_MINUS = np.array([1, -1], np.int64)


def _signs(k: int) -> np.ndarray:
    """`(2k,)` int64: k times +1, then k times -1."""
    return np.repeat(_PLUS_MINUS, k)


def _sorted_breaks(at: np.ndarray, delta: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """The breaks sorted, and the running slope after each. The order of tied breaks is
    the quicksort's: it can change the slope's rounding, and the level's last bits with
    it. Any sort gives the one order where the breaks are distinct, or where every
    `delta` is +/-1 (`exact`, as int64: the slope is an integer at the end of every tie,
    and only there does it count; summed exactly as int64), so a stable sort (the faster here)
    stands in for it then. The breaks are not negative: as int64 their bits sort alike."""
    order = np.argsort(at.view(np.int64), kind="stable")
    ordered = at[order]
    if not exact and (ordered[1:] == ordered[:-1]).any():
        order = np.argsort(at)
        ordered = at[order]
    slope = np.add.accumulate(delta[order])
    return ordered, slope.astype(np.float64) if exact else slope
