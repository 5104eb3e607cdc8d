"""The LiteRT encoder runner: length buckets and the token cap per interpreter call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from logclust.embed.bundle import Bundle, default_bundle_path
from logclust.embed.encoder import Encoder


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle.load(default_bundle_path())


def _rows(n: int, length: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 500, int(rng.integers(1, length + 1))).tolist() for _ in range(n)]


def test_calls_hold_at_most_max_tokens_and_give_the_same_embeddings(bundle: Bundle) -> None:
    rows = _rows(40, 120, seed=0) + _rows(40, 14, seed=1)
    capped = Encoder(bundle.encoder_path("f32"), batch_size=64, max_tokens=256)
    shapes: list[tuple[int, ...]] = []
    run = capped.run

    def spy(ids: np.ndarray) -> np.ndarray:
        shapes.append(ids.shape)
        return run(ids)

    capped.run = spy  # type: ignore[method-assign]
    got = capped.encode(rows, bundle.max_len)
    assert max(b * t for b, t in shapes) <= 256
    # Widths are steps of 8; 256 tokens: 16 short rows, 2 long ones.
    assert all(t % 8 == 0 for _, t in shapes)
    assert (16, 16) in shapes and (2, 120) in shapes
    one = Encoder(bundle.encoder_path("f32"), batch_size=1).encode(rows, bundle.max_len)
    cos = np.sum(got * one, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(one, axis=1))
    assert cos.min() > 0.9999


def test_a_row_wider_than_max_tokens_still_runs_alone(bundle: Bundle) -> None:
    enc = Encoder(bundle.encoder_path("f32"), max_tokens=8)
    assert enc.encode(_rows(3, 100, seed=2), bundle.max_len).shape == (3, enc.dim)


def test_bad_sizes_are_refused(bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="Received: batch_size=64, max_tokens=0"):
        Encoder(bundle.encoder_path("f32"), max_tokens=0)


def _resident_kb(path: str) -> int:
    """Resident KB of every mapping of `path` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                inside = line.rstrip().endswith(path)
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_the_model_file_pages_are_released_after_the_first_run(bundle: Bundle) -> None:
    path = bundle.encoder_path("f32").resolve()
    enc = Encoder(path)
    first = enc.encode(_rows(20, 30, seed=3), bundle.max_len)
    size_kb = path.stat().st_size // 1024
    # XNNPACK holds packed copies: most of the mapped file is not read again.
    assert _resident_kb(str(path)) < size_kb // 2
    again = enc.encode(_rows(20, 30, seed=3), bundle.max_len)
    np.testing.assert_allclose(first, again, atol=1e-6)
