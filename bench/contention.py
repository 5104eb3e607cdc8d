"""A light client's batch latency while heavy clients stream (reliability target: its p99
within 2x of its idle value while 32 heavy clients stream; health checks under 100 ms).

    python -m bench.contention [--bundle DIR] [--seconds 20] [--heavy 32] [--heavy-rows 1000]
                               [--light-rows 20] [--light-every-ms 50] [--heavy-sources 0]
                               [--serve-args "--max-inflight-batches 64"]

Setup as `bench.sidecar` (`bench.harness`: `Sidecar`, `stream`, `peak_rss_mb`): one
`logclust serve` (default bundle, a temporary `--store`, default limits unless
`--serve-args`) pinned to core 0. Every client runs on core 1 (this process pins itself
there and the spawned clients inherit it): this process (warm-up and the health prober),
one process for the light client, one process per heavy client (spawned, each with its
own `Client` and channel, so that the client side's GIL does not hold up the light
client's timing).
The heavy processes are also reniced (`--heavy-nice`, default 10): on a shared core they
would otherwise delay the light client's wake-ups, and the target is about the sidecar.
All payloads are Arrow IPC bytes encoded before any timing, and the heavy clients read
`num_rows` of a response without decoding it, so that core 1 is not the bottleneck.

Rows are the demo's HTTP bodies (`generate_traffic`, all kinds): the light client cycles
`--light-pool` batches of `--light-rows` rows of source `light`; heavy client `i` cycles
`--heavy-pool` batches of `--heavy-rows` rows of source `heavy-<i mod S>` (S =
`--heavy-sources`, default one per client; at most `max_sources` 64 in all).

1. **Warm-up** (not timed): every distinct payload once over one stream, so every text is
   embedded and placed (steady state: no encoder work), then wait until the sidecar's CPU
   is idle.
2. **Idle**: the light client sends one batch every `--light-every-ms` ms for `--seconds`,
   each batch a Label call of its own (one request; a refused batch costs that call
   only), and times each round trip; an answer later than the next send time moves the
   schedule on (no burst to catch up), so fewer batches go out under load. A prober in
   this process calls `Health.Check` (`Client.health`) every 200 ms.
3. **Loaded**: the heavy clients stream back to back, one batch in flight each over a
   long Label stream (a RESOURCE_EXHAUSTED refusal ends that stream: counted, and the
   client opens a new one after 50 ms); once each has had an answer, step 2 again.

Prints a markdown table: light batch p50 / p99 / max ms (answered batches), light batches
refused RESOURCE_EXHAUSTED (failures: they are not in the percentiles) and failed
otherwise, heavy rows/s and refusals within the light client's window, health max ms, the
sidecar's peak RSS (VmHWM) after the phase; then loaded p99 / idle p99 and the verdict.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

import grpc
import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.code import add_code_arg
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, need_two_cores, peak_rss_mb, pin
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar, stream
from bench.harness.stats import pct
from logclust.cli.traffic import generate_traffic
from logclust.client import Client
from logclust.proto import logclust_pb2 as pb
from logclust.wire import ipc

# The target: loaded p99 at most this multiple of idle p99, health answered within this.
TARGET_RATIO = 2.0
TARGET_HEALTH_MS = 100.0
HEALTH_EVERY_S = 0.2
# A refused heavy client waits this long before it opens a new stream (not a busy loop).
RETRY_S = 0.05
# Deadline of one light batch: past it the batch counts as failed, not as a latency.
LIGHT_DEADLINE_S = 30.0
# The sidecar's default `max_sources`: the light source and the heavy ones must fit.
MAX_SOURCES = 64
# Fixed event times, so that every process builds the same rows.
END_MS = 1_700_000_000_000
REFUSED = grpc.StatusCode.RESOURCE_EXHAUSTED


@dataclass
class Light:
    lat_ms: np.ndarray  # answered batches only
    refused: int
    failed: int  # any other status
    t0: float  # the window of the phase (time.monotonic, the same clock in every process)
    t1: float


@dataclass
class Heavy:
    done: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, rows)
    refused: list[float] = field(default_factory=list)  # monotonic times


@dataclass
class Phase:
    name: str
    light: Light
    heavy_rows_s: float
    heavy_refused: int
    health_ms: np.ndarray
    health_failed: int
    peak_rss_mb: float


def pool(rows: int, batches: int, source: str, seed: int) -> list[bytes]:
    """`batches` IPC payloads of `rows` demo request rows, all of `source`."""
    table = generate_traffic(rows * batches, seed=seed, end_ms=END_MS).drop_columns(["kind"])
    table = table.set_column(
        table.schema.get_field_index("source"),
        "source",
        pa.array([source] * table.num_rows, pa.string()),
    )
    return [ipc.encode_ipc(t) for t in ipc.iter_slices(table, rows)]


def rotate(payloads: list[bytes], i: int) -> list[bytes]:
    """Client `i`'s cycle starts at its own offset: the batches in flight differ."""
    k = i % len(payloads)
    return payloads[k:] + payloads[:k]


