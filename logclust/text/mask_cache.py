"""Mask each distinct *digit shape* once: an exact, bounded cache in front of `Masker`.

Log lines of one kind differ mostly in their digits (ids, counters, addresses, times), so
raw lines rarely repeat while their masked texts do. The cache is keyed by the line's
shape: every ASCII digit written as one representative digit, except digits inside an
occurrence of a *guard literal* (below), which are kept. That is exact, not a heuristic,
because of what the rules can see:

1. A rule whose regex treats the ten digits alike (every atom accepts all of them or none:
   `\\d`, `[0-9]`, `[A-Za-z0-9]`, `[^A-Za-z0-9]`, `.`, ...) matches a line and its shape
   at the same places with the same groups; the replacement writes a placeholder without
   digits and copies groups, so the two results again differ only in digits, at the same
   places. The steps before (cut, lowercase) and after (whitespace) keep this too.
2. A rule that names a digit (the default `hex` rule's `0[xX]`) is allowed when all the
   atoms that name digits sit in one run of single characters, which every match must
   contain as one of a few literals, its guards (`0x`, `0X`; no `<`, `>` or placeholder
   text, no representative digit), and the groups the rules write back are a prefix
   (group 1) and a suffix (group 2) of their match. Then a guard occurs in any rule's
   input exactly where it occurs in the prepared line, in the line's chain and in the
   shape's chain alike, with the same digits (kept); everywhere else the rule cannot
   match in either chain, so it too sees the two alike.
3. So masking the shape gives the masked line with some digits replaced, at the positions
   where digits survive masking. When the masked shape has no digit at all, it *is* the
   masked line; otherwise that shape is marked and its rows are masked one by one.

The structured stage (`logclust.text.structure`, before the rules) keeps this too by
construction: it decides everything (does the text parse, which type is each value) on
the text with every digit written as `1`, writes placeholders without digits, and copies
keys verbatim, so two texts that differ only in digits come out differing only in digits
at the same places.

A configuration this analysis cannot prove (a pattern Python's `re` parser cannot read,
backreferences, a placeholder with a digit, a digit outside a literal run) switches the
cache off: every row is masked directly. `tests/test_mask_cache.py` checks the outputs
against the plain rule-by-rule application.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.text.header import message
from logclust.text.masking import Masker, MaskingConfig
from logclust.text.rule_analysis import groups_at_edges, guard_literals

logger = logging.getLogger(__name__)

_UNSAFE_ID = -1  # cache value of a shape whose rows must be masked one by one
_MISSING = -2  # a shape not in the cache


@dataclass(frozen=True)
class ShapePlan:
    """What the analysis of a `MaskingConfig` allows (see the module docstring).

    Attributes:
        exact: masking shapes is provably exact for this configuration.
        digit: the representative digit written for every digit.
        guards: literals whose digits the shape keeps.
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
            lits = guard_literals(rule.pattern)
            if lits is None:
                return cls(False, reason=f"rule {rule.name!r} names digits without a literal")
            guards |= lits
        names = "".join(r.placeholder for r in rules)
        for lit in guards:
            if "<" in lit or ">" in lit or lit in names:
                return cls(False, reason=f"guard literal {lit!r} can be made by masking")
        edges = (
            groups_at_edges(r.pattern, r.bounded, getattr(r, "trailing", False)) for r in rules
        )
        if guards and not all(edges):
            return cls(False, reason="a rule writes back a group that is not at its edge")
        digit = next((d for d in "0123456789" if not any(d in g for g in guards)), None)
        if digit is None:
            return cls(False, reason="every digit is named by a guard literal")
        return cls(True, digit, tuple(sorted(guards)))


