"""A real sidecar on port 0 (fake embedder) for the reliability cases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler

CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
LABELER = StreamLabelerConfig(clusters=CLUSTERS)


def start(**kwargs: object) -> tuple[SidecarServer, int]:
    cfg = ServerConfig(listen="127.0.0.1:0", labeler=LABELER, **kwargs)  # type: ignore[arg-type]
    return create_server(cfg, labeler=FakeLabeler())


@pytest.fixture
def sidecar() -> Iterator[tuple[SidecarServer, int]]:
    srv, port = start(max_message_bytes=4 * 1024 * 1024, max_decompressed_bytes=32 << 20)
    with srv:
        yield srv, port


def sizes(srv: SidecarServer) -> int:
    """Rows the clusters of every source count (`Clusters`' sizes)."""
    return sum(st.size for _, st in srv.sidecar.describe())


def hold_after_placement(srv: SidecarServer) -> tuple[threading.Event, threading.Event]:
    """Holds every batch once its rows are placed, before they are recorded, until the
    returned gate is set; the other event is set when one is held."""
    labeler = srv.sidecar.labeler
    place_table = labeler.place_table
    gate, held = threading.Event(), threading.Event()

    def place_then_wait(*args: Any, **kwargs: Any) -> Any:
        placed = place_table(*args, **kwargs)
        held.set()
        assert gate.wait(30)
        return placed

    labeler.place_table = place_then_wait  # type: ignore[method-assign]
    return gate, held
