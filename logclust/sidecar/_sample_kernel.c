/*
 * The per-row loops of sampling by cluster, compiled (logclust.sidecar.sample_compiled).
 *
 * The same arithmetic as the numpy reference (logclust/sidecar/sampling.py,
 * sample_ledger.py, sample_level.py), operation for operation, so that every decision is
 * the same bit for bit: running sums in the order numpy's accumulate takes them, sums of
 * arrays in the order numpy's pairwise summation takes them (`pairwise_sum`), no fused
 * multiply-add (built with -ffp-contract=off), stable sorts. Arrays come through the
 * buffer protocol (no numpy headers); every length and index is checked before use and
 * a mismatch raises ValueError. No Python object is touched inside the loops.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The calls' signatures: sample_compiled.py uses a kernel of its own version only. */
#define KERNEL_VERSION 4
#define SEGMENT_ROWS 1024
#define TAIL_QUANTILE 0.98
#define TAIL_BOOST 50.0
#define ACTIVE_GAP 3.0
#define TAIL_MIN_WINDOW_ROWS 500.0
#define NO_LATENCY 2
#define STRATA 3
#define MAX_BUFFERS 24

/* ------------------------------------------------------------------ buffers */

typedef struct {
    Py_buffer views[MAX_BUFFERS];
    int n;
} Buffers;

static void release(Buffers *b) {
    for (int i = 0; i < b->n; i++) PyBuffer_Release(&b->views[i]);
    b->n = 0;
}

/* The data of array `o` into view `v`: C-contiguous, of `kind` ('d' float64, 'q' int64,
 * 'i' int32, '?' bool), at least `min_len` items; writable when asked. NULL with
 * ValueError set (and `v` released). */
static void *get_into(Py_buffer *v, PyObject *o, char kind, int writable, Py_ssize_t min_len,
                      Py_ssize_t *len, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, v, flags) < 0) {
        PyErr_Format(PyExc_ValueError, "%s: not a contiguous%s array", name,
                     writable ? " writable" : "");
        return NULL;
    }
    const char *f = v->format ? v->format : "B";
    while (*f == '@' || *f == '=' || *f == '<') f++;
    int ok;
    switch (kind) {
        case 'd': ok = v->itemsize == 8 && strcmp(f, "d") == 0; break;
        case 'q': ok = v->itemsize == 8 && (strcmp(f, "l") == 0 || strcmp(f, "q") == 0); break;
        case 'i': ok = v->itemsize == 4 && (strcmp(f, "i") == 0 || strcmp(f, "l") == 0); break;
        default: ok = v->itemsize == 1 && strcmp(f, "?") == 0; break;
    }
    Py_ssize_t items = v->itemsize ? v->len / v->itemsize : 0;
    if (!ok || items < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: wrong type or fewer than %zd items. Received: %s, %zd",
                     name, min_len, f, items);
        PyBuffer_Release(v);
        return NULL;
    }
    if (len) *len = items;
    return v->buf;
}

/* `get_into` a view of `b` (released with the others). */
static void *get(Buffers *b, PyObject *o, char kind, int writable, Py_ssize_t min_len,
                 Py_ssize_t *len, const char *name) {
    if (b->n >= MAX_BUFFERS) {
        PyErr_SetString(PyExc_RuntimeError, "too many buffers");
        return NULL;
    }
    void *data = get_into(&b->views[b->n], o, kind, writable, min_len, len, name);
    if (data) b->n++;
    return data;
}

/* A batch's ids (int32 or int64: `*wide`), times (int64) and latencies (float64), one
 * length `*n` of at least `min_n`, as views of `b`: `arrays` is `ids, time_ms, latency`.
 * NULL, with an exception set, where one is not such an array. */
static void *batch_arrays(Buffers *b, PyObject *const *arrays, Py_ssize_t min_n, int *wide,
                          Py_ssize_t *n, int64_t **time_ms, double **latency) {
    Py_buffer probe;
    if (PyObject_GetBuffer(arrays[0], &probe, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_SetString(PyExc_ValueError, "ids: not a contiguous array");
        return NULL;
    }
    *wide = probe.itemsize == 8;
    PyBuffer_Release(&probe);
    void *ids = get(b, arrays[0], *wide ? 'q' : 'i', 0, min_n, n, "ids");
    *time_ms = ids ? get(b, arrays[1], 'q', 0, *n, NULL, "time_ms") : NULL;
    *latency = *time_ms ? get(b, arrays[2], 'd', 0, *n, NULL, "latency") : NULL;
    return *latency ? ids : NULL;
}

/* The least and greatest id and time of a batch of n >= 1 rows: `{lo, hi, t_lo, t_hi}`. */
static void batch_bounds(const void *ids, int wide, const int64_t *time_ms, Py_ssize_t n,
                         int64_t out[4]) {
    int64_t lo = INT64_MAX, hi = INT64_MIN, t_lo = INT64_MAX, t_hi = INT64_MIN;
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t id = wide ? ((const int64_t *)ids)[r] : ((const int32_t *)ids)[r], t = time_ms[r];
        lo = id < lo ? id : lo;
        hi = id > hi ? id : hi;
        t_lo = t < t_lo ? t : t_lo;
        t_hi = t > t_hi ? t : t_hi;
    }
    out[0] = lo, out[1] = hi, out[2] = t_lo, out[3] = t_hi;
}

/* ---------------------------------------------------------------- arithmetic */

