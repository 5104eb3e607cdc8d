"""`Client.label_stream` against a real sidecar on port 0: batches stay in flight."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from logclust.client import Client
from logclust.cluster.config import StreamClusterConfig
from logclust.server import ServerConfig, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler


def _new_texts(batch: int, rows: int) -> pa.Table:
    # Letters only, so every batch brings texts the sidecar has not embedded yet.
    words = ["".join(chr(97 + (batch * 7 + i * 3 + k) % 26) for k in range(6)) for i in range(rows)]
    return pa.table({"body": [f"user {w} logged in from batch {chr(97 + batch)}" for w in words]})


def test_label_stream_sends_batches_before_the_first_answer() -> None:
    config = ServerConfig(
        listen="127.0.0.1:0",
        labeler=StreamLabelerConfig(
            clusters=StreamClusterConfig(reservoir_size=100, background_consolidation=False)
        ),
    )
    server, port = create_server(config, labeler=FakeLabeler())
    handed: list[int] = []  # batches taken from the iterator, at each answer
    taken = 0
    four_taken = threading.Event()
    label_ipc = server.sidecar.label_ipc

    def held_label_ipc(*args: Any, **kwargs: Any) -> tuple[bytes, int]:
        # The first batch is answered once four were taken (or after a minute, when the
        # stream does not pipeline and the assertion below fails).
        four_taken.wait(60)
        return label_ipc(*args, **kwargs)

    server.sidecar.label_ipc = held_label_ipc  # type: ignore[method-assign]

    def batches() -> Iterator[pa.Table]:
        nonlocal taken
        for b in range(6):
            taken += 1
            if taken >= 4:
                four_taken.set()
            yield _new_texts(b, 50)

    with server, Client(f"127.0.0.1:{port}") as client:
        answers = []
        for labelled in client.label_stream(batches()):
            handed.append(taken)
            answers.append(labelled)
    assert [t.num_rows for t in answers] == [50] * 6
    assert answers[2].column("body").to_pylist() == _new_texts(2, 50).column("body").to_pylist()
    # gRPC's request thread pulls the next batches while the first is labelled: the
    # stream pipelines without a bound of its own.
    assert handed[0] >= 4, handed


def test_default_address_is_where_serve_listens() -> None:
    from logclust.client import DEFAULT_ADDR
    from logclust.server.config import DEFAULT_LISTEN

    assert DEFAULT_ADDR == DEFAULT_LISTEN
