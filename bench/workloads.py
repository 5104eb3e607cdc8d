"""Workloads for the benchmarks: loghub replay with re-drawn fields, a cold stream, and
new texts made from real lines (a word swapped for another real word).

With `smoke=True` the replay's base is small: the first `SMOKE_LINES` lines of each
train system, or synthetic log lines when loghub-2k is absent (a `--smoke` run needs no
data)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import (
    TRAIN_SYSTEMS,
    LogSet,
    default_data_dir,
    read_loghub_system,
    shuffled_passes,
)

# Lines per train system in a smoke run's replay base.
SMOKE_LINES = 25


def has_loghub(data_dir: Path | None = None) -> bool:
    return ((data_dir or default_data_dir()) / "HDFS").is_dir()


def loghub_lines(data_dir: Path | None = None, smoke: bool = False) -> list[str]:
    """The raw lines of the loghub train systems (the replay's base, one pass)."""
    root = data_dir or default_data_dir()
    if smoke and not has_loghub(root):
        return synthetic_lines(SMOKE_LINES * 6)
    if not has_loghub(root):
        raise SystemExit(f"loghub-2k not found at {root}: the replay needs it")
    per = SMOKE_LINES if smoke else None
    return [ln for s in TRAIN_SYSTEMS for ln in read_loghub_system(root, s).raw[:per]]


# The kinds of `synthetic_lines`, each with two fields.
SYNTHETIC_KINDS = (
    "INFO fs: opened file /var/data/{}.bin size {} bytes",
    "WARN net: connection from 10.0.{}.{}:4711 refused",
    "INFO auth: user u{} logged in after {} ms",
    "DEBUG jvm: garbage collection took {} ms freed {} MB",
    "ERROR disk: block blk_{} lost on node {}",
    "INFO http: GET /api/items/{} answered 200 in {} ms",
)


def synthetic_lines(n: int, seed: int = 0) -> list[str]:
    """`n` log-like lines of a few kinds with random fields (no data needed); line i is
    of kind `i % len(SYNTHETIC_KINDS)`."""
    rng = np.random.default_rng(seed)
    return [
        SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)].format(*rng.integers(1, 10_000, 2).tolist())
        for i in range(n)
    ]


def synthetic_set(n: int, seed: int = 0) -> LogSet:
    """`synthetic_lines` as a labelled set (event ids and templates), for smoke runs of
    scripts that score against ground truth where loghub is absent."""
    lines = synthetic_lines(n, seed)
    kinds = [i % len(SYNTHETIC_KINDS) for i in range(n)]
    texts = [SYNTHETIC_KINDS[k].replace("{}", "<*>") for k in kinds]
    return LogSet("synthetic", lines, lines, [f"E{k}" for k in kinds], texts)


def replay(n: int, seed: int = 0, data_dir: Path | None = None, smoke: bool = False) -> list[str]:
    """`n` lines: passes over the shuffled loghub train systems, fields re-drawn each pass."""
    return shuffled_passes(loghub_lines(data_dir, smoke), n, seed)


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


# A standalone word of a message: letters only, not part of an identifier, path, address,
# key or placeholder-like token (masking keeps such words as they are).
_WORD = re.compile(r"(?<![\w./:@=<>\\-])[A-Za-z]{3,14}(?![\w./:@=<>\\-])")
# Day and month abbreviations of timestamps: part of a line's header, not of its message.
_CALENDAR = frozenset(
    "mon tue wed thu fri sat sun jan feb mar apr may jun jul aug sep oct nov dec".split()
)


def vocabulary(data_dir: Path | None = None, smoke: bool = False) -> list[str]:
    """The standalone words of every loghub-2k system's lines (held-out Android included),
    lowercased and sorted: real words of real logs (`connection`, `scoreboard`, ...); in
    a smoke run without loghub, those of the synthetic lines."""
    root = data_dir or default_data_dir()
    if smoke and not has_loghub(root):
        return sorted({w.lower() for ln in synthetic_lines(600) for w in _WORD.findall(ln)})
    systems = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.log")))
    words = {
        w.lower()
        for s in systems
        for ln in read_loghub_system(root, s).raw
        for w in _WORD.findall(ln)
    }
    return sorted(words)