/* numpy's pairwise summation of float64 (np.add.reduce on a contiguous array, from 0). */
static double pairwise_sum(const double *a, Py_ssize_t n) {
    if (n < 8) {
        double res = -0.0;
        for (Py_ssize_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8], res;
        Py_ssize_t i;
        for (int j = 0; j < 8; j++) r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

static double sum_of(const double *a, Py_ssize_t n) { return 0.0 + pairwise_sum(a, n); }

static inline double dmin(double a, double b) { return b < a ? b : a; }
static inline double dmax(double a, double b) { return b > a ? b : a; }

/* floor(x) for the draws' running sums (not negative): a truncation below 2^52 */
static inline double floor_pos(double x) {
    return x >= 0.0 && x < 4503599627370496.0 ? (double)(int64_t)x : floor(x);
}

static inline int64_t bits(double x) {
    int64_t i;
    memcpy(&i, &x, sizeof i);
    return i;
}

/* ------------------------------------------------------------------- rooms */

/* Scratch that lasts from call to call (grown, never shrunk): a batch allocates nothing.
 * Each room serves one loop that calls no Python while it holds it, so under the GIL no
 * other call can reach it meanwhile. */
enum { ROOM_SEGMENT, ROOM_PART, ROOM_GROUP, ROOM_TAILS, N_ROOMS };
static void *rooms[N_ROOMS];
static size_t room_sizes[N_ROOMS];

/* Room `r` of at least `bytes` (its contents undefined), or NULL with MemoryError set. */
static void *room(int r, size_t bytes) {
    if (bytes > room_sizes[r]) {
        size_t size = bytes + bytes / 2 + 64;
        void *grown = malloc(size);
        if (!grown) {
            PyErr_NoMemory();
            return NULL;
        }
        free(rooms[r]);
        rooms[r] = grown;
        room_sizes[r] = size;
    }
    return rooms[r];
}

/* ------------------------------------------------------------------- levels */

/* `_floor_level`: the level where it lies below every count (n ascending, k >= 1);
 * found 0 when not. */
static double floor_level(const double *n, Py_ssize_t k, double base, double target,
                          double least_p, int *found) {
    *found = 0;
    double summed = 0.0, prev_summed = 0.0, at_prev = least_p * n[0];
    Py_ssize_t i;
    double kept = summed + base;
    if (kept >= target) return 0.0; /* i == 0 */
    for (i = 1; i < k; i++) {
        double at = least_p * n[i];
        prev_summed = summed;
        summed = summed + (double)i * (at - at_prev);
        kept = summed + base;
        if (kept >= target) break;
        at_prev = at;
    }
    if (i == k) return 0.0;
    /* kept[i - 1] < target <= kept[i]; at_prev is at[i - 1], prev_summed summed[i - 1] */
    double at_i = least_p * n[i];
    if (at_prev > n[0]) return 0.0;
    if (n[0] < at_i) {
        double at_least = (prev_summed + (double)i * (n[0] - at_prev)) + base;
        if (at_least < target) return 0.0;
    }
    *found = 1;
    return at_prev + (target - (prev_summed + base)) / (double)i;
}

/* `_solve` on the breaks of clusters none of which is split: least_p * n (+1 each) merged
 * stably with n (-1 each), both ascending. */
static double solve_unsplit(const double *n, Py_ssize_t k, double base, double target,
                            double least_p) {
    Py_ssize_t ia = 0, ib = 0, count = 2 * k;
    int64_t slope = 0;
    double at_prev = 0.0, kept = 0.0, kept_prev = 0.0, slope_prev = 0.0;
    for (Py_ssize_t i = 0; i < count; i++) {
        double at;
        int from_a;
        if (ia < k && ib < k) {
            double a = least_p * n[ia];
            from_a = bits(a) <= bits(n[ib]);
            at = from_a ? a : n[ib];
        } else {
            from_a = ia < k;
            at = from_a ? least_p * n[ia] : n[ib];
        }
        kept_prev = kept;
        if (i > 0) kept = kept + slope_prev * (at - at_prev);
        if (kept + base >= target) {
            if (i == 0) return at;
            return at_prev + (target - (kept_prev + base)) / slope_prev;
        }
        slope += from_a ? 1 : -1;
        if (from_a) ia++;
        else ib++;
        at_prev = at;
        slope_prev = (double)slope;
    }
    /* past every break: searchsorted gives the end */
    return at_prev + (target - (kept + base)) / slope_prev;
}

/* `sorted_level`: n ascending and positive, total their sum in the clusters' order. */
static double sorted_level(double total, const double *n, Py_ssize_t k, double target,
                           double least_p) {
    if (target >= total) return INFINITY;
    double base = least_p * total;
    if (base >= target) return 0.0;
    if ((double)k * n[0] >= target) {
        int found;
        double level = floor_level(n, k, base, target, least_p, &found);
        if (found) return level;
    }
    return solve_unsplit(n, k, base, target, least_p);
}

/* A stable sort of idx[0:k] by keys[0:k] (int64), natural runs merged pairwise: fast on
 * the nearly sorted counts of consecutive segments. tmp: 2k more of each. */
static void stable_sort(int64_t *keys, int64_t *idx, Py_ssize_t k, int64_t *tk, int64_t *ti,
                        Py_ssize_t *runs) {
    Py_ssize_t nr = 0;
    runs[nr++] = 0;
    for (Py_ssize_t i = 1; i < k; i++)
        if (keys[i] < keys[i - 1]) runs[nr++] = i;
    runs[nr] = k;
    while (nr > 1) {
        Py_ssize_t out = 0;
        for (Py_ssize_t r = 0; r < nr; r += 2) {
            Py_ssize_t lo = runs[r], mid = runs[r + 1 < nr ? r + 1 : nr];
            Py_ssize_t hi = r + 1 < nr ? runs[r + 2] : mid;
            Py_ssize_t a = lo, c = mid, o = lo;
            while (a < mid && c < hi) {
                if (keys[c] < keys[a]) { tk[o] = keys[c]; ti[o++] = idx[c++]; }
                else { tk[o] = keys[a]; ti[o++] = idx[a++]; }
            }
            while (a < mid) { tk[o] = keys[a]; ti[o++] = idx[a++]; }
            while (c < hi) { tk[o] = keys[c]; ti[o++] = idx[c++]; }
            runs[out++] = lo;
        }
        runs[out] = k;
        nr = out;
        memcpy(keys, tk, k * sizeof *keys);
        memcpy(idx, ti, k * sizeof *idx);
    }
}

/* A stable sort of idx[0:k] by keys[0:k] that starts from the last segment's order:
 * nearly sorted, so by insertion while that moves few items, else merged (stable_sort).
 * tmp: 2k more of each, and k + 1 runs. */
static void resort(int64_t *keys, int64_t *idx, Py_ssize_t k, int64_t *tk, int64_t *ti,
                   Py_ssize_t *runs) {
    Py_ssize_t budget = 32 * k, i;
    for (i = 1; i < k && budget > 0; i++) {
        int64_t v = keys[i], x = idx[i];
        Py_ssize_t j = i;
        while (j > 0 && keys[j - 1] > v) {
            keys[j] = keys[j - 1];
            idx[j] = idx[j - 1];
            j--;
        }
        keys[j] = v;
        idx[j] = x;
        budget -= i - j;
    }
    if (i < k) stable_sort(keys, idx, k, tk, ti, runs);
}

/* A stable sort of idx[0:k] by keys[0:k] (the bits of non-negative doubles): into
 * buckets by their exponent and as many leading mantissa bits as make about k buckets
 * (zeros in one of their own), stably, then each bucket by insertion; `resort` where
 * the values span too many exponents. tmp: 2k more of each, and k + 1 runs. */
static void bucket_sort(int64_t *keys, int64_t *idx, Py_ssize_t k, int64_t *tk, int64_t *ti,
                        Py_ssize_t *runs) {
    int64_t lo = INT64_MAX, hi = 0;
    for (Py_ssize_t i = 0; i < k; i++)
        if (keys[i] != 0) {
            lo = keys[i] < lo ? keys[i] : lo;
            hi = keys[i] > hi ? keys[i] : hi;
        }
    int64_t exponents = lo > hi ? 1 : (hi >> 52) - (lo >> 52) + 1;
    if (k < 32 || exponents > k / 2) {
        resort(keys, idx, k, tk, ti, runs);
        return;
    }
    int mantissa = 0; /* leading mantissa bits in the bucket: about k buckets in all */
    while (mantissa < 20 && (exponents << (mantissa + 1)) <= k) mantissa++;
    int shift = 52 - mantissa;
    int64_t first = lo > hi ? 0 : lo >> shift;
    Py_ssize_t range = lo > hi ? 1 : (Py_ssize_t)((hi >> shift) - first) + 2; /* + zeros */
    if (range > k) { /* start (runs) holds k + 1: range + 1 of them are written */
        resort(keys, idx, k, tk, ti, runs);
        return;
    }
    Py_ssize_t *start = runs;
    memset(start, 0, (size_t)(range + 1) * sizeof *start);
#define BUCKET(key) ((key) == 0 ? 0 : (Py_ssize_t)(((key) >> shift) - first) + 1)
    for (Py_ssize_t i = 0; i < k; i++) start[BUCKET(keys[i]) + 1]++;
    for (Py_ssize_t b = 0; b < range; b++) start[b + 1] += start[b];
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_ssize_t at = start[BUCKET(keys[i])]++;
        tk[at] = keys[i];
        ti[at] = idx[i];
    }
#undef BUCKET
    /* start[b] is now where bucket b + 1 begins: each bucket in order, by insertion */
    Py_ssize_t from = 0;
    for (Py_ssize_t b = 0; b < range; b++) {
        Py_ssize_t to = start[b];
        for (Py_ssize_t i = from + 1; i < to; i++) {
            int64_t v = tk[i], x = ti[i];
            Py_ssize_t j = i;
            while (j > from && tk[j - 1] > v) {
                tk[j] = tk[j - 1];
                ti[j] = ti[j - 1];
                j--;
            }
            tk[j] = v;
            ti[j] = x;
        }
        from = to;
    }
    memcpy(keys, tk, (size_t)k * sizeof *keys);
    memcpy(idx, ti, (size_t)k * sizeof *idx);
}

/* The arrays and numbers of a segment's start (`segment`). */
typedef struct {
    double *counts, *exposure;
    int64_t *last_segment, *last_row;
    char *in_level;
    double *level_counts;
    char *tail_on;
    double *tail_at, *in_segment, *level;
    int64_t *order;
    Py_ssize_t cap, order_len, k;
    double factor;
    long long segments, rows;
    double total;
    int tails;
    double rows_min;
    int young;
    double target, fair_target, least_p;
} SegmentIn;

/* `segment` on checked arrays: 0 with *tau_out set, 1 where some cluster of the level is
 * split (`order` sorted), -1 with an error set. */
static int segment_core(const SegmentIn *a, double *tau_out) {
    double *counts = a->counts, *exposure = a->exposure, *level_counts = a->level_counts;
    int64_t *last_segment = a->last_segment, *last_row = a->last_row, *order = a->order;
    char *in_level = a->in_level, *tail_on = a->tail_on;
    double *tail_at = a->tail_at, *in_segment = a->in_segment, *level = a->level;
    Py_ssize_t cap = a->cap, order_len = a->order_len, k = a->k;
    double factor = a->factor, total = a->total, rows_min = a->rows_min;
    long long segments = a->segments, rows = a->rows;
    int tails = a->tails, young = a->young;
    double target = a->target, fair_target = a->fair_target, least_p = a->least_p;
    int status = -1;
    void *scratch = NULL;
    if (k < 0 || k > cap) {
        PyErr_Format(PyExc_ValueError, "k out of range. Received: %zd (capacity %zd)", k, cap);
        goto done;
    }
    if (order_len < k) {
        PyErr_Format(PyExc_ValueError, "order: fewer than k items. Received: %zd", order_len);
        goto done;
    }
    for (Py_ssize_t i = 0; i < k; i++)
        if (order[i] < 0 || order[i] >= k) {
            PyErr_SetString(PyExc_ValueError, "order: an index out of range");
            goto done;
        }
    /* Slots not yet given to a cluster (k and past) hold zeros and are in no level after
     * the first segment: what the loops would write there is what is there already. */
    Py_ssize_t span = segments >= 1 ? k : cap;
    /* the level's counts in the clusters' order and the sums' gathers (cap + 1 each: the
     * loop below writes one past its last), the sort's keys (k: `order` is sorted in
     * place, and the level's counts ascending are written over the keys), and the merge
     * buffers (2k) and runs (k + 1) a long sort needs (untouched on the common path).
     * Little scratch: after other work each line of it comes back from memory. */
    scratch = room(ROOM_SEGMENT, (size_t)(cap + 1) * (6 * sizeof(int64_t)) + 64);
    if (!scratch) goto done;
    double *in_order = scratch, *gather = in_order + cap + 1;
    int64_t *keys = (int64_t *)(gather + cap + 1), *tk = keys + k, *ti = tk + k;
    Py_ssize_t *runs = (Py_ssize_t *)(ti + k);
    /* One pass over the clusters: the decay, each one's share of the rows, whether it is
     * in the level, its rows per window and tail flag; and the level's counts in the
     * clusters' order (in_order, nl) and the positive ones (gather, np_), written without
     * a branch (a slot past the end is overwritten or left). Slots past k are in no level
     * (checked after). */
    double window = dmax(total, rows_min);
    int decays = factor < 1.0, split = 0;
    Py_ssize_t nl = 0, np_ = 0;
    for (Py_ssize_t i = 0; i < span; i++) {
        if (decays) {
            counts[i] *= factor;
            exposure[i] *= factor;
        }
        double share = counts[i] / dmax(exposure[i], (double)SEGMENT_ROWS);
        /* (no short circuit: the same value, without a branch per cluster) */
        int quiet = (double)(rows - last_row[i]) * share <= ACTIVE_GAP;
        int in = (last_segment[i] >= segments - 1) | (quiet & (last_segment[i] >= 0));
        in_level[i] = (char)in;
        share = dmin(share, 1.0);
        double lc = share * total;
        level_counts[i] = lc;
        if (tails) {
            int on = share * window >= TAIL_MIN_WINDOW_ROWS;
            tail_on[i] = (char)on;
            split |= in & on & !isnan(tail_at[i]);
        }
        in_order[nl] = lc;
        gather[np_] = lc;
        nl += in;
        np_ += in & (lc > 0.0);
    }
    if (split) { /* the caller's levels read `order`: every cluster, by count */
        for (Py_ssize_t i = 0; i < k; i++) keys[i] = bits(level_counts[order[i]]);
        if (k > 0) bucket_sort(keys, order, k, tk, ti, runs);
        for (Py_ssize_t i = 0; i < span; i++) in_segment[i] = 0.0;
        status = 1;
        goto done;
    }
    /* Here only the level's counts in ascending order count, not which cluster has which
     * (ties are equal): every cluster sorted from the last segment's order (nearly
     * sorted: few moves), which `order` keeps for the next. */
    for (Py_ssize_t i = k; i < span; i++)
        if (in_level[i]) {
            PyErr_SetString(PyExc_ValueError, "in_level: a cluster past k is in the level");
            goto done;
        }
    for (Py_ssize_t i = 0; i < k; i++) keys[i] = bits(level_counts[order[i]]);
    if (k > 0) resort(keys, order, k, tk, ti, runs);
    /* the level's counts ascending, over the keys (the bits of the same counts) */
    double *ascending = (double *)keys;
    Py_ssize_t na = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        double v;
        memcpy(&v, keys + i, sizeof v);
        ascending[na] = v;
        na += in_level[order[i]] != 0;
    }
    double level_total = sum_of(gather, np_);
    Py_ssize_t zeros = 0;
    while (zeros < na && ascending[zeros] <= 0.0) zeros++;
    const double *positive = ascending + zeros;
    Py_ssize_t npos = na - zeros;
    double tau, fair = 0.0;
    if (young) {
        tau = sorted_level(level_total, positive, npos, target, least_p);
    } else {
        fair = sorted_level(level_total, positive, npos, fair_target, least_p);
        /* the rare kinds' counts, then the others', in the clusters' order (gathered
         * without a branch: which side a cluster is on is as good as random) */
        Py_ssize_t nr = 0;
        for (Py_ssize_t i = 0; i < nl; i++) {
            gather[nr] = in_order[i];
            nr += in_order[i] <= fair;
        }
        double rest = target - sum_of(gather, nr);
        rest = dmax(rest, 1e-9);
        Py_ssize_t nf = 0;
        for (Py_ssize_t i = 0; i < nl; i++) {
            gather[nf] = in_order[i];
            nf += !(in_order[i] <= fair);
        }
        double freq_total = sum_of(gather, nf);
        Py_ssize_t skip = 0;
        while (skip < npos && positive[skip] <= fair) skip++;
        double lower = sorted_level(freq_total, positive + skip, npos - skip, rest, least_p);
        tau = lower < fair ? lower : fair;
    }
    /* each cluster's level: the fair one for the rare kinds of the level (without a
     * branch per cluster), the segment's own for the others */
    int rare_fair = !young;
    for (Py_ssize_t i = 0; i < span; i++)
        level[i] = (rare_fair & in_level[i] & (level_counts[i] <= fair)) ? fair : tau;
    memset(in_segment, 0, (size_t)span * sizeof *in_segment);
    for (Py_ssize_t i = span; i < cap; i++) level[i] = tau;
    *tau_out = tau;
    status = 0;
done:
    return status;
}

/*
 * segment(counts, exposure, last_segment, last_row, in_level, level_counts, tail_on,
 *         tail_at, in_segment, level, order, k, factor, segments, rows, total, tails,
 *         rows_min, young, target, fair_target, least_p) -> tau, or None where some
 * cluster of the level is split (its levels are left to the caller, `order` sorted).
 *
 * What `SegmentLedger._begin_segment` does to the arrays: the decay, the kinds in the
 * level, their rows per window, the tail flags, the counts' order and the levels.
 */
