"""Grouping scores of log parsing, as the field computes them, and where a grouping fails.

- `ga`: grouping accuracy (loghub, logpai's evaluator): the share of lines whose
  predicted group holds exactly the lines of their true template, no more, no fewer. A
  true template split over two groups scores 0 for every one of its lines; two templates
  merged into one group score 0 for the lines of both.
- `fga`: the F1 of template-level grouping (Loghub-2.0): a predicted group is correct
  when it holds exactly one true template's lines; precision = correct groups /
  predicted groups, recall = correct groups / true templates.
- `pa`: parsing accuracy (Loghub-2.0): the share of lines whose group's template reads
  as their true template (both after `normalise_template`).
- `splits` / `merges`: the true templates spread over several groups and the groups that
  hold several true templates, largest first (what `bench/ga_errors.py` lists).

A row labelled `NOISE` (-1: not placed in any cluster) is never correct and counts as a
predicted group of its own: an unplaced row is a row the user got no group for.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NOISE = -1

_PLACEHOLDER = re.compile(r"<[A-Z*]+>")
# Loghub-2.0's template corrections (`normalise_template`).
_PATH_DELIMITERS = r"\s,!;:=|\"'\[\](){}"
_PATH_SPLIT = re.compile(f"([{_PATH_DELIMITERS}])")
_PATH = re.compile(r"^(/[^/]+)+$")
_TOKEN_SPLIT = re.compile(f"([{_PATH_DELIMITERS}.\\-+@#$%&])")
_WORD_VARIABLES = frozenset({"true", "false", "null", "root"})
_DIGITS = re.compile(r"^\d+$")
_JOINED = re.compile(r"^[^\s/]*<\*>[^\s/]*$")
_JOINED_VARIABLES = re.compile(r"<\*>(?:[.:#/@, ]?<\*>)+|#<\*>#")


def _check(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> None:
    if len(truth) != len(pred):
        raise ValueError(f"truth and pred differ in length. Received: {len(truth)}, {len(pred)}")


def _groups(labels: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    rows: dict[Hashable, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        rows[label].append(i)
    return rows


def correct_groups(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> dict[Hashable, Hashable]:
    """The predicted groups that hold exactly one true template's lines, each mapped to
    that template (`NOISE` is never one)."""
    _check(truth, pred)
    sizes = Counter(truth)
    out: dict[Hashable, Hashable] = {}
    for group, rows in _groups(pred).items():
        if group == NOISE:
            continue
        kinds = {truth[i] for i in rows}
        if len(kinds) == 1:
            (kind,) = kinds
            if sizes[kind] == len(rows):
                out[group] = kind
    return out


def ga(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Grouping accuracy: share of lines whose group is exactly their true template's
    lines (0.0 for no lines)."""
    if not truth:
        _check(truth, pred)
        return 0.0
    sizes = Counter(truth)
    return sum(sizes[t] for t in correct_groups(truth, pred).values()) / len(truth)


def _predicted_groups(pred: Sequence[Hashable]) -> int:
    """Groups the user sees: each distinct id, each `NOISE` row one of its own."""
    noise = sum(1 for p in pred if p == NOISE)
    return len(set(pred) - {NOISE}) + noise


def fga(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """F1 of grouping accuracy over templates (Loghub-2.0's FGA; 0.0 for no lines)."""
    if not truth:
        _check(truth, pred)
        return 0.0
    correct = len(correct_groups(truth, pred))
    precision = correct / _predicted_groups(pred)
    recall = correct / len(set(truth))
    return 0.0 if correct == 0 else 2 * precision * recall / (precision + recall)


def normalise_template(template: str) -> str:
    """A template as Loghub-2.0 compares templates: logclust's typed placeholders
    (`<NUM>`, `<IP>`) read as `<*>`, then the correction rules of Khan et al. (ICSE
    2022) that Loghub-2.0 applies to both sides: whitespace collapsed (DS), path-like
    strings (PS), booleans and null/root (BL, US), digit tokens (DG) and words joined to
    a variable (WV, `blk_<*>`) as `<*>`; then variables joined by a delimiter (`<*>.<*>`,
    `<*>:<*>`, `<*><*>`, ...) as one (DV, CV), and, beyond Loghub-2.0, variables
    apart by one space too (`<*> <*>`: where one side splits a value the other keeps
    whole, a date, say)."""
    t = " ".join(_PLACEHOLDER.sub("<*>", template).split())
    t = "".join("<*>" if _PATH.match(p) else p for p in _PATH_SPLIT.split(t))
    tokens = []
    for tok in _TOKEN_SPLIT.split(t):
        if tok.lower() in _WORD_VARIABLES or _DIGITS.match(tok):
            tok = "<*>"
        elif _JOINED.match(tok) and tok != "<*>/<*>":
            tok = "<*>"
        tokens.append(tok)
    t = "".join(tokens)
    prev = None
    while prev != t:
        prev = t
        t = _JOINED_VARIABLES.sub("<*>", t).replace(' "<*>" ', " <*> ")
    return t


def pa(
    truth_templates: Sequence[str], pred: Sequence[Hashable], templates: Mapping[Any, str]
) -> float:
    """Parsing accuracy: share of lines whose group's template (`templates[group]`)
    reads as their true template, after `normalise_template` on both (0.0 for none)."""
    _check(truth_templates, pred)
    if not truth_templates:
        return 0.0
    norm = {g: normalise_template(t) for g, t in templates.items()}
    hits = sum(
        1
        for t, p in zip(truth_templates, pred, strict=True)
        if p != NOISE and p in norm and norm[p] == normalise_template(t)
    )
    return hits / len(truth_templates)


@dataclass(frozen=True)
class GroupingError:
    """One failure: a true template spread over several groups (`split`), or a group
    holding several true templates (`merge`); `parts` counts the lines of each piece
    (group id for a split, true template for a merge), largest first."""

    kind: str  # "split" or "merge"
    key: Hashable  # the true template of a split, the group of a merge
    lines: int  # lines scored 0 by GA because of it
    parts: tuple[tuple[Hashable, int], ...]


def splits(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> list[GroupingError]:
    """True templates whose lines lie in more than one group (`NOISE` rows each a group
    of their own), most lines first."""
    _check(truth, pred)
    out = []
    for kind, rows in _groups(truth).items():
        pieces = Counter(pred[i] for i in rows)
        if len(pieces) > 1 or pieces.get(NOISE, 0) > 0:
            out.append(GroupingError("split", kind, len(rows), tuple(pieces.most_common())))
    return sorted(out, key=lambda e: (-e.lines, str(e.key)))


def merges(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> list[GroupingError]:
    """Groups (never `NOISE`) holding lines of more than one true template, most lines
    first."""
    _check(truth, pred)
    out = []
    for group, rows in _groups(pred).items():
        if group == NOISE:
            continue
        pieces = Counter(truth[i] for i in rows)
        if len(pieces) > 1:
            out.append(GroupingError("merge", group, len(rows), tuple(pieces.most_common())))
    return sorted(out, key=lambda e: (-e.lines, str(e.key)))
