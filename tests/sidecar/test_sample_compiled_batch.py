"""The compiled sampler's one call per batch (`_sample_kernel.decide`): the ledger it steps
and writes back is the numpy reference's, number for number and bit for bit; segments
start in the kernel (only new kinds, a grown id table, and a segment's start after new
kinds go back to Python); and the call checks what it is given. Where the extension is
not built, these tests skip (as test_sample_compiled's do)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from logclust.sidecar import sampling
from logclust.sidecar.config import SamplingConfig
from logclust.sidecar.sample_compiled import CompiledBudget, compiled
from logclust.sidecar.sample_rows import Decisions
from tests.sidecar import test_sample_compiled as generated_streams
from tests.sidecar import test_sampling_decisions as recorded
from tests.sidecar.test_sampling_decisions import T0_MS, Batch

KERNEL = compiled()
needs_kernel = pytest.mark.skipif(
    KERNEL is None, reason="the sampler's C extension is not built (pip install -e .)"
)
# The ledger's numbers the kernel reads and writes back, and its per-cluster arrays.
NUMBERS = (
    "rows", "segments", "window_ms", "window_row", "window_rows", "_segment_end", "clock_ms",
    "_sure_lo", "total", "window_spent", "new_demand", "rate", "allowance", "gain", "tau",
    "_tails", "_faded", "_k", "kept", "dropped",
)  # fmt: skip
ARRAYS = (
    "counts", "exposure", "in_segment", "level_counts", "level", "tail_at", "in_level",
    "tail_on", "sure_ms", "sure_row", "last_row", "last_segment",
)  # fmt: skip


def _same_number(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isnan(a) and math.isnan(b) or np.float64(a).tobytes() == np.float64(b).tobytes()
    return a == b


def _assert_same_ledgers(batches: Iterable[Batch], config: SamplingConfig) -> int:
    """Decides `batches` with both samplers, comparing every source's ledger after each
    batch; the number of sources compared."""
    fast = sampling.Sampler(config)
    reference = sampling.Sampler(config, compiled_loops=False)
    for i, (names, codes, ids, t, lat) in enumerate(batches):
        fast.decide(names, codes, ids, t, lat)
        reference.decide(names, codes, ids, t, lat)
        for source, ours in fast._budgets.items():
            theirs = reference._budgets[source]
            assert type(ours) is CompiledBudget
            for name in NUMBERS:
                a, b = getattr(ours, name), getattr(theirs, name)
                assert _same_number(a, b), f"batch {i}, {source}: {name} {a!r} != {b!r}"
            k = ours._k
            for name in ARRAYS:
                a, b = getattr(ours, name)[:k], getattr(theirs, name)[:k]
                assert a.tobytes() == b.tobytes(), f"batch {i}, {source}: {name}"
            assert ours.phases[:, :k].tobytes() == theirs.phases[:, :k].tobytes()
    return len(fast._budgets)


@needs_kernel
@pytest.mark.parametrize("name", sorted(recorded.STREAMS))
def test_the_ledger_written_back_is_the_references(name: str) -> None:
    make, config = recorded.STREAMS[name]
    assert _assert_same_ledgers(make(), config) >= 1


@needs_kernel
@pytest.mark.parametrize("seed", [0, 3, 5, 10])
def test_the_ledger_of_generated_streams_is_the_references(seed: int) -> None:
    batches, config = generated_streams.generated(seed)
    assert _assert_same_ledgers(batches, config) == 1


def _count_calls(budget: CompiledBudget, name: str) -> Callable[[], int]:
    """Counts the kernel's calls back into `budget`'s method `name`."""
    calls = [0]
    method = getattr(budget, name)

    def counted(*args: object) -> object:
        calls[0] += 1
        return method(*args)

    setattr(budget, name, counted)
    return lambda: calls[0]


@needs_kernel
@pytest.mark.parametrize("latency", [False, True])
def test_segments_start_in_the_kernel(latency: bool) -> None:
    """Once every kind has an index, a segment's start is the kernel's, with latencies
    too (tail estimates, and the levels of clusters with a tail stratum)."""
    rng = np.random.default_rng(0)
    budget = CompiledBudget(0.1, SamplingConfig(fraction=0.1), 7)
    ids = np.minimum(rng.geometric(0.1, 40_000), 60).astype(np.int64)
    times = T0_MS + np.arange(ids.size, dtype=np.int64)
    lat = (1.0 + ids) * rng.lognormal(0.0, 0.5, ids.size) if latency else np.full(ids.size, np.nan)
    budget.decide(ids[:20_000], times[:20_000], lat[:20_000])  # every kind seen
    begins = _count_calls(budget, "_begin_segment")
    splits = _count_calls(budget, "_split_levels")
    segments = budget.segments
    for start in range(20_000, ids.size, 1000):
        part = slice(start, start + 1000)
        budget.decide(ids[part], times[part], lat[part])
    assert budget.segments - segments >= 19
    assert begins() == 0 and splits() == 0
    assert budget._tails == latency  # tail strata only where latencies are measured


@needs_kernel
def test_the_batch_call_checks_what_it_is_given() -> None:
    assert KERNEL is not None
    budget = CompiledBudget(0.1, SamplingConfig(fraction=0.1), 1)
    ids = np.arange(10, dtype=np.int64)
    times = T0_MS + np.arange(10)
    got = KERNEL.decide(budget, ids, times, np.full(10, np.nan))
    # the answer's arrays are the kernel's own, in the caller's Decisions
    assert type(got) is Decisions
    assert got.keep.dtype == np.bool_ and got.keep.shape == (10,) and got.keep.flags.writeable
    assert got.weight.dtype == np.float64 and got.weight.shape == (10,)
    assert got.keep.sum() >= 1 and np.all(got.weight[~got.keep] == 0.0)
    rows = budget.rows
    # the batch's arrays of another type: nothing changed, the caller converts them
    assert KERNEL.decide(budget, ids.astype(np.float64), times, np.zeros(10)) == (
        KERNEL.OTHER_ARRAYS
    )
    assert KERNEL.decide(budget, ids, times, np.zeros(10, np.float32)) == KERNEL.OTHER_ARRAYS
    negative = ids.copy()
    negative[3] = -1
    assert KERNEL.decide(budget, negative, times, np.zeros(10)) == KERNEL.NEGATIVE_IDS
    assert budget.rows == rows  # nothing decided
    with pytest.raises(TypeError, match="4 arguments"):
        KERNEL.decide(budget, ids, times)
    with pytest.raises(TypeError, match="a tuple type. Received"):
        KERNEL.bind(dict)
    budget.exposure = budget.exposure.astype(np.float32)  # a ledger of the wrong kind
    with pytest.raises(ValueError, match="exposure.*Received: f"):
        KERNEL.decide(budget, ids, times, np.zeros(10))
    assert budget.rows == rows


@needs_kernel
def test_the_decisions_do_not_depend_on_the_batches() -> None:
    """One batch or many, the same rows kept: the kernel's walk over parts and windows
    cuts segments where the reference does."""
    rng = np.random.default_rng(2)
    ids = (rng.zipf(1.5, 9000) - 1).clip(0, 400).astype(np.int64)
    times = T0_MS + np.cumsum(rng.integers(0, 400, ids.size))
    lat = rng.lognormal(0.0, 1.0, ids.size)
    config = SamplingConfig(fraction=0.1, window_rows=1000, window_s=60.0, slot_s=10.0)
    whole = CompiledBudget(0.1, config, 3).decide(ids, times, lat)
    budget = CompiledBudget(0.1, config, 3)
    cuts = np.unique(np.concatenate([[0, ids.size], rng.integers(1, ids.size, 40)]))
    pieces = zip(cuts[:-1], cuts[1:], strict=True)
    keep = np.concatenate([budget.decide(ids[a:b], times[a:b], lat[a:b]).keep for a, b in pieces])
    assert np.array_equal(keep, whole.keep)
    assert 0 < int(keep.sum()) < ids.size
