"""The encoder variant that serves: asked for, or the faster of the two timed at start."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest

from logclust.cli import main as cli
from logclust.cli import service
from logclust.embed.bundle import VARIANTS, Bundle
from logclust.embed.variant import CHOICES, choose_variant, time_variants
from logclust.server.config import ENCODER_VARIANTS, ServerConfig


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle.load()  # the shipped one: both variants


def _timings(**seconds: float) -> object:
    calls: list[Bundle] = []

    def measure(b: Bundle) -> Mapping[str, float]:
        calls.append(b)
        return seconds

    measure.calls = calls  # type: ignore[attr-defined]
    return measure


def test_auto_keeps_the_faster_of_the_two(bundle: Bundle) -> None:
    assert choose_variant(bundle, "auto", _timings(f32=0.020, int8=0.009)).variant == "int8"  # type: ignore[arg-type]
    chosen = choose_variant(bundle, "auto", _timings(f32=0.010, int8=0.012))  # type: ignore[arg-type]
    assert chosen.variant == "f32" and chosen.timings == {"f32": 0.010, "int8": 0.012}
    assert "f32 10.0 ms, int8 12.0 ms" in chosen.describe()


def test_an_asked_variant_is_kept_without_timing(bundle: Bundle) -> None:
    for asked, variant in (("float32", "f32"), ("int8", "int8")):
        measure = _timings(f32=0.001, int8=1.0)
        chosen = choose_variant(bundle, asked, measure)  # type: ignore[arg-type]
        assert chosen.variant == variant and chosen.timings == {}
        assert measure.calls == []  # type: ignore[attr-defined]


def test_a_bad_variant_names_what_was_received(bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="Received: 'f16'"):
        choose_variant(bundle, "f16")
    with pytest.raises(ValueError, match="Received: encoder_variant='f32'"):
        ServerConfig(encoder_variant="f32")
    assert set(CHOICES) == set(ENCODER_VARIANTS)


def test_time_variants_times_both_within_its_budget(bundle: Bundle) -> None:
    ticks = iter(range(1000))  # a clock that advances 1 s a reading: one round, then stop
    best = time_variants(bundle, budget_s=0.5, clock=lambda: float(next(ticks)))
    assert set(best) == set(VARIANTS) and all(v == 1.0 for v in best.values())
    assert next(ticks) == 6  # start, 2 x (before, after), the budget check: one round
    t0 = time.perf_counter()
    real = time_variants(bundle)
    assert all(0 < v < 1 for v in real.values())
    # Bounded start-up (the interpreters built, a warm-up each, rounds within 1 s).
    assert time.perf_counter() - t0 < 10


def test_the_serve_flag_reaches_the_labeler(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(service, "serve", lambda config, labeler: seen.append(labeler))
    monkeypatch.setattr(service, "lean_process_memory", lambda: {})
    monkeypatch.setattr(service, "keep_pandas_out", lambda: True)
    monkeypatch.setattr(
        service, "serving_labeler", lambda path, variant, batch: ("labeler", variant)
    )
    assert cli.main(["serve"]) == 0
    assert cli.main(["serve", "--encoder-variant", "int8"]) == 0
    assert seen == [("labeler", "auto"), ("labeler", "int8")]
    with pytest.raises(SystemExit):
        cli.main(["serve", "--encoder-variant", "f16"])
