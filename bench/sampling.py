"""Sampling by cluster under a storage budget (`serve --sample-fraction F`), against the
truth: every row is labelled, so the answers hold both the sample and what it stands for.

    python -m bench.sampling [--bundle DIR] [--fraction 0.1] [--http-rows 12000]
                             [--speed-rows 100000] [--speed-seconds 180] [--rounds N]
                             [--seed 0] [--against DIR] [--part all|quality|speed]

Setup as `bench.sidecar`: `logclust serve` in a child process pinned to core 0 (a fresh
one per workload), this process the client on core 1, 1,000-row batches over one stream.

Workloads:

1. **Replay**: loghub's Android stream, 5 passes (10,000 rows), each pass shuffled with
   its digits re-drawn (`training.data.redraw_digits`), all dated within one second (a
   replay at line rate); latencies lognormal with a median per ground-truth template.
2. **Shifting HTTP**: `logclust.cli.traffic` over 30 minutes, three 10-minute phases of
   `--http-rows` rows each: the three demo kinds; all thirteen kinds (ten new); cart,
   search and XML orders only (a shift in shares).

Reported: the kept fraction per 5-minute window of row time (the replay: per 1,000 rows);
per cluster and window with at least 1,000 rows, the weighted count (sum of
`sample_weight`) and the weighted p99 of latency from kept rows against the exact ones
(both p99 as the inverse of the empirical CDF, no interpolation);
the worst window of the rare clusters (under 0.1% of a window's rows: share of their rows
kept) and clusters that lost every row of a window; the per-cluster table of the largest
and rarest clusters. **Speed** (half the replay warms, half is timed): CPU per
1,000-row batch in one process, sampling off and on alternating batch by batch on the same
rows: of labelling (`label_table`), of the sampler alone (compiled, numpy, and compiled
with latencies; with `--against DIR` another checkout's beside it, alternating), with
`--against DIR` both samplers inside labelling (three labellers: off, on with this sampler,
on with DIR's; the fair A/B of the two, as the samplers alone favour this checkout's, whose
kernel's code the `on` labeller has just run), and of the sidecar's whole answer
(`label_ipc`), with what its two more columns cost to build and encode and the bytes they
add; then records/s of the
loghub replay (train systems) with and without a budget over gRPC: two sidecars (off, on)
on the same core, warmed alike, then timed passes alternating between them (`--rounds`
pairs, or as many as fit in `--speed-seconds`; 4 batches in flight), with the sidecar's
own CPU per 1,000 records (its threads' schedstat). Each A/B is reported as the median of
its per-pair ratios with their interquartile range (the noise, beside the effect).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, need_two_cores, pin, threads_cpu_s
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar, payloads, stream
from bench.workloads import has_loghub, replay, synthetic_lines
from logclust.cli.traffic import BOUTIQUE_KINDS, KINDS, generate_traffic
from logclust.client import Client
from logclust.cluster.labeler import Labeler
from logclust.sidecar.config import SamplingConfig, StreamLabelerConfig
from logclust.sidecar.core import Sidecar as SidecarCore
from logclust.sidecar.metrics import Metrics
from logclust.sidecar.sampling import Decisions, Sampler
from logclust.sidecar.store import MemoryStore
from logclust.sidecar.stream_labeler import StreamLabeler
from logclust.wire import contract, ipc
from training.data import default_data_dir, read_loghub_system, redraw_digits

# The sidecars run this checkout's package (the one this process imports), whatever the
# `logclust` console script was installed from.
HERE = str(Path(__file__).resolve().parents[1])
WINDOW_MS = 5 * 60 * 1000
SAMPLE_LEDGER = "logclust.sidecar.sample_ledger"
KERNEL = "logclust.sidecar._sample_kernel"
# The sampler's modules in import order; all but the first may be absent from an older
# checkout (`--against`).
OPTIONAL_MODULES = (
    SAMPLE_LEDGER,
    "logclust.sidecar.sample_rows",
    "logclust.sidecar.sample_compiled",
)
SAMPLER_MODULES = ("logclust.sidecar.sample_level", *OPTIONAL_MODULES)
T0_MS = 1_780_000_000_000
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("demo kinds", BOUTIQUE_KINDS),
    ("all kinds", KINDS),
    ("shifted", ("add_to_cart", "search", "xml_order")),
)


@dataclass
class Labelled:
    """A workload's answers: per row its cluster, time, latency, keep and weight."""

    name: str
    cluster: np.ndarray
    time_ms: np.ndarray
    latency: np.ndarray
    keep: np.ndarray
    weight: np.ndarray


