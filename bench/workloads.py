"""Workloads for the benchmarks: loghub replay with re-drawn fields, and a cold stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data import TRAIN_SYSTEMS, default_data_dir, read_loghub_system


def loghub_lines(data_dir: Path | None = None) -> list[str]:
    root = data_dir or default_data_dir()
    if not (root / "HDFS").is_dir():
        raise SystemExit(f"loghub-2k not found at {root}: the replay needs it")
    return [ln for s in TRAIN_SYSTEMS for ln in read_loghub_system(root, s).raw]


def redraw_digits(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Every ASCII digit replaced by a random one: new ids, numbers, addresses, times,
    same kinds of lines (vectorised over the joined bytes). The `0` of a `0x` prefix stays:
    a new hex value is still a hex value (redrawing it made `7x0b85` tokens that no real
    field holds, and a new masked text on most passes)."""
    buf = np.frombuffer("\n".join(lines).encode("utf-8"), np.uint8).copy()
    digits = (buf >= 48) & (buf <= 57)
    hex_prefix = (buf[:-1] == ord("0")) & ((buf[1:] == ord("x")) | (buf[1:] == ord("X")))
    digits[:-1] &= ~hex_prefix
    buf[digits] = rng.integers(48, 58, int(digits.sum()), dtype=np.uint8)
    return buf.tobytes().decode("utf-8").split("\n")


def replay(n: int, seed: int = 0, data_dir: Path | None = None) -> list[str]:
    """`n` lines: passes over the shuffled loghub train systems, fields re-drawn each pass."""
    base = loghub_lines(data_dir)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        order = rng.permutation(len(base))
        out += redraw_digits([base[i] for i in order], rng)
    return out[:n]


def cold(n: int, seed: int = 0, words: int = 8) -> list[str]:
    """Lines whose masked text is almost never repeated: random lowercase words (which
    masking keeps) in a log-like frame."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
    lens = rng.integers(3, 9, (n, words))
    out = []
    for row in lens:
        ws = [letters[rng.integers(0, 26, k)].tobytes().decode() for k in row]
        out.append(f"INFO {ws[0]}: request {' '.join(ws[1:])} done")
    return out
