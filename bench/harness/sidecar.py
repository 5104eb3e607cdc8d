"""Sidecar servers for the benchmarks: `logclust serve` in a child process pinned to one
core, or the gRPC server in this process; and a Label stream with a bounded depth."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from bench.harness.code import code_env, logclust_command
from bench.harness.ports import free_port
from bench.harness.procs import wait_idle
from logclust.client import Client
from logclust.proto import logclust_pb2 as pb
from logclust.wire import ipc


class Sidecar:
    """`logclust serve` in a child process pinned to one core, with a temporary store.

    Args:
        bundle: model bundle (None: the default).
        core: the core the server and all its threads run on.
        code: another checkout whose `logclust` serves (`bench.harness.code`).
        extra: more `logclust serve` flags.
        quiet_s: how long the server's CPU must stay idle for `wait_idle`.
    """

    def __init__(
        self,
        bundle: str | None,
        core: int,
        code: str | None = None,
        extra: list[str] | None = None,
        quiet_s: float = 1.0,
    ) -> None:
        self.store = tempfile.mkdtemp(prefix="logclust-bench-")
        self.port = free_port()
        self.quiet_s = quiet_s
        cmd = logclust_command(code)
        cmd += ["serve", "--listen", f"127.0.0.1:{self.port}", "--store", self.store]
        if bundle:
            cmd += ["--bundle", str(bundle)]
        cmd += extra or []
        # No `preexec_fn`: it makes Popen fork() with this process's gRPC threads alive
        # (a bench's next hop, say), and the child can hang or crash before exec
        # (grpc/grpc#43055); without it Python starts the child by vfork. Popen returns
        # once the child has exec'd, before the interpreter starts any thread, so the
        # server's threads all inherit the core set here.
        self.proc = subprocess.Popen(
            cmd, env=code_env(code), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            os.sched_setaffinity(self.proc.pid, {core})
        except ProcessLookupError:  # it exited at once: the caller's readiness wait says so
            pass

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_idle(self) -> None:
        """Returns once the server's CPU is idle (refits and consolidations done)."""
        wait_idle(self.proc.pid, self.quiet_s)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.store, ignore_errors=True)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def in_process_server(config: Any, labeler: Any) -> Iterator[str]:
    """The gRPC server of `config` and `labeler` in this process; yields its address."""
    from logclust.server.app import create_server

    server, port = create_server(config, labeler)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def batches(table: pa.Table, size: int) -> list[pa.Table]:
    """`table` in slices of `size` rows."""
    return list(ipc.iter_slices(table, size))


def body_table(lines: list[str]) -> pa.Table:
    """A table of one `body` column."""
    return pa.table({"body": pa.array(lines, pa.string())})


def payloads(lines: list[str], size: int) -> list[bytes]:
    """Arrow IPC payloads of `size` lines each (a `body` column)."""
    return [ipc.encode_ipc(t) for t in batches(body_table(lines), size)]


def stream(client: Client, data: list[bytes], depth: int) -> tuple[float, np.ndarray]:
    """Sends IPC payloads over one Label stream with at most `depth` in flight.

    Returns the phase's wall time and each batch's send-to-response seconds.
    """
    if not data:
        return 0.0, np.zeros(0)
    slots = threading.Semaphore(depth)
    sent = np.zeros(len(data))
    done = np.zeros(len(data))

    def requests() -> Iterator[pb.LabelRequest]:
        for i, payload in enumerate(data):
            slots.acquire()
            sent[i] = time.perf_counter()
            yield pb.LabelRequest(batch_id=str(i), arrow_ipc=payload)

    start = time.perf_counter()
    n = 0
    for n, response in enumerate(client._stub.Label(requests())):
        done[n] = time.perf_counter()
        slots.release()
        if response.batch_id != str(n):
            raise RuntimeError(f"response {response.batch_id} out of order (expected {n})")
    if n != len(data) - 1:
        raise RuntimeError(f"{n + 1} responses for {len(data)} batches")
    return float(done[-1] - start), done - sent