def digit_shape(texts: pa.Array, digit: str, guards: tuple[str, ...] = ()) -> pa.Array:
    """`texts` with every ASCII digit written as `digit`, except inside a guard occurrence.

    A few numpy passes over the data buffer; the offsets (and validity) are reused as
    they are.
    """
    validity, offsets, data = texts.buffers()[:3]
    if data is None or data.size == 0:
        return texts
    raw = np.frombuffer(data, np.uint8)
    # Branch-free: digit bytes become `digit`, others stay (uint8 arithmetic wraps).
    is_digit = ((raw - np.uint8(48)) < 10).view(np.uint8)
    out = raw - is_digit * (raw - np.uint8(ord(digit)))
    if guards:
        width = 8 if pa.types.is_large_string(texts.type) else 4
        # Only the offsets in use (a valid buffer may be longer, by part of an offset).
        offs = np.frombuffer(offsets, f"<i{width}", texts.offset + len(texts) + 1)[texts.offset :]
        kept = _in_guards(raw, offs, guards)
        out[kept] = raw[kept]
    return pa.Array.from_buffers(
        texts.type,
        len(texts),
        [validity, offsets, pa.py_buffer(out)],
        texts.null_count,
        texts.offset,
    )


def _in_guards(raw: np.ndarray, offsets: np.ndarray, guards: tuple[str, ...]) -> np.ndarray:
    """Positions of the bytes inside an occurrence of a guard literal within one row.

    One scan per distinct first byte (guards such as `0x` and `0X` share it), then the
    candidates are narrowed byte by byte; an occurrence straddling two rows is not one.
    """
    kept = [np.zeros(0, np.int64)]
    by_first: dict[int, list[bytes]] = {}
    for lit in sorted({g.encode() for g in guards}):
        by_first.setdefault(lit[0], []).append(lit)
    for first, lits in by_first.items():
        candidates = np.flatnonzero(raw == first)
        for lit in lits:
            m = len(lit)
            at = candidates[candidates <= raw.size - m]
            for j in range(1, m):
                at = at[raw[at + j] == lit[j]]
            row = np.searchsorted(offsets, at, side="right")
            at = at[row == np.searchsorted(offsets, at + m - 1, side="right")]
            kept += [at + j for j in range(m)]
    return np.concatenate(kept)


