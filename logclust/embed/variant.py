"""Which encoder variant serves: the faster of the bundle's two on this machine, or the
one asked for.

Dynamic-range int8 runs well ahead of float32 only on CPUs with AVX-512 VNNI, and about
level on others (BENCHMARKS.md, "Encoder variant"): no flag of the CPU tells the gap, so
`choose_variant("auto")` times both on a few padded batches of the serving shape at start
and keeps the faster. The timing is bounded (`budget_s`): rounds stop once it is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from logclust.embed.bundle import VARIANTS, Bundle
from logclust.embed.encoder import Encoder

logger = logging.getLogger(__name__)

# `ServerConfig.encoder_variant` values -> bundle variants (None: time both).
CHOICES: Mapping[str, str | None] = {"auto": None, "float32": "f32", "int8": "int8"}
# The batch timed: rows (the sidecar's encoder batch) x tokens (a typical log line).
TIMED_ROWS = 8
TIMED_TOKENS = 40
# Timed rounds at most (each runs every variant once, interleaved); fewer past the budget.
ROUNDS = 5
# Seconds the timing may take after the interpreters are built (bounds what `auto` adds
# to start-up).
BUDGET_S = 1.0


@dataclass(frozen=True)
class VariantChoice:
    """The variant that serves and why: `timings` holds each variant's best seconds per
    timed batch when it was measured (`auto`), empty when the variant was asked for."""

    variant: str
    asked: str
    timings: Mapping[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # what choosing took, interpreters built included

    def describe(self) -> str:
        """One log line: the variant and, when timed, the timings."""
        if not self.timings:
            return f"encoder variant {self.variant} (asked: {self.asked})"
        times = ", ".join(f"{v} {1e3 * s:.1f} ms" for v, s in self.timings.items())
        return (
            f"encoder variant {self.variant} (auto: best of batches of {TIMED_ROWS} x "
            f"{TIMED_TOKENS} tokens: {times}; chosen in {self.seconds:.2f} s)"
        )


def check_choice(choice: str) -> None:
    """Raises ValueError unless `choice` is one of `CHOICES`."""
    if choice not in CHOICES:
        raise ValueError(f"encoder_variant must be one of {sorted(CHOICES)}. Received: {choice!r}")


def timed_batch(vocab_size: int, seed: int = 0) -> np.ndarray:
    """A padded id matrix of the timed shape (ids drawn past the special ids)."""
    rng = np.random.default_rng(seed)
    return rng.integers(4, max(5, vocab_size), (TIMED_ROWS, TIMED_TOKENS), dtype=np.int32)


def time_variants(
    bundle: Bundle,
    budget_s: float = BUDGET_S,
    rounds: int = ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Best seconds per timed batch of each variant, one thread, after a warm-up run
    (XNNPACK packs the weights on the first); rounds interleave the variants and stop
    once `budget_s` is spent (one round at least)."""
    ids = timed_batch(int(bundle.manifest["model_config"]["vocab_size"]))
    encoders = {v: Encoder(bundle.encoder_path(v), num_threads=1) for v in VARIANTS}
    for enc in encoders.values():
        enc.run(ids)
    best = dict.fromkeys(encoders, float("inf"))
    start = clock()
    for _ in range(rounds):
        for v, enc in encoders.items():
            t0 = clock()
            enc.run(ids)
            best[v] = min(best[v], clock() - t0)
        if clock() - start > budget_s:
            break
    return best


def choose_variant(
    bundle: Bundle,
    choice: str = "auto",
    measure: Callable[[Bundle], Mapping[str, float]] = time_variants,
) -> VariantChoice:
    """The variant to serve with: the one asked for, or with `auto` the faster by
    `measure` (seconds per batch of each variant; injected by tests).

    Raises:
        ValueError: `choice` is not one of `CHOICES`.
    """
    check_choice(choice)
    asked = CHOICES[choice]
    if asked is not None:
        return VariantChoice(asked, choice)
    t0 = time.perf_counter()
    timings = dict(measure(bundle))
    variant = min(timings, key=lambda v: timings[v])
    return VariantChoice(variant, choice, timings, time.perf_counter() - t0)