static PyObject *segment(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 22) {
        PyErr_SetString(PyExc_TypeError, "segment() takes 22 arguments");
        return NULL;
    }
    Buffers b = {.n = 0};
    PyObject *result = NULL;
    Py_ssize_t cap, order_len;
    double *counts = get(&b, args[0], 'd', 1, 0, &cap, "counts");
    if (!counts) goto done;
    double *exposure = get(&b, args[1], 'd', 1, cap, NULL, "exposure");
    int64_t *last_segment = exposure ? get(&b, args[2], 'q', 0, cap, NULL, "last_segment") : NULL;
    int64_t *last_row = last_segment ? get(&b, args[3], 'q', 0, cap, NULL, "last_row") : NULL;
    char *in_level = last_row ? get(&b, args[4], '?', 1, cap, NULL, "in_level") : NULL;
    double *level_counts = in_level ? get(&b, args[5], 'd', 1, cap, NULL, "level_counts") : NULL;
    char *tail_on = level_counts ? get(&b, args[6], '?', 1, cap, NULL, "tail_on") : NULL;
    double *tail_at = tail_on ? get(&b, args[7], 'd', 0, cap, NULL, "tail_at") : NULL;
    double *in_segment = tail_at ? get(&b, args[8], 'd', 1, cap, NULL, "in_segment") : NULL;
    double *level = in_segment ? get(&b, args[9], 'd', 1, cap, NULL, "level") : NULL;
    int64_t *order = level ? get(&b, args[10], 'q', 1, 0, &order_len, "order") : NULL;
    if (!order) goto done;
    Py_ssize_t k = PyLong_AsSsize_t(args[11]);
    double factor = PyFloat_AsDouble(args[12]);
    long long segments = PyLong_AsLongLong(args[13]);
    long long rows = PyLong_AsLongLong(args[14]);
    double total = PyFloat_AsDouble(args[15]);
    int tails = PyObject_IsTrue(args[16]);
    double rows_min = PyFloat_AsDouble(args[17]);
    int young = PyObject_IsTrue(args[18]);
    double target = PyFloat_AsDouble(args[19]);
    double fair_target = PyFloat_AsDouble(args[20]);
    double least_p = PyFloat_AsDouble(args[21]);
    if (PyErr_Occurred()) goto done;
    {
        SegmentIn in = {counts, exposure, last_segment, last_row, in_level, level_counts,
                        tail_on, tail_at, in_segment, level, order, cap, order_len, k,
                        factor, segments, rows, total, tails, rows_min, young, target,
                        fair_target, least_p};
        double tau;
        int status = segment_core(&in, &tau);
        if (status == 0) result = PyFloat_FromDouble(tau);
        else if (status == 1) result = Py_NewRef(Py_None);
    }
done:
    release(&b);
    return result;
}

/* --------------------------------------------------------------------- rows */

/* A row's place in a part, and a cluster's index there: 4 bytes (parts are checked to
 * fit), half the scratch to bring back from memory after other work. */
typedef int32_t row_t;

/* A part's rows grouped by cluster id (ascending), stream order within. */
typedef struct {
    Py_ssize_t m, u;
    row_t *order;  /* (m) rows by cluster id */
    row_t *group;  /* (m) the group of each row, in stream order (sparse ids only) */
    row_t *bounds; /* (u + 1) where each group begins in order, then m */
    int64_t *cix;  /* (u) each group's cluster index */
} Groups;

static int cmp_id(const void *a, const void *b) {
    int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x > y) - (x < y);
}

/* Groups rows by id: a counting sort over the ids' range when small, else a sort of the
 * distinct ids (slot_of: room for every cluster index). rows_ix: the cluster index of
 * each row (stream order). Sets u, bounds, cix and order. 0, or -1 with an error set. */
static int group_rows(Groups *g, const int64_t *row_id, const row_t *rows_ix, int64_t lo,
                      int64_t hi, Py_ssize_t *slot_of, Py_ssize_t cap) {
    Py_ssize_t m = g->m;
    uint64_t range = (uint64_t)(hi - lo) + 1;
    g->u = 0;
    if (range <= (uint64_t)(8 * m + 256)) { /* else a few rows of far apart ids: sorted */
        Py_ssize_t *cnt = room(ROOM_GROUP, (size_t)range * sizeof *cnt);
        if (!cnt) return -1;
        memset(cnt, 0, (size_t)range * sizeof *cnt);
        for (Py_ssize_t r = 0; r < m; r++) cnt[row_id[r] - lo]++;
        /* where each id present begins in order, and the groups' bounds: without a branch
         * per id of the range (an absent id writes where the next present one writes the
         * same) */
        Py_ssize_t pos = 0, u = 0;
        for (uint64_t v = 0; v < range; v++) {
            Py_ssize_t n = cnt[v];
            g->bounds[u] = (row_t)pos;
            cnt[v] = pos;
            pos += n;
            u += n != 0;
        }
        g->u = u;
        g->bounds[u] = (row_t)m;
        for (Py_ssize_t r = 0; r < m; r++) g->order[cnt[row_id[r] - lo]++] = (row_t)r;
        for (Py_ssize_t c = 0; c < u; c++) g->cix[c] = rows_ix[g->order[g->bounds[c]]];
    } else { /* sparse ids: the distinct ones sorted, by their cluster index's slot */
        /* pairs (2m), then per (m + 1) */
        int64_t *pairs = room(ROOM_GROUP, ((size_t)3 * m + 1) * sizeof *pairs);
        if (!pairs) return -1;
        for (Py_ssize_t r = 0; r < m; r++) slot_of[rows_ix[r]] = -1; /* the slots read */
        for (Py_ssize_t r = 0; r < m; r++) {
            int64_t x = rows_ix[r];
            if (slot_of[x] < 0) {
                slot_of[x] = g->u;
                pairs[2 * g->u] = row_id[r];
                pairs[2 * g->u + 1] = x;
                g->u++;
            }
        }
        qsort(pairs, (size_t)g->u, 2 * sizeof *pairs, cmp_id);
        Py_ssize_t *per = (Py_ssize_t *)(pairs + 2 * m);
        memset(per, 0, ((size_t)g->u + 1) * sizeof *per);
        for (Py_ssize_t c = 0; c < g->u; c++) {
            g->cix[c] = pairs[2 * c + 1];
            slot_of[pairs[2 * c + 1]] = c;
        }
        for (Py_ssize_t r = 0; r < m; r++) per[g->group[r] = (row_t)slot_of[rows_ix[r]]]++;
        Py_ssize_t pos = 0;
        for (Py_ssize_t c = 0; c < g->u; c++) {
            g->bounds[c] = (row_t)pos;
            pos += per[c];
        }
        g->bounds[g->u] = (row_t)m;
        Py_ssize_t *next = per; /* where the next row of each group goes */
        for (Py_ssize_t c = 0; c <= g->u; c++) next[c] = g->bounds[c];
        for (Py_ssize_t r = 0; r < m; r++) g->order[next[g->group[r]]++] = (row_t)r;
        (void)cap;
    }
    return 0;
}

/* The arrays and numbers of one part (`part`). */
typedef struct {
    void *ids;
    int wide;
    int64_t *time_ms;
    double *latency;
    Py_ssize_t start, stop;
    char *keep;
    double *weight;
    int64_t *rows_cix;
    double *lat_g;
    int64_t *lut;
    Py_ssize_t lut_len;
    double *counts, *exposure, *in_segment;
    int64_t *last_segment, *last_row, *sure_ms, *sure_row;
    double *level_counts, *level;
    char *in_level, *tail_on;
    double *tail_at, *phases;
    Py_ssize_t cap, k, k_before;
    long long rows, segments, window_row, slot_ms, slot_rows;
    int timely;
    double least_p, rate, allowance, new_demand;
    int tails, faded;
} PartIn;

/* What a part returns (`part`). */
typedef struct {
    Py_ssize_t kept, level_rows;
    double expected, level_p, new_demand;
    int sure_code, measured;
    long long sure_value;
} PartOut;

/* `part` on checked arrays: 0 with *o set, 1 where a row's cluster has no index yet
 * (nothing changed), -1 with an error set. */