class MaskCache:
    """Distinct masked texts of a batch, masking each digit shape once (bounded, FIFO).

    Thread-safe.

    `mask_distinct(texts)` returns exactly `pc.dictionary_encode(masked)` (dictionary in
    first-occurrence order, and indices) for string arrays without nulls, where `masked`
    is `masker.mask(texts)` with each text cut to its message (`logclust.text.header`)
    when `messages`, else `masker.mask(texts)` itself.

    Args:
        masker: the bundle's masker.
        capacity: shapes remembered across batches.
        messages: cut each masked text to its message (a shape is cut once, when masked).
    """

    def __init__(self, masker: Masker, capacity: int = 65_536, messages: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive. Received: capacity={capacity}")
        self.masker = masker
        self.capacity = capacity
        self.messages = messages
        self._cut: Callable[[str], str] = message if messages else str
        self.plan = ShapePlan.of(masker.config)
        if not self.plan.exact:
            logger.info("mask cache off (%s): every row is masked", self.plan.reason)
        # shape -> id of its masked text (_UNSAFE_ID: rows masked one by one), FIFO-bounded;
        # masked texts are interned once so a batch's rows map to them with numpy alone.
        self._masked: dict[str, int] = {}
        self._texts: list[str] = []
        self._text_ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.direct_rows = 0  # rows masked one by one (their shape keeps digits)
        self.unsafe_shapes = 0  # shapes whose masked text keeps digits

    def mask_distinct(self, texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """`(uniques, indices)`: distinct masked texts and each row's index into them.

        Raises:
            ValueError: `texts` holds nulls (the sidecar refuses them before this).
        """
        keys, indices = self.distinct_keys(texts)
        return pa.array(keys, pa.string()), indices

    def distinct_keys(self, texts: pa.Array) -> tuple[list[str], np.ndarray]:
        """`mask_distinct` with the distinct texts as Python strings: the cache's own
        objects, whose hashes are already computed (cheap keys for later caches).

        Raises:
            ValueError: `texts` holds nulls (the sidecar refuses them before this).
        """
        if texts.null_count:
            raise ValueError(f"texts must not hold nulls. Received: {texts.null_count} null(s)")
        if not self.plan.exact:
            enc = pc.dictionary_encode(self.masker.mask(texts))
            indices = enc.indices.to_numpy(zero_copy_only=False)
            if not self.messages:
                return enc.dictionary.to_pylist(), indices
            # Two masked texts may have one message: numbered again, first occurrence first.
            cut = pc.dictionary_encode(
                pa.array(map(message, enc.dictionary.to_pylist()), pa.string())
            )
            return cut.dictionary.to_pylist(), cut.indices.to_numpy(zero_copy_only=False)[indices]
        prepared = self.masker.prepare(texts)
        shapes = pc.dictionary_encode(digit_shape(prepared, self.plan.digit, self.plan.guards))
        keys: list[str] = shapes.dictionary.to_pylist()
        row_key = shapes.indices.to_numpy(zero_copy_only=False)
        with self._lock:  # Label streams run on several gRPC threads
            shape_text = np.fromiter(
                map(self._masked.get, keys, repeat(_MISSING)), np.int64, len(keys)
            )
            missing = np.flatnonzero(shape_text == _MISSING)
            self.hits += len(keys) - missing.size
            self.misses += missing.size
            if missing.size:
                self._fill(shapes.dictionary, keys, shape_text, missing)
            if np.any(shape_text == _UNSAFE_ID):
                out = self._with_direct_rows(prepared, shape_text[row_key])
            else:
                # Shapes are numbered in order of first occurrence, so the texts' first
                # occurrences among shapes are their first occurrences among rows.
                order = list(dict.fromkeys(shape_text.tolist()))
                rank = np.empty(len(self._texts), np.int32)
                rank[order] = np.arange(len(order), dtype=np.int32)
                out = [self._texts[i] for i in order], rank[shape_text][row_key]
            if len(self._texts) > 2 * self.capacity:
                self._compact()
        return out

    def _with_direct_rows(
        self, prepared: pa.Array, row_text: np.ndarray
    ) -> tuple[list[str], np.ndarray]:
        """The rows of unsafe shapes masked one by one; their new texts are numbered after
        the interned ones, for this batch only."""
        slow = np.flatnonzero(row_text == _UNSAFE_ID)
        self.direct_rows += int(slow.size)
        n_interned = len(self._texts)
        direct = list(
            map(self._cut, self.masker.apply_rules(prepared.take(pa.array(slow))).to_pylist())
        )
        extra = list(dict.fromkeys(t for t in direct if t not in self._text_ids))
        local = {t: n_interned + j for j, t in enumerate(extra)}
        known = self._text_ids
        row_text[slow] = [known[t] if t in known else local[t] for t in direct]
        # Distinct texts in order of first occurrence, as dictionary_encode would give.
        used, first, inv = np.unique(row_text, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        strings = [
            self._texts[i] if i < n_interned else extra[i - n_interned]
            for i in used[order].tolist()
        ]
        rank = np.empty(order.size, np.int32)
        rank[order] = np.arange(order.size, dtype=np.int32)
        return strings, rank[inv.ravel()]

    def _compact(self) -> None:
        """Keeps only the texts that remembered shapes still point to (bounded memory)."""
        old = self._texts
        self._texts, self._text_ids = [], {}
        for key, i in self._masked.items():
            if i != _UNSAFE_ID:
                self._masked[key] = self._intern(old[i])

    def _intern(self, text: str) -> int:
        i = self._text_ids.get(text)
        if i is None:
            i = self._text_ids[text] = len(self._texts)
            self._texts.append(text)
        return i

    def _fill(
        self, shapes: pa.Array, keys: list[str], shape_text: np.ndarray, missing: np.ndarray
    ) -> None:
        masked = self.masker.apply_rules(shapes.take(pa.array(missing, pa.int64())))
        digits = pc.match_substring_regex(masked, "[0-9]").to_numpy(zero_copy_only=False)
        for j, (i, text) in enumerate(zip(missing.tolist(), masked.to_pylist(), strict=True)):
            unsafe = bool(digits[j])
            self.unsafe_shapes += unsafe
            shape_text[i] = _UNSAFE_ID if unsafe else self._intern(self._cut(text))
            self._masked[keys[i]] = int(shape_text[i])
        while len(self._masked) > self.capacity:
            del self._masked[next(iter(self._masked))]
