"""Tests of `structure.mask_structure`."""

from __future__ import annotations

import json
import random
import re
import time

import pyarrow as pa
import pytest

from logclust.text import structure
from logclust.text.structure import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_EMBED_TRIES,
    PLACEHOLDER_ANY,
    mask_structure,
    mask_text,
)

_SHAPE = str.maketrans("0123456789", "1111111111")


def masked(*texts: str | None) -> list[str | None]:
    return mask_structure(pa.array(list(texts), pa.string())).to_pylist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("product_id=OLJCESPC7Z&quantity=3", "product_id=<*>&quantity=<NUM>"),
        ("q=red+shoes&page=2&sort=price", "q=<*>&page=<NUM>&sort=<*>"),
        ("email=bob%40x.com&remember=true&code=", "email=<*>&remember=<BOOL>&code="),
        ("price=-3.50&items%5B0%5D=a", "price=<NUM>&items%5B0%5D=<*>"),
        ("/cart/add?product_id=66VCHSJNUP&qty=1", "/cart/add?product_id=<*>&qty=<NUM>"),
        ("GET /search?q=red+shoes&page=2 HTTP/1.1", "GET /search?q=<*>&page=<NUM> HTTP/1.1"),
        ("https://shop.example.com/s?q=x", "https://shop.example.com/s?q=<*>"),
        ('data={"a":1,"b":"x"}&n=2', 'data={"a": <NUM>, "b": <*>}&n=<NUM>'),
    ],
)
def test_form_and_query(text: str, expected: str) -> None:
    assert masked(text) == [expected]


def test_form_keeps_key_order() -> None:
    assert masked("b=1&a=x") == ["b=<NUM>&a=<*>"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"username": "bob", "password": "hunter2"}', '{"password": <*>, "username": <*>}'),
        (
            '{"n": 3, "ok": true, "x": null, "f": 1.5e3}',
            '{"f": <NUM>, "n": <NUM>, "ok": <BOOL>, "x": null}',
        ),
        ('{"a": {"z": 1, "b": [1, 2, 3]}}', '{"a": {"b": [<NUM>], "z": <NUM>}}'),
        (
            '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3}]',
            '[{"id": <NUM>, "v": <*>}, {"id": <NUM>}]',
        ),
        ('[1, "a", 2, "b"]', "[<NUM>, <*>]"),
        ("[]", "[]"),
        ("{}", "{}"),
        ('  {"a": []}\n', '{"a": []}'),
        ('{"name": "Zoë Ünal", "città": "Bologna"}', '{"città": <*>, "name": <*>}'),
    ],
)
def test_json(text: str, expected: str) -> None:
    assert masked(text) == [expected]


def test_json_key_order_does_not_matter() -> None:
    a = '{"user": "bob", "cart": {"id": 7, "items": [{"sku": "X", "n": 1}]}}'
    b = '{"cart": {"items": [{"n": 9, "sku": "Y"}], "id": 8}, "user": "alice"}'
    assert masked(a) == masked(b)


def test_arrays_of_one_or_many_items_are_alike() -> None:
    one = json.dumps({"items": [{"sku": "A", "qty": 1}]})
    many = json.dumps({"items": [{"sku": f"S{i}", "qty": i} for i in range(50)]})
    assert masked(one) == masked(many)


def test_graphql_query_is_kept_with_whitespace_collapsed() -> None:
    body = json.dumps(
        {
            "query": "mutation AddToCart($id: ID!) {\n  addToCart(id: $id) {\n    ok\n  }\n}",
            "variables": {"id": "OLJCESPC7Z"},
        }
    )
    expected = (
        '{"query": "mutation AddToCart($id: ID!) { addToCart(id: $id) { ok } }", '
        '"variables": {"id": <*>}}'
    )
    assert masked(body) == [expected]


