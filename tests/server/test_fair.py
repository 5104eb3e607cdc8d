"""The Label pool's fair sharing between streams."""

from __future__ import annotations

import threading

import pytest

from logclust.server.fair import FairExecutor


def _gated(pool: FairExecutor) -> threading.Event:
    """Holds the pool's only thread until the returned event is set."""
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
    with pytest.raises(ValueError, match="Received: threads=0"):
        FairExecutor(0)
