"""OTLP rows share the core's guarantees (issue 27): a latency over the bound is not
recorded but the record is labelled; the forwarding queue survives a restart during an
outage of the next hop (spilled under `--store`), so nothing acked is lost."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from logclust.otlp.spill import SPILL_NAME, read_spill, write_spill
from logclust.server import ServerConfig, SidecarServer, create_server
from tests.fakes import FakeLabeler
from tests.otlp.test_receiver import (
    OTLP,
    Downstream,
    _export,
    _free_port,
    _record,
    _request,
    _wait,
)
from tests.reliability.conftest import LABELER


def _sidecar(store: Path | None, forward: int) -> SidecarServer:
    otlp = replace(OTLP, forward=f"127.0.0.1:{forward}")
    cfg = ServerConfig(
        listen="127.0.0.1:0",
        labeler=LABELER,
        otlp=otlp,
        store_dir=None if store is None else str(store),
    )
    return create_server(cfg, labeler=FakeLabeler())[0]


def test_otlp_latency_over_the_bound_is_labelled_not_recorded() -> None:
    srv = _sidecar(None, _free_port())
    with srv:
        assert srv.otlp is not None
        records = [_record(i) for i in range(50)]
        records.append(_record(50, latency_ms=AnyValue(double_value=1e30)))
        records.append(_record(51, latency_ms=AnyValue(int_value=2**63 - 1)))
        response = _export(srv.otlp.port, _request(records).SerializeToString())
        assert response.partial_success.rejected_log_records == 0  # labelled, all 52
        assert srv.sidecar.labeler.book.over_max_rows == 2
        lat = srv.sidecar.latency(quantiles=[0.99]).to_pydict()
        assert sum(lat["count"]) == 50 and max(lat["max"]) <= 7.0


def test_queue_spilled_at_stop_is_forwarded_after_restart(tmp_path: Path) -> None:
    hop = Downstream(_free_port())  # down for now
    srv = _sidecar(tmp_path, hop.port)
    with srv:
        assert srv.otlp is not None
        payload = _request([_record(i) for i in range(300)]).SerializeToString()
        assert _export(srv.otlp.port, payload).partial_success.rejected_log_records == 0
        srv.stop(grace=0.3)  # the next hop is still down
    assert (tmp_path / SPILL_NAME).exists()
    hop.start()
    try:
        srv = _sidecar(tmp_path, hop.port)
        with srv:
            _wait(lambda: len(hop.ids()) == 300)
        assert set(hop.ids()) == set(range(300)) and max(hop.ids().values()) == 1
        assert not (tmp_path / SPILL_NAME).exists()
    finally:
        hop.stop()


def test_a_cut_spill_file_keeps_its_whole_requests(tmp_path: Path) -> None:
    path = tmp_path / SPILL_NAME
    write_spill(path, [(b"a" * 10, 1, 10), (b"b" * 20, 2, 20)])
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    assert read_spill(path) == [(b"a" * 10, 1, 10)]
    assert not path.exists() and read_spill(path) == []


@pytest.mark.parametrize("garbage", [b"", b"not a spill"])
def test_a_foreign_spill_file_is_left_alone(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / SPILL_NAME
    path.write_bytes(garbage)
    assert read_spill(path) == [] and path.exists()
