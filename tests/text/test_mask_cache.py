"""Masking made fast (literal prefilters, digit-shape cache) gives byte-identical output."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from logclust.cli.traffic import generate_traffic
from logclust.embed.bundle import Bundle
from logclust.text.header import message
from logclust.text.mask_cache import MaskCache, ShapePlan, digit_shape
from logclust.text.masking import PREPARE_FACTOR, Masker, MaskingConfig, MaskRule
from logclust.text.structure import mask_structure
from tests.conftest import LOGHUB
from training.data import TRAIN_SYSTEMS, read_loghub_system

_B = r"(^|[^A-Za-z0-9])"

# Fields that sit on the edges of the rules: hex next to ids, times inside timestamps,
# digits glued to letters, literal placeholders, non-ASCII digits and letters.
_PIECES = (
    "0x1F",
    "0X",
    "10x5",
    "x0x",
    "0xZ",
    "a0x1",
    "1.2.3.4",
    "10.0.0.1:8080",
    "12:34:56",
    "1:2:3",
    "2016-09-28 04:30:30,123",
    "2016/9/8",
    "a1b2",
    "9f4ef63",
    "t761",
    "::",
    "/a/1",
    "C:\\dir\\f1",
    "x@y1.com",
    "http://h/1?a=2",
    "123e4567-e89b-12d3-a456-426614174000",
    "00:1a:2b:3c:4d:5e",
    "<NUM>",
    "<ID>7",
    "blk_-123",
    "+5",
    "-7.5.6",
    "1,2,3",
    "   ",
    "\t",
    "é9",
    "٣٤",
    "ab",
    "=",
    "(",
    "[7]",
    "host1.example.com",
    "v2.0",
    "0",
    "00x00",
)


def _synthetic(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    digits = np.frombuffer(b"0123456789", np.uint8)
    out = []
    for _ in range(n):
        parts = [str(p) for p in rng.choice(np.array(_PIECES, object), rng.integers(1, 9))]
        line = rng.choice([" ", "", "-", ":"]).join(parts)
        raw = np.frombuffer(line.encode(), np.uint8).copy()
        is_digit = (raw >= 48) & (raw <= 57)
        redraw = is_digit & (rng.random(raw.size) < 0.5)
        raw[redraw] = rng.choice(digits, int(redraw.sum()))
        out.append(raw.tobytes().decode())
    return out


def _loghub(seed: int) -> list[str]:
    if not (LOGHUB / "HDFS").is_dir():
        return []
    rng = np.random.default_rng(seed)
    lines = [ln for s in (*TRAIN_SYSTEMS, "Android") for ln in read_loghub_system(LOGHUB, s).raw]
    raw = np.frombuffer("\n".join(lines).encode(), np.uint8).copy()
    is_digit = (raw >= 48) & (raw <= 57)
    raw[is_digit] = rng.integers(48, 58, int(is_digit.sum()), dtype=np.uint8)
    return raw.tobytes().decode().split("\n")


def rule_by_rule(config: MaskingConfig, texts: pa.Array) -> pa.Array:
    """Masking as it was first written: every step, every rule, on every row."""
    out = pc.utf8_slice_codeunits(texts, 0, PREPARE_FACTOR * config.max_chars)
    if config.lowercase:
        out = pc.utf8_lower(out)
    if config.structured:
        out = mask_structure(out)
    for rule in config.active_rules:
        out = pc.replace_substring_regex(out, rule.pattern, rule.replacement)
    if config.collapse_whitespace:
        out = pc.utf8_trim_whitespace(pc.replace_substring_regex(out, r"\s+", " "))
    return pc.utf8_slice_codeunits(out, 0, config.max_chars).cast(pa.string())


def _assert_same(cache: MaskCache, texts: list[str]) -> None:
    arr = pa.array(texts, pa.string())
    reference = rule_by_rule(cache.masker.config, arr)
    assert cache.masker.mask(arr).equals(reference)  # rules skipped by literal prefilters
    uniques, indices = cache.mask_distinct(arr)  # digit shapes masked once
    if cache.messages:  # each masked line cut to its message (the sidecar's default)
        reference = pa.array([message(t) for t in reference.to_pylist()], pa.string())
    plain = pc.dictionary_encode(reference)
    assert uniques.equals(plain.dictionary)
    np.testing.assert_array_equal(indices, plain.indices.to_numpy())
    # Few rows at a time (cache misses): most rules are skipped there.
    for start in range(0, min(len(texts), 60), 3):
        few = arr.slice(start, 3)
        assert cache.masker.mask(few).equals(rule_by_rule(cache.masker.config, few))


def test_default_rules_allow_the_cache_with_hex_guards() -> None:
    plan = ShapePlan.of(MaskingConfig())
    assert plan.exact and plan.guards == ("0X", "0x") and plan.digit == "1"


def test_shape_keeps_digits_only_inside_guards_of_one_row() -> None:
    arr = pa.array(["x", "0x1F 10x5 0X 05", "a0", "x7 00x"], pa.string()).slice(1)
    shaped = digit_shape(arr, "1", ("0X", "0x"))
    assert shaped.to_pylist() == ["0x1F 10x1 0X 11", "a1", "x1 10x"]
    assert digit_shape(arr, "1").to_pylist() == ["1x1F 11x1 1X 11", "a1", "x1 11x"]


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ((MaskRule("ip4", _B + r"\d+\.\d+", "<IP4>"),), "placeholder holds a digit"),
        ((MaskRule("low", _B + r"[0-4]+", "<LOW>"),), "without a literal"),
        ((MaskRule("n", _B + r"7<", "<N>"),), "can be made by masking"),
        (
            (MaskRule("z", r"(a)?0x(b)", "<Z>"),),  # group 1 is not a prefix of the match
            "not at its edge",
        ),
    ],
)
@pytest.mark.parametrize("messages", [True, False], ids=["messages", "keep-headers"])
def test_cache_is_off_when_exactness_is_not_proven(
    rules: tuple[MaskRule, ...], reason: str, messages: bool
) -> None:
    cache = MaskCache(Masker(MaskingConfig(rules=rules)), messages=messages)
    assert not cache.plan.exact and reason in cache.plan.reason
    _assert_same(cache, _synthetic(300, seed=1))


@pytest.mark.parametrize(
    "config",
    [
        MaskingConfig(),
        MaskingConfig(lowercase=True, max_chars=40),
        MaskingConfig(disabled=("hex",), collapse_whitespace=False),
        MaskingConfig(disabled=("number", "id")),  # digits survive: shapes marked unsafe
    ],
    ids=["default", "lowercase-cut", "no-hex", "digits-survive"],
)
def test_synthetic_lines_mask_exactly_as_rule_by_rule(config: MaskingConfig) -> None:
    cache = MaskCache(Masker(config), capacity=500)  # small: evictions happen
    assert cache.plan.exact
    for seed in range(4):
        _assert_same(cache, _synthetic(1500, seed))
    assert cache.hits > 0
    # Only rows whose masked shape keeps digits are masked one by one.
    assert (cache.unsafe_shapes > 0) == (cache.direct_rows > 0) == ("number" in config.disabled)


@pytest.mark.parametrize("messages", [True, False], ids=["messages", "keep-headers"])
def test_loghub_lines_mask_exactly_as_rule_by_rule(messages: bool) -> None:
    # The shipped bundle's rules (what serving uses) over every loghub system, with every
    # digit re-drawn on each pass as the replay benchmark does.
    lines = _loghub(seed=0)
    if not lines:
        pytest.skip(f"loghub-2k data not found at {LOGHUB}")
    cache = MaskCache(Masker(Bundle.load().masking), messages=messages)
    assert cache.plan.exact
    for seed in range(3):
        batch = _loghub(seed)
        for start in range(0, len(batch), 4000):
            _assert_same(cache, batch[start : start + 4000])
    assert cache.hits > cache.misses


def test_sliced_large_strings_and_nulls() -> None:
    cache = MaskCache(Masker())
    arr = pa.array(["a 1", "b 0x1", "c 22", "a 3"], pa.large_string()).slice(1)
    uniques, indices = cache.mask_distinct(arr)
    assert uniques.to_pylist() == ["b <HEX>", "c <NUM>", "a <NUM>"]
    assert indices.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="Received: 1 null"):
        cache.mask_distinct(pa.array(["x 1", None, "x 2"]))


def test_request_bodies_mask_exactly_as_rule_by_rule() -> None:
    """Forms, query strings, JSON, GraphQL and XML (the structured stage) with digits
    re-drawn: the cache by digit shape gives the plain masking's texts."""
    bodies = generate_traffic(3000, seed=7).column("body").to_pylist()
    rng = np.random.default_rng(7)
    raw = np.frombuffer("\x00".join(bodies).encode(), np.uint8).copy()
    is_digit = (raw >= 48) & (raw <= 57)
    raw[is_digit] = rng.integers(48, 58, int(is_digit.sum()), dtype=np.uint8)
    texts = raw.tobytes().decode().split("\x00") + bodies
    cache = MaskCache(Masker(MaskingConfig()), 500)
    assert cache.plan.exact
    _assert_same(cache, texts)


def test_an_offsets_buffer_longer_than_needed_is_read() -> None:
    # Valid Arrow (a buffer may be longer than its array needs), as a fuzzed IPC payload
    # had it: 2 bytes past the last offset made the digit shapes fail with a ValueError.
    texts = ["addr 0x1f2e id=123", "id=4567 took 12ms"]
    plain = pa.array(texts)
    offsets = plain.buffers()[1].to_pybytes() + b"\x00\x00"
    odd = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(offsets), plain.buffers()[2]])
    odd.validate(full=True)
    masker = Masker(MaskingConfig())
    keys, inv = MaskCache(masker, 100).distinct_keys(odd)
    want, want_inv = MaskCache(masker, 100).distinct_keys(plain)
    assert keys == want and inv.tolist() == want_inv.tolist()