static int part_core(const PartIn *a, PartOut *o) {
    void *ids = a->ids;
    int wide = a->wide;
    int64_t *time_ms = a->time_ms, *rows_cix = a->rows_cix, *lut = a->lut;
    double *latency = a->latency, *weight = a->weight, *lat_g = a->lat_g;
    Py_ssize_t start = a->start, m = a->stop - a->start, lut_len = a->lut_len;
    char *keep = a->keep, *in_level = a->in_level, *tail_on = a->tail_on;
    double *counts = a->counts, *exposure = a->exposure, *in_segment = a->in_segment;
    int64_t *last_segment = a->last_segment, *last_row = a->last_row;
    int64_t *sure_ms = a->sure_ms, *sure_row = a->sure_row;
    double *level_counts = a->level_counts, *level = a->level;
    double *tail_at = a->tail_at, *phases = a->phases;
    Py_ssize_t cap = a->cap, k = a->k, k_before = a->k_before;
    long long rows = a->rows, segments = a->segments, window_row = a->window_row;
    long long slot_ms = a->slot_ms, slot_rows = a->slot_rows;
    int timely = a->timely, tails = a->tails, faded = a->faded;
    double least_p = a->least_p, rate = a->rate, allowance = a->allowance;
    double new_demand = a->new_demand;
    int status = -1;
    char *mem = NULL;

    if (m > INT32_MAX / 2 || cap > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "a part too large. Received: %zd rows", m);
        goto done;
    }
    /* Scratch, what every part touches first: the groups' clusters, the rows' p grouped
     * and in stream order; each row's cluster index, the rows by cluster and the groups'
     * bounds (4 bytes each), the strata; then what only some parts touch. */
    mem = room(ROOM_PART, ((size_t)12 * m + 16 + (size_t)cap) * 8);
    if (!mem) goto done;
    int64_t *gcix = (int64_t *)mem;
    double *ps = (double *)(gcix + m), *p = ps + m;
    row_t *row_ix = (row_t *)(p + m), *order = row_ix + m, *bounds = order + m;
    row_t *next = bounds + m + 1, *group = next + m + 1;
    char *st = (char *)(group + m);
    double *demand = (double *)(mem + ((size_t)6 * m + 8) * 8), *end = demand + m;
    double *tmp = end + m, *run_p = tmp + m;
    Py_ssize_t *slot_of = (Py_ssize_t *)(run_p + m);
    /* the ids: the batch's own where int64, else widened here */
    int64_t *row_id = wide ? (int64_t *)ids + start : (int64_t *)(slot_of + cap);
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (Py_ssize_t r = 0; r < m; r++) {
        int64_t id = wide ? ((int64_t *)ids)[start + r] : ((int32_t *)ids)[start + r];
        if (id < 0 || id >= lut_len || lut[id] < 0) {
            status = 1; /* a new kind, or an id past the table */
            goto done;
        }
        if (lut[id] >= k) {
            PyErr_SetString(PyExc_ValueError, "lut: an index past k");
            goto done;
        }
        if (!wide) row_id[r] = id;
        row_ix[r] = (row_t)lut[id];
        lo = id < lo ? id : lo;
        hi = id > hi ? id : hi;
    }
    Groups g = {.m = m, .order = order, .group = group, .bounds = bounds, .cix = gcix};
    if (group_rows(&g, row_id, row_ix, lo, hi, slot_of, cap) < 0) goto done;
    Py_ssize_t u = g.u;

    /* Which kinds are outside the level; strata of the grouped rows (every row: one
     * stratum present draws as none) and their latencies; the rows kept for certain
     * (`_sure`, which reads no p: chosen first, applied after the tilt). */
    int any_outside = 0, measured = 0, present[STRATA] = {0, 0, 0};
    int unmeasured = 1; /* no latency in the part: read in stream order, not gathered */
    for (Py_ssize_t r = 0; r < m && unmeasured; r++) unmeasured = isnan(latency[start + r]);
    /* _outside where the window's allowance for kinds outside the level is spent already:
     * every row of theirs is over it (at most the rate) */
    int over_all = 0;
    if (new_demand > allowance)
        for (Py_ssize_t c = 0; c < u && !over_all; c++) over_all = !in_level[gcix[c]];
    for (Py_ssize_t c = 0; c < u; c++) {
        int64_t x = gcix[c];
        int out = !in_level[x];
        if (out && !any_outside) { /* the demand of rows in the level is 0 */
            memset(demand, 0, (size_t)m * sizeof *demand);
            any_outside = 1;
        }
        /* _base_p, on the grouped rows: the cluster's level over its rows in the window,
         * or its rows so far in the segment where more; and the demand of kinds outside
         * the level (their p, in stream order) */
        double ins = in_segment[x] - (double)bounds[c], lc = level_counts[x], lv = level[x];
        /* seen = max(lc, its rows so far): lc until they pass it, the same p till then */
        double p_lc = dmin(dmax(lc > 0.0 ? lv / lc : 1.0, least_p), 1.0);
        for (Py_ssize_t i = bounds[c]; i < bounds[c + 1]; i++) {
            double so_far = ins + (double)i;
            double q = so_far <= lc ? p_lc : dmin(dmax(lv / so_far, least_p), 1.0);
            if (out) demand[order[i]] = q;
            ps[i] = out && over_all ? dmin(q, rate) : q;
            if (unmeasured) { /* one stratum, no latency: what the segment's close reads */
                lat_g[i] = NAN;
                rows_cix[i] = x;
                st[i] = NO_LATENCY;
            }
        }
        if (unmeasured) {
            present[NO_LATENCY] = 1;
            continue;
        }
        double tail_x = tail_at[x];
        for (Py_ssize_t i = bounds[c]; i < bounds[c + 1]; i++) {
            double lat = latency[start + order[i]];
            lat_g[i] = lat;
            rows_cix[i] = x;
            if (isnan(lat)) {
                st[i] = NO_LATENCY;
            } else {
                measured = 1;
                st[i] = lat > tail_x;
            }
            present[(int)st[i]] = 1;
        }
    }
    int strata = present[0] + present[1] + present[2];
    int sure_code = 0;
    long long sure_value = 0;
    row_t *sure_at = next; /* (u) the grouped row kept for certain, -1: none */
    int any_sure = 0, any_first = 0;
    for (Py_ssize_t c = 0; c < u; c++) {
        sure_at[c] = -1;
        if (sure_row[gcix[c]] < window_row) any_first = 1;
    }
    if (timely) {
        for (Py_ssize_t c = 0; c < u; c++)
            if (sure_row[gcix[c]] < window_row) {
                sure_at[c] = bounds[c];
                any_sure = 1;
            }
    } else {
        int64_t t_max = INT64_MIN, late_min = INT64_MAX;
        int any_late = 0;
        for (Py_ssize_t r = 0; r < m; r++)
            t_max = time_ms[start + r] > t_max ? time_ms[start + r] : t_max;
        for (Py_ssize_t c = 0; c < u; c++) {
            int64_t x = gcix[c];
            if (rows + m - 1 - sure_row[x] >= slot_rows) {
                any_late = 1;
                late_min = sure_ms[x] < late_min ? sure_ms[x] : late_min;
            }
        }
        if (!any_first && !(any_late && t_max - late_min >= slot_ms)) {
            int64_t least = INT64_MAX;
            for (Py_ssize_t x = 0; x < k; x++) least = sure_ms[x] < least ? sure_ms[x] : least;
            sure_code = 1;
            sure_value = least;
        } else {
            for (Py_ssize_t c = 0; c < u; c++) {
                int64_t x = gcix[c];
                int first = sure_row[x] < window_row;
                for (Py_ssize_t i = bounds[c]; i < bounds[c + 1]; i++) {
                    row_t at = order[i];
                    if (first || (time_ms[start + at] - sure_ms[x] >= slot_ms &&
                                  rows + at - sure_row[x] >= slot_rows)) {
                        sure_at[c] = i;
                        any_sure = 1;
                        break;
                    }
                }
            }
        }
    }
    /* _outside: the allowance of kinds outside the level, in stream order (where spent
     * already, applied with the base p) */
    if (any_outside) {
        double spent = sum_of(demand, m);
        /* the running demand never exceeds its total (within rounding): no row is over */
        if (!over_all && !(new_demand + spent * (1.0 + 1e-7) < allowance)) {
            double cs = 0.0;
            for (Py_ssize_t r = 0; r < m; r++) {
                cs = r ? cs + demand[r] : demand[r];
                tmp[r] = (!in_level[row_ix[r]] && new_demand + cs > allowance) ? 1.0 : 0.0;
            }
            for (Py_ssize_t i = 0; i < m; i++)
                if (tmp[order[i]] != 0.0) ps[i] = dmin(ps[i], rate);
        }
        new_demand += spent;
    }
    /* The tilt of split clusters' strata, the rows kept for certain, and where one stratum
     * is present the draw too (systematic, from each cluster's phase of the first). */
    double s_run = 0.0, last_q = 1.0, inverse = 1.0; /* 1 / last_q: p repeats along a cluster */
    Py_ssize_t kept = 0;
    for (Py_ssize_t c = 0; c < u; c++) {
        int64_t x = gcix[c];
        int split = tails && tail_on[x] && !isnan(tail_at[x]);
        double edge = s_run, phase = phases[x];
        for (Py_ssize_t i = bounds[c]; i < bounds[c + 1]; i++) {
            double q = ps[i];
            if (split) {
                double tail = dmin(1.0, TAIL_BOOST * q);
                double body =
                    dmax(dmin(q, least_p), (q - (1.0 - TAIL_QUANTILE) * tail) / TAIL_QUANTILE);
                q = st[i] == 0 ? body : st[i] == 1 ? tail : q;
            }
            if (i == sure_at[c]) q = 1.0;
            ps[i] = q;
            if (strata <= 1) { /* the draw, and the row's answer */
                s_run = s_run + q;
                double e = (phase + s_run) - edge;
                int take = e - q < floor_pos(e);
                Py_ssize_t r = order[i];
                keep[start + r] = (char)take;
                /* 1 / p or +0 (p > 0), without a branch on the draw */
                if (q != last_q) last_q = q, inverse = 1.0 / q;
                weight[start + r] = (double)take * inverse;
                p[r] = q;
                kept += take;
            }
        }
        if (strata <= 1) {
            double moved = phase + (s_run - edge);
            phases[x] = moved - floor_pos(moved);
        }
    }
    if (any_sure) {
        for (Py_ssize_t c = 0; c < u; c++)
            if (sure_at[c] >= 0) {
                Py_ssize_t at = order[sure_at[c]];
                sure_ms[gcix[c]] = time_ms[start + at];
                sure_row[gcix[c]] = rows + at;
            }
        sure_code = 2;
    }
    /* _draw where strata differ: each stratum's running sum from its own phases */
    for (int j = 0; strata > 1 && j < STRATA; j++) {
        if (!present[j]) continue;
        double *ph = phases + (Py_ssize_t)j * cap;
        double s = 0.0;
        for (Py_ssize_t c = 0; c < u; c++) {
            int64_t x = gcix[c];
            double edge = s, phase = ph[x];
            for (Py_ssize_t i = bounds[c]; i < bounds[c + 1]; i++) {
                if (st[i] != j) continue;
                s = s + ps[i];
                end[i] = (phase + s) - edge;
            }
            double moved = phase + (s - edge);
            ph[x] = moved - floor_pos(moved);
        }
    }
    for (Py_ssize_t i = 0; strata > 1 && i < m; i++) {
        int take = end[i] - ps[i] < floor_pos(end[i]);
        Py_ssize_t r = order[i];
        keep[start + r] = (char)take;
        weight[start + r] = take ? 1.0 / ps[i] : 0.0; /* 0 / p is +0 (p > 0) */
        p[r] = ps[i];
        kept += take;
    }
    /* _count */
    for (Py_ssize_t c = 0; c < u; c++) counts[gcix[c]] += (double)(bounds[c + 1] - bounds[c]);
    for (Py_ssize_t x = 0; x < k; x++) exposure[x] += (double)m;
    for (Py_ssize_t c = 0; c < u; c++) {
        int64_t x = gcix[c];
        /* new in this part (or, after a decay to nothing, exposed for this part alone) */
        int fresh = faded ? exposure[x] == (double)m : x >= k_before;
        if (fresh) exposure[x] -= (double)order[bounds[c]];
        in_segment[x] += (double)(bounds[c + 1] - bounds[c]);
        last_segment[x] = segments;
        last_row[x] = rows + order[bounds[c + 1] - 1];
    }
    /* the sums of p, in stream order */
    double expected = sum_of(p, m), level_p = expected;
    Py_ssize_t level_rows = m;
    if (any_outside) {
        Py_ssize_t nk = 0;
        for (Py_ssize_t r = 0; r < m; r++)
            if (in_level[row_ix[r]]) run_p[nk++] = p[r];
        level_rows = nk;
        level_p = sum_of(run_p, nk);
    }
    o->kept = kept;
    o->expected = expected;
    o->level_rows = level_rows;
    o->level_p = level_p;
    o->sure_code = sure_code;
    o->new_demand = new_demand;
    o->sure_value = sure_value;
    o->measured = measured;
    status = 0;
done:
    return status;
}

/*
 * part(ids, time_ms, latency, start, stop, keep, weight, rows_cix, lat_grouped,
 *      lut, counts, exposure, in_segment, last_segment, last_row, sure_ms, sure_row,
 *      level_counts, level, in_level, tail_on, tail_at, phases,
 *      k, k_before, rows, segments, window_row, slot_ms, slot_rows, timely,
 *      least_p, rate, allowance, new_demand, tails, faded)
 * -> None when a row's cluster has no index yet (nothing changed), else
 *    (kept, expected, level_rows, level_p, sure, new_demand, sure_ms, measured)
 *
 * What `SourceBudget._segment` does for rows start:stop of a batch, after the segment's
 * start: the rows grouped by cluster, their p (level, kinds outside the level, strata,
 * rows kept for certain), the systematic draw, the weights and the counts. sure: 0 the
 * earliest sure time is unchanged, 1 it is sure_ms, 2 it is at most the batch's least time.
 */
static PyObject *part(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 37) {
        PyErr_SetString(PyExc_TypeError, "part() takes 37 arguments");
        return NULL;
    }
    Buffers b = {.n = 0};
    PyObject *result = NULL;
    Py_ssize_t n_ids, cap, lut_len, phases_len;
    int wide;
    int64_t *time_ms;
    double *latency;
    void *ids = batch_arrays(&b, args, 0, &wide, &n_ids, &time_ms, &latency);
    if (!ids) goto done;
    Py_ssize_t start = PyLong_AsSsize_t(args[3]), stop = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) goto done;
    if (start < 0 || stop > n_ids || start >= stop) {
        PyErr_Format(PyExc_ValueError, "rows out of range. Received: %zd:%zd of %zd", start,
                     stop, n_ids);
        goto done;
    }
    Py_ssize_t m = stop - start;
    char *keep = get(&b, args[5], '?', 1, n_ids, NULL, "keep");
    double *weight = keep ? get(&b, args[6], 'd', 1, n_ids, NULL, "weight") : NULL;
    int64_t *rows_cix = weight ? get(&b, args[7], 'q', 1, m, NULL, "rows_cix") : NULL;
    double *lat_g = rows_cix ? get(&b, args[8], 'd', 1, m, NULL, "lat_grouped") : NULL;
    int64_t *lut = lat_g ? get(&b, args[9], 'q', 0, 0, &lut_len, "lut") : NULL;
    double *counts = lut ? get(&b, args[10], 'd', 1, 0, &cap, "counts") : NULL;
    double *exposure = counts ? get(&b, args[11], 'd', 1, cap, NULL, "exposure") : NULL;
    double *in_segment = exposure ? get(&b, args[12], 'd', 1, cap, NULL, "in_segment") : NULL;
    int64_t *last_segment = in_segment ? get(&b, args[13], 'q', 1, cap, NULL, "last_segment") : NULL;
    int64_t *last_row = last_segment ? get(&b, args[14], 'q', 1, cap, NULL, "last_row") : NULL;
    int64_t *sure_ms = last_row ? get(&b, args[15], 'q', 1, cap, NULL, "sure_ms") : NULL;
    int64_t *sure_row = sure_ms ? get(&b, args[16], 'q', 1, cap, NULL, "sure_row") : NULL;
    double *level_counts = sure_row ? get(&b, args[17], 'd', 0, cap, NULL, "level_counts") : NULL;
    double *level = level_counts ? get(&b, args[18], 'd', 0, cap, NULL, "level") : NULL;
    char *in_level = level ? get(&b, args[19], '?', 0, cap, NULL, "in_level") : NULL;
    char *tail_on = in_level ? get(&b, args[20], '?', 0, cap, NULL, "tail_on") : NULL;
    double *tail_at = tail_on ? get(&b, args[21], 'd', 0, cap, NULL, "tail_at") : NULL;
    double *phases = tail_at ? get(&b, args[22], 'd', 1, STRATA * cap, &phases_len, "phases") : NULL;
    if (!phases) goto done;
    Py_ssize_t k = PyLong_AsSsize_t(args[23]), k_before = PyLong_AsSsize_t(args[24]);
    long long rows = PyLong_AsLongLong(args[25]), segments = PyLong_AsLongLong(args[26]);
    long long window_row = PyLong_AsLongLong(args[27]), slot_ms = PyLong_AsLongLong(args[28]);
    long long slot_rows = PyLong_AsLongLong(args[29]);
    int timely = PyObject_IsTrue(args[30]);
    double least_p = PyFloat_AsDouble(args[31]), rate = PyFloat_AsDouble(args[32]);
    double allowance = PyFloat_AsDouble(args[33]), new_demand = PyFloat_AsDouble(args[34]);
    int tails = PyObject_IsTrue(args[35]), faded = PyObject_IsTrue(args[36]);
    if (PyErr_Occurred()) goto done;
    if (k < 0 || k > cap || k_before < 0 || k_before > k || phases_len != STRATA * cap) {
        PyErr_Format(PyExc_ValueError, "clusters out of range. Received: k=%zd of %zd", k, cap);
        goto done;
    }
    {
        PartIn in = {ids, wide, time_ms, latency, start, stop, keep, weight, rows_cix, lat_g,
                     lut, lut_len, counts, exposure, in_segment, last_segment, last_row,
                     sure_ms, sure_row, level_counts, level, in_level, tail_on, tail_at,
                     phases, cap, k, k_before, rows, segments, window_row, slot_ms,
                     slot_rows, timely, least_p, rate, allowance, new_demand, tails, faded};
        PartOut o;
        int status = part_core(&in, &o);
        if (status == 0)
            result = Py_BuildValue("(ndndidLO)", o.kept, o.expected, o.level_rows, o.level_p,
                                   o.sure_code, o.new_demand, o.sure_value,
                                   o.measured ? Py_True : Py_False);
        else if (status == 1)
            result = Py_NewRef(Py_None);
    }