def android_replay(passes: int, smoke: bool) -> pa.Table:
    """Android's lines, `passes` shuffled passes with digits re-drawn (as
    `shuffled_passes`, keeping each line's template), in one second, with latencies."""
    if has_loghub() and not smoke:
        logs = read_loghub_system(default_data_dir(), "Android")
        base, events = logs.raw, logs.templates or logs.raw
    else:
        base = synthetic_lines(200)
        events = [ln.split(":")[0] for ln in base]
    rng = np.random.default_rng(0)
    lines: list[str] = []
    kinds: list[str] = []
    for _ in range(passes):
        order = rng.permutation(len(base))
        lines += redraw_digits([base[i] for i in order], rng)
        kinds += [events[i] for i in order]
    names, kind = np.unique(np.asarray(kinds), return_inverse=True)
    median = np.exp(np.random.default_rng(1).uniform(0, 5, names.size))  # 1 to 150 ms
    latency = median[kind] * np.exp(np.random.default_rng(2).normal(0, 0.3, kind.size))
    n = len(lines)
    return pa.table(
        {
            "body": pa.array(lines, pa.string()),
            "latency_ms": pa.array(latency),
            "time": pa.array(T0_MS + np.arange(n) * 1000 // n, pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "source": pa.array(["android"] * n),
        }
    )


def shifting_http(rows: int) -> pa.Table:
    """Three 10-minute phases of `rows` requests each (`PHASES`), back to back."""
    parts = [
        generate_traffic(rows, seed=i, end_ms=T0_MS + (i + 1) * 600_000, kinds=kinds)
        for i, (_, kinds) in enumerate(PHASES)
    ]
    return pa.concat_tables(parts).drop_columns(["kind"])


def label(args: argparse.Namespace, name: str, table: pa.Table) -> Labelled:
    """Labels `table` on a fresh sidecar with the budget; the answers as arrays."""
    extra = ["--sample-fraction", str(args.fraction), "--sample-seed", str(args.seed)]
    with Sidecar(args.bundle, SERVER_CORE, HERE, extra=extra) as side, Client(side.addr) as client:
        client.wait_ready(60)
        out = client.label(table, batch_size=1000)
    col = out.column
    return Labelled(
        name,
        col("cluster_id").to_numpy(),
        col("time").cast(pa.int64()).to_numpy(),
        col("latency_ms").to_numpy(),
        col("keep").to_numpy(zero_copy_only=False),
        col("sample_weight").to_numpy(),
    )


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The `q` quantile of `values` with `weights` (the first value whose cumulative
    weight reaches `q` of the total)."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][min(order.size - 1, np.searchsorted(cum, q * cum[-1]))])


def exact_quantile(values: np.ndarray, q: float) -> float:
    """The exact `q` quantile of all `values` by the definition `weighted_quantile` uses
    (the inverse of the empirical CDF, no interpolation): the error measured is then the
    sample's alone, not the gap between two rows of a sparse tail that interpolation
    would add."""
    return float(np.quantile(values, q, method="inverted_cdf"))


def windows(run: Labelled, rows_per_window: int | None) -> list[np.ndarray]:
    """Row masks of the windows: 5 minutes of row time, or `rows_per_window` rows."""
    if rows_per_window is not None:
        n = run.cluster.size
        return [np.arange(n) // rows_per_window == w for w in range(-(-n // rows_per_window))]
    w = (run.time_ms - run.time_ms.min()) // WINDOW_MS
    return [w == i for i in range(int(w.max()) + 1)]


@dataclass
class Window:
    kept: float  # fraction of rows kept
    lost: int  # clusters with rows and none kept
    rare_share: float  # share kept of the rows of clusters under 0.1% of the window
    count_err: float  # worst |weighted / true - 1| of clusters with >= 1,000 rows
    p99_err: float  # worst |weighted p99 / exact p99 - 1| of those clusters
    big: int  # clusters with >= 1,000 rows


def judge(run: Labelled, mask: np.ndarray) -> Window:
    c, keep, w, lat = run.cluster[mask], run.keep[mask], run.weight[mask], run.latency[mask]
    ids, inv, rows = np.unique(c, return_inverse=True, return_counts=True)
    kept = np.bincount(inv, weights=keep, minlength=ids.size)
    est = np.bincount(inv, weights=w, minlength=ids.size)
    rare = rows < 0.001 * c.size
    count_err = p99_err = 0.0
    big = np.flatnonzero(rows >= 1000)
    for g in big.tolist():
        rows_g = inv == g
        count_err = max(count_err, abs(est[g] / rows[g] - 1))
        k = rows_g & keep & ~np.isnan(lat)
        exact = exact_quantile(lat[rows_g & ~np.isnan(lat)], 0.99)
        p99_err = max(p99_err, abs(weighted_quantile(lat[k], w[k], 0.99) / exact - 1))
    return Window(
        float(keep.mean()),
        int(np.sum(kept == 0)),
        float(kept[rare].sum() / rows[rare].sum()) if rare.any() else float("nan"),
        count_err,
        p99_err,
        big.size,
    )


def report_windows(out: Output, run: Labelled, judged: list[Window], unit: str) -> None:
    table = out.table(
        [
            unit,
            "kept fraction",
            "clusters that lost every row",
            "rare clusters (<0.1%): share kept",
            "clusters >= 1,000 rows",
            "worst weighted-count error",
            "worst weighted p99 error",
        ],
        title=f"{run.name}: per window",
    )
    for i, j in enumerate(judged):
        table.add(
            i + 1,
            fmt(j.kept, ".3f"),
            j.lost,
            fmt(j.rare_share, ".3f"),
            j.big,
            fmt(100 * j.count_err, ".1f", "%"),
            fmt(100 * j.p99_err, ".1f", "%"),
        )
    out.show(table)


def report_clusters(out: Output, run: Labelled, top: int) -> None:
    """The largest and the rarest clusters of the whole run."""
    ids, inv, rows = np.unique(run.cluster, return_inverse=True, return_counts=True)
    kept = np.bincount(inv, weights=run.keep, minlength=ids.size)
    est = np.bincount(inv, weights=run.weight, minlength=ids.size)
    order = np.argsort(-rows)
    picks = list(dict.fromkeys(order[:top].tolist() + order[-top:].tolist()))
    table = out.table(
        [
            "cluster",
            "rows",
            "kept share",
            "weighted count",
            "count error",
            "p99 exact / weighted ms",
        ],
        title=f"{run.name}: largest and rarest of {ids.size} clusters",
    )
    for g in picks:
        m = inv == g
        k = m & run.keep
        exact = exact_quantile(run.latency[m], 0.99)
        est99 = weighted_quantile(run.latency[k], run.weight[k], 0.99)
        table.add(
            int(ids[g]),
            int(rows[g]),
            fmt(kept[g] / rows[g], ".3f"),
            fmt(est[g], ".0f"),
            fmt(100 * (est[g] / rows[g] - 1), "+.1f", "%"),
            f"{exact:.1f} / {est99:.1f}",
        )
    out.show(table)


def spread(ratios: list[float]) -> str:
    """The median of per-pair ratios, their interquartile range and count."""
    lo, mid, hi = np.percentile(ratios, [25, 50, 75])
    return f"{mid:.3f} (IQR {lo:.3f}-{hi:.3f}, {len(ratios)} pairs)"


def speed(args: argparse.Namespace, out: Output) -> None:
    """Records/s of the replay with and without a budget over gRPC: two sidecars (off and
    on) pinned to the same core, both warmed with the same pass, then timed passes of the
    same rows alternating between them (`--rounds` pairs, or as many as fit in
    `--speed-seconds`; the first of a pair alternating too): both see the same history,
    and a shared machine's load moves both alike. The figure is the median of the pairs'
    ratios with their interquartile range; beside it the sidecar's own CPU time per 1,000
    records (decoding, labelling, sampling, encoding), which other processes on a shared
    machine move far less than the wall clock."""
    lines = replay(args.speed_rows, seed=0, smoke=args.smoke)
    warm, timed = payloads(lines[: len(lines) // 2], 1000), payloads(lines[len(lines) // 2 :], 1000)
    on = ["--sample-fraction", str(args.fraction)]
    table = out.table(
        [
            "round",
            "off records/s",
            "on records/s",
            "on / off",
            "sidecar CPU ms per 1,000, off",
            "on",
            "on / off",
        ],
        title="Speed over gRPC: loghub replay, two sidecars alternating",
    )
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    with (
        Sidecar(args.bundle, SERVER_CORE, HERE) as off_side,
        Sidecar(args.bundle, SERVER_CORE, HERE, extra=on) as on_side,
        Client(off_side.addr) as off_client,
        Client(on_side.addr) as on_client,
    ):
        pairs = {"off": (off_side, off_client), "on": (on_side, on_client)}
        for side, client in pairs.values():
            client.wait_ready(60)
            stream(client, warm, 4)
            side.wait_idle()
        began = time.monotonic()
        i = 0
        while (i < args.rounds) if args.rounds else (time.monotonic() - began < args.speed_seconds):
            rate: dict[str, float] = {}
            cpu: dict[str, float] = {}  # the sidecar's CPU ms per 1,000 records
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                side, client = pairs[mode]
                before = threads_cpu_s(side.pid)
                wall, _ = stream(client, timed, 4)
                cpu[mode] = (threads_cpu_s(side.pid) - before) * 1e6 / (len(timed) * 1000)
                rate[mode] = len(timed) * 1000 / wall
                side.wait_idle()
            ratios.append(rate["on"] / rate["off"])
            cpu_ratios.append(cpu["on"] / cpu["off"])
            i += 1
            table.add(
                i,
                fmt(rate["off"], ",.0f"),
                fmt(rate["on"], ",.0f"),
                f"{ratios[-1]:.3f}",
                fmt(cpu["off"], ".2f"),
                fmt(cpu["on"], ".2f"),
                f"{cpu_ratios[-1]:.3f}",
            )
    out.show(table)
    out.line(f"Over gRPC, records/s on / off, median of per-pair ratios: {spread(ratios)}")
    out.line(f"The sidecar's CPU per record, on / off: {spread(cpu_ratios)}")


BARE = "a sampler's call on a source without a budget"
IN_PLACE = "the two answer columns built within `on` (`with_sample`)"


def cpu_ab(args: argparse.Namespace, out: Output) -> None:
    """CPU time of labelling one 1,000-row replay batch in this process, sampling off and
    on alternating batch by batch, the first of each pair alternating too (two
    `StreamLabeler`s over one encoder, both warmed with the same first half): the load of
    a shared machine moves both alike, and each pair labels the same rows. Beside them,
    the sampler alone (`Sampler.decide`) on the off labeller's answers, warmed the same:
    compiled, the numpy reference, compiled with latencies (lognormal, a median per
    cluster: tail strata once clusters are large), and with `--against DIR` the sampler
    of another checkout, without and with latencies, alternating with this one's."""
    lines = replay(args.speed_rows, seed=0, smoke=args.smoke)
    tables = [pa.table({"body": pa.array(lines[i : i + 1000])}) for i in range(0, len(lines), 1000)]
    encoder = Labeler.load(args.bundle)
    sampling = SamplingConfig(fraction=args.fraction)
    on_cfg = StreamLabelerConfig(sampling=sampling)
    labelers = {"off": StreamLabeler(encoder), "on": StreamLabeler(encoder, on_cfg)}
    samplers = {"sampler alone": Sampler(sampling)}
    if samplers["sampler alone"].compiled_loops:  # and this checkout's numpy reference
        samplers["sampler alone, numpy"] = Sampler(sampling, compiled_loops=False)
    if args.against:
        samplers[f"sampler alone, {args.against}"] = reference_sampler(args.against)(sampling)
    with_latency = {"sampler alone, with latencies": Sampler(sampling)}
    if args.against:
        other = reference_sampler(args.against)(sampling)
        with_latency[f"sampler alone, with latencies, {args.against}"] = other
    rng = np.random.default_rng(0)
    half = len(tables) // 2
    ms: dict[str, list[float]] = {name: [] for name in (*labelers, *samplers)}
    ms.update({name: [] for name in with_latency})
    ms["the sampler within `on`"] = inside = []
    # The call alone: a sampler whose budget names another source keeps these rows whole
    # (no kernel, two arrays of ones), as cold after the labelling as the others.
    bare = Sampler(SamplingConfig(source_fractions={"elsewhere": args.fraction}))
    ms[BARE] = []
    on_sampler = labelers["on"].sampler
    assert on_sampler is not None
    decide = on_sampler.decide

    def timed_decide(*args: Any) -> Decisions:
        start = time.thread_time()
        d = decide(*args)
        inside.append(1000 * (time.thread_time() - start))
        return d

    on_sampler.decide = timed_decide  # type: ignore[method-assign,assignment]
    ratios: list[float] = []
    same = True  # whether the samplers decided alike
    for i, t in enumerate(tables):
        if i == half:  # both warmed with the same batches
            inside.clear()
            for lab in labelers.values():
                lab.wait_for_consolidations()
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        for mode in order:
            start = time.thread_time()
            got = labelers[mode].label_table(t)
            if i >= half:
                ms[mode].append(1000 * (time.thread_time() - start))
            if mode == "off":
                labels = got
        if i >= half:
            ratios.append(ms["on"][-1] / ms["off"][-1])
        now = np.full(labels.ids.size, int(time.time() * 1000))
        names = list(samplers) if i % 2 == 0 else list(samplers)[::-1]
        decided = []
        for name in names:
            start = time.thread_time()
            d = samplers[name].decide(
                labels.source_names, labels.source_codes, labels.ids, now, labels.latency_ms
            )
            if i >= half:
                ms[name].append(1000 * (time.thread_time() - start))
            decided.append(np.concatenate([d.keep, d.weight]))
        same &= all(np.array_equal(decided[0], other) for other in decided[1:])
        start = time.thread_time()
        bare.decide(labels.source_names, labels.source_codes, labels.ids, now, labels.latency_ms)
        if i >= half:
            ms[BARE].append(1000 * (time.thread_time() - start))
        latency = (1.0 + labels.ids % 17) * rng.lognormal(0.0, 0.5, labels.ids.size)
        decided = []
        for name in list(with_latency) if i % 2 == 0 else list(with_latency)[::-1]:
            start = time.thread_time()
            d = with_latency[name].decide(
                labels.source_names, labels.source_codes, labels.ids, now, latency
            )
            if i >= half:
                ms[name].append(1000 * (time.thread_time() - start))
            decided.append(np.concatenate([d.keep, d.weight]))
        same &= all(np.array_equal(decided[0], other) for other in decided[1:])
    _show_ms(out, ms, "label_table")
    loops = "compiled" if samplers["sampler alone"].compiled_loops else "numpy (not built)"
    out.line(f"This checkout's sampler: {loops} loops")
    out.line(f"Labelling (`label_table`) CPU per batch, on / off: {spread(ratios)}")
    share = np.mean(ms["sampler alone"]) / np.mean(ms["off"])
    out.line(
        f"The sampler alone per 1,000 rows {np.mean(ms['sampler alone']):.3f} ms against "
        f"labelling without it {np.mean(ms['off']):.3f} ms (means): {share:.3f} of it"
    )
    extra = (np.mean(ms["on"]) - np.mean(ms["off"])) / np.mean(ms["off"])
    within = np.mean(inside) / np.mean(ms["off"])
    out.line(
        f"Labelling on over off (means): +{100 * extra:.1f}%, of which the sampler within "
        f"it {100 * within:.1f}% ({np.mean(inside):.3f} ms per 1,000 rows)"
    )
    if "sampler alone, numpy" in ms:
        ratio = np.median(ms["sampler alone"]) / np.median(ms["sampler alone, numpy"])
        out.line(f"Compiled loops over this checkout's numpy reference (medians): {ratio:.3f}")
    if args.against:
        ratio = np.median(ms["sampler alone"]) / np.median(ms[f"sampler alone, {args.against}"])
        name = f"sampler alone, with latencies, {args.against}"
        with_ratio = np.median(ms["sampler alone, with latencies"]) / np.median(ms[name])
        same_text = "the same" if same else "DIFFERENT"
        out.line(
            f"This sampler over the other (medians): {ratio:.3f}, with latencies "
            f"{with_ratio:.3f}; decisions {same_text}"
        )


def within_ab(args: argparse.Namespace, out: Output) -> None:
    """`--against DIR`: this checkout's sampler against DIR's inside labelling, the fair
    A/B of the two. Three labellers over one encoder (off; on with this sampler; on with
    DIR's), each batch given the same receive time, the two `on` in alternating order
    after `off`: each sampler runs where the sidecar runs it, after a labelling, with its
    own code as cold as the other's. (The samplers alone, in `cpu_ab`, favour this
    checkout's: its kernel's code is warm from the `on` labeller's call before it; the
    same code against itself there reads 0.87-0.93.) Reports the CPU of the sampler
    within each labelling and of the labelling, each A/B the median of per-batch ratios,
    and whether both decided alike."""
    lines = replay(args.speed_rows, seed=0, smoke=args.smoke)
    tables = [pa.table({"body": pa.array(lines[i : i + 1000])}) for i in range(0, len(lines), 1000)]
    encoder = Labeler.load(args.bundle)
    sampling = SamplingConfig(fraction=args.fraction)
    this, other = "on", f"on, {args.against}'s sampler"
    labelers = {"off": StreamLabeler(encoder)}
    labelers[this] = StreamLabeler(encoder, StreamLabelerConfig(sampling=sampling))
    labelers[other] = StreamLabeler(encoder, StreamLabelerConfig(sampling=sampling))
    labelers[other].sampler = reference_sampler(args.against)(sampling)
    inside: dict[str, list[float]] = {this: [], other: []}
    for name in inside:
        sampler = labelers[name].sampler
        assert sampler is not None
        sampler.decide = _timed(sampler.decide, inside[name])  # type: ignore[method-assign]
    ms: dict[str, list[float]] = {name: [] for name in labelers}
    half, same, now = len(tables) // 2, True, int(time.time() * 1000)
    for i, t in enumerate(tables):
        if i == half:  # all three warmed with the same batches
            for lab in labelers.values():
                lab.wait_for_consolidations()
            for values in inside.values():
                values.clear()
        got = {}
        for name in ("off", this, other) if i % 2 == 0 else ("off", other, this):
            start = time.thread_time()
            got[name] = labelers[name].label_table(t, now + 100 * i)
            if i >= half:
                ms[name].append(1000 * (time.thread_time() - start))
        a, b = got[this], got[other]
        assert a.keep is not None and b.keep is not None
        assert a.weight is not None and b.weight is not None
        same &= np.array_equal(a.keep, b.keep) and np.array_equal(a.weight, b.weight)
    _show_ms(out, {**ms, **{f"the sampler within `{k}`": v for k, v in inside.items()}}, "A/B")
    within = spread(list(np.divide(inside[this], inside[other])))
    labelling = spread(list(np.divide(ms[this], ms[other])))
    out.line(
        f"The sampler within labelling, this over {args.against}'s: {within}; labelling "
        f"{labelling}; decisions {'the same' if same else 'DIFFERENT'}"
    )


def _timed(call: Any, into: list[float]) -> Any:
    """`call` adding the CPU ms of each call to `into`."""

    def timed(*args: Any) -> Any:
        start = time.thread_time()
        got = call(*args)
        into.append(1000 * (time.thread_time() - start))
        return got

    return timed


def _show_ms(out: Output, ms: dict[str, list[float]], what: str) -> None:
    """A table of CPU ms per batch (1,000 rows), median, quartiles and mean, by mode."""
    table = out.table(
        ["", "batches", "CPU ms per 1,000 rows, median", "IQR", "mean"],
        title=f"Speed in one process: {what}, 1,000-row replay batches",
    )
    for mode, values in ms.items():
        lo, mid, hi = np.percentile(values, [25, 50, 75])
        quartiles = f"{lo:.3f}-{hi:.3f}"
        table.add(mode, len(values), fmt(mid, ".3f"), quartiles, fmt(np.mean(values), ".3f"))
    out.show(table)


def core_ab(args: argparse.Namespace, out: Output) -> None:
    """CPU time of the sidecar's whole answer to one 1,000-row replay batch in this
    process (`Sidecar.label_ipc`: decoding, labelling, metrics, sampling, encoding), off
    and on alternating batch by batch, the first of each pair alternating too: two
    sidecars over one encoder, warmed with the same half of the batches. The gRPC A/B
    without the transport and its wall clock."""
    lines = replay(args.speed_rows, seed=0, smoke=args.smoke)
    data = payloads(lines, 1000)
    encoder = Labeler.load(args.bundle)
    on_cfg = StreamLabelerConfig(sampling=SamplingConfig(fraction=args.fraction))
    sides = {
        "off": SidecarCore(StreamLabeler(encoder), MemoryStore(), Metrics()),
        "on": SidecarCore(StreamLabeler(encoder, on_cfg), MemoryStore(), Metrics()),
    }
    half = len(data) // 2
    for side in sides.values():
        for payload in data[:half]:
            side.label_ipc(payload)
        side.wait_for_consolidations()
    ms: dict[str, list[float]] = {mode: [] for mode in sides}
    ratios: list[float] = []
    answers: dict[str, list[bytes]] = {mode: [] for mode in sides}
    # the two answer columns where `on` builds them, after its labelling
    in_place: list[float] = []
    ms[IN_PLACE] = in_place
    with_sample = contract.with_sample
    contract.with_sample = _timed(with_sample, in_place)
    try:
        for i, payload in enumerate(data[half:]):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                start = time.thread_time()
                answer, _ = sides[mode].label_ipc(payload)
                ms[mode].append(1000 * (time.thread_time() - start))
                answers[mode].append(answer)
            ratios.append(ms["on"][-1] / ms["off"][-1])
    finally:
        contract.with_sample = with_sample
    _show_ms(out, ms, "the sidecar's answer (label_ipc)")
    out.line(f"The sidecar's CPU per batch (label_ipc), on / off: {spread(ratios)}")
    answer_columns(out, answers, float(np.median(ms["off"])))


def answer_columns(out: Output, answers: dict[str, list[bytes]], off_ms: float) -> None:
    """What the two answer columns (`keep`, `sample_weight`) cost where the answer is
    built and encoded: `contract.with_sample` on the off sidecar's answer with the on
    sidecar's decisions, and `encode_ipc` of the answer with them against without (each
    timed over 20 calls, the median of the batches), and the bytes they add."""
    built, encoded, extra, sizes = [], [], [], []
    for off, on in zip(answers["off"], answers["on"], strict=True):
        table, sampled = ipc.decode_trusted_ipc(off), ipc.decode_trusted_ipc(on)
        keep = sampled.column(contract.KEEP).to_numpy(zero_copy_only=False)
        weight = sampled.column(contract.SAMPLE_WEIGHT).to_numpy()
        start = time.thread_time()
        for _ in range(20):
            contract.with_sample(table, keep, weight)
        built.append(1000 * (time.thread_time() - start) / 20)
        start = time.thread_time()
        for _ in range(20):
            ipc.encode_ipc(table)
        middle = time.thread_time()
        for _ in range(20):
            ipc.encode_ipc(sampled)
        encoded.append(1000 * (time.thread_time() - middle) / 20)
        extra.append(encoded[-1] - 1000 * (middle - start) / 20)
        sizes.append((len(on) - len(off), len(off)))
    more, base = np.median([s[0] for s in sizes]), np.median([s[1] for s in sizes])
    build, enc = float(np.median(built)), float(np.median(extra))
    out.line(
        f"The two answer columns per 1,000 rows: built {build:.4f} ms, encoded +{enc:.4f} ms "
        f"({100 * (build + enc) / off_ms:.2f}% of the off answer's {off_ms:.3f} ms, medians); "
        f"+{more:,.0f} bytes on {base:,.0f} ({100 * more / base:.1f}%)"
    )


def reference_sampler(root: str) -> type[Sampler]:
    """The `Sampler` of another checkout (`--against DIR`: its
    logclust/sidecar/sample_level.py, and sample_ledger.py, sample_rows.py and
    sample_compiled.py where it has them, and sampling.py), loaded beside this one's, with
    its own compiled kernel where it has one built (`python setup.py build_ext --inplace`
    there), else this checkout's (which a sampler of another kernel version leaves
    unused: it decides with its numpy reference)."""
    names = (KERNEL, *SAMPLER_MODULES, "logclust.sidecar.sampling")
    package = sys.modules["logclust.sidecar"]
    short = {name: name.rsplit(".", 1)[1] for name in names}
    saved = {name: sys.modules.get(name) for name in names}
    # `from logclust.sidecar import x` reads the package's attribute before sys.modules
    attributes = {name: getattr(package, short[name], None) for name in names}
    built = sorted((Path(root) / "logclust/sidecar").glob("_sample_kernel*.so"))
    try:
        for name in names:  # under the same names while loading, so they import each other
            path = Path(root) / (name.replace(".", "/") + ".py")
            if name == KERNEL:
                if not built:
                    continue
                path = built[0]
            elif name in OPTIONAL_MODULES and not path.exists():  # older: all in sampling.py
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise SystemExit(f"No sampler in --against. Received: {root}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            setattr(package, short[name], module)
            spec.loader.exec_module(module)
        return cast("type[Sampler]", sys.modules[names[-1]].Sampler)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
            if attributes[name] is None:
                if hasattr(package, short[name]):
                    delattr(package, short[name])
            else:
                setattr(package, short[name], attributes[name])


def quality(args: argparse.Namespace, out: Output) -> None:
    """The sample against the truth on both workloads."""
    android = android_replay(args.passes, args.smoke)
    runs = [
        (label(args, f"Android replay, {args.passes} passes in one second", android), 1000),
        (label(args, "shifting HTTP, three 10-minute phases", shifting_http(args.http_rows)), None),
    ]
    for run, per in runs:
        judged = [judge(run, m) for m in windows(run, per) if m.any()]
        if per:  # the replay is one window of time: judged whole, then by rows
            judged.insert(0, judge(run, np.ones(run.cluster.size, bool)))
        report_windows(out, run, judged, "whole, then 1,000 rows" if per else "5 minutes")
        out.line(f"{run.name}: kept fraction overall {run.keep.mean():.3f}")
        report_clusters(out, run, args.top)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__, "sampling")
    p.add_argument("--bundle", default=None)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0, help="the sampling seed (--sample-seed)")
    p.add_argument("--passes", type=int, default=5, help="Android passes of the replay")
    p.add_argument("--http-rows", type=int, default=12_000, help="requests per phase")
    p.add_argument("--speed-rows", type=int, default=100_000, help="replay rows, half timed")
    p.add_argument("--rounds", type=int, default=0, help="gRPC A/B pairs; 0: --speed-seconds")
    p.add_argument("--speed-seconds", type=float, default=180.0, help="time for gRPC A/B pairs")
    p.add_argument(
        "--against",
        default=None,
        help="a checkout whose sampler is timed beside this one's (speed, in one process)",
    )
    p.add_argument("--top", type=int, default=6, help="largest and rarest clusters shown")
    p.add_argument(
        "--part",
        choices=("all", "quality", "speed"),
        default="all",
        help="quality: the sample against the truth; speed: on against off",
    )
    args = p.parse_args(argv)
    cli.smoke(args, passes=2, http_rows=600, speed_rows=4000, rounds=1, top=3)
    need_two_cores()
    pin(CLIENT_CORE)
    out = cli.output(args, "sampling")
    out.header(args.bundle, fraction=str(args.fraction), seed=str(args.seed))
    if args.part in ("all", "quality"):
        quality(args, out)
    if args.part in ("all", "speed"):
        cpu_ab(args, out)
        if args.against:
            within_ab(args, out)
        core_ab(args, out)
        speed(args, out)
    out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
