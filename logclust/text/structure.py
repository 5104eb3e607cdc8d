"""Structure-aware masking of request bodies: form data, query strings, JSON and XML.

Request bodies carry free text in their *values* (street names, search words, user
names) that the plain masking rules leave alone, so one kind of request yields hundreds
of distinct masked texts. `mask_structure` runs before the plain rules and rewrites the
rows that parse as a known format into a canonical text in which the keys stay and
every value becomes a typed placeholder; every other row is returned unchanged.

Exactness for the digit-shape cache (`mask_cache.py`): two texts that differ only in
their ASCII digits give outputs that differ only in digits, at the same places. Every
decision (does the row parse, what type is a value, the order of keys, which array
elements are alike) is taken on the row's *shape* (every ASCII digit written as `1`),
and the output is made of placeholders without digits, fixed punctuation and spans
copied verbatim from the row (keys, text around embedded JSON, code strings), which sit
at the same places in both texts.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

PLACEHOLDER_ANY = "<*>"
PLACEHOLDER_NUM = "<NUM>"
PLACEHOLDER_BOOL = "<BOOL>"
PLACEHOLDER_HEX = "<HEX>"

# Rows longer than this (in bytes) are left to the plain rules: bounds the Python work
# per row. The caller cuts rows to `max_chars` before this, so it rarely applies.
MAX_BYTES = 16 * 1024
# Containers nested deeper than this become `<*>`: bounds the output, and the parser is
# iterative, so depth never costs stack.
MAX_DEPTH = 32
# `{` positions tried per row when looking for JSON embedded in a log line: bounds the
# work on lines full of braces that are not JSON.
MAX_EMBED_TRIES = 8
# Top-level keys whose string value names the body's kind (a JSON object's, a form's):
# kept when it is a name (letters, `_`, `.`, `:`, `-`; no digits, at most 64 characters),
# masked otherwise. Two GraphQL operations sent as persisted queries differ only in
# `operationName`, two events only in `type`, two form posts only in `action`; a nested
# key (`shipping.method`) is a value like any other.
KIND_KEYS = frozenset(
    {"operationName", "operation", "op", "type", "event", "eventType", "event_type", "action",
     "kind", "command"}
)  # fmt: skip
KIND_NAME = r"[A-Za-z_][A-Za-z_.:-]{0,63}"
KIND_NAME_RE = re.compile(KIND_NAME)

_SHAPE = str.maketrans("0123456789", "1111111111")

# --- form data and query strings -------------------------------------------------------
# `%` is allowed in keys so url-encoded brackets (`items%5B0%5D`) still count as keys.
_KEY = r"[A-Za-z_][A-Za-z0-9_.\[\]%-]*"
# Whitespace spelled out: RE2's and Python's `\s` differ (Unicode spaces, \v), and the
# prefilter must select exactly the rows the Python parser would rewrite.
_SP = r"[ \t\n\r\f\v]"
# A value: no `&`, no whitespace, no `=` but trailing base64 padding. `k=true,p=3` is
# not a form (a log line of comma-separated settings keeps its plain masking).
_PAIR = _KEY + r"=[^&= \t\n\r\f\v]*=*"
_PAIRS = _PAIR + r"(?:&" + _PAIR + r")*&?"
# Bodies of two or more pairs may carry raw spaces in values (`street_address=1 Elm St`):
# with an `&` between pairs they cannot be mistaken for a sentence.
_PAIR_LOOSE = _KEY + r"=[^&=\t\n\r\f\v]*=*"
_PAIRS_LOOSE = _PAIR_LOOSE + r"(?:&" + _PAIR_LOOSE + r")+&?"
# A request target: an optional method, an optional scheme and host, a path, then `?`.
_TARGET = r"(?:[A-Z]+ +)?(?:[A-Za-z][A-Za-z0-9+.-]*://[^/ \t\n\r\f\v?#]+)?/[^ \t\n\r\f\v?#]*\?"
_HTTP_VERSION = r"(?: +HTTP/[0-9.]+)?"
# RE2 (vectorised prefilter) and Python `re` read these patterns alike.
_FORM_RE2 = (
    "^"
    + _SP
    + "*(?:(?:"
    + _TARGET
    + ")?"
    + _PAIRS
    + _HTTP_VERSION
    + "|"
    + _PAIRS_LOOSE
    + ")"
    + _SP
    + "*$"
)
_FORM = re.compile(_SP + "*(" + _TARGET + ")?(" + _PAIRS + ")(" + _HTTP_VERSION + ")" + _SP + "*")
_FORM_LOOSE = re.compile(_SP + "*()(" + _PAIRS_LOOSE + ")()" + _SP + "*")
_PAIR_SPLIT = re.compile("(" + _KEY + ")=([^&=\t\n\r\f\v]*=*)")
_NUMBER = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")
_BOOL = re.compile(r"true|false", re.IGNORECASE)
# `0x1F` as the shape sees it (every digit a `1`): a hex value, as the plain rules say.
_HEX = re.compile(r"1[xX][1a-fA-F]+")

# --- JSON -------------------------------------------------------------------------------
# An object starts with `{` then `"` or `}`; a top-level array with `[` then a value or
# `]`. Log lines such as `[INFO] ...` or `Set {a, b}` fail this cheap test.
_JSON_RE2 = r'\{[ \t\n\r]*["}]|^[ \t\n\r]*\[[ \t\n\r]*[\[{"0-9tfn\]-]'
_WS = "[ \t\n\r]*"
# Strings are read leniently (any escaped character, raw control characters allowed);
# numbers leniently too (`05` is the shape of `00`..`99`, so it must be valid).
_TOKEN = re.compile(
    _WS + r'(?:(?P<s>"(?:[^"\\]|\\.)*")|(?P<n>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)'
    r"|(?P<b>true|false)|(?P<z>null)|(?P<p>[{}\[\]:,]))",
    re.DOTALL,
)
# A string holding code or a query language (GraphQL, SQL, a template) is kept: its text
# is what tells request kinds apart.
_CODE_CHARS = ("{", "(")
# Escaped and raw whitespace runs become one space; `\\.` first consumes other escapes
# whole so the `n` of an escaped backslash (`\\n`) is not read as a newline.
_STRING_WS = re.compile(r"(\\[^ntr])|(?:\\[ntr]|\s)+")


def mask_structure(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Rewrites form data, query strings, JSON and XML into key-keeping canonical texts.

    Rows that are not one of these formats are returned unchanged. Formats, tried in
    this order:

    1. A JSON object or array (the whole row): keys sorted, values replaced recursively
       (string -> `<*>`, number -> `<NUM>`, true/false -> `<BOOL>`, null -> `null`),
       an array becomes its distinct element shapes in first-seen order.
    2. Form data or a query string (`k=v&k=v`, `/path?k=v&...`, `GET /path?k=v HTTP/1.1`):
       keys kept in their order, each value typed (empty, `<NUM>`, `<BOOL>`, a compact
       JSON value masked as in 1, else `<*>`). Space-separated `a=b c=d` pairs in log
       lines are not form data and stay unchanged.
    3. An XML document (the whole row: an optional declaration, then elements): element
       and attribute names kept, text and attribute values typed (`<NUM>`, `<BOOL>`,
       else `<*>`), the whitespace between tags dropped, runs of identical sibling
       elements kept once.
    4. A log line with an embedded JSON object: the first `{` from which an object
       parses is replaced by its masked form; the text around it is kept.

    Args:
        texts: a pyarrow `string` or `large_string` array (chunked or not).

    Returns:
        An array of the same type, length and order; nulls stay null. When no row is a
        candidate, `texts` itself (combined, if it was chunked).

    Raises:
        TypeError: `texts` is not a string array.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], texts.type)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"mask_structure() takes a string array. Received: type={texts.type}")
    if len(texts) == 0 or texts.null_count == len(texts):
        return texts
    candidate = pc.and_(
        pc.or_(
            pc.or_(
                pc.match_substring_regex(texts, _JSON_RE2),
                pc.match_substring_regex(texts, _FORM_RE2),
            ),
            pc.match_substring_regex(texts, _XML_RE2),
        ),
        pc.less_equal(pc.binary_length(texts), MAX_BYTES),
    ).fill_null(False)
    if not pc.any(candidate).as_py():
        return texts
    rows = texts.filter(candidate).to_pylist()
    # Repeated rows are parsed once (callers that dedupe already pay nothing for this).
    distinct = {t: mask_text(t) for t in dict.fromkeys(rows)}
    masked = [distinct[t] for t in rows]
    return pc.replace_with_mask(texts, candidate, pa.array(masked, texts.type))


def mask_text(text: str) -> str:
    """`mask_structure` for one Python string (see there)."""
    # Code points <= bytes <= 4 * code points: encode only when the count is unclear.
    if len(text) > MAX_BYTES or (4 * len(text) > MAX_BYTES and len(text.encode()) > MAX_BYTES):
        return text
    shape = text.translate(_SHAPE)
    return (
        _mask_whole_json(text, shape)
        or _mask_form(text, shape)
        or _mask_xml(text, shape)
        or _mask_embedded_json(text, shape)
        or text
    )


# --- XML ----------------------------------------------------------------------------------
# A whole row that is one XML document (an optional declaration, then elements).
_XML_RE2 = r"^[ \t\n\r]*<[?A-Za-z][^<>]*>[\s\S]*</?[A-Za-z][^<>]*>[ \t\n\r]*$"
_XML_GAP = re.compile(r">[ \t\n\r]+<")
_XML_TEXT = re.compile(r">([^<]+)<")
_XML_ATTR = re.compile(r"""([A-Za-z_:][A-Za-z0-9_.:-]*)[ \t\n\r]*=[ \t\n\r]*("[^"]*"|'[^']*')""")
# A run of identical sibling elements (after masking), kept once: `<Item .../>` x 5.
_XML_REPEAT = re.compile(
    r"(<([A-Za-z_][\w.:-]*)\b[^<>]*/>|<([A-Za-z_][\w.:-]*)\b[^<>]*>"
    r"(?:(?!<\3\b).)*?</\3>)(?:\1)+",
    re.DOTALL,
)