def send_one(client: Client, payload: bytes) -> grpc.StatusCode:
    """One Label call with one request; its status (OK, or why it was not answered)."""
    request = pb.LabelRequest(batch_id="0", arrow_ipc=payload)
    try:
        for _ in client._stub.Label(iter([request]), timeout=LIGHT_DEADLINE_S):
            pass
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _light(addr: str, payloads: list[bytes], seconds: float, every_s: float, out: Any) -> None:
    """The light client (a process of its own): one batch every `every_s` for `seconds`."""
    lat, refused, failed = [], 0, 0
    with Client(addr) as client:
        client.wait_ready(60)
        send_one(client, payloads[0])  # the channel's first call, out of the timing
        t0 = due = time.monotonic()
        i = 0
        while due < t0 + seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            start = time.perf_counter()
            code = send_one(client, payloads[i % len(payloads)])
            if code is grpc.StatusCode.OK:
                lat.append((time.perf_counter() - start) * 1e3)
            elif code is REFUSED:
                refused += 1
            else:
                failed += 1
            i += 1
            # A late answer moves the schedule on (no burst of batches to catch up).
            due = max(due + every_s, time.monotonic())
    out.put(Light(np.array(lat), refused, failed, t0, time.monotonic()))


def heavy_stream(
    client: Client, payloads: list[bytes], stop: Any, done: list[tuple[float, int]]
) -> None:
    """One Label stream, one batch in flight, until `stop` (raises when refused)."""
    slot, ended = threading.Semaphore(1), threading.Event()

    def requests() -> Iterator[pb.LabelRequest]:
        i = 0
        while True:
            slot.acquire()
            if stop.is_set() or ended.is_set():
                return
            yield pb.LabelRequest(batch_id=str(i), arrow_ipc=payloads[i % len(payloads)])
            i += 1

    try:
        for response in client._stub.Label(requests()):
            done.append((time.monotonic(), response.num_rows))
            slot.release()
    finally:  # a refused stream: the request thread must not wait on the slot forever
        ended.set()
        slot.release()


def _heavy(addr: str, payloads: list[bytes], nice: int, ready: Any, go: Any, stop: Any) -> None:
    """A heavy client (a process of its own): streams from `go` until `stop`."""
    os.nice(nice)
    result = Heavy()
    with Client(addr) as client:
        client.wait_ready(120)
        ready.put("connected")
        go.wait()
        send_one(client, payloads[0])  # out of the window: the load is on
        ready.put("streaming")
        while not stop.is_set():
            try:
                heavy_stream(client, payloads, stop, result.done)
            except grpc.RpcError as e:
                if e.code() != REFUSED:
                    raise
                result.refused.append(time.monotonic())
                stop.wait(RETRY_S)
    ready.put(result)


def probe_health(addr: str, stop: threading.Event, out: list[float], failed: list[int]) -> None:
    """`Health.Check` every `HEALTH_EVERY_S` until `stop`; round trips in ms."""
    with Client(addr, timeout_s=10) as client:
        client.wait_ready(60)
        while not stop.wait(HEALTH_EVERY_S):
            start = time.perf_counter()
            try:
                client.health()
                out.append((time.perf_counter() - start) * 1e3)
            except grpc.RpcError:
                failed[0] += 1