done:
    release(&b);
    return result;
}

/* ------------------------------------------------------------------ batches */

/* The ledger's numbers (sample_ledger.py) `decide` steps itself: the same constants. */
#define FIRST_SEGMENT_ROWS 16
#define P_FLOOR 0.25
#define NEW_SHARE 0.5
#define CONTROL_RATE 1.0
#define CONTROL_CLIP 0.5
#define GAIN_LO 0.5
#define GAIN_HI 2.0
#define RATE_LO 0.25
#define RATE_HI 2.5
#define TAIL_MEMORY_ROWS 256.0
#define TAIL_MIN_ROWS 50

/* The ledger's numbers, in two arrays of the budget (`_ints`, int64, and `_floats`,
 * float64) that its attributes read and write (sample_compiled.py names them in this
 * order, and checks INT_NUMBERS and FLOAT_NUMBERS): `decide` reads them at its start and
 * writes them back at its end, two buffers in place of an attribute each. */
enum {
    I_K, I_ROWS, I_SEGMENTS, I_WINDOW_MS, I_WINDOW_ROW, I_WINDOW_ROWS, I_SEGMENT_END,
    I_CLOCK_MS, I_HAS_CLOCK, I_SURE_LO, I_SURE_LO_INF, I_SEG_FILL, I_SEG_ROWS,
    I_SEG_MEASURED, I_TAILS, I_FADED, I_SLOT_MS, I_SLOT_ROWS, I_WINDOW_LEN_MS,
    I_WINDOW_ROWS_MIN, I_KEPT, I_DROPPED, N_INTS
};
static const char *int_names[N_INTS] = {
    "_k", "rows", "segments", "window_ms", "window_row", "window_rows", "_segment_end",
    "clock_ms", "_has_clock", "_sure_lo", "_sure_lo_inf", "_seg_fill", "_seg_rows",
    "_seg_measured", "_tails", "_faded", "slot_ms", "slot_rows", "_window_len_ms",
    "_window_rows_min", "kept", "dropped",
};
enum {
    F_SEG_P, F_TOTAL, F_WINDOW_SPENT, F_NEW_DEMAND, F_RATE, F_ALLOWANCE, F_GAIN, F_TAU,
    F_FRACTION, F_WINDOW_S, N_FLOATS
};
static const char *float_names[N_FLOATS] = {
    "_seg_p", "total", "window_spent", "new_demand", "rate", "allowance", "gain", "tau",
    "fraction", "_window_s",
};

/* The attributes of a `CompiledBudget` that `decide` reads, interned once. */
enum {
    A_INTS, A_FLOATS,
    /* arrays */
    A_LUT, A_COUNTS, A_EXPOSURE, A_IN_SEGMENT, A_LAST_SEGMENT, A_LAST_ROW, A_SURE_MS,
    A_SURE_ROW, A_LEVEL_COUNTS, A_LEVEL, A_IN_LEVEL, A_TAIL_ON, A_TAIL_AT, A_PHASES, A_ORDER,
    A_SEG_CIX, A_SEG_LAT,
    /* methods */
    A_GROW_LUT, A_ADD_KINDS, A_BEGIN_SEGMENT,
    /* the views kept */
    A_VIEWS,
    N_ATTRS
};
static const char *attr_names[N_ATTRS] = {
    "_ints", "_floats",
    "_lut", "counts", "exposure", "in_segment", "last_segment", "last_row", "sure_ms",
    "sure_row", "level_counts", "level", "in_level", "tail_on", "tail_at", "phases", "_order",
    "_seg_cix", "_seg_lat",
    "_grow_lut", "_add_kinds", "_begin_segment",
    "_views",
};
static PyObject *attrs[N_ATTRS];

/* The views of a budget's arrays (attributes A_INTS to A_SEG_LAT), kept from call to call
 * in its `_views` (a capsule): an array the budget still holds is not asked for its
 * buffer again (its view keeps it alive and its data in place), one it replaced is. */
#define N_VIEWS (A_SEG_LAT + 1)
typedef struct {
    PyObject *obj[N_VIEWS]; /* the array each view is of (NULL: none) */
    Py_buffer view[N_VIEWS];
    Py_ssize_t items[N_VIEWS];
    /* the split levels' scratch (grown, never shrunk): the budget's own, as the levels
     * call numpy (which may let another thread in) while they hold it */
    char *split;
    size_t split_size;
} Views;
static const char *VIEWS = "logclust.sidecar._sample_kernel.views";

static void views_free(PyObject *capsule) {
    Views *v = PyCapsule_GetPointer(capsule, VIEWS);
    if (!v) {
        PyErr_Clear();
        return;
    }
    for (int a = 0; a < N_VIEWS; a++)
        if (v->obj[a]) PyBuffer_Release(&v->view[a]);
    free(v->split);
    PyMem_Free(v);
}

/* The budget's views, made on its first call. NULL with an error set. */
static Views *views_of(PyObject *self) {
    PyObject *o = PyObject_GetAttr(self, attrs[A_VIEWS]);
    if (!o) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
        PyErr_Clear();
    } else if (PyCapsule_IsValid(o, VIEWS)) {
        Views *v = PyCapsule_GetPointer(o, VIEWS);
        Py_DECREF(o); /* the budget holds it */
        return v;
    } else {
        Py_DECREF(o);
    }
    Views *v = PyMem_Calloc(1, sizeof *v);
    if (!v) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(v, VIEWS, views_free);
    if (!capsule) {
        PyMem_Free(v);
        return NULL;
    }
    int r = PyObject_SetAttr(self, attrs[A_VIEWS], capsule);
    Py_DECREF(capsule);
    return r < 0 ? NULL : v;
}

/* The data of the budget's array attribute `a`, checked as `get_into` checks it, from its
 * kept view where it is the same array. */
static void *get_kept(Views *v, PyObject *self, int a, char kind, int writable,
                      Py_ssize_t min_len, Py_ssize_t *len) {
    PyObject *o = PyObject_GetAttr(self, attrs[a]);
    if (!o) return NULL;
    if (o != v->obj[a]) {
        if (v->obj[a]) {
            PyBuffer_Release(&v->view[a]);
            v->obj[a] = NULL;
        }
        if (!get_into(&v->view[a], o, kind, writable, 0, &v->items[a], attr_names[a])) {
            Py_DECREF(o);
            return NULL;
        }
        v->obj[a] = o;
    }
    Py_DECREF(o); /* the view holds its own reference */
    if (v->items[a] < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: wrong type or fewer than %zd items. Received: %s, %zd",
                     attr_names[a], min_len, v->view[a].format ? v->view[a].format : "B",
                     v->items[a]);
        return NULL;
    }
    if (len) *len = v->items[a];
    return v->view[a].buf;
}

/* A source's ledger as `decide` steps it: its numbers, and its arrays while held. */
typedef struct {
    PyObject *self;
    Views *views; /* the budget's arrays' views, numbers' included */
    int64_t *ints;
    double *floats;
    int64_t *lut, *last_segment, *last_row, *sure_ms, *sure_row, *order, *seg_cix;
    double *counts, *exposure, *in_segment, *level_counts, *level, *tail_at, *phases, *seg_lat;
    char *in_level, *tail_on;
    Py_ssize_t lut_len, cap, order_len, seg_cap;
    long long k, rows, segments, window_ms, window_row, window_rows, segment_end, clock_ms;
    long long sure_lo, seg_fill, seg_rows, slot_ms, slot_rows, window_len_ms, window_rows_min;
    long long kept, dropped;
    int has_clock, sure_lo_inf, tails, faded, seg_measured;
    double total, window_spent, new_demand, rate, allowance, gain, tau, seg_p, fraction;
    double window_s;
} Ledger;

static int load_numbers(Ledger *L) {
    L->ints = get_kept(L->views, L->self, A_INTS, 'q', 1, N_INTS, NULL);
    L->floats = L->ints ? get_kept(L->views, L->self, A_FLOATS, 'd', 1, N_FLOATS, NULL) : NULL;
    if (!L->floats) return -1;
    const int64_t *i = L->ints;
    const double *f = L->floats;
    L->k = i[I_K];
    L->rows = i[I_ROWS];
    L->segments = i[I_SEGMENTS];
    L->window_ms = i[I_WINDOW_MS];
    L->window_row = i[I_WINDOW_ROW];
    L->window_rows = i[I_WINDOW_ROWS];
    L->segment_end = i[I_SEGMENT_END];
    L->clock_ms = i[I_CLOCK_MS];
    L->has_clock = i[I_HAS_CLOCK] != 0;
    L->sure_lo = i[I_SURE_LO];
    L->sure_lo_inf = i[I_SURE_LO_INF] != 0;
    L->seg_fill = i[I_SEG_FILL];
    L->seg_rows = i[I_SEG_ROWS];
    L->seg_measured = i[I_SEG_MEASURED] != 0;
    L->tails = i[I_TAILS] != 0;
    L->faded = i[I_FADED] != 0;
    L->slot_ms = i[I_SLOT_MS];
    L->slot_rows = i[I_SLOT_ROWS];
    L->window_len_ms = i[I_WINDOW_LEN_MS];
    L->window_rows_min = i[I_WINDOW_ROWS_MIN];
    L->kept = i[I_KEPT];
    L->dropped = i[I_DROPPED];
    L->seg_p = f[F_SEG_P];
    L->total = f[F_TOTAL];
    L->window_spent = f[F_WINDOW_SPENT];
    L->new_demand = f[F_NEW_DEMAND];
    L->rate = f[F_RATE];
    L->allowance = f[F_ALLOWANCE];
    L->gain = f[F_GAIN];
    L->tau = f[F_TAU];
    L->fraction = f[F_FRACTION];
    L->window_s = f[F_WINDOW_S];
    if (L->window_rows_min < 1) {
        PyErr_Format(PyExc_ValueError, "_window_rows_min must be positive. Received: %lld",
                     L->window_rows_min);
        return -1;
    }
    return 0;
}

