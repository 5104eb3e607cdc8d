"""What a masking rule's regex can see, read from its parse (used to speed masking up).

Two questions, both answered conservatively (a pattern that cannot be read safely gives
the answer that turns the speed-up off):

* Does the regex treat the ten ASCII digits alike (`digit_blind`), and if not, which
  literals hold every atom that names a digit (`guard_literals`)? Used by
  `logclust.text.mask_cache` to mask each digit shape once.
* Which strings must a match contain (`required_literals`)? A rule whose literals occur
  in no row cannot change any row, and `Masker` skips it.

RE2 patterns are read with Python's `re` parser, whose syntax covers the RE2 subset the
rules use; where the two could read a pattern differently it is refused (`_parse`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from itertools import product
from typing import Any

_DIGITS = frozenset(range(48, 58))
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


def _single(item: tuple[Any, Any]) -> tuple[frozenset[str] | None, bool]:
    """`(chars, repeated)`: a single-character atom, or the first of a repetition of one."""
    _, c = _sre()
    op, av = item
    if op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1 and len(av[2]) == 1:
        return _chars(*av[2][0]), True
    return _chars(op, av), False


def guard_literals(pattern: str) -> frozenset[str] | None:
    """The literals one of which holds every atom of `pattern` that names a digit.

    The atoms naming digits must lie in one run of top-level single-character atoms
    (literals, classes of a few characters); the run is then widened over neighbouring
    such atoms (and the first or last of an adjacent repetition) to make the literals
    rarer. Empty for a digit-blind pattern; None when there is no such run.
    """
    _, c = _sre()
    parsed = _parse(pattern)
    if parsed is None or parsed.state.flags & re.IGNORECASE:
        return None
    items = list(parsed)
    named = [i for i, item in enumerate(items) if not _blind([item])]
    if not named:
        return frozenset()
    lo, hi = min(named), max(named)
    sets = [_chars(*item) for item in items[lo : hi + 1]]
    if any(cs is None for cs in sets):
        return None
    core: list[frozenset[str]] = [cs for cs in sets if cs is not None]
    for step, edge in ((1, hi), (-1, lo)):
        i = edge + step
        while 0 <= i < len(items):
            chars, repeated = _single(items[i])
            if chars is None or math.prod(map(len, core)) * len(chars) > _MAX_LITERALS:
                break
            core = [*core, chars] if step > 0 else [chars, *core]
            if repeated:
                break
            i += step
    if math.prod(map(len, core)) > _MAX_LITERALS:
        return None
    return frozenset("".join(t) for t in product(*core))


def groups_at_edges(pattern: str, bounded: bool, trailing: bool) -> bool:
    """True when the groups a rule writes back (`\\1` when bounded, `\\2` when trailing)
    are a prefix and a suffix of its match."""
    _, c = _sre()
    parsed = list(_parse(pattern) or [])

    def is_group(item: tuple[Any, Any], number: int) -> bool:
        return item[0] is c.SUBPATTERN and item[1][0] == number

    if bounded and not (parsed and is_group(parsed[0], 1)):
        return False
    return not trailing or bool(parsed and is_group(parsed[-1], 2))


def required_literals(pattern: str) -> frozenset[str] | None:
    """Strings one of which every match of `pattern` contains; None when none is found.

    From runs of consecutive single-character atoms (a literal, a class of a few
    characters, the first of a repetition), looking inside groups, repetitions of at
    least one and alternations; the set with the longest shortest string is kept.
    """
    parsed = _parse(pattern)
    if parsed is None or parsed.state.flags & re.IGNORECASE:
        return None
    return _required(list(parsed))


def _required(seq: list[tuple[Any, Any]]) -> frozenset[str] | None:
    _, c = _sre()
    found: list[frozenset[str]] = []
    run: frozenset[str] = frozenset([""])
    for item in seq:
        chars, repeated = _single(item)
        if chars is not None and len(run) * len(chars) <= _MAX_LITERALS:
            run = frozenset(a + b for a, b in product(run, chars))
            if not repeated:
                continue
        found.append(run)
        run = frozenset([""])
        op, av = item
        inner: frozenset[str] | None = None
        if op is c.SUBPATTERN and not av[1] & re.IGNORECASE:
            inner = _required(list(av[-1]))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
            inner = _required(list(av[2]))
        elif op is c.BRANCH:
            alts = [_required(list(alt)) for alt in av[1]]
            if all(alts):
                union = frozenset().union(*alts)  # type: ignore[arg-type]
                inner = union if len(union) <= _MAX_LITERALS else None
        if inner:
            found.append(inner)
    found.append(run)
    best = max(found, key=lambda r: (min(map(len, r)), -len(r)))
    return best if min(map(len, best)) > 0 else None