def test_embedded_json_in_a_log_line() -> None:
    assert masked('INFO request body={"user": "bob", "n": 3}') == [
        'INFO request body={"n": <NUM>, "user": <*>}'
    ]
    assert masked('[web] payload: {"b": "x", "a": [1]} took 5ms') == [
        '[web] payload: {"a": [<NUM>], "b": <*>} took 5ms'
    ]
    # The first brace is not JSON; the second is.
    assert masked('set {a, b} then {"k": "v"}') == ['set {a, b} then {"k": <*>}']


@pytest.mark.parametrize(
    "text",
    [
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
        # Space-separated pairs are log text, not form data: the plain rules mask them.
        "user=bob action=login status=200",
        "a=b c=d",
        "[INFO] started worker [1, 2]",
        "Registered signal handlers for [TERM, HUP, INT]",
        "AppWindowToken{9f4ef63 token=Token{a64f992}}",
        '{"a": 1,}',
        '{"a" 1}',
        "[1,]",
        "[,1]",
        '{"a": [}',
        "[}",
        "=x&y=1",
        "",
        "日本語のログ行 123",
    ],
)
def test_other_rows_are_unchanged(text: str) -> None:
    assert masked(text) == [text]


def test_no_candidate_returns_the_same_array() -> None:
    texts = pa.array(["plain line 1", "another, line", None])
    assert mask_structure(texts) is texts


def test_nulls_order_and_type_are_kept() -> None:
    texts = pa.array([None, "a=1", "plain", None, '{"k": "v"}'], pa.large_string())
    out = mask_structure(texts)
    assert out.type == pa.large_string()
    assert out.to_pylist() == [None, "a=<NUM>", "plain", None, '{"k": <*>}']


def test_chunked_and_empty_inputs() -> None:
    chunked = pa.chunked_array([["a=1"], ["x"]])
    assert mask_structure(chunked).to_pylist() == ["a=<NUM>", "x"]
    assert mask_structure(pa.array([], pa.string())).to_pylist() == []


def test_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="Received: type=int64"):
        mask_structure(pa.array([1, 2]))


def test_depth_is_bounded() -> None:
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    out = mask_text(deep)
    assert out == "[" * MAX_DEPTH + PLACEHOLDER_ANY + "]" * MAX_DEPTH


