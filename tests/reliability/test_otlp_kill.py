"""A kill -9 during an outage of the next hop loses nothing acked (issue 27): while the
hop is down the forwarding queue is in `<store>/otlp-forward.spill`, and a restart
forwards it once the hop is back. A real `logclust serve` (subprocess, the shipped
model), killed with SIGKILL; a real OTLP receiver as the next hop, started later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from logclust.otlp.spill import SPILL_NAME
from tests.otlp.test_receiver import Downstream, _free_port, _record, _request, _wait
from tests.reliability.test_otlp_listeners import EXPORT

ROOT = Path(__file__).resolve().parents[2]


def _export(port: int, payload: bytes) -> ExportLogsServiceResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            EXPORT, response_deserializer=ExportLogsServiceResponse.FromString
        )
        return call(payload, timeout=120)  # type: ignore[no-any-return]


@contextmanager
def serve(
    store: Path, otlp_port: int, forward_port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`logclust serve` from this checkout with an OTLP receiver and a next hop."""
    cmd = [sys.executable, "-m", "logclust.cli.main", "serve", "--listen", "127.0.0.1:0"]
    cmd += ["--store", str(store), "--otlp-listen", f"127.0.0.1:{otlp_port}"]
    cmd += ["--otlp-forward", f"127.0.0.1:{forward_port}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        _wait(lambda: proc.poll() is None and "listening on" in log.read_text(), 120)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)


def test_a_kill_during_an_outage_loses_nothing_acked(tmp_path: Path) -> None:
    store = tmp_path / "store"
    spill = store / SPILL_NAME
    hop = Downstream(_free_port())  # down for now
    otlp_port = _free_port()
    first = _request([_record(i) for i in range(200)]).SerializeToString()
    second = _request([_record(i) for i in range(200, 300)]).SerializeToString()
    with serve(store, otlp_port, hop.port, tmp_path / "first.log") as proc:
        assert _export(otlp_port, first).partial_success.rejected_log_records == 0
        _wait(spill.exists, 60)  # the hop failed once: the queue is on disk
        assert _export(otlp_port, second).partial_success.rejected_log_records == 0
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    assert spill.exists()
    hop.start()
    try:
        with serve(store, otlp_port, hop.port, tmp_path / "second.log"):
            _wait(lambda: len(hop.ids()) == 300, 60)
            _wait(lambda: not spill.exists(), 30)  # delivered: the file is gone
        assert set(hop.ids()) == set(range(300)) and max(hop.ids().values()) == 1
    finally:
        hop.stop()