/* The numbers `decide` changes, written back (into the arrays `load_numbers` read). */
static int store_numbers(const Ledger *L) {
    int64_t *i = L->ints;
    double *f = L->floats;
    i[I_ROWS] = L->rows;
    i[I_SEGMENTS] = L->segments;
    i[I_WINDOW_MS] = L->window_ms;
    i[I_WINDOW_ROW] = L->window_row;
    i[I_WINDOW_ROWS] = L->window_rows;
    i[I_SEGMENT_END] = L->segment_end;
    i[I_CLOCK_MS] = L->has_clock ? L->clock_ms : 0;
    i[I_HAS_CLOCK] = L->has_clock;
    i[I_SURE_LO] = L->sure_lo_inf ? 0 : L->sure_lo;
    i[I_SURE_LO_INF] = L->sure_lo_inf;
    i[I_SEG_FILL] = L->seg_fill;
    i[I_SEG_ROWS] = L->seg_rows;
    i[I_SEG_MEASURED] = L->seg_measured;
    i[I_FADED] = L->faded;
    i[I_TAILS] = L->tails;
    i[I_KEPT] = L->kept;
    i[I_DROPPED] = L->dropped;
    f[F_SEG_P] = L->seg_p;
    f[F_TOTAL] = L->total;
    f[F_WINDOW_SPENT] = L->window_spent;
    f[F_NEW_DEMAND] = L->new_demand;
    f[F_RATE] = L->rate;
    f[F_ALLOWANCE] = L->allowance;
    f[F_GAIN] = L->gain;
    f[F_TAU] = L->tau;
    return 0;
}

static void *get_attr_array(Ledger *L, int a, char kind, int writable, Py_ssize_t min_len,
                            Py_ssize_t *len) {
    return get_kept(L->views, L->self, a, kind, writable, min_len, len);
}

/* The ledger's arrays, checked: every per-cluster array of `cap` slots or more, phases of
 * STRATA * cap, k within them, the segment's scratch of SEGMENT_ROWS. */
static int load_arrays(Ledger *L) {
    Py_ssize_t phases_len;
    if (!(L->counts = get_attr_array(L, A_COUNTS, 'd', 1, 0, &L->cap)) ||
        !(L->lut = get_attr_array(L, A_LUT, 'q', 0, 0, &L->lut_len)) ||
        !(L->exposure = get_attr_array(L, A_EXPOSURE, 'd', 1, L->cap, NULL)) ||
        !(L->in_segment = get_attr_array(L, A_IN_SEGMENT, 'd', 1, L->cap, NULL)) ||
        !(L->last_segment = get_attr_array(L, A_LAST_SEGMENT, 'q', 1, L->cap, NULL)) ||
        !(L->last_row = get_attr_array(L, A_LAST_ROW, 'q', 1, L->cap, NULL)) ||
        !(L->sure_ms = get_attr_array(L, A_SURE_MS, 'q', 1, L->cap, NULL)) ||
        !(L->sure_row = get_attr_array(L, A_SURE_ROW, 'q', 1, L->cap, NULL)) ||
        !(L->level_counts = get_attr_array(L, A_LEVEL_COUNTS, 'd', 1, L->cap, NULL)) ||
        !(L->level = get_attr_array(L, A_LEVEL, 'd', 1, L->cap, NULL)) ||
        !(L->in_level = get_attr_array(L, A_IN_LEVEL, '?', 1, L->cap, NULL)) ||
        !(L->tail_on = get_attr_array(L, A_TAIL_ON, '?', 1, L->cap, NULL)) ||
        !(L->tail_at = get_attr_array(L, A_TAIL_AT, 'd', 0, L->cap, NULL)) ||
        !(L->phases = get_attr_array(L, A_PHASES, 'd', 1, STRATA * L->cap, &phases_len)) ||
        !(L->order = get_attr_array(L, A_ORDER, 'q', 1, 0, &L->order_len)) ||
        !(L->seg_cix = get_attr_array(L, A_SEG_CIX, 'q', 1, SEGMENT_ROWS, &L->seg_cap)) ||
        !(L->seg_lat = get_attr_array(L, A_SEG_LAT, 'd', 1, L->seg_cap, NULL)))
        return -1;
    if (L->k < 0 || L->k > L->cap || phases_len != STRATA * L->cap) {
        PyErr_Format(PyExc_ValueError, "clusters out of range. Received: k=%lld of %zd", L->k,
                     L->cap);
        return -1;
    }
    return 0;
}

/* The ledger's method `a` called with `arg` (stolen): the numbers written back first, the
 * numbers and arrays read again after (it may replace them). */