def _xml_value(value: str) -> str:
    """A typed placeholder, spelled with sentinels (`\\x00`, `\\x01` for `<`, `>`) until
    the tags are done with, so it is not read as markup."""
    if _NUMBER.fullmatch(value):
        name = PLACEHOLDER_NUM
    elif _BOOL.fullmatch(value):
        name = PLACEHOLDER_BOOL
    else:
        name = PLACEHOLDER_ANY
    return "\x00" + name[1:-1] + "\x01"


def _mask_xml(text: str, shape: str) -> str | None:
    """Element names and attribute names kept; text and attribute values typed; the
    whitespace between tags dropped; runs of identical sibling elements kept once.
    Decided on the digit shape; values are replaced, so digits never reach the output
    outside names (which the plain rules then see as they see any word)."""
    if not re.fullmatch(
        r"[ \t\n\r]*<[?A-Za-z][^<>]*>.*</?[A-Za-z][^<>]*>[ \t\n\r]*", shape, re.DOTALL
    ):
        return None
    out = _XML_GAP.sub("><", text.strip(" \t\n\r").translate(_SHAPE))
    out = _XML_TEXT.sub(lambda m: f">{_xml_value(m.group(1).strip())}<", out)
    out = _XML_ATTR.sub(lambda m: f"{m.group(1)}={_xml_value(m.group(2)[1:-1])}", out)
    previous = None
    while previous != out:
        previous, out = out, _XML_REPEAT.sub(r"\1", out)
    return out.replace("\x00", "<").replace("\x01", ">")