@dataclass
class HeavyClients:
    """The heavy client processes: spawned (and connected) before the warm-up."""

    procs: list[SpawnProcess]
    ready: Any  # queue: "connected", "streaming" (first answer after `go`), then `Heavy`
    go: Any
    stop: Any

    @classmethod
    def spawn(
        cls, ctx: SpawnContext, addr: str, pools: list[list[bytes]], nice: int
    ) -> HeavyClients:
        ready, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
        procs = [
            ctx.Process(target=_heavy, args=(addr, p, nice, ready, go, stop), daemon=True)
            for p in pools
        ]
        for proc in procs:
            proc.start()
        return cls(procs, ready, go, stop)

    def collect(self, n: int, timeout_s: float) -> list[Any]:
        try:
            return [self.ready.get(timeout=timeout_s) for _ in range(n)]
        except queue.Empty:
            codes = [p.exitcode for p in self.procs]
            raise RuntimeError(
                f"heavy clients did not answer. Received: exit codes {codes}"
            ) from None

    def close(self) -> None:
        self.stop.set()
        self.go.set()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def run_light(
    name: str, ctx: SpawnContext, side: Sidecar, light: list[bytes], args: argparse.Namespace
) -> Light:
    """The light client for `--seconds` (in a process of its own)."""
    out = ctx.Queue()
    every = args.light_every_ms / 1e3
    proc = ctx.Process(target=_light, args=(side.addr, light, args.seconds, every, out))
    proc.start()
    try:
        result: Light = out.get(timeout=args.seconds + 120)
    except queue.Empty:
        raise RuntimeError(
            f"{name}: light client gave no result. Received: {proc.exitcode}"
        ) from None
    proc.join()
    return result


def measure(
    name: str,
    ctx: SpawnContext,
    side: Sidecar,
    light_pool: list[bytes],
    args: argparse.Namespace,
    heavy: HeavyClients | None,
) -> Phase:
    """One phase: the light client and the health prober, with the heavy clients if given."""
    health: list[float] = []
    failed = [0]
    stop = threading.Event()
    prober = threading.Thread(target=probe_health, args=(side.addr, stop, health, failed))
    prober.start()
    try:
        light = run_light(name, ctx, side, light_pool, args)
    finally:
        stop.set()
        prober.join()
    rows_s, refused = 0.0, 0
    if heavy is not None:
        heavy.stop.set()
        results: list[Heavy] = heavy.collect(len(heavy.procs), 60)
        span = light.t1 - light.t0
        for r in results:
            rows_s += sum(n for t, n in r.done if light.t0 <= t < light.t1) / span
            refused += sum(light.t0 <= t < light.t1 for t in r.refused)
    rss = peak_rss_mb(side.proc.pid)
    return Phase(name, light, rows_s, refused, np.array(health), failed[0], rss)


