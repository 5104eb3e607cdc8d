"""Mask each distinct *digit shape* once: an exact, bounded cache in front of `Masker`.

Log lines of one kind differ mostly in their digits (ids, counters, addresses, times), so
raw lines rarely repeat while their masked texts do. The cache is keyed by the line with
every ASCII digit written as one representative digit (its *shape*). That is exact, not
a heuristic, because of what the rules can see:

1. A rule whose regex treats the ten digits alike (every atom accepts all of them or none:
   `\\d`, `[0-9]`, `[A-Za-z0-9]`, `[^A-Za-z0-9]`, `.`, ...) matches a line and its shape
   at the same places with the same groups; the replacement writes a placeholder without
   digits and copies groups, so the two results again differ only in digits, at the same
   places. The steps before (cut, lowercase) and after (whitespace) keep this too.
2. A rule that names a digit (the default `hex` rule's `0[xX]`) can see the difference.
   It is allowed when every match must contain one of a few literals (`0x`, `0X`) that
   hold no `<`, `>` or placeholder text, and the rule's written-back groups are a prefix
   (group 1) and a suffix (group 2) of its match: then the literal can only appear in
   any rule's input if it appears in the prepared line itself. Rows that contain such a
   literal (or whose shape does) are masked one by one, as before.
3. So masking the shape gives the masked line with some digits replaced, at the positions
   where digits survive masking. When the masked shape has no digit at all, it *is* the
   masked line; otherwise that shape is marked and its rows are masked one by one.

A configuration this analysis cannot prove (a pattern Python's `re` parser cannot read,
backreferences, a placeholder with a digit, a digit rule without literals) switches the
cache off: every row is masked directly. `tests/test_mask_cache.py` checks the outputs
against the plain rule-by-rule application.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.masking import Masker, MaskingConfig, MaskRule

logger = logging.getLogger(__name__)

_DIGITS = frozenset(range(48, 58))
_UNSAFE = object()  # cache value of a shape whose rows must be masked one by one
_MAX_CLASS_LITERALS = 4  # a class of at most this many characters extends a literal
_MAX_LITERALS = 16


def _sre() -> tuple[Any, Any]:
    import re._constants as sre_constants  # type: ignore[import-not-found,unused-ignore]
    import re._parser as sre_parse  # type: ignore[import-not-found,unused-ignore]

    return sre_parse, sre_constants


def _parse(pattern: str) -> Any | None:
    """Python's parse of an RE2 pattern, or None where the two may read it differently.

    The rules use the syntax both share. Python fails on RE2-only escapes (`\\pN`, `\\C`,
    `\\Q`); `{,n}` (literal text in RE2) and POSIX classes (`[[:digit:]]`) it would
    misread, so they are refused here.
    """
    if "{," in pattern or "[:" in pattern:
        return None
    sre_parse, _ = _sre()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def _class_digits(items: list[tuple[Any, Any]]) -> frozenset[int] | None:
    """Digits a character class accepts; None when it cannot be told."""
    _, c = _sre()
    every = {c.CATEGORY_DIGIT, c.CATEGORY_NOT_SPACE, c.CATEGORY_WORD, c.CATEGORY_NOT_LINEBREAK}
    none = {c.CATEGORY_NOT_DIGIT, c.CATEGORY_SPACE, c.CATEGORY_NOT_WORD, c.CATEGORY_LINEBREAK}
    negate, accepted = False, set()
    for op, av in items:
        if op is c.NEGATE:
            negate = True
        elif op is c.LITERAL:
            accepted |= {av} & _DIGITS
        elif op is c.RANGE:
            accepted |= {d for d in _DIGITS if av[0] <= d <= av[1]}
        elif op is c.CATEGORY and av in every:
            accepted |= _DIGITS
        elif not (op is c.CATEGORY and av in none):
            return None
    return frozenset(_DIGITS - accepted if negate else accepted)


def _blind(seq: Iterable[tuple[Any, Any]]) -> bool:
    """True when no atom of a parsed pattern tells one digit from another."""
    _, c = _sre()
    for op, av in seq:
        if op in (c.LITERAL, c.NOT_LITERAL):
            if av in _DIGITS:
                return False
        elif op is c.IN:
            digits = _class_digits(av)
            if digits is None or len(digits) not in (0, len(_DIGITS)):
                return False
        elif op is c.SUBPATTERN:
            if not _blind(av[-1]):
                return False
        elif op is c.BRANCH:
            if not all(_blind(alt) for alt in av[1]):
                return False
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
            if not _blind(av[2]):
                return False
        elif op not in (c.ANY, c.AT):
            return False  # backreferences, look-around, anything unexpected
    return True


def digit_blind(pattern: str) -> bool:
    """True when the regex provably treats the ten ASCII digits alike (see `_parse`)."""
    parsed = _parse(pattern)
    return parsed is not None and _blind(parsed)


def _chars(op: Any, av: Any) -> frozenset[str] | None:
    """The characters a single-character atom matches, when few and explicit."""
    _, c = _sre()
    if op is c.LITERAL:
        return frozenset(chr(av))
    if op is c.IN and all(o is c.LITERAL for o, _ in av) and len(av) <= _MAX_CLASS_LITERALS:
        return frozenset(chr(v) for _, v in av)
    return None


def required_literals(pattern: str) -> frozenset[str] | None:
    """Strings one of which every match of `pattern` contains; None when none is found.

    Looks at runs of consecutive single-character atoms at the top level (a literal, a
    class of a few characters, or the first repetition of one) and keeps the run with the
    longest shortest string.
    """
    _, c = _sre()
    parsed = _parse(pattern)
    if parsed is None or parsed.state.flags & re.IGNORECASE:
        return None
    runs: list[frozenset[str]] = []
    run: frozenset[str] = frozenset([""])
    for op, av in parsed:
        repeated = op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1 and len(av[2]) == 1
        chars = _chars(*av[2][0]) if repeated else _chars(op, av)
        if chars is not None and len(run) * len(chars) <= _MAX_LITERALS:
            run = frozenset(a + b for a, b in product(run, chars))
            if not repeated:
                continue
        runs.append(run)
        run = frozenset([""])
    runs.append(run)
    best = max(runs, key=lambda r: (min(map(len, r)), -len(r)))
    return best if min(map(len, best)) > 0 else None


def _groups_at_edges(rule: MaskRule) -> bool:
    """True when the groups the replacement writes back are a prefix and a suffix."""
    _, c = _sre()
    parsed = list(_parse(rule.pattern) or [])

    def is_group(item: tuple[Any, Any], number: int) -> bool:
        return item[0] is c.SUBPATTERN and item[1][0] == number

    trailing = bool(getattr(rule, "trailing", False))
    if rule.bounded and not (parsed and is_group(parsed[0], 1)):
        return False
    return not trailing or bool(parsed and is_group(parsed[-1], 2))


@dataclass(frozen=True)
class ShapePlan:
    """What the analysis of a `MaskingConfig` allows (see the module docstring).

    Attributes:
        exact: masking shapes is provably exact for this configuration.
        digit: the representative digit written for every digit.
        guards: literals whose presence sends a row to direct masking.
        reason: why `exact` is false.
    """

    exact: bool
    digit: str = "1"
    guards: tuple[str, ...] = ()
    reason: str = ""

    @classmethod
    def of(cls, config: MaskingConfig) -> ShapePlan:
        rules = config.active_rules
        if any(ch.isdigit() for r in rules for ch in r.placeholder):
            return cls(False, reason="a placeholder holds a digit")
        guards: set[str] = set()
        for rule in rules:
            if digit_blind(rule.pattern):
                continue
            lits = required_literals(rule.pattern)
            if lits is None:
                return cls(False, reason=f"rule {rule.name!r} names digits without a literal")
            guards |= lits
        names = "".join(r.placeholder for r in rules)
        for lit in guards:
            if "<" in lit or ">" in lit or lit in names:
                return cls(False, reason=f"guard literal {lit!r} can be made by masking")
        if guards and not all(_groups_at_edges(r) for r in rules):
            return cls(False, reason="a rule writes back a group that is not at its edge")
        digit = next((d for d in "0123456789" if not any(d in g for g in guards)), None)
        if digit is None:
            return cls(False, reason="every digit is named by a guard literal")
        return cls(True, digit, tuple(sorted(guards)))


def with_one_digit(texts: pa.Array, digit: str) -> pa.Array:
    """`texts` with every ASCII digit replaced by `digit` (one numpy pass, same offsets)."""
    validity, offsets, data = texts.buffers()[:3]
    if data is None or data.size == 0:
        return texts
    raw = np.frombuffer(data, np.uint8)
    out = raw.copy()
    out[(raw - np.uint8(48)) < 10] = ord(digit)
    return pa.Array.from_buffers(
        texts.type,
        len(texts),
        [validity, offsets, pa.py_buffer(out)],
        texts.null_count,
        texts.offset,
    )


class MaskCache:
    """Distinct masked texts of a batch, masking each digit shape once (bounded, FIFO).

    `mask_distinct(texts)` returns exactly `pc.dictionary_encode(masker.mask(texts))`
    (dictionary in first-occurrence order and indices), for arrays without nulls.

    Args:
        masker: the bundle's masker.
        capacity: shapes remembered across batches.
    """

    def __init__(self, masker: Masker, capacity: int = 65_536) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive. Received: capacity={capacity}")
        self.masker = masker
        self.capacity = capacity
        self.plan = ShapePlan.of(masker.config)
        if not self.plan.exact:
            logger.info("mask cache off (%s): every row is masked", self.plan.reason)
        self._masked: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0
        self.direct_rows = 0

    def mask_distinct(self, texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """`(uniques, indices)`: distinct masked texts and each row's index into them."""
        if not self.plan.exact or texts.null_count:
            enc = pc.dictionary_encode(self.masker.mask(texts))
            return enc.dictionary, enc.indices.to_numpy(zero_copy_only=False)
        prepared = self.masker.prepare(texts)
        shapes = pc.dictionary_encode(with_one_digit(prepared, self.plan.digit))
        keys: list[str] = shapes.dictionary.to_pylist()
        row_key = shapes.indices.to_numpy(zero_copy_only=False)
        values = list(map(self._masked.get, keys))
        missing = [i for i, v in enumerate(values) if v is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            self._fill(shapes.dictionary, keys, values, missing)
        direct = np.fromiter((v is _UNSAFE for v in values), bool, len(values))[row_key]
        for lit in self.plan.guards:
            direct |= pc.match_substring(prepared, lit).to_numpy(zero_copy_only=False)
        return self._encode(prepared, values, row_key, direct)

    def _fill(
        self, shapes: pa.Array, keys: list[str], values: list[Any], missing: list[int]
    ) -> None:
        masked = self.masker.apply_rules(shapes.take(pa.array(missing, pa.int64())))
        digits = pc.match_substring_regex(masked, "[0-9]").to_numpy(zero_copy_only=False)
        for j, (i, text) in enumerate(zip(missing, masked.to_pylist(), strict=True)):
            unsafe = bool(digits[j]) or any(g in keys[i] for g in self.plan.guards)
            values[i] = _UNSAFE if unsafe else text
            self._masked[keys[i]] = values[i]
        while len(self._masked) > self.capacity:
            del self._masked[next(iter(self._masked))]

    def _encode(
        self, prepared: pa.Array, values: list[Any], row_key: np.ndarray, direct: np.ndarray
    ) -> tuple[pa.Array, np.ndarray]:
        texts = ["" if v is _UNSAFE else v for v in values]
        code = row_key.astype(np.int64)
        slow = np.flatnonzero(direct)
        if slow.size:
            self.direct_rows += int(slow.size)
            texts += self.masker.apply_rules(prepared.take(pa.array(slow))).to_pylist()
            code[slow] = len(values) + np.arange(slow.size)
        enc = pc.dictionary_encode(pa.array(texts, pa.string()))
        row = enc.indices.to_numpy(zero_copy_only=False)[code]
        # Renumber in order of first occurrence, as dictionary_encode of the rows would.
        used, first, inv = np.unique(row, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(order.size, np.int32)
        rank[order] = np.arange(order.size, dtype=np.int32)
        return enc.dictionary.take(pa.array(used[order])), rank[inv.ravel()]
