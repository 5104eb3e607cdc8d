"""The sampler's decisions, bit for bit: `keep` and `sample_weight` of varied streams
(a long tail of kinds, a shifting HTTP mix, rows without latency, several sources
interleaved, odd batch sizes; fixed seeds) against hashes recorded from the reference
implementation. A faster sampler must decide exactly as the recorded one did.

Regenerate (only when the rule itself changes on purpose):
    .venv/bin/python -m tests.sidecar.test_sampling_decisions --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from logclust.sidecar.config import SamplingConfig
from logclust.sidecar.sampling import Sampler

RECORDED = Path(__file__).parent / "data" / "sampling_decisions.json"
T0_MS = 1_780_000_000_000
# (sources, codes, ids, time_ms, latency) of one batch
Batch = tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _long_tail(rng: np.random.Generator, n: int) -> np.ndarray:
    """Cluster ids with a Zipf-like long tail (a few huge kinds, many rare ones)."""
    return (rng.zipf(1.6, n) - 1).clip(0, 4000).astype(np.int64)


def _lognormal(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """Latencies with a median per cluster and a spike mode on a few rows."""
    median = 1.0 + (ids * 7919 % 97)
    lat = median * rng.lognormal(0.0, 0.6, ids.size)
    spike = rng.random(ids.size) < 0.01
    lat[spike] *= 8.0
    return lat


def _batches(
    ids: np.ndarray, time_ms: np.ndarray, latency: np.ndarray, sizes: Iterator[int]
) -> Iterator[Batch]:
    start = 0
    while start < ids.size:
        stop = min(ids.size, start + next(sizes))
        part = slice(start, stop)
        codes = np.zeros(stop - start, np.int32)
        yield ["app"], codes, ids[part], time_ms[part], latency[part]
        start = stop


def _fixed(size: int) -> Iterator[int]:
    while True:
        yield size


def _odd(rng: np.random.Generator) -> Iterator[int]:
    while True:
        yield int(rng.choice([1, 2, 7, 333, 1000, 1023, 1025, 2500, 4097]))


def replay_tail(seed: int, sizes: str) -> Iterator[Batch]:
    """A loghub-like replay: 30,000 rows of a long tail within a few seconds."""
    rng = np.random.default_rng(seed)
    n = 30_000
    ids = _long_tail(rng, n)
    time_ms = T0_MS + np.sort(rng.integers(0, 3000, n))
    lat = _lognormal(rng, ids)
    yield from _batches(ids, time_ms, lat, _fixed(1000) if sizes == "1000" else _odd(rng))


def shifting_http(seed: int) -> Iterator[Batch]:
    """Three phases over 30 minutes: a few kinds, then ten new ones, then a new mix; a
    share of rows without latency."""
    rng = np.random.default_rng(seed)
    phases = [
        (np.arange(3), np.array([0.6, 0.3, 0.1])),
        (np.arange(13), np.full(13, 1 / 13)),
        (np.array([1, 5, 11]), np.array([0.5, 0.45, 0.05])),
    ]
    parts = []
    for k, (kinds, share) in enumerate(phases):
        n = 9000
        ids = rng.choice(kinds, n, p=share).astype(np.int64)
        t = T0_MS + k * 600_000 + np.sort(rng.integers(0, 600_000, n))
        lat = _lognormal(rng, ids)
        lat[rng.random(n) < 0.05] = np.nan
        parts.append((ids, t, lat))
    ids, t, lat = (np.concatenate([p[i] for p in parts]) for i in range(3))
    yield from _batches(ids, t, lat, _fixed(500))


def no_latency(seed: int) -> Iterator[Batch]:
    """Rows without any latency, a trickle over hours (windows by time)."""
    rng = np.random.default_rng(seed)
    n = 12_000
    ids = _long_tail(rng, n) % 50
    t = T0_MS + np.cumsum(rng.integers(0, 4000, n))
    yield from _batches(ids, t, np.full(n, np.nan), _fixed(777))


def several_sources(seed: int) -> Iterator[Batch]:
    """Four sources interleaved in each batch, one without a budget, with their own
    streams; batches of varied sizes."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "whole"]
    sizes = _odd(rng)
    t = T0_MS
    for _ in range(40):
        n = next(sizes)
        codes = rng.integers(0, len(names), n).astype(np.int32)
        ids = np.where(codes == 1, _long_tail(rng, n) % 20, _long_tail(rng, n))
        t_ms = t + np.sort(rng.integers(0, 20_000, n))
        t += 20_000
        lat = _lognormal(rng, ids)
        lat[codes == 2] = np.nan
        yield names, codes, ids, t_ms, lat


STREAMS = {
    "replay_tail_1000": (lambda: replay_tail(1, "1000"), SamplingConfig(fraction=0.1)),
    "replay_tail_odd": (lambda: replay_tail(2, "odd"), SamplingConfig(fraction=0.1, seed=7)),
    "replay_tail_f05": (lambda: replay_tail(3, "odd"), SamplingConfig(fraction=0.05)),
    "shifting_http": (lambda: shifting_http(4), SamplingConfig(fraction=0.1)),
    "shifting_http_short": (
        lambda: shifting_http(5),
        SamplingConfig(fraction=0.2, window_rows=2000, window_s=60.0, slot_s=10.0, seed=3),
    ),
    "no_latency": (lambda: no_latency(6), SamplingConfig(fraction=0.1, window_rows=1000)),
    "several_sources": (
        lambda: several_sources(8),
        SamplingConfig(fraction=0.1, source_fractions={"a": 0.3, "whole": 1.0}),
    ),
}


def hashes(
    batches: Iterable[Batch], config: SamplingConfig, sampler: type[Sampler] = Sampler
) -> dict[str, object]:
    """The hashes of a stream's keep and weight columns, and its rows kept."""
    decide = sampler(config).decide
    keep, weight = [], []
    for names, codes, ids, t, lat in batches:
        d = decide(names, codes, ids, t, lat)
        keep.append(d.keep)
        weight.append(d.weight)
    k = np.concatenate(keep).astype(np.bool_)
    w = np.concatenate(weight).astype(np.float64)
    return {
        "rows": int(k.size),
        "kept": int(k.sum()),
        "keep": hashlib.sha256(k.tobytes()).hexdigest(),
        "weight": hashlib.sha256(w.tobytes()).hexdigest(),
    }


def decisions(name: str) -> dict[str, object]:
    """The hashes of a stream's keep and weight columns, and its rows kept."""
    make, config = STREAMS[name]
    return hashes(make(), config)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_decisions_match_the_recorded_ones(name: str) -> None:
    recorded = json.loads(RECORDED.read_text())[name]
    assert decisions(name) == recorded


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    RECORDED.write_text(json.dumps({n: decisions(n) for n in sorted(STREAMS)}, indent=1) + "\n")
    print(RECORDED.read_text())