def _mask_whole_json(text: str, shape: str) -> str | None:
    start = len(shape) - len(shape.lstrip(" \t\n\r"))
    if start == len(shape) or shape[start] not in "{[":
        return None
    parsed = _parse_json(text, shape, start)
    if parsed is None or shape[parsed[1] :].strip(" \t\n\r"):
        return None
    return parsed[0]


def _mask_form(text: str, shape: str) -> str | None:
    m = _FORM.fullmatch(shape) or _FORM_LOOSE.fullmatch(shape)
    if m is None:
        return None
    target = text[m.start(1) : m.end(1)] if m.group(1) else ""
    pairs = [
        text[p.start(1) : p.end(1)] + "=" + _pair_value(text, shape, p)
        for p in _PAIR_SPLIT.finditer(shape, m.start(2), m.end(2))
    ]
    trailing = "&" if shape[m.start(2) : m.end(2)].endswith("&") else ""
    version = " " + text[m.start(3) : m.end(3)].strip() if m.group(3) else ""
    return target + "&".join(pairs) + trailing + version


def _pair_value(text: str, shape: str, pair: re.Match[str]) -> str:
    """A form field's value masked, or kept where it names the form's kind
    (`action=delete`: `KIND_KEYS`, decided on the shape)."""
    start, end = pair.start(2), pair.end(2)
    if text[pair.start(1) : pair.end(1)] in KIND_KEYS and KIND_NAME_RE.fullmatch(shape, start, end):
        return text[start:end]
    return _form_value(text, shape, start, end)


def _form_value(text: str, shape: str, start: int, end: int) -> str:
    value = shape[start:end]
    if not value:
        return ""
    if _NUMBER.fullmatch(value):
        return PLACEHOLDER_NUM
    if _BOOL.fullmatch(value):
        return PLACEHOLDER_BOOL
    if _HEX.fullmatch(value):
        return PLACEHOLDER_HEX
    if value[0] in "{[":
        parsed = _parse_json(text[start:end], value, 0)
        if parsed is not None and parsed[1] == len(value):
            return parsed[0]
    return PLACEHOLDER_ANY


