"""The Label pool's fair sharing between streams."""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from logclust import turns
from logclust.server.app import LABEL_NICE, lower_thread_priority
from logclust.server.config import ServerConfig, usable_cores
from logclust.server.fair import FairExecutor


def _gated(pool: FairExecutor) -> threading.Event:
    """Holds the pool's only slot until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(10)

    pool.submit("gate", 1, hold)
    assert started.wait(10)
    return gate


def _order(items: list[tuple[str, int, str]]) -> list[str]:
    """The order in which a one-thread pool runs `(key, cost, label)` items submitted
    while its thread is held (so all of them wait together)."""
    pool = FairExecutor(1)
    order: list[str] = []
    gate = _gated(pool)
    for key, cost, label in items:
        pool.submit(key, cost, order.append, label)
    gate.set()
    pool.shutdown()  # runs everything queued
    return order


def test_a_light_stream_goes_ahead_of_a_heavy_backlog() -> None:
    heavy = [("heavy", 100_000, f"h{i}") for i in range(10)]
    order = _order([*heavy, ("light", 2_000, "light")])
    # A FIFO pool would run it last; here at most one heavy item goes first.
    assert order.index("light") <= 1


def test_a_new_light_stream_goes_ahead_of_streams_with_one_heavy_item_each() -> None:
    # Each Label stream holds one batch in flight, so heavy streams come back from idle
    # at every batch; a light stream arriving after them ties on the start tag and must
    # not queue behind all of them.
    heavy = [(f"heavy{i}", 60_000, f"h{i}") for i in range(8)]
    order = _order([*heavy, ("light", 2_000, "light")])
    assert order[0] == "light", order


def test_equal_streams_take_turns_and_each_keeps_its_order() -> None:
    order = _order([(k, 1_000, f"{k}{i}") for k in "ab" for i in range(4)])
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"]


def test_a_stream_back_from_idle_gets_no_credit_for_the_pause() -> None:
    pool = FairExecutor(1)
    order: list[str] = []
    pool.submit("away", 1_000, order.append, "warm").result(10)
    for i in range(10):  # "busy" is served while "away" sends nothing
        pool.submit("busy", 1_000, order.append, f"early{i}").result(10)
    gate = _gated(pool)
    for i in range(3):
        pool.submit("busy", 1_000, order.append, f"busy{i}")
    for i in range(3):
        pool.submit("away", 1_000, order.append, f"away{i}")
    gate.set()
    pool.shutdown()
    late = [o[:4] for o in order[11:]]
    # Kept at its old virtual time, it would run all three before "busy" goes on; it
    # starts at the time now served instead, so the two take turns.
    assert all(a != b for a, b in zip(late, late[1:], strict=False)), late


def test_errors_reach_the_caller_and_shutdown_drains_the_queue() -> None:
    pool = FairExecutor(2)

    def boom() -> None:
        raise KeyError("broken")

    with pytest.raises(KeyError, match="broken"):
        pool.submit("s", 10, boom).result(10)
    done = [pool.submit("s", 10, lambda i=i: i) for i in range(20)]
    pool.shutdown(wait=True)
    assert [f.result(0) for f in done] == list(range(20))
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit("s", 10, print)
    with pytest.raises(ValueError, match="Received: slots=0"):
        FairExecutor(0)


def _burst(
    pool: FairExecutor, order: list[str], steps: int
) -> tuple[Future[None], threading.Event, threading.Event]:
    """Submits a long item on stream "burst" that records each step and calls a
    checkpoint between steps (as `_embed_new` does between slices); returns its future,
    an event set once it ran its first step, and an event it waits for before its first
    checkpoint (set it once the competing work is submitted: no sleep decides the race)."""
    first, go = threading.Event(), threading.Event()

    def run() -> None:
        for i in range(steps):
            order.append(f"burst{i}")
            first.set()
            assert go.wait(30), "the test never let the burst go on"
            turns.checkpoint(turns.EMBED_COST)

    return pool.submit("burst", 1_000, run), first, go


def test_a_long_item_yields_its_slot_at_checkpoints() -> None:
    pool = FairExecutor(1)
    order: list[str] = []
    done, first, go = _burst(pool, order, 20)
    assert first.wait(30)
    light = pool.submit("light", 1_000, order.append, "light")  # queued: the slot is taken
    go.set()
    light.result(30)
    done.result(30)
    pool.shutdown()
    # It goes at the burst's first checkpoint; without the yield it would wait 20 steps.
    assert order.index("light") == 1, order


def test_a_checkpoint_never_parks_without_a_thread_to_take_over() -> None:
    pool = FairExecutor(1, spare=0)
    order: list[str] = []
    done, first, go = _burst(pool, order, 5)
    assert first.wait(30)
    light = pool.submit("light", 1_000, order.append, "light")
    go.set()
    done.result(30)  # would hang if the only thread parked
    light.result(30)
    pool.shutdown()
    assert order[-1] == "light", order


def test_parked_items_all_finish_and_slots_are_respected() -> None:
    pool = FairExecutor(2, spare=3)
    running, peak = [0], [0]
    lock = threading.Lock()

    def step_work(key: str) -> str:
        for _ in range(5):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.001)
            with lock:
                running[0] -= 1
            turns.checkpoint(turns.EMBED_COST)
        return key

    keys = [f"s{i}" for i in range(12)]
    futs = [pool.submit(k, 1_000 * (i + 1), step_work, k) for i, k in enumerate(keys)]
    assert [f.result(30) for f in futs] == keys
    pool.shutdown()
    assert peak[0] <= 2  # never more work at once than slots


def test_a_checkpoint_outside_the_pool_does_nothing() -> None:
    turns.checkpoint(10**9)  # no pool: returns at once


def test_the_initializer_runs_in_every_worker() -> None:
    names: list[str] = []
    lock = threading.Lock()

    def init() -> None:
        with lock:
            names.append(threading.current_thread().name)

    pool = FairExecutor(2, thread_name_prefix="t", spare=1, initializer=init)
    pool.shutdown()
    assert sorted(names) == ["t-0", "t-1", "t-2"]


def test_slots_follow_the_cgroup_quota_and_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 cores: 2 slots
    assert usable_cores(str(quota)) == min(affinity, 2)
    quota.write_text("50000 100000\n")  # half a core: still 1
    assert usable_cores(str(quota)) == 1
    quota.write_text("max 100000\n")
    assert usable_cores(str(quota)) == affinity
    assert usable_cores(str(tmp_path / "absent")) == affinity
    assert ServerConfig(label_threads=3).label_pool_size() == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's nice is Linux's")
def test_label_threads_run_at_alower_thread_priority() -> None:
    pool = FairExecutor(1, initializer=lower_thread_priority)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker = pool.submit("s", 1, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert worker.result(10) == min(own + LABEL_NICE, 19)
    pool.shutdown()
