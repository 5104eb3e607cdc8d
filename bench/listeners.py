"""OTLP listeners under many, slow and hostile clients: `logclust serve` (default settings,
pinned to one core) probed from this process.

Probes (each alone, the server restarted between them):
- **idle**: `--idle` connections held open to OTLP/HTTP; then the gRPC health check's
  latency, a new client's export, and the server's CPU while they sit there.
- **slow bodies**: `--slow` clients each announce `--slow-mib` MiB and withhold the rest;
  the server's peak RSS (VmHWM) and what the clients were answered.
- **bombs**: `--bombs` parallel gzip bodies of 1 GiB of zeros (about 1 MiB sent); peak RSS
  and the answers.
- **fat exports**: `--fat` concurrent OTLP/gRPC exports of `--fat-mib` MiB each (records
  of `--fat-body-bytes`, `--fat-fresh` of them new texts), each retried until it goes
  through; the server's peak RSS (VmHWM) once idle, and the answers.
- **exporters**: `--exporters` OTLP/gRPC exporters (one channel each), `--fresh` of their
  records new texts, a 5 s deadline, each retrying a failed export as the Collector does
  until it goes through; how many got exports through, and records recorded against
  records acknowledged (recorded more than acknowledged: counted twice); batches whose
  caller had left when they were about to be recorded (`logclust_abandoned_batches_total`)
  and answers recorded but too late for their caller (`logclust_otlp_late_answers_total`).
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import threading
import time
import urllib.request
import zlib
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from bench.harness import cli
from bench.harness.ports import free_ports
from bench.harness.procs import CLIENT_CORE, SERVER_CORE, peak_rss_mb, pin, proc_cpu_s, rss_mb
from bench.harness.report import Output, fmt
from bench.harness.sidecar import Sidecar
from logclust.client import Client

ROOT = Path(__file__).resolve().parents[1]
EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _records(n: int, fresh: float, rng: random.Random, service: str) -> ExportLogsServiceRequest:
    texts = [
        " ".join(rng.choices(WORDS, k=6)) + f" op{rng.randrange(10**9)}"
        if rng.random() < fresh
        else f"GET /api/items/{rng.randrange(1000)} status 200"
        for _ in range(n)
    ]
    latency = [KeyValue(key="latency_ms", value=AnyValue(double_value=5.0))]
    records = [LogRecord(body=AnyValue(string_value=t), attributes=latency) for t in texts]
    svc = KeyValue(key="service.name", value=AnyValue(string_value=service))
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[svc]), scope_logs=[ScopeLogs(log_records=records)]
            )
        ]
    )


def _server(args: argparse.Namespace) -> tuple[Sidecar, int, int]:
    grpc_port, http_port, metrics_port = free_ports(3)
    args.metrics_port = metrics_port
    extra = [
        "--metrics-port",
        str(metrics_port),
        "--otlp-listen",
        f"127.0.0.1:{grpc_port}",
        "--otlp-http-listen",
        f"127.0.0.1:{http_port}",
    ]
    # This checkout's code in the child (a shared environment's console script may
    # import another checkout's).
    srv = Sidecar(args.bundle, SERVER_CORE, code=str(ROOT), extra=extra)
    _wait_port(http_port)
    with Client(srv.addr, timeout_s=60) as c:
        c.health()
    return srv, grpc_port, http_port


def _wait_port(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _post(port: int, body: bytes, headers: str = "", timeout: float = 30.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = (
            f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n"
        )
        s.sendall(head.encode() + body)
        return int(s.recv(4096).split(b" ", 2)[1])


def _metric(port: int, name: str) -> float:
    """One sample of the server's Prometheus metrics (NaN when absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
    found = re.search(rf"^{name} (\S+)$".encode(), text, re.M)
    return float(found.group(1)) if found else float("nan")


def probe_idle(args: argparse.Namespace, out: Output) -> None:
    srv, _, http_port = _server(args)
    with srv:
        socks = [socket.create_connection(("127.0.0.1", http_port)) for _ in range(args.idle)]
        time.sleep(0.5)
        cpu0, t0 = proc_cpu_s(srv.pid), time.monotonic()
        with Client(srv.addr, timeout_s=10) as c:
            lat = []
            for _ in range(20):
                started = time.perf_counter()
                c.health()
                lat.append((time.perf_counter() - started) * 1000)
        new = _post(http_port, _records(10, 0.0, random.Random(0), "idle").SerializeToString())
        time.sleep(1.0)
        cpu = (proc_cpu_s(srv.pid) - cpu0) / (time.monotonic() - t0)
        open_now = sum(1 for s in socks if _open(s))
        for s in socks:
            s.close()
    t = out.table(["idle connections", "still open", "health max ms", "new client", "CPU"])
    t.add(args.idle, open_now, fmt(max(lat), ".1f"), new, fmt(cpu * 100, ".0f", "%"))
    out.show(t)