def report(out: Output, phases: list[Phase], args: argparse.Namespace) -> None:
    table = out.table(
        [
            "phase",
            "light batches",
            "light p50 ms",
            "light p99 ms",
            "light max ms",
            "light refused",
            "light failed",
            "heavy rows/s",
            "heavy refused",
            "health max ms",
            "sidecar peak RSS MB",
        ],
        f"Light client ({args.light_rows} rows every {args.light_every_ms:g} ms) "
        f"alone, then with {args.heavy} heavy clients ({args.heavy_rows:,}-row batches)",
    )
    for p in phases:
        lat, h = p.light.lat_ms, p.health_ms
        sent = lat.size + p.light.refused + p.light.failed
        health = f"{pct(h, 100):.1f}" + (f" ({p.health_failed} failed)" if p.health_failed else "")
        table.add(
            p.name,
            sent,
            fmt(pct(lat, 50), ".2f"),
            fmt(pct(lat, 99), ".2f"),
            fmt(pct(lat, 100), ".2f"),
            p.light.refused,
            p.light.failed,
            fmt(p.heavy_rows_s, ",.0f"),
            p.heavy_refused,
            health if p.health_failed else fmt(pct(h, 100), ".1f"),
            fmt(p.peak_rss_mb, ".0f"),
        )
    out.show(table)
    idle, loaded = phases
    ratio = pct(loaded.light.lat_ms, 99) / pct(idle.light.lat_ms, 99)
    lost = loaded.light.refused + loaded.light.failed
    health_ok = pct(loaded.health_ms, 100) < TARGET_HEALTH_MS and not loaded.health_failed
    met = ratio <= TARGET_RATIO and lost == 0 and health_ok
    out.line(
        f"\nloaded p99 / idle p99: {ratio:.2f}x (target <= {TARGET_RATIO:g}x); light batches "
        f"refused or failed under load: {lost}; health max {pct(loaded.health_ms, 100):.1f} ms "
        f"(target < {TARGET_HEALTH_MS:g}); target {'met' if met else 'NOT met'}"
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, "contention")
    p.add_argument("--bundle", default=None, help="model bundle (default: models/default)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    p.add_argument("--heavy", type=int, default=32, help="heavy clients (processes)")
    p.add_argument("--heavy-rows", type=int, default=1000, help="rows per heavy batch")
    p.add_argument("--heavy-pool", type=int, default=4, help="distinct batches per heavy source")
    p.add_argument("--heavy-sources", type=int, default=0, help="0: one per heavy client")
    p.add_argument("--heavy-nice", type=int, default=10, help="niceness of the heavy clients")
    p.add_argument("--light-rows", type=int, default=20, help="rows per light batch")
    p.add_argument("--light-pool", type=int, default=50, help="distinct light batches")
    p.add_argument("--light-every-ms", type=float, default=50.0)
    p.add_argument(
        "--serve-args",
        default="",
        help='more flags of `logclust serve`, e.g. "--max-inflight-batches 64"',
    )
    add_code_arg(p)
    args = p.parse_args(argv)
    args.quiet_s = 1.0
    cli.smoke(
        args,
        seconds=1.0,
        heavy=2,
        heavy_rows=100,
        heavy_pool=2,
        light_pool=5,
        light_every_ms=100.0,
        quiet_s=0.2,
    )
    args.heavy_sources = args.heavy_sources or args.heavy
    if not 1 <= args.heavy_sources <= min(args.heavy, MAX_SOURCES - 1):
        p.error(
            f"--heavy-sources must be in [1, min(--heavy, {MAX_SOURCES - 1})] (the sidecar "
            f"keeps {MAX_SOURCES} sources, one is the light client's). "
            f"Received: {args.heavy_sources} for --heavy {args.heavy}"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    need_two_cores("one for the sidecar, one for the clients")
    pin(CLIENT_CORE)  # the spawned clients inherit it
    with cli.output(args, "contention") as out:
        out.header(args.bundle)
        out.fact("serve flags", args.serve_args or "(defaults)")
        light = pool(args.light_rows, args.light_pool, "light", seed=1)
        sources = [
            pool(args.heavy_rows, args.heavy_pool, f"heavy-{s}", seed=2)
            for s in range(args.heavy_sources)
        ]
        pools = [rotate(sources[i % len(sources)], i) for i in range(args.heavy)]
        ctx = mp.get_context("spawn")
        extra = shlex.split(args.serve_args)
        heavy: HeavyClients | None = None
        with Sidecar(args.bundle, SERVER_CORE, args.code, extra, args.quiet_s) as side:
            try:
                heavy = HeavyClients.spawn(ctx, side.addr, pools, args.heavy_nice)
                with Client(side.addr, timeout_s=600) as client:
                    client.wait_ready(120)
                    stream(client, light + [b for s in sources for b in s], depth=4)
                heavy.collect(args.heavy, 300)  # all connected
                side.wait_idle()
                idle = measure("idle", ctx, side, light, args, None)
                heavy.go.set()
                heavy.collect(args.heavy, 120)  # each has had an answer: the load is on
                loaded = measure(f"{args.heavy} heavy", ctx, side, light, args, heavy)
            finally:
                if heavy is not None:
                    heavy.close()
        report(out, [idle, loaded], args)


if __name__ == "__main__":
    main()