def swap_word(line: str, vocab: list[str], rng: np.random.Generator) -> str | None:
    """`line` with one of its standalone message words (not an upper-case level, a day or a
    month) replaced by another vocabulary word, capitalised like it; None when the line
    has no such word."""
    # Not a level (INFO, WARN) nor a date's day or month: a new word of the message.
    spans = [
        m.span()
        for m in _WORD.finditer(line)
        if not m.group().isupper() and m.group().lower() not in _CALENDAR
    ]
    if not spans:
        return None
    start, stop = spans[int(rng.integers(len(spans)))]
    old = line[start:stop]
    new = vocab[int(rng.integers(len(vocab)))]
    while new == old.lower():
        new = vocab[int(rng.integers(len(vocab)))]
    if old[0].isupper():
        new = new.capitalize()
    return line[:start] + new + line[stop:]


@dataclass(frozen=True)
class NewTexts:
    """Lines whose masked texts were never seen, and what it took to find them."""

    lines: list[str]
    # Candidates made (one word swapped) and those refused because masking made them a
    # text already seen (or one made before).
    tried: int
    refused: int


def new_texts(
    sources: list[str],
    seen: set[str],
    mask: Callable[[list[str]], list[str]],
    rng: np.random.Generator,
    vocab: list[str],
    rounds: int = 20,
) -> NewTexts:
    """One new line per line of `sources` (a word swapped), each with a masked text that is
    not in `seen` nor made twice; `seen` gains them.

    A line without a standalone word, or whose every candidate masks to a seen text within
    `rounds` tries, is replaced by a candidate made from another line of `sources`.

    Args:
        sources: the lines to change (say, the replay rows that become new ones).
        seen: masked texts already sent (updated in place).
        mask: the sidecar's masking of a list of lines.
        rng: the random source of positions and words.
        vocab: replacement words (`vocabulary()`).
        rounds: candidate rounds before a line is replaced by another.
    """
    out: list[str | None] = [None] * len(sources)
    todo = list(range(len(sources)))
    tried = refused = 0
    for r in range(rounds * 2):
        if not todo:
            break
        # After `rounds` rounds a stubborn row borrows another row's line.
        base = [
            sources[i] if r < rounds else sources[int(rng.integers(len(sources)))] for i in todo
        ]
        cands = [swap_word(line, vocab, rng) for line in base]
        made = [(i, c) for i, c in zip(todo, cands, strict=True) if c is not None]
        masked = mask([c for _, c in made])
        tried += len(made)
        left = [i for i, c in zip(todo, cands, strict=True) if c is None]
        for (i, cand), m in zip(made, masked, strict=True):
            if m in seen:
                refused += 1
                left.append(i)
            else:
                seen.add(m)
                out[i] = cand
        todo = left
    if todo:
        raise RuntimeError(f"no new text found for {len(todo)} lines after {rounds * 2} rounds")
    return NewTexts([ln for ln in out if ln is not None], tried, refused)


def new_share(lines: list[str], rows: np.ndarray, mask: Callable[[list[str]], list[str]]) -> float:
    """Share of `rows` whose masked text no earlier line of `lines` had (the check that
    masking did not turn a new line into a text already seen)."""
    masked = mask(lines)
    is_row = np.zeros(len(lines), bool)
    is_row[rows] = True
    seen: set[str] = set()
    new = 0
    for m, row in zip(masked, is_row.tolist(), strict=True):
        if row and m not in seen:
            new += 1
        seen.add(m)
    return new / max(len(rows), 1)


@dataclass(frozen=True)
class NoveltyReplay:
    """A replay in which some rows were made new (see `novelty_replay`)."""

    lines: list[str]
    # Sorted positions of the new rows in `lines`.
    rows: np.ndarray
    made: NewTexts


def novelty_replay(
    warm: list[str],
    lines: list[str],
    share: float,
    mask: Callable[[list[str]], list[str]],
    seed: int = 0,
    vocab: list[str] | None = None,
) -> NoveltyReplay:
    """`lines` (a replay sent after `warm`) with `share` of its rows, drawn at random, made
    into texts never seen before: each such row keeps its line with one word swapped for
    another real word, re-drawn until its masked text is in neither `warm`, the other rows
    of `lines`, nor another new row."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(lines), round(share * len(lines)), replace=False))
    keep = np.ones(len(lines), bool)
    keep[rows] = False
    seen = set(mask(warm)) | set(
        mask([ln for ln, k in zip(lines, keep.tolist(), strict=True) if k])
    )
    made = new_texts([lines[i] for i in rows.tolist()], seen, mask, rng, vocab or vocabulary())
    out = list(lines)
    for i, line in zip(rows.tolist(), made.lines, strict=True):
        out[i] = line
    return NoveltyReplay(out, rows, made)