def _open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def probe_slow(args: argparse.Namespace, out: Output) -> None:
    srv, _, http_port = _server(args)
    size = int(args.slow_mib * (1 << 20))
    answers: list[str] = []
    with srv:
        base = rss_mb(srv.pid)
        socks = []
        for _ in range(args.slow):
            s = socket.create_connection(("127.0.0.1", http_port), timeout=60)
            s.sendall(
                f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                f"Content-Length: {size}\r\n\r\n".encode()
            )
            socks.append(s)
        chunk = b"\x00" * (1 << 20)

        def send(s: socket.socket) -> None:
            try:
                for _ in range(size // len(chunk) - 1):
                    s.sendall(chunk)
            except OSError:
                pass  # refused: the server closed it
            try:
                s.settimeout(60)
                answers.append(s.recv(64).split(b" ", 2)[1].decode())
            except (OSError, IndexError):
                answers.append("closed")

        with futures.ThreadPoolExecutor(len(socks)) as ex:
            list(ex.map(send, socks))
        peak = peak_rss_mb(srv.pid)
    t = out.table(["slow bodies", "MiB each", "RSS before MB", "peak RSS MB", "answers"])
    t.add(args.slow, args.slow_mib, fmt(base, ".0f"), fmt(peak, ".0f"), _tally(answers))
    out.show(t)


def _tally(answers: list[str]) -> str:
    return ", ".join(f"{a}: {answers.count(a)}" for a in sorted(set(answers)))


def probe_bombs(args: argparse.Namespace, out: Output) -> None:
    srv, _, http_port = _server(args)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\x00" * (1 << 20)
    bomb = b"".join(z.compress(block) for _ in range(args.bomb_mib)) + z.flush()
    with srv:
        base = rss_mb(srv.pid)
        with futures.ThreadPoolExecutor(args.bombs) as ex:
            answers = list(
                ex.map(
                    lambda _: str(_post(http_port, bomb, "Content-Encoding: gzip\r\n")),
                    range(args.bombs),
                )
            )
        peak = peak_rss_mb(srv.pid)
    t = out.table(["bombs", "KB sent", "MiB inflated", "RSS before MB", "peak RSS MB", "answers"])
    t.add(
        args.bombs,
        len(bomb) // 1024,
        args.bomb_mib,
        fmt(base, ".0f"),
        fmt(peak, ".0f"),
        _tally(answers),
    )
    out.show(t)


def probe_exporters(args: argparse.Namespace, out: Output) -> None:
    srv, grpc_port, _ = _server(args)
    stop = threading.Event()
    acked = [0] * args.exporters
    through = [0] * args.exporters
    failed = [0] * args.exporters

    def exporter(i: int) -> None:
        rng = random.Random(i)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(
                EXPORT, response_deserializer=ExportLogsServiceResponse.FromString
            )
            while not stop.is_set():
                req = _records(args.records, args.fresh, rng, f"svc-{i % 8}").SerializeToString()
                give_up = time.monotonic() + 120
                while time.monotonic() < give_up:  # the same request until it goes through
                    try:
                        call(req, timeout=args.deadline_s)
                        acked[i] += args.records
                        through[i] += 1
                        break
                    except grpc.RpcError:
                        failed[i] += 1
                        time.sleep(min(1.0, 0.1 * 2 ** min(failed[i], 4)) * rng.random())

    with srv:
        threads = [threading.Thread(target=exporter, args=(i,)) for i in range(args.exporters)]
        for th in threads:
            th.start()
        time.sleep(args.seconds)
        stop.set()
        for th in threads:
            th.join()
        srv.wait_idle()
        with Client(srv.addr, timeout_s=60) as c:
            table = c.latency()
        recorded = int(sum(table.column("count").to_pylist()))
        late = _metric(args.metrics_port, "logclust_otlp_late_answers_total")
        abandoned = _metric(args.metrics_port, "logclust_abandoned_batches_total")
    t = out.table(
        [
            "exporters",
            "with an export through",
            "exports through",
            "failed tries",
            "records acked",
            "records recorded",
            "counted twice",
            "stopped before recording",
            "late answers",
        ]
    )
    total = sum(acked)
    t.add(
        args.exporters,
        sum(1 for n in through if n),
        sum(through),
        sum(failed),
        total,
        recorded,
        max(recorded - total, 0),
        fmt(abandoned, ".0f"),
        fmt(late, ".0f"),
    )
    out.show(t)


def _fat_request(
    mib: float, body_bytes: int, fresh: float, rng: random.Random, service: str
) -> bytes:
    """An export of about `mib` MiB: records of `body_bytes`-byte bodies, each a line of
    `_records` (`fresh` of them new texts) after the same padding words."""
    rows = max(int(mib * (1 << 20)) // (body_bytes + 30), 1)
    req = _records(rows, fresh, rng, service)
    pad = " ".join(WORDS * (body_bytes // len(" ".join(WORDS)) + 1))
    for rec in req.resource_logs[0].scope_logs[0].log_records:
        rec.body.string_value = (pad + " " + rec.body.string_value)[-body_bytes:]
    return req.SerializeToString()


def probe_fat(args: argparse.Namespace, out: Output) -> None:
    srv, grpc_port, _ = _server(args)
    requests = [
        _fat_request(
            args.fat_mib, args.fat_body_bytes, args.fat_fresh, random.Random(i), f"svc-{i % 8}"
        )
        for i in range(args.fat)
    ]
    answers: list[str] = []
    refusals: list[str] = []

    def export(req: bytes) -> None:
        """Sends `req` until it goes through, retrying refusals as the Collector does."""
        give_up = time.monotonic() + args.fat_seconds
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(
                EXPORT, response_deserializer=ExportLogsServiceResponse.FromString
            )
            while True:
                try:
                    call(req, timeout=args.fat_deadline_s)
                    answers.append("OK")
                    return
                except grpc.RpcError as e:
                    refusals.append(e.code().name)
                    if time.monotonic() > give_up:
                        answers.append(e.code().name)
                        return
                    time.sleep(random.uniform(0.5, 1.5))

    with srv:
        base = rss_mb(srv.pid)
        started = time.monotonic()
        with futures.ThreadPoolExecutor(len(requests)) as ex:
            list(ex.map(export, requests))
        seconds = time.monotonic() - started
        srv.wait_idle()  # work whose caller gave up has stopped
        peak = peak_rss_mb(srv.pid)  # the server's own high-water mark (VmHWM)
    t = out.table(
        [
            "fat exports",
            "MiB each",
            "seconds",
            "RSS before MB",
            "peak RSS MB",
            "answers",
            "refused tries",
        ]
    )
    t.add(
        args.fat,
        fmt(len(requests[0]) / (1 << 20), ".1f"),
        fmt(seconds, ".0f"),
        fmt(base, ".0f"),
        fmt(peak, ".0f"),
        _tally(answers),
        _tally(refusals),
    )
    out.show(t)


def probe_serial(args: argparse.Namespace, out: Output) -> None:
    """`--serial` fat exports one after the other on one channel: the server's RSS after
    each (what a reference cycle per call holds shows as a steady rise)."""
    srv, grpc_port, _ = _server(args)
    req = _fat_request(args.fat_mib, args.fat_body_bytes, 0.0, random.Random(0), "svc-0")
    rss: list[float] = []
    with srv, grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        base = rss_mb(srv.pid)
        call = channel.unary_unary(
            EXPORT, response_deserializer=ExportLogsServiceResponse.FromString
        )
        for _ in range(args.serial):
            call(req, timeout=args.fat_deadline_s)
            rss.append(rss_mb(srv.pid))
    t = out.table(["serial exports", "MiB each", "RSS before MB", "RSS after each MB"])
    t.add(
        args.serial,
        fmt(len(req) / (1 << 20), ".1f"),
        fmt(base, ".0f"),
        " ".join(f"{r:.0f}" for r in rss),
    )
    out.show(t)


PROBES = {
    "idle": probe_idle,
    "slow": probe_slow,
    "bombs": probe_bombs,
    "exporters": probe_exporters,
    "fat": probe_fat,
    "serial": probe_serial,
}


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__.split("\n")[0], "listeners")
    p.add_argument("--bundle", default=None)
    p.add_argument("--probes", default=",".join(PROBES), help="which, comma-separated")
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--slow", type=int, default=40)
    p.add_argument("--slow-mib", type=float, default=16.0)
    p.add_argument("--bombs", type=int, default=20)
    p.add_argument("--bomb-mib", type=int, default=1024)
    p.add_argument("--exporters", type=int, default=256)
    p.add_argument("--records", type=int, default=50, help="records per export")
    p.add_argument("--fresh", type=float, default=0.3, help="share of new texts")
    p.add_argument("--deadline-s", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=60.0, help="exporters' run")
    p.add_argument("--fat", type=int, default=40, help="concurrent fat OTLP/gRPC exports")
    p.add_argument("--fat-mib", type=float, default=15.0)
    p.add_argument("--serial", type=int, default=16, help="fat exports one after the other")
    p.add_argument("--fat-body-bytes", type=int, default=1024)
    p.add_argument("--fat-fresh", type=float, default=0.0, help="share of new texts")
    p.add_argument("--fat-deadline-s", type=float, default=60.0, help="each try's")
    p.add_argument("--fat-seconds", type=float, default=400.0, help="retries until")
    args = p.parse_args(argv)
    cli.smoke(
        args,
        idle=50,
        slow=4,
        slow_mib=2.0,
        bombs=3,
        bomb_mib=32,
        exporters=8,
        seconds=2.0,
        fat=3,
        fat_mib=1.0,
        serial=2,
    )
    pin(CLIENT_CORE)
    with cli.output(args, "listeners") as out:
        out.header(args.bundle)
        for name in args.probes.split(","):
            PROBES[name](args, out)


if __name__ == "__main__":
    main()