class _CountedTokens:
    """Stands in for `structure._TOKEN` and counts the tokens the JSON parser reads: the
    parser's work, which no other process on the machine changes (a wall time would)."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.reads = 0

    def match(self, text: str, pos: int) -> re.Match[str] | None:
        self.reads += 1
        return self.pattern.match(text, pos)


def test_huge_and_deep_inputs_take_bounded_work(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = _CountedTokens(structure._TOKEN)
    monkeypatch.setattr(structure, "_TOKEN", tokens)
    big = json.dumps({"items": [{"name": "x" * 20, "n": i} for i in range(60_000)]})
    assert len(big) > 2_000_000
    deep = '{"a": ' * 10_000 + "1" + "}" * 10_000
    very_deep = "[" * 10_000 + "]" * 10_000
    start = time.thread_time()
    assert masked(big, deep, very_deep) == [big, deep, very_deep]
    assert tokens.reads == 0  # over MAX_BYTES: left to the plain rules, never parsed
    cut = deep[: MAX_BYTES - 100]
    assert masked(cut) == [cut]  # not closed: not JSON
    # Each try (the whole row, then up to MAX_EMBED_TRIES embedded objects) reads each
    # token at most once: linear in the row, whatever its depth.
    assert 0 < tokens.reads <= (1 + MAX_EMBED_TRIES) * len(cut)
    tokens.reads = 0
    inside = "[" * 5_000 + "]" * 5_000  # under MAX_BYTES: parsed iteratively
    assert mask_text(inside).count(PLACEHOLDER_ANY) == 1
    assert tokens.reads == len(inside)
    # This thread's CPU time (waiting for a core does not count): no regular expression
    # backtracks over these rows.
    assert time.thread_time() - start < 5.0


# --- the digit-shape property -------------------------------------------------------------

_WORDS = ["bob", "red+shoes", "x%20y", "OLJCESPC7Z", "ab12", "true", "False", "", "é1", "a@b.co"]


def _value(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(9 if depth < 3 else 5)
    if pick == 0:
        return rng.randrange(-1000, 10**6)
    if pick == 1:
        return rng.random() * 10 ** rng.randrange(-3, 8)
    if pick == 2:
        return rng.choice(_WORDS) + str(rng.randrange(100))
    if pick == 3:
        return rng.choice([True, False, None])
    if pick == 4:
        return "query Q($id: ID!) {\n item(id: 12) { name } }"
    if pick < 7:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_key(rng): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _key(rng: random.Random) -> str:
    return rng.choice(["id", "k1", "k2", "a", "b0", "x_9", "1", "é", "\u0031"]) + rng.choice(
        ["", str(rng.randrange(30))]
    )


def _body(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return json.dumps(
            _value(rng), ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2])
        )
    if kind == 1:
        return json.dumps({_key(rng): _value(rng) for _ in range(rng.randrange(1, 5))})
    pairs = "&".join(
        f"{_key(rng)}={rng.choice(_WORDS + ['12', '3.5', '-7', '0x1f', '{}'])}"
        for _ in range(rng.randrange(1, 5))
    )
    if kind == 2:
        return pairs
    if kind == 3:
        return f"GET /api/v{rng.randrange(3)}/items?{pairs} HTTP/1.1"
    obj = json.dumps({_key(rng): _value(rng) for _ in range(rng.randrange(1, 4))})
    return f"2024-01-0{rng.randrange(10)} INFO req {rng.randrange(999)} body={obj} took 5ms"


def _redigit(rng: random.Random, text: str) -> str:
    return re.sub("[0-9]", lambda _: str(rng.randrange(10)), text)


def test_outputs_differ_only_in_digits_at_the_same_places() -> None:
    rng = random.Random(7)
    bodies = [_body(rng) for _ in range(3_000)]
    variants = [_redigit(rng, b) for b in bodies]
    shapes = [b.translate(_SHAPE) for b in bodies]
    out, out_v, out_s = (masked(*x) for x in (bodies, variants, shapes))
    changed = 0
    for body, a, b, s in zip(bodies, out, out_v, out_s, strict=True):
        changed += a != body
        assert a is not None and b is not None and s is not None
        assert a.translate(_SHAPE) == b.translate(_SHAPE) == s.translate(_SHAPE), body
    assert changed > 1_500  # most generated rows parse (not: scalars, keys like "é" in forms)


def test_speed_of_plain_log_lines() -> None:
    rng = random.Random(0)
    lines = pa.array(
        [
            f"2024-05-0{i % 9} 12:00:{i % 60:02d} INFO worker-{i % 7} handled job {i} "
            f"[shard {rng.randrange(99)}] user=u{i} in {rng.random():.3f}s"
            for i in range(100_000)
        ]
    )
    start = time.perf_counter()
    out = mask_structure(lines)
    elapsed = time.perf_counter() - start
    assert out is lines
    print(f"\nmask_structure: 100k plain log lines in {elapsed * 1e3:.1f} ms")


def test_prefilter_selects_every_row_the_parser_rewrites() -> None:
    rng = random.Random(3)
    odd = ["\u00a0a=1", "a=1\u00a0", "a=1\v", " a=1\t", '\u3000{"a": 1}', 'x\u00a0{"a": 1}']
    texts = [_body(rng) for _ in range(500)] + odd
    assert masked(*texts) == [mask_text(t) for t in texts]


def test_request_kinds_collapse_to_one_text_each() -> None:
    rng = random.Random(11)
    streets = ["Main St", "Rue de la Paix", "Königstraße", "5th Avenue"]
    kinds = [
        lambda: (
            f"product_id={rng.choice('ABCDEFGH')}{rng.randrange(10**6)}&quantity={rng.randrange(9)}"
        ),
        lambda: (
            f"q={rng.choice(['red', 'blue+shoes', 'café'])}&page={rng.randrange(50)}&sort=price"
        ),
        lambda: json.dumps(
            {"username": f"user{rng.randrange(999)}", "password": "pw" * rng.randrange(1, 5)}
        ),
        lambda: json.dumps(
            {
                "street": rng.choice(streets),
                "zip": str(rng.randrange(10**5)),
                "n": rng.randrange(99),
            },
            sort_keys=rng.random() < 0.5,
        ),
        lambda: json.dumps(
            {
                "items": [{"sku": f"S{i}", "qty": i} for i in range(rng.randrange(1, 20))],
                "coupon": None,
            }
        ),
    ]
    bodies = [kinds[i % 5]() for i in range(6_000)]
    assert len(set(bodies)) > 1_000
    assert len(set(masked(*bodies))) == 5


def test_xml_keeps_names_and_types_values() -> None:
    spaced = (
        '<?xml version="1.0"?>\n  <Order>\n  <Id>199686</Id>\n  <Customer>Walter Tanaka'
        '</Customer>\n  <Items>\n  <Item sku="9SIQT8TOJO" qty="3"/>\n  <Item sku="AB" qty="1"/>'
        "\n  </Items>\n  </Order>"
    )
    compact = (
        '<Order><Id>7</Id><Customer>Bo</Customer><Items><Item sku="X" qty="2"/></Items></Order>'
    )
    assert mask_text(spaced) == (
        "<?xml version=<NUM>?><Order><Id><NUM></Id><Customer><*></Customer>"
        "<Items><Item sku=<*> qty=<NUM>/></Items></Order>"
    )
    assert mask_text(compact) == mask_text(spaced).removeprefix("<?xml version=<NUM>?>")
    assert mask_text("connection <b> closed") == "connection <b> closed"


def test_xml_digits_decide_nothing() -> None:
    body = '<A n="12"><B>x1</B><B>x2</B><C>3.5</C></A>'
    other = '<A n="98"><B>x7</B><B>x0</B><C>0.1</C></A>'
    assert re.sub("[0-9]", "1", mask_text(body)) == re.sub("[0-9]", "1", mask_text(other))


def test_form_hex_value_is_typed() -> None:
    assert mask_text("flags=0x1F") == "flags=<HEX>"


def test_a_value_that_names_the_kind_is_kept_at_the_top_level_only() -> None:
    persisted = (
        '{"operationName": "%s", "variables": {"id": "7"}, '
        '"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab12"}}}'
    )
    get, orders = mask_text(persisted % "GetUser"), mask_text(persisted % "ListOrders")
    assert get != orders and '"operationName": "GetUser"' in get  # two operations, two kinds
    assert mask_text('{"type": "click", "user": "bob"}') == '{"type": "click", "user": <*>}'
    # Not a name (digits, spaces, too long), or not at the top: a value like any other.
    assert mask_text('{"type": "v2click"}') == '{"type": <*>}'
    assert mask_text('{"event": "page view"}') == '{"event": <*>}'
    assert mask_text('{"type": "%s"}' % ("x" * 65)) == '{"type": <*>}'
    assert mask_text('{"shipping": {"type": "express"}}') == '{"shipping": {"type": <*>}}'
    assert mask_text('{"level": "info"}') == '{"level": <*>}'
    # A form names its kind the same way; a query string too.
    assert mask_text("action=delete&id=7") == "action=delete&id=<NUM>"
    assert mask_text("action=v2delete&id=7") == "action=<*>&id=<NUM>"
    assert mask_text("/api/items?op=search&q=red+shoes") == "/api/items?op=search&q=<*>"