static int call_back(Ledger *L, int a, PyObject *arg) {
    if (!arg || store_numbers(L) < 0) {
        Py_XDECREF(arg);
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(L->self, attrs[a], arg);
    Py_DECREF(arg);
    if (!r) return -1;
    Py_DECREF(r);
    return load_numbers(L) < 0 || load_arrays(L) < 0 ? -1 : 0;
}

/* `segment_end` (sample_level.py) */
static long long segment_end_of(long long rows) {
    if (rows < SEGMENT_ROWS) {
        long long end = FIRST_SEGMENT_ROWS;
        while (end <= rows) end *= 2;
        return end;
    }
    return (rows / SEGMENT_ROWS + 1) * SEGMENT_ROWS;
}

/* `SegmentLedger._new_window` */
static void new_window(Ledger *L, int64_t now_ms) {
    __int128 length = L->window_len_ms, at = L->window_ms;
    L->window_ms = (long long)((__int128)now_ms < at + 2 * length ? at + length : now_ms);
    L->window_row = L->rows;
    L->window_rows = 0;
    L->window_spent = 0.0;
    L->new_demand = 0.0;
    L->segment_end = L->rows;
}

/* `SegmentLedger._account` */
static void account(Ledger *L, long long rows, double expected) {
    if (rows <= 0) return;
    double fair = L->rate * (double)rows;
    double err = dmin(CONTROL_CLIP, dmax(-CONTROL_CLIP, (fair - expected) / fair));
    double step = CONTROL_RATE * (double)rows / (double)L->window_rows_min * err;
    L->gain = dmin(GAIN_HI, dmax(GAIN_LO, L->gain * exp(step)));
}

/* `SegmentLedger._decay` */
static double decay(Ledger *L, long long rows, int64_t now_ms) {
    double elapsed_s = 0.0;
    if (L->has_clock) {
        __int128 gap = (__int128)now_ms - L->clock_ms;
        elapsed_s = gap > 0 ? (double)gap / 1000.0 : 0.0;
    }
    double factor = dmax(exp((double)(-rows) / (double)L->window_rows_min),
                         exp(-elapsed_s / L->window_s));
    if (factor < 1e-9) L->faded = 1;
    if (factor < 1.0) L->total *= factor;
    return factor;
}

/* ------------------------------------------------------------- split levels */

static PyObject *np_frombuffer; /* numpy.frombuffer: quicksort's order of tied breaks */

/* The order numpy's default argsort (its quicksort) gives `at` (n items), into `order`:
 * where breaks of a split cluster tie, their order moves the slope's rounding, and the
 * reference takes that sort's. 0, or -1 with an error set. */
static int quick_order(const double *at, Py_ssize_t n, int64_t *order) {
    if (!np_frombuffer) {
        PyObject *np = PyImport_ImportModule("numpy");
        if (!np) return -1;
        np_frombuffer = PyObject_GetAttrString(np, "frombuffer");
        Py_DECREF(np);
        if (!np_frombuffer) return -1;
    }
    PyObject *mem = PyMemoryView_FromMemory((char *)at, n * (Py_ssize_t)sizeof *at, PyBUF_READ);
    if (!mem) return -1;
    PyObject *arr = PyObject_CallFunction(np_frombuffer, "Os", mem, "f8");
    Py_DECREF(mem);
    if (!arr) return -1;
    PyObject *idx = PyObject_CallMethod(arr, "argsort", NULL);
    Py_DECREF(arr);
    if (!idx) return -1;
    Buffers b = {.n = 0};
    int64_t *got = get(&b, idx, 'q', 0, n, NULL, "argsort");
    if (got) memcpy(order, got, (size_t)n * sizeof *order);
    release(&b);
    Py_DECREF(idx);
    return got ? 0 : -1;
}

/* `_kept_at_floor` (sample_level.py) */
static double kept_at_floor(double floor_p) {
    double q = TAIL_QUANTILE;
    double tail = dmin(1.0, TAIL_BOOST * floor_p);
    double body = dmax(dmin(floor_p, floor_p), (floor_p - (1.0 - q) * tail) / q);
    return q * body + (1.0 - q) * tail;
}

/* numpy's searchsorted (side left) of one key: its binary search, step for step. */
static Py_ssize_t search_left(const double *a, Py_ssize_t n, double key) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + ((hi - lo) >> 1);
        if (a[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Room for `water_level` of up to k clusters. */
typedef struct {
    double *n, *at, *sorted, *slope, *kept, *gather;
    int64_t *keys, *idx, *tk, *ti;
    Py_ssize_t *runs;
    char *on;
} LevelRoom;

/* `water_level` (sample_level.py) of `counts` (k, the clusters' order) with `split`
 * flags: the breaks of each cluster's rows kept, sorted (stably by their bits; where a
 * split cluster's breaks tie, in numpy quicksort's order), the slope summed along them
 * in that order and the level read off where the rows kept reach `target`, as `_solve`
 * does. 0 with *level set, or -1 with an error set. */
static int water_level_c(const double *counts, const char *split, Py_ssize_t k, double target,
                         double floor_p, LevelRoom *w, double *level) {
    Py_ssize_t m = 0, non = 0;
    for (Py_ssize_t i = 0; i < k; i++)
        if (counts[i] > 0) {
            w->n[m] = counts[i];
            w->on[m] = split[i];
            non += split[i] != 0;
            m++;
        }
    double total = sum_of(w->n, m);
    if (target >= total) {
        *level = INFINITY;
        return 0;
    }
    double base = floor_p * total;
    if (non) {
        Py_ssize_t g = 0;
        for (Py_ssize_t i = 0; i < m; i++)
            if (w->on[i]) w->gather[g++] = w->n[i];
        base += (kept_at_floor(floor_p) - floor_p) * sum_of(w->gather, g);
    }
    if (base >= target) {
        *level = 0.0;
        return 0;
    }
    /* the breaks (`_breaks`), in the reference's order, and their slope changes */
    double *at = w->at, *slope = w->slope;
    Py_ssize_t nb = 0;
    int exact = non == 0, ties = 0;
    if (exact) { /* the positive counts ascending (ties are equal: any order), their floors */
        for (Py_ssize_t i = 0; i < m; i++) {
            w->keys[i] = bits(w->n[i]);
            w->idx[i] = i;
        }
        if (m > 0) stable_sort(w->keys, w->idx, m, w->tk, w->ti, w->runs);
        for (Py_ssize_t i = 0; i < m; i++) at[nb + i] = floor_p * w->n[w->idx[i]];
        for (Py_ssize_t i = 0; i < m; i++) at[nb + m + i] = w->n[w->idx[i]];
        for (Py_ssize_t i = 0; i < m; i++) slope[i] = 1.0, slope[m + i] = -1.0;
        nb = 2 * m;
    } else {
        double q = TAIL_QUANTILE, s1 = (1.0 - q) * TAIL_BOOST, keep_p = q * floor_p + 1.0 - q;
        for (Py_ssize_t i = 0; i < m; i++)
            if (!w->on[i]) at[nb] = floor_p * w->n[i], slope[nb++] = 1.0;
        for (Py_ssize_t i = 0; i < m; i++)
            if (!w->on[i]) at[nb] = w->n[i], slope[nb++] = -1.0;
        for (Py_ssize_t i = 0; i < m; i++)
            if (w->on[i]) at[nb] = floor_p * w->n[i], slope[nb++] = s1;
        for (Py_ssize_t i = 0; i < m; i++)
            if (w->on[i]) {
                double a = floor_p * w->n[i], b = w->n[i] / TAIL_BOOST;
                ties |= !(b > a); /* its tail is whole at its floor: two breaks at a */
                at[nb] = b > a ? b : a;
                slope[nb++] = -s1;
            }
        for (Py_ssize_t i = 0; i < m; i++)
            if (w->on[i]) {
                double a = floor_p * w->n[i], b = w->n[i] / TAIL_BOOST;
                b = b > a ? b : a;
                double c = w->n[i] * keep_p;
                at[nb] = c > b ? c : b;
                slope[nb++] = 1.0;
            }
        for (Py_ssize_t i = 0; i < m; i++)
            if (w->on[i]) at[nb] = w->n[i], slope[nb++] = -1.0;
    }
    /* `_sorted_breaks` (where ties are certain, the stable sort is not needed) */
    if (!ties) {
        for (Py_ssize_t i = 0; i < nb; i++) {
            w->keys[i] = bits(at[i]);
            w->idx[i] = i;
        }
        if (nb > 0) stable_sort(w->keys, w->idx, nb, w->tk, w->ti, w->runs);
        for (Py_ssize_t i = 1; i < nb && !exact && !ties; i++)
            ties = at[w->idx[i]] == at[w->idx[i - 1]];
    }
    if (ties && quick_order(at, nb, w->idx) < 0) return -1;
    double *sorted = w->sorted, *kept = w->kept;
    double run = 0.0;
    int64_t run_int = 0;
    for (Py_ssize_t i = 0; i < nb; i++) {
        int64_t j = w->idx[i];
        sorted[i] = at[j];
        if (exact) {
            run_int += (int64_t)slope[j];
            w->gather[i] = (double)run_int;
        } else {
            run = i ? run + slope[j] : slope[j];
            w->gather[i] = run;
        }
    }
    /* `_solve`: the rows kept at each break, from base */
    kept[0] = 0.0;
    for (Py_ssize_t i = 1; i < nb; i++) {
        double step = w->gather[i - 1] * (sorted[i] - sorted[i - 1]);
        kept[i] = i == 1 ? step : kept[i - 1] + step;
    }
    for (Py_ssize_t i = 0; i < nb; i++) kept[i] += base;
    Py_ssize_t i = search_left(kept, nb, target);
    *level = i == 0 ? sorted[0] : sorted[i - 1] + (target - kept[i - 1]) / w->gather[i - 1];
    return 0;
}

/* `SegmentLedger._set_split_levels` on the ledger's arrays (the levels of a segment where
 * some cluster of the level has a tail stratum). 0, or -1 with an error set. */
static int split_levels(Ledger *L, double floor_p, double target, double fair_target,
                        int young) {
    Py_ssize_t cap = L->cap, k = 0;
    /* counts, split flags and slots of the level (k), then room for 6 breaks each */
    size_t slots = (size_t)6 * (size_t)cap + 2;
    size_t bytes = slots * (9 * sizeof(double) + 2 * sizeof(int64_t)) + (size_t)cap * 2;
    Views *v = L->views;
    if (bytes > v->split_size) {
        char *grown = malloc(bytes + bytes / 2);
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        free(v->split);
        v->split = grown;
        v->split_size = bytes + bytes / 2;
    }
    char *mem = v->split;
    double *counts = (double *)mem, *freq = counts + cap;
    int64_t *slot = (int64_t *)(freq + cap);
    LevelRoom w;
    w.n = (double *)(slot + cap);
    w.at = w.n + cap;
    w.sorted = w.at + slots;
    w.slope = w.sorted + slots;
    w.kept = w.slope + slots;
    w.gather = w.kept + slots;
    w.keys = (int64_t *)(w.gather + slots);
    w.idx = w.keys + slots;
    w.tk = w.idx + slots;
    w.ti = w.tk + slots;
    w.runs = (Py_ssize_t *)(w.ti + slots);
    char *split = (char *)(w.runs + slots), *freq_split = split + cap;
    w.on = freq_split + cap;
    int status = -1;
    for (Py_ssize_t i = 0; i < cap; i++)
        if (L->in_level[i]) {
            counts[k] = L->level_counts[i];
            split[k] = L->tail_on[i] && !isnan(L->tail_at[i]);
            slot[k++] = i;
        }
    double tau, fair = 0.0;
    if (young) {
        if (water_level_c(counts, split, k, target, floor_p, &w, &tau) < 0) goto done;
    } else {
        if (water_level_c(counts, split, k, fair_target, floor_p, &w, &fair) < 0) goto done;
        Py_ssize_t nr = 0, nf = 0;
        for (Py_ssize_t i = 0; i < k; i++)
            if (counts[i] <= fair) w.gather[nr++] = counts[i];
        double rest = dmax(target - sum_of(w.gather, nr), 1e-9);
        for (Py_ssize_t i = 0; i < k; i++)
            if (!(counts[i] <= fair)) {
                freq[nf] = counts[i];
                freq_split[nf++] = split[i];
            }
        double lower;
        if (water_level_c(freq, freq_split, nf, rest, floor_p, &w, &lower) < 0) goto done;
        tau = dmin(fair, lower);
    }
    for (Py_ssize_t i = 0; i < cap; i++) L->level[i] = tau;
    if (!young)
        for (Py_ssize_t i = 0; i < k; i++)
            if (counts[i] <= fair) L->level[slot[i]] = fair;
    L->tau = tau;
    status = 0;
done:
    return status;
}

/* The k-th smallest of v[0:n] (k < n; no NaN), by selection: v is reordered. */
static double select_kth(double *v, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t lo = 0, hi = n - 1;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        /* the median of three as pivot */
        double a = v[lo], b = v[mid], c = v[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (pivot < v[j]) j--;
            if (i <= j) {
                double t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

/* `SegmentLedger._estimate_tails` on the segment's scratch (its first `fill` rows): each
 * cluster with TAIL_MIN_ROWS rows in the segment moves its tail estimate towards the
 * TAIL_QUANTILE of its measured latencies there (the value at rank floor(q (n - 1)), as
 * `segment_quantiles` picks it). 0, or -1 with an error set. */
static int estimate_tails(Ledger *L, Py_ssize_t fill) {
    Py_ssize_t k = L->k;
    for (Py_ssize_t r = 0; r < fill; r++)
        if (L->seg_cix[r] < 0 || L->seg_cix[r] >= k) {
            PyErr_SetString(PyExc_ValueError, "_seg_cix: an index out of range");
            return -1;
        }
    /* rows per cluster, measured rows of the large ones, where each cluster's begin */
    /* per (k), on (k + 1), at (k), then the values (fill + 1) */
    size_t ints = (size_t)(3 * k + 1) * sizeof(Py_ssize_t);
    Py_ssize_t *per = room(ROOM_TAILS, ints + (size_t)(fill + 1) * sizeof(double));
    if (!per) return -1;
    memset(per, 0, ints);
    double *values = (double *)((char *)per + ints);
    Py_ssize_t *on = per + k, *at = on + k + 1;
    for (Py_ssize_t r = 0; r < fill; r++) per[L->seg_cix[r]]++;
    Py_ssize_t measured = 0;
    for (Py_ssize_t r = 0; r < fill; r++) {
        int64_t x = L->seg_cix[r];
        if (per[x] >= TAIL_MIN_ROWS && !isnan(L->seg_lat[r])) {
            on[x]++;
            measured++;
        }
    }
    if (measured) {
        Py_ssize_t pos = 0;
        for (Py_ssize_t x = 0; x < k; x++) {
            at[x] = pos;
            pos += on[x];
        }
        for (Py_ssize_t r = 0; r < fill; r++) {
            int64_t x = L->seg_cix[r];
            if (per[x] >= TAIL_MIN_ROWS && !isnan(L->seg_lat[r])) values[at[x]++] = L->seg_lat[r];
        }
        for (Py_ssize_t x = 0; x < k; x++) {
            Py_ssize_t n = on[x];
            if (!n) continue;
            Py_ssize_t rank = (Py_ssize_t)(TAIL_QUANTILE * (double)(n - 1));
            double q = select_kth(values + at[x] - n, n, rank);
            double old = L->tail_at[x], blend = dmin(1.0, (double)per[x] / TAIL_MEMORY_ROWS);
            L->tail_at[x] = isnan(old) ? q : old + blend * (q - old);
        }
        L->tails = 1;
    }
    return 0;
}

/* `SegmentLedger._begin_segment` where `order` holds every cluster (elsewhere the
 * budget's own method). 0, or -1 with an error set. */
static int begin_segment(Ledger *L, int64_t now_ms) {
    if (L->order_len < L->k) return call_back(L, A_BEGIN_SEGMENT, PyLong_FromLongLong(now_ms));
    if (L->seg_fill) { /* _close_segment */
        int measured = L->seg_measured;
        Py_ssize_t fill = L->seg_fill;
        account(L, L->seg_rows, L->seg_p);
        L->seg_fill = L->seg_rows = 0;
        L->seg_p = 0.0;
        L->seg_measured = 0;
        if (measured && estimate_tails(L, fill) < 0) return -1;
    }
    if (!L->rows) L->window_ms = now_ms;
    L->segment_end = segment_end_of(L->rows);
    double factor = decay(L, L->segment_end - L->rows, now_ms);
    long long clock = L->has_clock && L->clock_ms != 0 ? L->clock_ms : now_ms;
    L->clock_ms = now_ms > clock ? now_ms : clock;
    L->has_clock = 1;
    long long least = 2 * L->window_rows < L->window_rows_min ? 2 * L->window_rows
                                                                : L->window_rows_min;
    double expect = dmax(dmax(L->total, (double)least), (double)L->window_rows);
    double debt = L->fraction * (double)L->window_rows - L->window_spent;
    double horizon = dmax(expect - (double)L->window_rows, (double)(L->segment_end - L->rows));
    L->rate = dmin(RATE_HI * L->fraction,
                   dmax(RATE_LO * L->fraction, L->fraction + debt / horizon));
    /* _refresh, _targets */
    double floor_p = P_FLOOR * L->fraction;
    double target = dmax(L->gain * L->rate * L->total, 1e-9);
    double fair_target = dmax(L->gain * L->fraction * L->total, 1e-9);
    int young = L->rate >= L->fraction || L->rows < SEGMENT_ROWS;
    SegmentIn in = {L->counts, L->exposure, L->last_segment, L->last_row, L->in_level,
                    L->level_counts, L->tail_on, L->tail_at, L->in_segment, L->level,
                    L->order, L->cap, L->order_len, L->k, factor, L->segments, L->rows,
                    L->total, L->tails, (double)L->window_rows_min, young, target,
                    fair_target, floor_p};
    double tau; /* segment_core checks `order` (every index within k) */
    int status = segment_core(&in, &tau);
    if (status < 0) return -1;
    if (status == 0) L->tau = tau;
    else if (split_levels(L, floor_p, target, fair_target, young) < 0) return -1;
    L->allowance = NEW_SHARE * L->fraction * dmax(L->total, (double)L->window_rows);
    L->segments += 1;
    return 0;
}

/* `SourceBudget._segment` for rows start:stop of the batch (within one segment): their
 * grouped clusters and latencies into the segment's scratch. The number kept, or -1 with
 * an error set. */
static Py_ssize_t decide_part(Ledger *L, PyObject *ids_obj, void *ids, int wide,
                              int64_t *time_ms, double *latency, Py_ssize_t start,
                              Py_ssize_t stop, char *keep, double *weight, int64_t t_min,
                              int64_t t_max) {
    if (L->rows == L->segment_end && begin_segment(L, time_ms[start]) < 0) return -1;
    Py_ssize_t m = stop - start;
    if (L->seg_fill + m > L->seg_cap) {
        PyErr_SetString(PyExc_RuntimeError, "a segment of more than SEGMENT_ROWS rows");
        return -1;
    }
    long long k_before = L->k;
    PartOut o;
    for (int tries = 0;; tries++) {
        int timely = L->sure_lo_inf || (__int128)t_max - L->sure_lo < L->slot_ms;
        PartIn in = {ids, wide, time_ms, latency, start, stop, keep, weight,
                     L->seg_cix + L->seg_fill, L->seg_lat + L->seg_fill, L->lut, L->lut_len,
                     L->counts, L->exposure, L->in_segment, L->last_segment, L->last_row,
                     L->sure_ms, L->sure_row, L->level_counts, L->level, L->in_level,
                     L->tail_on, L->tail_at, L->phases, L->cap, L->k, k_before, L->rows,
                     L->segments, L->window_row, L->slot_ms, L->slot_rows, timely,
                     P_FLOOR * L->fraction, L->rate, L->allowance, L->new_demand, L->tails,
                     L->faded};
        int status = part_core(&in, &o);
        if (status < 0) return -1;
        if (status == 0) break;
        if (tries) {
            PyErr_SetString(PyExc_RuntimeError, "a kind of the part has no index");
            return -1;
        }
        /* kinds without an index: the ledger gives them one */
        if (call_back(L, A_ADD_KINDS, PySequence_GetSlice(ids_obj, start, stop)) < 0) return -1;
    }
    if (o.sure_code == 1) {
        L->sure_lo = o.sure_value;
        L->sure_lo_inf = 0;
    } else if (o.sure_code == 2 && (L->sure_lo_inf || t_min < L->sure_lo)) {
        L->sure_lo = t_min;
        L->sure_lo_inf = 0;
    }
    L->rows += m;
    L->total += (double)m;
    L->window_rows += m;
    L->window_spent += o.expected;
    L->new_demand = o.new_demand;
    L->seg_fill += m;
    L->seg_rows += o.level_rows;
    L->seg_p += o.level_p;
    L->seg_measured |= o.measured;
    return o.kept;
}

/* What `decide` answers with: the caller's `Decisions` type (a tuple subclass, given by
 * `bind`), and numpy.empty with the dtypes of its two arrays (bool, float64). */
static PyObject *decisions_type, *np_empty, *dtype_bool, *dtype_f8;

/*
 * bind(decisions) -> None: the tuple type (sample_rows.Decisions) `decide` answers with;
 * numpy.empty and its dtypes looked up once. TypeError where it is not a tuple type.
 */
static PyObject *bind(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "bind() takes 1 argument");
        return NULL;
    }
    PyObject *t = args[0];
    if (!PyType_Check(t) || !PyType_IsSubtype((PyTypeObject *)t, &PyTuple_Type)) {
        PyErr_Format(PyExc_TypeError, "bind() takes a tuple type. Received: %R", t);
        return NULL;
    }
    if (!np_empty) {
        PyObject *np = PyImport_ImportModule("numpy");
        if (!np) return NULL;
        PyObject *empty = PyObject_GetAttrString(np, "empty");
        PyObject *dtype = empty ? PyObject_GetAttrString(np, "dtype") : NULL;
        Py_DECREF(np);
        PyObject *b = dtype ? PyObject_CallFunction(dtype, "s", "?") : NULL;
        PyObject *f = b ? PyObject_CallFunction(dtype, "s", "f8") : NULL;
        Py_XDECREF(dtype);
        if (!f) {
            Py_XDECREF(empty);
            Py_XDECREF(b);
            return NULL;
        }
        np_empty = empty, dtype_bool = b, dtype_f8 = f;
    }
    Py_INCREF(t);
    Py_XSETREF(decisions_type, t);
    Py_RETURN_NONE;
}

/* A new numpy array of `n` items of `dtype` (numpy.empty), or NULL with an error set. */
static PyObject *new_array(PyObject *n_obj, PyObject *dtype) {
    PyObject *args[2] = {n_obj, dtype};
    return PyObject_Vectorcall(np_empty, args, 2, NULL);
}

/*
 * decide(budget, ids, time_ms, latency) -> Decisions(keep, weight) of new arrays (bool,
 * float64; the type given to `bind`), or NEGATIVE_IDS where an id is negative, or
 * OTHER_ARRAYS where ids, times or latencies are not contiguous int32/int64, int64 and
 * float64 (in both, nothing changed).
 *
 * What `CompiledBudget.decide` does for a whole batch in one call: the batch's parts
 * (`SourceBudget._parts`, windows turned at their first row), each segment's start where
 * no latency nor tail is involved (else the budget's `_begin_segment`), and each part's
 * rows (`part`, new kinds given an index by the budget's `_add_kinds`), the budget's
 * numbers read at the start and written back at the end (the rows kept and dropped
 * counted there too).
 */
#define NEGATIVE_IDS -1
#define OTHER_ARRAYS -2
static PyObject *decide(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "decide() takes 4 arguments");
        return NULL;
    }
    if (!decisions_type) {
        PyErr_SetString(PyExc_RuntimeError, "decide(): the kernel is not bound (bind())");
        return NULL;
    }
    Buffers b = {.n = 0};
    Ledger L = {.self = args[0]};
    PyObject *result = NULL, *keep_obj = NULL, *weight_obj = NULL, *answer = NULL;
    Py_ssize_t n;
    int wide;
    int64_t *time_ms;
    double *latency;
    void *ids = batch_arrays(&b, args + 1, 1, &wide, &n, &time_ms, &latency);
    if (!ids) {
        PyErr_Clear();
        release(&b);
        return PyLong_FromLong(OTHER_ARRAYS);
    }
    int64_t bounds[4];
    batch_bounds(ids, wide, time_ms, n, bounds);
    int64_t lo = bounds[0], hi = bounds[1], t_min = bounds[2], t_max = bounds[3];
    if (lo < 0) {
        result = PyLong_FromLong(NEGATIVE_IDS);
        goto done;
    }
    PyObject *n_obj = PyLong_FromSsize_t(n);
    if (!n_obj) goto done;
    keep_obj = new_array(n_obj, dtype_bool);
    weight_obj = keep_obj ? new_array(n_obj, dtype_f8) : NULL;
    Py_DECREF(n_obj);
    char *keep = weight_obj ? get(&b, keep_obj, '?', 1, n, NULL, "keep") : NULL;
    double *weight = keep ? get(&b, weight_obj, 'd', 1, n, NULL, "weight") : NULL;
    if (!weight) goto done;
    /* Decisions(keep, weight): a tuple of the bound type, made as tuple.__new__ makes it,
     * before the ledger moves (whole from the start: the collector may see it) */
    PyTypeObject *type = (PyTypeObject *)decisions_type;
    if (!(answer = type->tp_alloc(type, 2))) goto done;
    Py_INCREF(keep_obj);
    PyTuple_SET_ITEM(answer, 0, keep_obj);
    Py_INCREF(weight_obj);
    PyTuple_SET_ITEM(answer, 1, weight_obj);
    if (!(L.views = views_of(L.self)) || load_numbers(&L) < 0 || load_arrays(&L) < 0)
        goto done;
    if (hi >= L.lut_len && call_back(&L, A_GROW_LUT, PyLong_FromLongLong(hi + 1)) < 0)
        goto done; /* ids index the table: as the reference grows it */
    int turns = (__int128)t_max - L.window_ms >= L.window_len_ms;
    Py_ssize_t kept = 0, start = 0;
    while (start < n) {
        __int128 stop = start + (__int128)(segment_end_of(L.rows) - L.rows);
        stop = stop < n ? stop : n;
        long long ahead = L.window_row + L.window_rows_min - L.rows;
        __int128 first = start + (__int128)(ahead > 0 ? ahead : 0);
        if (turns && L.rows && first < stop) {
            for (Py_ssize_t i = (Py_ssize_t)first; i < (Py_ssize_t)stop; i++)
                if ((int64_t)((uint64_t)time_ms[i] - (uint64_t)L.window_ms) >= L.window_len_ms) {
                    if (i == start) {
                        new_window(&L, time_ms[i]);
                        turns = (__int128)t_max - L.window_ms >= L.window_len_ms;
                    } else {
                        stop = i;
                    }
                    break;
                }
        }
        Py_ssize_t got = decide_part(&L, args[1], ids, wide, time_ms, latency, start,
                                     (Py_ssize_t)stop, keep, weight, t_min, t_max);
        if (got < 0) goto done;
        kept += got;
        start = (Py_ssize_t)stop;
    }
    L.kept += kept;
    L.dropped += n - kept;
    if (store_numbers(&L) < 0) goto done;
    result = answer;
    answer = NULL;
done:
    release(&b);
    Py_XDECREF(answer);
    Py_XDECREF(keep_obj);
    Py_XDECREF(weight_obj);
    return result;
}

/* scan(ids, time_ms, latency) -> (least id, greatest id, least time, greatest time) of
 * a batch (n >= 1; ids int32 or int64, times int64, latencies float64, all contiguous:
 * ValueError where not, and `part` takes them as they are). */
static PyObject *scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 3 arguments");
        return NULL;
    }
    Buffers b = {.n = 0};
    PyObject *result = NULL;
    Py_ssize_t n;
    int wide;
    int64_t *time_ms;
    double *latency;
    void *ids = batch_arrays(&b, args, 1, &wide, &n, &time_ms, &latency);
    if (ids) {
        int64_t o[4];
        batch_bounds(ids, wide, time_ms, n, o);
        result = Py_BuildValue("(LLLL)", (long long)o[0], (long long)o[1], (long long)o[2],
                               (long long)o[3]);
    }
    release(&b);
    return result;
}

