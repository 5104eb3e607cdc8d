"""The replay with new texts: 1% of rows never seen before, and a burst of new texts.

    python -m bench.novelty [--bundle DIR] [--rows 200000] [--share 0.01] [--burst 10000]
                            [--encoder-batch N]

Every row whose masked text the sidecar has never seen goes through the encoder; this
benchmark times what that costs on the steady replay (`bench.workloads.replay`, the loghub
train systems with fields re-drawn every pass). New texts are real lines with one message
word swapped for another real word of loghub (`bench.workloads.new_texts`): `Verification
succeeded for blk_<NUM>` becomes `Running succeeded for blk_<NUM>`, never a broken
placeholder. A candidate whose masked text was already seen (masking can turn a swap back
into a known text) is drawn again; the share of new rows that are truly new is checked
afterwards, in stream order, and printed.

Setup as `bench.sidecar` (`bench.harness`: `Sidecar`, `stream`, `peak_rss_mb`): a fresh
`logclust serve` per workload pinned to core 0, this process the client on core 1,
1,000-row batches, one untimed pass over the train systems first.

1. **Steady replay** and **replay with `--share` new rows**, the same lines but for the new
   rows: records/s with `--depth` batches in flight, then batch latency with one in flight;
   Drain3 (`TemplateMiner`, default config, core 0, best of two) on the same lines after
   the same warm-up pass.
2. **Burst**: on the sidecar of (1), a light client streams steady replay batches, one in
   flight, while another stream sends `--burst` new texts at once (batches of `--batch`
   rows, `--depth` in flight). Prints the burst's new texts/s, its longest batch, and the
   light client's batch latency before and during the burst; the encoder alone on the
   same texts (one thread, batch 8 and 64, core 0) is the yardstick.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.peers import drain3_rate
from bench.harness.procs import (
    CLIENT_CORE,
    SERVER_CORE,
    in_process,
    need_two_cores,
    peak_rss_mb,
    pin,
    proc_cpu_s,
)
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar, batches, body_table, stream
from bench.harness.stats import pct
from bench.workloads import (
    NewTexts,
    NoveltyReplay,
    loghub_lines,
    new_share,
    new_texts,
    novelty_replay,
    replay,
    vocabulary,
)
from logclust.client import Client
from logclust.proto import logclust_pb2 as pb
from logclust.wire import ipc

# Encoder-alone batch sizes: the sidecar's default (8) and a wide one.
ENCODER_BATCHES = (8, 64)
# New texts the encoder-alone yardstick times (a sample of the burst).
ENCODER_SAMPLE = 1000
# Light-client batches timed before the burst starts.
BASELINE_BATCHES = 20


@dataclass
class Phase:
    name: str
    rows: int
    new_rows: int
    rows_per_s: float
    lat_ms: np.ndarray  # one batch in flight
    server_cpu_s: float
    peak_rss_mb: float


@dataclass
class Lines:
    warm: list[str]  # one untimed pass over the train systems
    steady: list[str]  # timed rows, then the latency phase's
    novel: NoveltyReplay  # `steady` with `--share` of its rows made new
    share_new: float  # of the new rows, those truly new in stream order
    light: list[str]  # the light client's steady batches during the burst
    burst: NewTexts


@dataclass
class Burst:
    texts: int
    wall_s: float
    burst_lat_ms: np.ndarray
    before_ms: np.ndarray  # light client, before the burst
    during_ms: np.ndarray  # light client, while the burst is labelled


def masker_of(bundle: str | None) -> Callable[[list[str]], list[str]]:
    """The sidecar's masking of a list of lines (the bundle's masking config)."""
    from logclust.embed.bundle import Bundle
    from logclust.text.masking import Masker

    masker = Masker(Bundle.load(bundle).masking)
    memo: dict[str, str] = {}  # the same lines are checked more than once

    def mask(lines: list[str]) -> list[str]:
        todo = [ln for ln in dict.fromkeys(lines) if ln not in memo]
        for start in range(0, len(todo), 50_000):
            chunk = todo[start : start + 50_000]
            masked = masker.mask(pa.array(chunk, pa.string())).to_pylist()
            memo.update(zip(chunk, masked, strict=True))  # type: ignore[arg-type]
        return [memo[ln] for ln in lines]

    return mask


def light_stream(
    client: Client, payloads: list[bytes], stop: threading.Event, out: list[tuple[float, float]]
) -> None:
    """Sends `payloads` round and round, one batch in flight, until `stop`; appends
    (start time, seconds) of each batch to `out`."""
    slot = threading.Semaphore(1)
    sent = [0.0]

    def requests() -> Iterator[pb.LabelRequest]:
        i = 0
        while not stop.is_set():
            slot.acquire()
            if stop.is_set():
                return
            sent[0] = time.perf_counter()
            yield pb.LabelRequest(batch_id=str(i), arrow_ipc=payloads[i % len(payloads)])
            i += 1

    for _ in client._stub.Label(requests()):
        out.append((sent[0], time.perf_counter() - sent[0]))
        slot.release()


def run_burst(
    client_addr: str, light: list[bytes], burst: list[bytes], depth: int, baseline: int
) -> Burst:
    """The burst over one stream while a light client streams `light` over another
    (after `baseline` of its batches)."""
    stop = threading.Event()
    times: list[tuple[float, float]] = []
    with Client(client_addr, timeout_s=600) as c1, Client(client_addr, timeout_s=600) as c2:
        c1.wait_ready(30)
        c2.wait_ready(30)
        worker = threading.Thread(target=light_stream, args=(c1, light, stop, times))
        worker.start()
        while len(times) < baseline and worker.is_alive():
            time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.perf_counter()
        wall, lat = stream(c2, burst, depth)
        t1 = t0 + wall
        stop.set()
        worker.join()
    start, took = np.array(times).T
    # During: answered after the burst began, sent before it ended.
    before = took[start + took < t0] * 1e3
    during = took[(start + took >= t0) & (start < t1)] * 1e3
    texts = sum(ipc.decode_trusted_ipc(p).num_rows for p in burst)
    return Burst(texts, wall, lat * 1e3, before, during)


def run_replay(
    name: str,
    extra: list[str],
    warm: list[str],
    lines: list[str],
    n_timed: int,
    new_rows: int,
    args: argparse.Namespace,
    burst: tuple[list[str], list[str]] | None = None,
) -> tuple[Phase, Burst | None]:
    """One fresh sidecar: warm-up pass, throughput, latency (and the burst when given)."""
    encode = ipc.encode_ipc
    with Sidecar(args.bundle, SERVER_CORE, None, extra, args.quiet_s) as side:
        with Client(side.addr, timeout_s=600) as client:
            client.wait_ready(120)
            stream(client, [encode(t) for t in batches(body_table(warm), args.batch)], args.depth)
            side.wait_idle()
            timed = lines[:n_timed]
            payloads = [encode(t) for t in batches(body_table(timed), args.batch)]
            cpu0 = proc_cpu_s(side.pid)
            wall, _ = stream(client, payloads, args.depth)
            cpu = proc_cpu_s(side.pid) - cpu0
            lat_payloads = [encode(t) for t in batches(body_table(lines[n_timed:]), args.batch)]
            _, lat = stream(client, lat_payloads, 1)
        phase = Phase(name, len(timed), new_rows, len(timed) / wall, lat * 1e3, cpu, 0.0)
        result = None
        if burst is not None:
            side.wait_idle()
            light = [encode(t) for t in batches(body_table(burst[0]), args.batch)]
            heavy = [encode(t) for t in batches(body_table(burst[1]), args.batch)]
            result = run_burst(side.addr, light, heavy, args.depth, args.baseline_batches)
        phase.peak_rss_mb = peak_rss_mb(side.pid)
        return phase, result


def _encoder_rates(bundle: str | None, lines: list[str], out: Any) -> None:
    """Encoder alone on the masked, tokenized `lines`: lines/s per batch size."""
    pin(SERVER_CORE)
    from logclust.cluster.labeler import Labeler
    from logclust.embed.encoder import Encoder

    lab = Labeler.load(bundle)
    rows = lab.tokenizer.encode(lab.masker.mask_texts(lines), lab.bundle.max_len)
    rates = []
    for batch in ENCODER_BATCHES:
        enc = Encoder(lab.bundle.encoder_path(), num_threads=1, batch_size=batch)
        enc.encode(rows[:200], lab.bundle.max_len)  # shapes set up out of the timing
        start = time.perf_counter()
        enc.encode(rows, lab.bundle.max_len)
        rates.append(len(rows) / (time.perf_counter() - start))
    out.put((*rates, float(np.mean([len(r) for r in rows]))))


def _encoder_calls(
    bundle: str | None, warm: list[str], burst: list[str], batch: int, out: Any
) -> None:
    """In one process as `logclust serve` builds it: after the warm-up pass, labels one
    batch of new texts and records what reaches the model (texts per `embed_masked`
    call, rows and width of each interpreter call)."""
    pin(SERVER_CORE)
    from logclust.cli.defaults import SERVE_ENCODER_BATCH
    from logclust.cluster.labeler import Labeler
    from logclust.sidecar.core import Sidecar as Core
    from logclust.sidecar.store import MemoryStore
    from logclust.sidecar.stream_labeler import StreamLabeler

    labeler = Labeler.load(bundle, batch_size=SERVE_ENCODER_BATCH)
    core = Core(StreamLabeler(labeler), MemoryStore())  # the server's default config
    for t in batches(body_table(warm), batch):
        core.label(t)
    core.wait_for_consolidations()
    texts: list[int] = []
    blocks: list[tuple[int, int]] = []
    embed, run = labeler.embed_masked, labeler.encoder.run

    def counted_embed(masked: pa.Array) -> np.ndarray:
        texts.append(len(masked))
        return embed(masked)

    def counted_run(ids: np.ndarray) -> np.ndarray:
        blocks.append(ids.shape)
        return run(ids)

    labeler.embed_masked = counted_embed  # type: ignore[method-assign]
    labeler.encoder.run = counted_run  # type: ignore[method-assign]
    core.label(body_table(burst[:batch]))
    out.put((SERVE_ENCODER_BATCH, texts, blocks))


def build(args: argparse.Namespace) -> Lines:
    """Lines of every phase, and the checks of the new texts."""
    mask = masker_of(args.bundle)
    vocab = vocabulary(smoke=args.smoke)
    b = args.batch
    one_pass = len(loghub_lines(smoke=args.smoke))
    n_lat = args.latency_batches * b
    n_light = 50 * b
    lines = replay(one_pass + args.rows + n_lat + n_light + args.burst, seed=0, smoke=args.smoke)
    warm = lines[:one_pass]
    measured = lines[one_pass : one_pass + args.rows + n_lat]
    rest = lines[one_pass + args.rows + n_lat :]
    novel = novelty_replay(warm, measured, args.share, mask, seed=1, vocab=vocab)
    share_new = new_share(warm + novel.lines, novel.rows + len(warm), mask)
    # The burst: lines of further passes, each made new against everything sent before.
    seen = set(mask(warm + measured + novel.lines + rest[:n_light]))
    burst = new_texts(rest[n_light:], seen, mask, np.random.default_rng(2), vocab)
    return Lines(warm, measured, novel, share_new, rest[:n_light], burst)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, "novelty")
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    p.add_argument("--rows", type=int, default=200_000, help="rows timed per replay")
    p.add_argument("--share", type=float, default=0.01, help="share of rows made new")
    p.add_argument("--burst", type=int, default=10_000, help="new texts sent at once")
    p.add_argument("--batch", type=int, default=1000, help="rows per batch")
    p.add_argument("--depth", type=int, default=4, help="batches in flight (throughput)")
    p.add_argument("--latency-batches", type=int, default=100)
    p.add_argument("--encoder-batch", type=int, default=None, help="the sidecar's --encoder-batch")
    p.add_argument("--skip-steady", action="store_true", help="only the replay with new rows")
    args = p.parse_args(argv)
    args.quiet_s, args.baseline_batches = 1.0, BASELINE_BATCHES
    args.encoder_sample, args.repeats = ENCODER_SAMPLE, 2
    cli.smoke(
        args,
        rows=1000,
        share=0.05,
        burst=100,
        batch=100,
        latency_batches=2,
        skip_steady=True,
        quiet_s=0.2,
        baseline_batches=3,
        encoder_sample=50,
        repeats=1,
    )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    need_two_cores()
    pin(CLIENT_CORE)
    extra = [] if args.encoder_batch is None else ["--encoder-batch", str(args.encoder_batch)]
    with cli.output(args, "novelty") as out:
        out.header(args.bundle)
        w = build(args)
        n = args.rows
        novel = w.novel
        out.line(
            f"new rows: {len(novel.rows):,} of {len(w.steady):,} ({args.share:.1%}); candidates "
            f"{novel.made.tried:,}, refused as already seen after masking "
            f"{novel.made.refused:,}; new rows truly new in stream order: {w.share_new:.2%}"
        )
        out.line(
            f"burst: {len(w.burst.lines):,} new texts; candidates {w.burst.tried:,}, refused "
            f"{w.burst.refused:,}"
        )
        results, drain = [], []
        if not args.skip_steady:
            steady = run_replay("steady replay", extra, w.warm, w.steady, n, 0, args)[0]
            results.append(steady)
            drain.append(drain3_rate(w.warm, w.steady[:n], args.repeats, args.smoke)[0])
        new_rows = int((novel.rows < n).sum())
        phase, burst = run_replay(
            f"replay, {args.share:.0%} of rows new",
            extra,
            w.warm,
            novel.lines,
            n,
            new_rows,
            args,
            (w.light, w.burst.lines),
        )
        results.append(phase)
        drain.append(drain3_rate(w.warm, novel.lines[:n], args.repeats, args.smoke)[0])
        sample = w.burst.lines[: args.encoder_sample]
        encoder = in_process(_encoder_rates, args.bundle, sample)
        report(out, args, results, drain, burst, encoder)
        probe: Any = in_process(_encoder_calls, args.bundle, w.warm, w.burst.lines, args.batch)
        calls(out, *probe)


def calls(out: Output, serve_batch: int, texts: list[int], blocks: list[tuple[int, int]]) -> None:
    """What one batch of new texts sends to the model, in one process."""
    rows = np.array([b[0] for b in blocks])
    widths, counts = np.unique([b[1] for b in blocks], return_counts=True)
    out.line(f"\n## One batch of {sum(texts):,} new texts, in one process\n")
    out.line(f"- `embed_masked` calls: {len(texts)}, texts per call {texts}")
    if not blocks:  # every new text placed by its template or opened without the model
        out.line("- interpreter calls: 0 (no new text of the batch reached the encoder)")
        return
    out.line(
        f"- interpreter calls (encoder batch {serve_batch}): {len(blocks)}, rows per call "
        f"mean {rows.mean():.1f}, max {rows.max()}; token widths "
        + ", ".join(f"{w}: {c} calls" for w, c in zip(widths, counts, strict=True))
    )


def report(
    out: Output,
    args: argparse.Namespace,
    results: list[Phase],
    drain: list[float],
    burst: Burst | None,
    encoder: tuple[float, ...],
) -> None:
    side = f"encoder batch {args.encoder_batch}" if args.encoder_batch else "serve defaults"
    table = out.table(
        [
            "workload",
            "rows timed",
            "new rows",
            "records/s",
            "Drain3 lines/s",
            "vs Drain3",
            "batch p50 / p99 / max ms",
            "sidecar CPU s",
            "peak RSS MB",
        ],
        f"Replay with new texts ({side})",
        f"{args.batch:,}-row batches, sidecar on core {SERVER_CORE}, client on core "
        f"{CLIENT_CORE}; records/s with {args.depth} in flight, latency with one in flight.",
    )
    for r, d in zip(results, drain, strict=True):
        table.add(
            r.name,
            fmt(r.rows, ","),
            fmt(r.new_rows, ","),
            fmt(r.rows_per_s, ",.0f"),
            fmt(d, ",.0f"),
            fmt(r.rows_per_s / d, ".1f", "x"),
            f"{pct(r.lat_ms, 50):.1f} / {pct(r.lat_ms, 99):.1f} / {pct(r.lat_ms, 100):.1f}",
            fmt(r.server_cpu_s, ".2f"),
            fmt(r.peak_rss_mb, ".0f"),
        )
    out.show(table)
    if burst is not None:
        show_burst(out, args, burst, encoder)


def show_burst(
    out: Output, args: argparse.Namespace, burst: Burst, encoder: tuple[float, ...]
) -> None:
    enc8, enc64, tokens = encoder
    rate = burst.texts / burst.wall_s
    t = out.table(["", "figure"], f"Burst: {burst.texts:,} new texts at once")
    t.add("burst labelled in", f"{burst.wall_s:.1f} s ({rate:,.0f} new texts/s)")
    t.add(
        f"encoder alone, same texts ({tokens:.1f} tokens on average, one thread)",
        f"batch 8: {enc8:,.0f} lines/s; batch 64: {enc64:,.0f} lines/s",
    )
    t.add(
        f"burst batches ({args.batch:,} rows, {args.depth} in flight) p50 / max",
        f"{pct(burst.burst_lat_ms, 50):,.0f} / {pct(burst.burst_lat_ms, 100):,.0f} ms",
    )
    t.add(
        f"light client before the burst ({burst.before_ms.size} batches) p50 / max",
        f"{pct(burst.before_ms, 50):.1f} / {pct(burst.before_ms, 100):.1f} ms",
    )
    t.add(
        f"light client during the burst ({burst.during_ms.size} batches) p50 / p99 / **max**",
        f"{pct(burst.during_ms, 50):,.1f} / {pct(burst.during_ms, 99):,.1f} / "
        f"**{pct(burst.during_ms, 100):,.1f}** ms",
    )
    out.show(t)


if __name__ == "__main__":
    main()
