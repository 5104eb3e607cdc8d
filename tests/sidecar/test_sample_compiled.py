"""The compiled sampler (`CompiledBudget`, the C extension `_sample_kernel`) decides every
row as the numpy reference (`SourceBudget`) does, bit for bit: on the recorded streams of
`test_sampling_decisions` and `test_sampling_edge_decisions`, and on generated ones that
walk its other paths (sparse ids, int32 ids, kinds with tail strata, windows decayed to
nothing, new kinds past their allowance). Where the extension is not built, these tests
skip, unless LOGCLUST_REQUIRE_KERNEL=1 (CI) says it must be."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pytest

import logclust.sidecar as package
from logclust.sidecar import sample_compiled, sampling
from logclust.sidecar.config import SamplingConfig
from logclust.sidecar.sample_compiled import CompiledBudget, compiled
from logclust.sidecar.sample_level import source_key
from logclust.sidecar.sample_rows import SourceBudget
from tests.sidecar import test_sampling_decisions as recorded
from tests.sidecar import test_sampling_edge_decisions as edges
from tests.sidecar.test_sampling_decisions import T0_MS, Batch

KERNEL = compiled()
needs_kernel = pytest.mark.skipif(
    KERNEL is None, reason="the sampler's C extension is not built (pip install -e .)"
)


def test_the_kernel_is_built_where_required() -> None:
    if os.environ.get("LOGCLUST_REQUIRE_KERNEL") != "1":
        pytest.skip("LOGCLUST_REQUIRE_KERNEL is not 1: the numpy reference may decide")
    assert KERNEL is not None, "logclust.sidecar._sample_kernel is not built"
    budget = sampling.Sampler(SamplingConfig(fraction=0.1))._budget("app")
    assert type(budget) is CompiledBudget


def _decide(
    batches: Iterable[Batch], config: SamplingConfig, numpy: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The keep and weight columns of each batch, by the compiled sampler or numpy's."""
    sampler = sampling.Sampler(config, compiled_loops=not numpy)
    out = []
    for names, codes, ids, t, lat in batches:
        d = sampler.decide(names, codes, ids, t, lat)
        out.append((d.keep, d.weight))
    kinds = {type(b) for b in sampler._budgets.values()}
    assert kinds <= ({SourceBudget} if numpy else {CompiledBudget})
    return out


def _assert_same(make: Callable[[], Iterable[Batch]], config: SamplingConfig) -> tuple[int, int]:
    fast = _decide(make(), config, False)
    reference = _decide(make(), config, True)
    assert len(fast) == len(reference)
    for i, ((keep, weight), (keep_ref, weight_ref)) in enumerate(zip(fast, reference, strict=True)):
        assert np.array_equal(keep, keep_ref), f"batch {i}: keep differs"
        # the same bits, not only the same values
        assert np.array_equal(weight.view(np.int64), weight_ref.view(np.int64)), f"batch {i}"
    rows = sum(k.size for k, _ in fast)
    return rows, sum(int(k.sum()) for k, _ in fast)


@needs_kernel
@pytest.mark.parametrize("name", sorted(recorded.STREAMS))
def test_recorded_streams_decide_alike(name: str) -> None:
    make, config = recorded.STREAMS[name]
    rows, kept = _assert_same(make, config)
    assert 0 < kept < rows


@needs_kernel
@pytest.mark.parametrize("name", sorted(edges.STREAMS))
def test_edge_streams_decide_alike(name: str) -> None:
    make, config = edges.STREAMS[name]
    rows, kept = _assert_same(make, config)
    assert 0 < kept <= rows