static PyMethodDef methods[] = {
    {"decide", (PyCFunction)(void (*)(void))decide, METH_FASTCALL,
     "Decides a whole batch of one source (CompiledBudget.decide)."},
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "The tuple type (Decisions) that decide answers with."},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "The least and greatest id and time of a batch."},
    {"part", (PyCFunction)(void (*)(void))part, METH_FASTCALL,
     "Decides rows start:stop of a batch (SourceBudget._segment after a segment's start)."},
    {"segment", (PyCFunction)(void (*)(void))segment, METH_FASTCALL,
     "A segment's start: decay, the level's kinds and counts, their order and levels."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sample_kernel",
    "The per-row loops of sampling by cluster, compiled (see sample_compiled.py).", -1, methods,
};

/* A tuple of `n` names (the order of the ledger's numbers), or NULL with an error set. */
static PyObject *names_tuple(const char **names, int n) {
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t && i < n; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

PyMODINIT_FUNC PyInit__sample_kernel(void) {
    for (int a = 0; a < N_ATTRS; a++)
        if (!attrs[a] && !(attrs[a] = PyUnicode_InternFromString(attr_names[a]))) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    /* the constants the arithmetic is compiled with: the caller checks them */
    if (PyModule_AddIntConstant(m, "VERSION", KERNEL_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "SEGMENT_ROWS", SEGMENT_ROWS) < 0 ||
        PyModule_AddObject(m, "TAIL_QUANTILE", PyFloat_FromDouble(TAIL_QUANTILE)) < 0 ||
        PyModule_AddObject(m, "TAIL_BOOST", PyFloat_FromDouble(TAIL_BOOST)) < 0 ||
        PyModule_AddObject(m, "ACTIVE_GAP", PyFloat_FromDouble(ACTIVE_GAP)) < 0 ||
        PyModule_AddObject(m, "TAIL_MIN_WINDOW_ROWS", PyFloat_FromDouble(TAIL_MIN_WINDOW_ROWS)) < 0 ||
        PyModule_AddIntConstant(m, "NO_LATENCY", NO_LATENCY) < 0 ||
        PyModule_AddIntConstant(m, "FIRST_SEGMENT_ROWS", FIRST_SEGMENT_ROWS) < 0 ||
        PyModule_AddObject(m, "P_FLOOR", PyFloat_FromDouble(P_FLOOR)) < 0 ||
        PyModule_AddObject(m, "NEW_SHARE", PyFloat_FromDouble(NEW_SHARE)) < 0 ||
        PyModule_AddObject(m, "CONTROL_RATE", PyFloat_FromDouble(CONTROL_RATE)) < 0 ||
        PyModule_AddObject(m, "CONTROL_CLIP", PyFloat_FromDouble(CONTROL_CLIP)) < 0 ||
        PyModule_AddObject(m, "GAIN_RANGE", Py_BuildValue("(dd)", GAIN_LO, GAIN_HI)) < 0 ||
        PyModule_AddObject(m, "RATE_RANGE", Py_BuildValue("(dd)", RATE_LO, RATE_HI)) < 0 ||
        PyModule_AddObject(m, "TAIL_MEMORY_ROWS", PyFloat_FromDouble(TAIL_MEMORY_ROWS)) < 0 ||
        PyModule_AddIntConstant(m, "TAIL_MIN_ROWS", TAIL_MIN_ROWS) < 0 ||
        PyModule_AddIntConstant(m, "NEGATIVE_IDS", NEGATIVE_IDS) < 0 ||
        PyModule_AddIntConstant(m, "OTHER_ARRAYS", OTHER_ARRAYS) < 0 ||
        PyModule_AddObject(m, "INT_NUMBERS", names_tuple(int_names, N_INTS)) < 0 ||
        PyModule_AddObject(m, "FLOAT_NUMBERS", names_tuple(float_names, N_FLOATS)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
