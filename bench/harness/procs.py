"""Processes of a benchmark: cores, CPU seconds and resident memory from /proc, spawned
workers."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The sidecar (and the peers timed against it) run on this core, the clients on the other.
SERVER_CORE = 0
CLIENT_CORE = 1


def pin(core: int) -> None:
    """Pins this process (and what it starts later) to `core`."""
    os.sched_setaffinity(0, {core})


def need_two_cores(what: str = "one for the sidecar, one for the client") -> None:
    """Exits with a message on a machine of one core."""
    if (os.cpu_count() or 1) < 2:
        raise SystemExit(f"needs two cores: {what}")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of every thread of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu_s(pid: int) -> float:
    """CPU seconds of the threads `pid` has now, to the nanosecond (`schedstat`; threads
    that ended are not counted: for spans over which a server keeps its threads)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return total / 1e9


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    """Current resident set size of `pid` (VmRSS), MB."""
    return _status_mb(pid, "VmRSS:")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of `pid` (VmHWM), MB."""
    return _status_mb(pid, "VmHWM:")


def wait_idle(pid: int, quiet_s: float = 1.0, timeout_s: float = 120.0) -> None:
    """Returns once `pid` used under 5% of a core for `quiet_s` (refits finished)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        before = proc_cpu_s(pid)
        time.sleep(quiet_s)
        if proc_cpu_s(pid) - before < 0.05 * quiet_s:
            return


def in_process(target: Callable[..., None], *args: object) -> Any:
    """Runs `target(*args, queue)` in a spawned process; what it put on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result
