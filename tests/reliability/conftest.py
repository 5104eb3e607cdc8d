"""A real sidecar on port 0 (fake embedder) for the reliability cases."""

from __future__ import annotations

from collections.abc import Iterator

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
