"""`CycleSweeper`: what reference cycles hold is freed once enough request bytes passed."""

from __future__ import annotations

import gc
import weakref

import pytest

from logclust.rpc.sweep import CycleSweeper


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle, as gRPC's handler lookup makes per call
        self.payload = bytearray(1 << 20)


def test_a_cycle_is_freed_once_the_bytes_add_up() -> None:
    gc.disable()  # only the sweeper collects here
    try:
        sweeper = CycleSweeper(every_bytes=3 << 20)
        node = _Node()
        alive = weakref.ref(node)
        del node
        assert not sweeper.done(1 << 20) and not sweeper.done(1 << 20)
        assert alive() is not None  # under the threshold: the cycle still holds it
        assert sweeper.done(1 << 20) and sweeper.sweeps == 1
        assert alive() is None
        assert not sweeper.done(1 << 20)  # the count starts again
    finally:
        gc.enable()


@pytest.mark.parametrize("every", [0, -1])
def test_a_threshold_must_be_positive(every: int) -> None:
    with pytest.raises(ValueError, match="every_bytes must be positive. Received"):
        CycleSweeper(every_bytes=every)