def _mask_embedded_json(text: str, shape: str) -> str | None:
    at = shape.find("{")
    for _ in range(MAX_EMBED_TRIES):
        if at < 0:
            return None
        parsed = _parse_json(text, shape, at, objects_only=True)
        if parsed is not None:
            return text[:at] + parsed[0] + text[parsed[1] :]
        at = shape.find("{", at + 1)
    return None


class _Frame:
    """An open container while parsing: its members, and what the parser expects next."""

    __slots__ = ("expect", "is_object", "items", "key", "key_shape")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        # Objects: (key shape, verbatim key, masked value); arrays: masked values.
        self.items: list[Any] = []
        self.key = ""
        self.key_shape = ""
        # "first" (after the opening bracket), "key", "colon", "value", "next".
        self.expect = "first"


def _parse_json(
    text: str, shape: str, pos: int, objects_only: bool = False
) -> tuple[str, int] | None:
    """The masked canonical form of the JSON value at `pos`, and the index after it.

    Iterative (an explicit stack), so any nesting depth parses without recursion; the
    tokens are read on `shape`, verbatim keys and strings are copied from `text`.
    Returns None when no JSON value (an object, with `objects_only`) starts at `pos`.
    """
    stack: list[_Frame] = []
    opens = "{" if objects_only else "{["
    while True:
        m = _TOKEN.match(shape, pos)
        if m is None:
            return None
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        punct = shape[pos - 1] if kind == "p" else ""
        if not stack:
            if not punct or punct not in opens:
                return None
            stack.append(_Frame(punct == "{"))
            continue
        top = stack[-1]
        if punct == ("}" if top.is_object else "]") and top.expect in ("first", "next"):
            done = stack.pop()
            value = PLACEHOLDER_ANY if len(stack) >= MAX_DEPTH else _render(done)
            if not stack:
                return value, pos
            _add(stack[-1], value)
        elif top.expect == "next":
            if punct != ",":
                return None
            top.expect = "key" if top.is_object else "value"
        elif top.expect == "colon":
            if punct != ":":
                return None
            top.expect = "value"
        elif top.is_object and top.expect != "value":
            if kind != "s":
                return None
            top.key, top.key_shape = text[m.start(kind) : pos], m.group(kind)
            top.expect = "colon"
        elif punct in ("{", "["):
            stack.append(_Frame(punct == "{"))
        elif punct:
            return None
        elif len(stack) == 1 and kind == "s" and _names_kind(top, shape, m.start(kind), pos):
            _add(top, text[m.start(kind) : pos])  # decided on the shape: digits never kept
        else:
            _add(top, _mask_scalar(kind, text, shape, m.start(kind), pos))


def _names_kind(frame: _Frame, shape: str, start: int, end: int) -> bool:
    """Whether the string at `start:end` is a top-level object's value that names its
    kind (`KIND_KEYS`)."""
    return (
        frame.is_object
        and frame.key[1:-1] in KIND_KEYS
        and KIND_NAME_RE.fullmatch(shape, start + 1, end - 1) is not None  # inside its quotes
    )


def _mask_scalar(kind: str, text: str, shape: str, start: int, end: int) -> str:
    if kind == "s":
        return _mask_string(text, shape, start, end)
    if kind == "n":
        return PLACEHOLDER_NUM
    return PLACEHOLDER_BOOL if kind == "b" else "null"


def _add(frame: _Frame, value: str) -> None:
    if frame.is_object:
        frame.items.append((frame.key_shape, frame.key, value))
    else:
        frame.items.append(value)
    frame.expect = "next"


def _render(frame: _Frame) -> str:
    if frame.is_object:
        # Sorted by the key's shape; keys with equal shapes keep their order, so the
        # order never depends on digits (stable sort).
        members = sorted(frame.items, key=lambda item: item[0])
        return "{" + ", ".join(key + ": " + value for _, key, value in members) + "}"
    # Elements alike up to digits are one shape; the first one seen stands for them.
    distinct: dict[str, str] = {}
    for value in frame.items:
        distinct.setdefault(value.translate(_SHAPE), value)
    return "[" + ", ".join(distinct.values()) + "]"


def _mask_string(text: str, shape: str, start: int, end: int) -> str:
    """`<*>`, or a string holding code kept with its whitespace collapsed."""
    if not any(ch in shape[start:end] for ch in _CODE_CHARS):
        return PLACEHOLDER_ANY
    body = _STRING_WS.sub(lambda m: m.group(1) or " ", text[start + 1 : end - 1])
    return '"' + body.strip(" ") + '"'
