"""The sampler's decisions at its edges, bit for bit: times out of order, hours between
rows, windows that decay counts to nothing, kinds that appear late or burst, one-row
batches, and budgets near 1 and near 0 (fixed seeds), against hashes recorded from the
sampler before its shortcuts (main at 99de534). Each stream walks a path the common
streams of `test_sampling_decisions` seldom take: the rows due for certain by time, the
exposure of a kind after a decay to nothing, the allowance of new kinds spent, the level
below every count.

Regenerate (only when the rule itself changes on purpose):
    .venv/bin/python -m tests.sidecar.test_sampling_edge_decisions --write
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from logclust.sidecar.config import SamplingConfig
from tests.sidecar.test_sampling_decisions import T0_MS, Batch, _batches, _lognormal, hashes

RECORDED = Path(__file__).parent / "data" / "sampling_edge_decisions.json"


def _sizes(rng: np.random.Generator, choices: list[int]) -> Iterator[int]:
    while True:
        yield int(rng.choice(choices))


def edge_stream(
    seed: int,
    n: int,
    kinds: int,
    gap_ms: int,
    no_latency: float,
    sizes: list[int],
    *,
    shuffled: bool = False,
    late: bool = False,
    bursts: bool = False,
) -> Iterator[Batch]:
    """`n` rows of a long tail of `kinds`, `gap_ms` apart at most; `shuffled`: times out
    of order; `late`: half the kinds of the second half new; `bursts`: five bursts of 400
    rows of a new kind."""
    rng = np.random.default_rng(seed)
    ids = (rng.zipf(1.3, n) - 1).clip(0, kinds).astype(np.int64)
    if late:
        ids[n // 2 :] += rng.integers(0, 2, n - n // 2) * 5000
    if bursts:
        for b in range(5):
            at = int(rng.integers(0, n - 500))
            ids[at : at + 400] = 9000 + b
    t = T0_MS + np.cumsum(rng.integers(0, gap_ms, n))
    if shuffled:
        t = t + rng.integers(-5 * gap_ms, 5 * gap_ms, n)
    lat = _lognormal(rng, ids)
    lat[rng.random(n) < no_latency] = np.nan
    yield from _batches(ids, t, lat, _sizes(rng, sizes))


STREAMS = {
    "shuffled_times": (
        lambda: edge_stream(1, 20_000, 300, 50, 0.2, [1, 5, 100, 999], shuffled=True),
        SamplingConfig(fraction=0.1),
    ),
    "hours_between_rows": (
        lambda: edge_stream(2, 20_000, 100, 20_000, 0.0, [50, 300, 2000]),
        SamplingConfig(fraction=0.1, window_s=60.0, slot_s=30.0),
    ),
    "decayed_to_nothing": (
        lambda: edge_stream(3, 15_000, 50, 200_000, 0.5, [3, 64, 700]),
        SamplingConfig(fraction=0.1, window_rows=1, window_s=1.0, slot_s=1.0),
    ),
    "late_new_kinds": (
        lambda: edge_stream(4, 30_000, 500, 10, 1.0, [1000], late=True),
        SamplingConfig(fraction=0.05),
    ),
    "bursts": (
        lambda: edge_stream(5, 30_000, 200, 5, 0.1, [500, 1000, 1500], bursts=True),
        SamplingConfig(fraction=0.1, window_rows=2000),
    ),
    "one_row_batches": (
        lambda: edge_stream(6, 4000, 40, 100, 0.3, [1]),
        SamplingConfig(fraction=0.2),
    ),
    "budget_near_one": (
        lambda: edge_stream(7, 10_000, 100, 100, 0.0, [1000]),
        SamplingConfig(fraction=0.9),
    ),
    "budget_near_zero": (
        lambda: edge_stream(8, 20_000, 3000, 10, 0.0, [1000, 2048]),
        SamplingConfig(fraction=0.001),
    ),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_edge_decisions_match_the_recorded_ones(name: str) -> None:
    recorded = json.loads(RECORDED.read_text())[name]
    make, config = STREAMS[name]
    assert hashes(make(), config) == recorded


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    out = {n: hashes(make(), config) for n, (make, config) in sorted(STREAMS.items())}
    RECORDED.write_text(json.dumps(out, indent=1) + "\n")
    print(RECORDED.read_text())