def generated(seed: int) -> tuple[list[Batch], SamplingConfig]:
    """A stream of varied shape: ids dense or sparse, int32 or int64; kinds appearing
    late; times bunched, spread or out of order; latencies missing in part or whole."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2000, 12_000))
    ids = (rng.zipf(rng.uniform(1.2, 2.0), n) - 1).clip(0, int(rng.choice([3, 50, 3000])))
    ids = ids * int(rng.choice([1, 7, 1000]))  # sparse ids: grouped by a sort
    late = int(rng.integers(0, n))
    ids[late:] += int(rng.integers(1, 50)) * (rng.random(n - late) < 0.3)
    ids = ids.astype(np.int32 if seed % 2 else np.int64)
    gap = int(rng.choice([0, 5, 5000, 200_000]))
    t = T0_MS + np.cumsum(rng.integers(0, gap + 1, n))
    if seed % 3 == 0:
        t = t + rng.integers(-5 * gap - 1, 5 * gap + 1, n)
    lat = (1.0 + ids % 97) * rng.lognormal(0.0, 0.6, n)
    lat[rng.random(n) < float(rng.choice([0.0, 0.05, 0.5, 1.0]))] = np.nan
    sizes = rng.choice([1, 7, 333, 1000, 1023, 1025, 4097], 64)
    batches, start = [], 0
    for size in map(int, np.resize(sizes, n)):
        if start >= n:
            break
        part = slice(start, min(n, start + size))
        batches.append(
            (["app"], np.zeros(part.stop - start, np.int32), ids[part], t[part], lat[part])
        )
        start = part.stop
    config = SamplingConfig(
        fraction=float(rng.choice([0.001, 0.05, 0.1, 0.3, 0.9])),
        window_rows=int(rng.choice([1, 1000, 5000])),
        window_s=float(rng.choice([1.0, 60.0, 300.0])),
        slot_s=float(rng.choice([1.0, 10.0, 30.0])),
        seed=seed,
    )
    return batches, config


@needs_kernel
@pytest.mark.parametrize("seed", range(12))
def test_generated_streams_decide_alike(seed: int) -> None:
    batches, config = generated(seed)
    rows, kept = _assert_same(lambda: iter(batches), config)
    assert 0 < kept <= rows


@needs_kernel
def test_odd_arrays_are_converted_and_negative_ids_go_to_the_reference() -> None:
    def stream() -> Iterator[Batch]:
        rng = np.random.default_rng(0)
        for i, dtype in enumerate([np.int64, np.uint16, np.int8, np.int64]):
            ids = rng.integers(0, 40, 700).astype(dtype)
            if i == 3:
                ids[5] = -1  # decided by numpy, as it always was
            t = T0_MS + i * 1000 + np.arange(1400)[::2]  # not contiguous
            lat = rng.lognormal(0.0, 1.0, 700).astype(np.float32 if i == 2 else np.float64)
            yield ["app"], np.zeros(700, np.int32), ids, t, lat

    _assert_same(stream, SamplingConfig(fraction=0.1))


@needs_kernel
def test_the_kernel_refuses_arrays_of_the_wrong_kind() -> None:
    assert KERNEL is not None
    budget = CompiledBudget(0.1, SamplingConfig(fraction=0.1), 1)
    ids = np.arange(10, dtype=np.int64)
    budget.decide(ids, T0_MS + np.arange(10), np.full(10, np.nan))
    args = [budget.counts, budget.exposure, budget.last_segment, budget.last_row]
    args += [budget.in_level, budget.level_counts, budget.tail_on, budget.tail_at]
    args += [budget.in_segment, budget.level, np.arange(10), budget._k, 1.0, 1, 16, 16.0]
    args += [False, 5000.0, True, 1.0, 1.0, 0.025]
    assert KERNEL.segment(*args) is not None  # as given: fine
    wrong = list(args)
    wrong[1] = budget.exposure.astype(np.float32)
    with pytest.raises(ValueError, match="exposure.*Received: f"):
        KERNEL.segment(*wrong)
    wrong = list(args)
    wrong[11] = budget.counts.size + 1  # more clusters than slots
    with pytest.raises(ValueError, match="k out of range"):
        KERNEL.segment(*wrong)
    wrong = list(args)
    wrong[10] = np.arange(9)  # an order of fewer clusters
    with pytest.raises(ValueError, match="order: fewer"):
        KERNEL.segment(*wrong)
    with pytest.raises(TypeError, match="22 arguments"):
        KERNEL.segment(*args[:-1])
    with pytest.raises(TypeError, match="37 arguments"):
        KERNEL.part(ids)
    times = T0_MS + np.arange(10)
    assert KERNEL.scan(ids, times, np.zeros(10)) == (0, 9, T0_MS, T0_MS + 9)
    with pytest.raises(ValueError, match="latency.*Received: f"):
        KERNEL.scan(ids, times, np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="time_ms.*fewer than 10"):
        KERNEL.scan(ids, times[:5], np.zeros(10))


@needs_kernel
def test_a_kernel_of_another_version_or_turned_off_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sample_compiled._load() is KERNEL
    monkeypatch.setattr(sample_compiled, "KERNEL_VERSION", sample_compiled.KERNEL_VERSION + 1)
    assert sample_compiled._load() is None  # built from another _sample_kernel.c
    monkeypatch.undo()
    monkeypatch.setenv(sample_compiled.SAMPLER_ENV, "numpy")
    assert sample_compiled._load() is None


@needs_kernel
def test_a_kernel_of_the_last_signature_is_not_bound_and_numpy_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel built from the _sample_kernel.c before (version 3: `decide` given the
    answer's arrays, no `bind`) is left unused, not called; the sampler then decides with
    the numpy reference, the same rows."""
    old = types.ModuleType("logclust.sidecar._sample_kernel")
    for name in dir(KERNEL):
        if name.isupper():
            setattr(old, name, getattr(KERNEL, name))
    old.VERSION = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "logclust.sidecar._sample_kernel", old)
    monkeypatch.setattr(package, "_sample_kernel", old, raising=False)
    assert sample_compiled._load() is None  # and `bind`, absent there, never asked for
    monkeypatch.setattr(sample_compiled, "_KERNEL", None)
    sampler = sampling.Sampler(SamplingConfig(fraction=0.1))
    assert not sampler.compiled_loops
    ids = np.arange(3000) % 40
    times = T0_MS + np.arange(3000)
    d = sampler.decide(["app"], np.zeros(3000, np.int32), ids, times, np.full(3000, np.nan))
    assert type(sampler._budgets["app"]) is SourceBudget
    reference = SourceBudget(0.1, SamplingConfig(fraction=0.1), source_key(0, "app"))
    ref = reference.decide(ids, times, np.full(3000, np.nan))
    assert np.array_equal(d.keep, ref.keep) and np.array_equal(d.weight, ref.weight)
