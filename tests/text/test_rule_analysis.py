"""Reading masking regexes: digit blindness, guard literals, required literals."""

from __future__ import annotations

import pytest

from logclust.text.masking import DEFAULT_RULES
from logclust.text.rule_analysis import (
    digit_blind,
    groups_at_edges,
    guard_literals,
    required_literals,
)

RULES = {r.name: r for r in DEFAULT_RULES}


def test_default_rules_are_digit_blind_except_hex() -> None:
    assert {r.name for r in DEFAULT_RULES if not digit_blind(r.pattern)} == {"hex"}
    assert guard_literals(RULES["hex"].pattern) == {"0x", "0X"}
    assert all(guard_literals(r.pattern) == set() for r in DEFAULT_RULES if r.name != "hex")
    assert all(
        groups_at_edges(r.pattern, r.bounded, getattr(r, "trailing", False)) for r in DEFAULT_RULES
    )


@pytest.mark.parametrize(
    ("pattern", "blind"),
    [
        (r"\d+", True),
        (r"[^A-Za-z0-9]x", True),
        (r"[0-5]", False),
        (r"7", False),
        (r"[^3]", False),
        (r"(\d)\1", False),  # backreference
        (r"\d{,3}", False),  # RE2 reads {,3} as text
        (r"[[:digit:]]", False),  # POSIX class: not read the RE2 way by Python
        (r"\pN", False),  # RE2-only escape
    ],
)
def test_digit_blindness(pattern: str, blind: bool) -> None:
    assert digit_blind(pattern) is blind


@pytest.mark.parametrize(
    ("name", "literals"),
    [
        ("uuid", {"-"}),
        ("timestamp", {"-", "/"}),
        ("time", {":"}),
        ("url", {"://"}),
        ("email", {"@"}),
        ("ip", {"."}),
        ("mac", {":"}),
        ("path", {"/"}),
        ("winpath", {":\\"}),
        ("hex", {"0x", "0X"}),
        ("id", None),
        ("number", None),
    ],
)
def test_required_literals_of_the_default_rules(name: str, literals: set[str] | None) -> None:
    assert required_literals(RULES[name].pattern) == literals


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        (r"ab\d+cd", {"ab"}),
        (r"(?:x|y)z", {"xz", "yz"}),
        (r"(?:foo|bar)\d", {"foo", "bar"}),
        (r"(?i)abc", None),  # case-insensitive: literals do not hold
        (r"a*", None),
        (r"[[:alpha:]]:", None),  # refused: POSIX class
    ],
)
def test_required_literals(pattern: str, literals: set[str] | None) -> None:
    assert required_literals(pattern) == literals
