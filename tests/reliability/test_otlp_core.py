"""OTLP rows share the core's guarantees (issue 27): a latency over the bound is not
recorded but the record is labelled; the forwarding queue survives a restart during an
outage of the next hop (spilled under `--store`), so nothing acked is lost."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from logclust.otlp.forward import ForwardQueue
from logclust.otlp.spill import SPILL_NAME, SpillJournal, read_spill, write_spill
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


def test_the_spill_file_keeps_what_is_not_delivered_across_a_crash(tmp_path: Path) -> None:
    path = tmp_path / SPILL_NAME
    journal = SpillJournal(path)
    a, b, c = (b"a" * 10, 1, 10), (b"b" * 20, 2, 20), (b"c" * 30, 3, 30)
    first, _ = journal.rewrite([a, b])  # the outage starts with two queued
    journal.append(c)  # queued during the outage
    journal.delivered(first)  # `a` went through; then the process dies (no close)
    again = SpillJournal(path)
    assert [item for item, _ in again.load()] == [b, c]
    assert path.exists()  # until delivered
    end = again.append(a)
    again.delivered(end)  # everything delivered: the file is gone
    assert not path.exists()


def test_a_spill_file_of_the_first_format_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / SPILL_NAME
    path.write_bytes(b"LCQ1" + struct.pack("<QQQ", 1, 10, 10) + b"a" * 10)
    journal = SpillJournal(path)
    assert [item for item, _ in journal.load()] == [(b"a" * 10, 1, 10)]
    assert journal.open and path.read_bytes().startswith(b"LCQ2")


def test_the_queue_is_on_disk_only_while_the_next_hop_is_down(tmp_path: Path) -> None:
    path = tmp_path / SPILL_NAME
    hop = Downstream(_free_port())  # down for now
    queue = ForwardQueue(replace(OTLP, forward=f"127.0.0.1:{hop.port}"), spill=path)
    try:
        for start in (0, 10):
            queue.reserve(10, 100)
            queue.put(_request([_record(i) for i in range(start, start + 10)]), 10, 100)
            _wait(path.exists)  # the first failed Export put the queue on disk
        assert sum(n for _, n, _ in _spilled(path)) == 20  # the second written when queued
        hop.start()
        _wait(lambda: len(hop.ids()) == 20)
        _wait(lambda: not path.exists())  # delivered: gone
        queue.reserve(5, 50)
        queue.put(_request([_record(i) for i in range(20, 25)]), 5, 50)  # the hop is up
        _wait(lambda: len(hop.ids()) == 25)
        assert not path.exists() and max(hop.ids().values()) == 1
    finally:
        queue.close(5)
        hop.stop()


def _spilled(path: Path) -> list[tuple[bytes, int, int]]:
    """The requests in a spill file, read without deleting it."""
    copy = path.with_name("copy")
    copy.write_bytes(path.read_bytes())
    return read_spill(copy)
