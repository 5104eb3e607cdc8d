"""The next hop down: sidecar memory while OTLP senders retry, then every record once.

    python -m bench.otlp_outage [--down-s 60] [--senders 4] [--batch 1000]
                                [--queue-records N] [--code DIR]

`logclust serve` (default bundle, temporary store, pinned to core 0) with
`--otlp-listen` and `--otlp-forward` to a local port where nothing listens. It is warmed
first as in `bench.otlp` (one pass over the loghub train systems, through `Label` with
the senders' source so nothing is queued), then left until idle. `--senders`
threads of this process (core 1) export loghub replay lines, `--batch` records per
request, each record with a unique `record_id` attribute, for `--down-s` seconds. A sender
keeps a refused request and sends it again as the OTLP contract asks:
RESOURCE_EXHAUSTED after the RetryInfo delay (not retried without one), UNAVAILABLE after
0.5 s. When the time is up an OTLP receiver starts on the forward port; each sender
finishes the request it holds (retrying) and stops. The run ends when the receiver got
as many records as were accepted. Prints the sidecar's RSS (before sending, at the end of
the outage, peak `VmHWM` over the run) and the counts by record id.
"""

from __future__ import annotations

import argparse
import collections
import random
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
import pyarrow as pa
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from bench.harness import cli
from bench.harness.code import add_code_arg
from bench.harness.ports import free_ports
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, peak_rss_mb, pin, rss_mb
from bench.harness.report import Output, fmt, machine
from bench.harness.sidecar import Sidecar
from bench.otlp import EXPORT
from bench.workloads import loghub_lines, replay
from logclust.client import Client

# Replay lines cycled through by the senders (record ids stay unique).
POOL_LINES = 100_000


def payload(lines: list[str], first_id: int, n: int) -> bytes:
    """An Export request of `n` records with record ids `first_id`.. (service `bench`)."""
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="bench"))])
    now = time.time_ns()
    records = [
        LogRecord(
            time_unix_nano=now,
            body=AnyValue(string_value=lines[(first_id + j) % len(lines)]),
            attributes=[
                KeyValue(key="record_id", value=AnyValue(int_value=first_id + j)),
                KeyValue(key="latency_ms", value=AnyValue(double_value=1.5)),
            ],
        )
        for j in range(n)
    ]
    scope = ScopeLogs(log_records=records)
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=res, scope_logs=[scope])]
    )
    return request.SerializeToString()


def retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay of a refused Export, None without one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None


