"""OTLP/gRPC in vs the `Label` path on the same lines, sidecar in its own process.

    python -m bench.otlp [--rows 100000] [--batch 1000] [--depth 4]

Setup as `bench.sidecar`: `logclust serve` (default bundle, temporary store) in a child
process pinned to core 0, this process (the client) pinned to core 1, a fresh sidecar
per path. Lines: the loghub replay (fields re-drawn every pass). Every path first sends
one untimed pass over the loghub train systems (warm-up), waits until the sidecar is
idle, then sends `--rows` lines in requests of `--batch` records, `--depth` in flight:

* `Label`: pre-encoded Arrow IPC batches over one bidirectional stream.
* `OTLP/gRPC`: pre-serialized `ExportLogsServiceRequest`s (body, `service.name`, a
  `latency_ms` attribute, a timestamp per record), so the client spends no time encoding.
* `OTLP/gRPC + forward`: the same, with `--otlp-forward` to a receiver in this process
  that counts records (the run ends when all arrived downstream).

Drain3 (`TemplateMiner`, defaults) is timed on the same lines in its own process on core
0, after the same warm-up pass. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
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
from bench.harness.peers import drain3_rate
from bench.harness.ports import free_port
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, peak_rss_mb, pin, proc_cpu_s
from bench.harness.report import fmt
from bench.harness.sidecar import Sidecar, payloads, stream
from bench.workloads import loghub_lines, replay
from logclust.client import Client

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def export_payloads(lines: list[str], batch: int) -> list[bytes]:
    """Serialized Export requests of `batch` records each (service `bench`)."""
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="bench"))])
    now = time.time_ns()
    out = []
    for start in range(0, len(lines), batch):
        records = [
            LogRecord(
                time_unix_nano=now,
                body=AnyValue(string_value=line),
                attributes=[KeyValue(key="latency_ms", value=AnyValue(double_value=1.5))],
            )
            for line in lines[start : start + batch]
        ]
        scope = ScopeLogs(log_records=records)
        request = ExportLogsServiceRequest(
            resource_logs=[ResourceLogs(resource=res, scope_logs=[scope])]
        )
        out.append(request.SerializeToString())
    return out


def send_exports(addr: str, payloads: list[bytes], depth: int) -> float:
    """Sends Export requests with `depth` in flight; returns the wall time."""
    with grpc.insecure_channel(addr, options=[("grpc.max_send_message_length", -1)]) as ch:
        call = ch.unary_unary(EXPORT, response_deserializer=ExportLogsServiceResponse.FromString)
        start = time.perf_counter()
        with futures.ThreadPoolExecutor(depth) as pool:
            for response in pool.map(lambda p: call(p, timeout=600), payloads):
                if response.partial_success.rejected_log_records:
                    raise RuntimeError(response.partial_success.error_message)
        return time.perf_counter() - start


class CountingReceiver(logs_service_pb2_grpc.LogsServiceServicer):
    """The next hop: counts records."""

    def __init__(self) -> None:
        self.records = 0
        self.lock = threading.Lock()

    def Export(  # noqa: N802 - gRPC method name
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        n = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        with self.lock:
            self.records += n
        return ExportLogsServiceResponse()


def run_label(warm: list[str], lines: list[str], args: argparse.Namespace) -> tuple[float, ...]:
    with Sidecar(args.bundle, SERVER_CORE, args.code, quiet_s=args.quiet_s) as side:
        with Client(side.addr, timeout_s=600) as client:
            client.wait_ready(120)
            stream(client, payloads(warm, args.batch), 4)
            side.wait_idle()
            data = payloads(lines, args.batch)
            cpu0 = proc_cpu_s(side.pid)
            wall, _ = stream(client, data, args.depth)
            cpu = proc_cpu_s(side.pid) - cpu0
        return len(lines) / wall, cpu, peak_rss_mb(side.pid)


def run_otlp(
    warm: list[str], lines: list[str], args: argparse.Namespace, forward: bool
) -> tuple[float, ...]:
    otlp = f"127.0.0.1:{free_port()}"
    extra = ["--otlp-listen", otlp]
    receiver, downstream = CountingReceiver(), None
    if forward:
        downstream = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(receiver, downstream)
        port = downstream.add_insecure_port("127.0.0.1:0")
        downstream.start()
        extra += ["--otlp-forward", f"127.0.0.1:{port}"]
    try:
        with Sidecar(args.bundle, SERVER_CORE, args.code, extra, args.quiet_s) as side:
            with Client(side.addr, timeout_s=600) as client:
                client.wait_ready(120)
            send_exports(otlp, export_payloads(warm, args.batch), 4)
            _wait_for(lambda: receiver.records >= len(warm) or not forward)
            side.wait_idle()
            data = export_payloads(lines, args.batch)
            cpu0 = proc_cpu_s(side.pid)
            start = time.perf_counter()
            send_exports(otlp, data, args.depth)
            _wait_for(lambda: receiver.records >= len(warm) + len(lines) or not forward)
            wall = time.perf_counter() - start
            cpu = proc_cpu_s(side.pid) - cpu0
            return len(lines) / wall, cpu, peak_rss_mb(side.pid)
    finally:
        if downstream is not None:
            downstream.stop(None)


def _wait_for(check: Callable[[], bool], timeout_s: float = 300.0) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > end:
            raise RuntimeError("records did not arrive downstream")
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__.split("\n")[0], "otlp")
    p.add_argument("--bundle", default=None)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1000, help="records per request")
    p.add_argument("--depth", type=int, default=4, help="requests in flight")
    add_code_arg(p)
    args = p.parse_args(argv)
    args.quiet_s, args.repeats = 1.0, 2
    cli.smoke(args, rows=1000, batch=200, quiet_s=0.2, repeats=1)
    pin(CLIENT_CORE)
    with cli.output(args, "otlp") as out:
        out.header(args.bundle, sidecar_code=args.code or "this checkout")
        one_pass = len(loghub_lines(smoke=args.smoke))
        lines = replay(one_pass + args.rows, seed=0, smoke=args.smoke)
        warm, measured = lines[:one_pass], lines[one_pass:]
        results = {
            "Label (Arrow IPC)": run_label(warm, measured, args),
            "OTLP/gRPC": run_otlp(warm, measured, args, forward=False),
            "OTLP/gRPC + forward": run_otlp(warm, measured, args, forward=True),
        }
        drain3, _ = drain3_rate(warm, measured, args.repeats, optional=args.smoke)
        label_rate = results["Label (Arrow IPC)"][0]
        table = out.table(
            ["path", "records/s", "vs Label", "vs Drain3", "sidecar CPU s", "peak RSS MB"],
            note=f"{args.rows:,} loghub replay lines, {args.batch} records per request",
        )
        for name, (rate, cpu, rss) in results.items():
            table.add(
                name,
                fmt(rate, ",.0f"),
                fmt(rate / label_rate, ".2f", "x"),
                fmt(rate / drain3, ".1f", "x"),
                fmt(cpu, ".2f"),
                fmt(rss, ".0f"),
            )
        table.add("Drain3 (in-process)", fmt(drain3, ",.0f"), None, "1.0x", None, None)
        out.line()
        out.show(table)


if __name__ == "__main__":
    main()
