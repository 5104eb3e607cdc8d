"""Peers timed next to the sidecar: Drain3 on the same lines, in a process of its own."""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any

from bench.harness.procs import SERVER_CORE, in_process

# The peers are timed this many times and their best run is kept (a strict yardstick).
PEER_REPEATS = 2


def has_drain3() -> bool:
    return importlib.util.find_spec("drain3") is not None


def _drain3(warmup: list[str], lines: list[str], repeats: int, out: Any) -> None:
    os.sched_setaffinity(0, {SERVER_CORE})
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    best = (0.0, 0)
    for _ in range(repeats):
        miner = TemplateMiner(config=TemplateMinerConfig())  # the defaults, no drain3.ini read
        for line in warmup:
            miner.add_log_message(line)
        start = time.perf_counter()
        for line in lines:
            miner.add_log_message(line)
        rate = len(lines) / (time.perf_counter() - start)
        best = max(best, (rate, len(miner.drain.clusters)))
    out.put(best)


def drain3_rate(
    warmup: list[str], lines: list[str], repeats: int = PEER_REPEATS, optional: bool = False
) -> tuple[float, int]:
    """Drain3 (`TemplateMiner`, default config) on `lines` after `warmup`, on the server
    core in a spawned process, best of `repeats`: (lines/s, clusters).

    Args:
        optional: without drain3 installed, NaN and 0 instead of an error (`--smoke`).
    """
    if optional and not has_drain3():
        return float("nan"), 0
    rate, clusters = in_process(_drain3, warmup, lines, repeats)
    return float(rate), int(clusters)