class IdReceiver(logs_service_pb2_grpc.LogsServiceServicer):
    """The next hop: counts every record id it receives."""

    def __init__(self) -> None:
        self.ids: collections.Counter[int] = collections.Counter()
        self.lock = threading.Lock()

    def Export(  # noqa: N802 - gRPC method name
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        got = [
            kv.value.int_value
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for rec in sl.log_records
            for kv in rec.attributes
            if kv.key == "record_id"
        ]
        with self.lock:
            self.ids.update(got)
        return ExportLogsServiceResponse()

    def total(self) -> int:
        with self.lock:
            return sum(self.ids.values())


class Senders:
    """`n` threads exporting new requests until `stop`, each finishing the one it holds."""

    def __init__(self, addr: str, lines: list[str], batch: int, n: int) -> None:
        self.addr, self.lines, self.batch = addr, lines, batch
        self.accepted: list[int] = []  # first ids of accepted requests
        self.refused = collections.Counter[str]()
        self.next_id = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _take(self) -> int | None:
        with self.lock:
            if self.stop.is_set():
                return None
            first, self.next_id = self.next_id, self.next_id + self.batch
            return first

    def _run(self) -> None:
        with grpc.insecure_channel(self.addr) as ch:
            call = ch.unary_unary(
                EXPORT, response_deserializer=ExportLogsServiceResponse.FromString
            )
            while (first := self._take()) is not None:
                data = payload(self.lines, first, self.batch)
                while not self._send(call, data):
                    pass
                with self.lock:
                    self.accepted.append(first)

    def _send(self, call: grpc.UnaryUnaryMultiCallable, data: bytes) -> bool:
        """One Export; False (after the wait the contract asks for) when to be sent again."""
        try:
            response = call(data, timeout=60)
        except grpc.RpcError as e:
            code = e.code()  # type: ignore[attr-defined]
            delay = retry_delay(e) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else 0.5
            with self.lock:
                self.refused[code.name if delay is not None else f"{code.name} (no RetryInfo)"] += 1
            if delay is None or code not in (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNAVAILABLE,
            ):
                raise
            time.sleep(delay * random.uniform(0.8, 1.2))
            return False
        if response.partial_success.rejected_log_records:
            raise RuntimeError(response.partial_success.error_message)
        return True

    def join(self) -> None:
        for t in self.threads:
            t.join()


@dataclass
class Outage:
    """What the sidecar and the next hop went through."""

    rss_start: float
    hwm_start: float
    accepted_down: int
    refused_down: int
    rss_down: float
    hwm_down: float
    hwm: float
    expected: set[int]
    got: collections.Counter[int]
    drain_s: float
    refused: dict[str, int]


def run(args: argparse.Namespace) -> Outage:
    listen_port, down_port = free_ports(2)
    otlp = f"127.0.0.1:{listen_port}"
    extra = ["--otlp-listen", otlp, "--otlp-forward", f"127.0.0.1:{down_port}"]
    if args.queue_records is not None:
        extra += ["--otlp-queue-records", str(args.queue_records)]
    receiver, downstream = IdReceiver(), None
    try:
        with Sidecar(args.bundle, SERVER_CORE, args.code, extra, args.quiet_s) as side:
            pid = side.pid
            with Client(side.addr, timeout_s=600) as client:
                client.wait_ready(120)
                warm = loghub_lines(smoke=args.smoke)
                client.label(
                    pa.table({"body": warm, "source": ["bench"] * len(warm)}),
                    batch_size=args.batch,
                )
            side.wait_idle()
            rss_start, hwm_start = rss_mb(pid), peak_rss_mb(pid)
            pool = replay(args.pool_lines, seed=0, smoke=args.smoke)
            senders = Senders(otlp, pool, args.batch, args.senders)
            time.sleep(args.down_s)
            with senders.lock:
                accepted_down = len(senders.accepted) * args.batch
                refused_down = sum(senders.refused.values())
            rss_down, hwm_down = rss_mb(pid), peak_rss_mb(pid)
            senders.stop.set()
            downstream = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(receiver, downstream)
            assert downstream.add_insecure_port(f"127.0.0.1:{down_port}") == down_port
            up = time.monotonic()
            downstream.start()
            senders.join()
            expected = {first + j for first in senders.accepted for j in range(args.batch)}
            deadline = time.monotonic() + 600
            while receiver.total() < len(expected) and time.monotonic() < deadline:
                time.sleep(0.05)
            drain_s = time.monotonic() - up
            time.sleep(args.late_s)  # late duplicates, if any, would arrive now
            hwm = peak_rss_mb(pid)
    finally:
        if downstream is not None:
            downstream.stop(None)
    return Outage(
        rss_start,
        hwm_start,
        accepted_down,
        refused_down,
        rss_down,
        hwm_down,
        hwm,
        expected,
        receiver.ids,
        drain_s,
        dict(senders.refused),
    )


def report(out: Output, args: argparse.Namespace, r: Outage) -> None:
    got, expected = r.got, r.expected
    table = out.table(
        ["phase", "figure"],
        note=f"{args.senders} senders, {args.batch} records per request, next hop down "
        f"{args.down_s:g} s, queue {args.queue_records or 'default'}",
    )
    table.add("sidecar RSS / peak after the warm-up", f"{r.rss_start:.0f} / {r.hwm_start:.0f} MB")
    table.add("records accepted while the next hop was down", fmt(r.accepted_down, ","))
    table.add("Export calls refused while down (retried)", fmt(r.refused_down, ","))
    table.add(
        "sidecar RSS at the end of the outage / peak until then",
        f"{r.rss_down:.0f} / {r.hwm_down:.0f} MB",
    )
    table.add("sidecar peak RSS (VmHWM), whole run", fmt(r.hwm, ".0f", " MB"))
    table.add("records accepted in all", fmt(len(expected), ","))
    table.add("next hop: distinct ids / records received", f"{len(got):,} / {sum(got.values()):,}")
    table.add(
        "missing / duplicated / unexpected ids",
        f"{len(expected - set(got)):,} / {sum(1 for c in got.values() if c > 1):,} / "
        f"{len(set(got) - expected):,}",
    )
    table.add("next hop up to the last record", fmt(r.drain_s, ".1f", " s"))
    table.add("refusals by status", str(r.refused))
    out.line()
    out.show(table)


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__.split("\n")[0], "otlp_outage")
    p.add_argument("--bundle", default=None)
    p.add_argument("--down-s", type=float, default=60.0, help="seconds the next hop is down")
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--batch", type=int, default=1000, help="records per request")
    p.add_argument("--queue-records", type=int, default=None, help="--otlp-queue-records")
    add_code_arg(p)
    args = p.parse_args(argv)
    args.quiet_s, args.pool_lines, args.late_s = 1.0, POOL_LINES, 2.0
    cli.smoke(args, down_s=1.0, senders=2, batch=100, quiet_s=0.2, pool_lines=1000, late_s=0.2)
    pin(CLIENT_CORE)
    result = run(args)
    with cli.output(args, "otlp_outage") as out:
        out.fact("machine", machine())
        report(out, args, result)


if __name__ == "__main__":
    main()
