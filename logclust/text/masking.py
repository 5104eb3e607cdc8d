"""Masking of variable fields (numbers, ids, addresses, times) into typed placeholders.

The same `Masker` runs in training and in serving, and the rules it used are stored in
every bundle's manifest, so a model never sees text masked differently from the text it
was trained on. Masking is vectorized over whole Arrow string arrays with RE2
(`pyarrow.compute.replace_substring_regex`); no per-row Python runs on the hot path.

RE2 has no look-around, so word boundaries are written as a captured prefix
`(^|[^A-Za-z0-9])` that the replacement puts back (`\\1<NUM>`). Because only the prefix
is consumed, adjacent fields such as `1,2,3` are all masked in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.text.rule_analysis import required_literals
from logclust.text.structure import mask_structure

# A field starts at the beginning of the line or after a character that is not a letter
# or digit; the replacement writes the captured character back.
_B = r"(^|[^A-Za-z0-9])"


@dataclass(frozen=True)
class MaskRule:
    """One masking rule: every match of `pattern` (RE2) becomes `placeholder`.

    `pattern` must start with the boundary group `(^|[^A-Za-z0-9])` when `bounded` is true;
    the group is written back before the placeholder.
    """

    name: str
    pattern: str
    placeholder: str
    bounded: bool = True
    # The pattern ends with a second group (the character after the field) to write back.
    trailing: bool = False

    def __post_init__(self) -> None:
        if not (self.placeholder.startswith("<") and self.placeholder.endswith(">")):
            raise ValueError(
                f"A placeholder must look like <NAME>. Received: placeholder={self.placeholder!r}"
            )

    @property
    def replacement(self) -> str:
        out = "\\1" + self.placeholder if self.bounded else self.placeholder
        return out + "\\2" if self.trailing else out


# Order matters: composite fields (timestamps, addresses) are masked before the numbers
# inside them would be.
DEFAULT_RULES: tuple[MaskRule, ...] = (
    MaskRule(
        "uuid",
        _B + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "<UUID>",
    ),
    MaskRule(
        "timestamp",
        _B + r"\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?"
        r"(?:Z|[+-]\d{2}:?\d{2})?",
        "<TS>",
    ),
    # C's ctime() format (`Sun Jul 10 03:55:15 2005`): the day and month names are part
    # of the time, not words of the message.
    MaskRule(
        "ctime",
        _B + r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct"
        r"|Nov|Dec) +\d{1,2} +\d{1,2}:\d{2}:\d{2}(?: +\d{4})?",
        "<TS>",
    ),
    MaskRule("time", _B + r"\d{1,2}:\d{2}:\d{2}(?:[.,:]\d+)?", "<TS>"),
    MaskRule("url", r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+", "<URL>", bounded=False),
    MaskRule("email", _B + r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", "<EMAIL>"),
    MaskRule("ip", _B + r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?", "<IP>"),
    # Host names under common top-level domains; the trailing character is written back.
    MaskRule(
        "host",
        _B + r"(?:[A-Za-z0-9-]+\.)+(?:com|net|org|edu|gov|mil|io|info|biz|local|internal|cn|uk|hk"
        r"|de|jp|ru|fr|pl|br|in|au|ca|us|eu|nl|it|es|kr|tw|co)([^A-Za-z0-9.-]|$)",
        "<HOST>",
        trailing=True,
    ),
    MaskRule("mac", _B + r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}", "<MAC>"),
    MaskRule("path", r"(^|[\s=:,\"'(\[])(?:/[A-Za-z0-9._$@~+-]+)+/?", "<PATH>"),
    MaskRule("winpath", _B + r"[A-Za-z]:\\[^\s\"']+", "<PATH>"),
    MaskRule("hex", _B + r"0[xX][0-9a-fA-F]+", "<HEX>"),
    # Hex values that happen to have no digit (`mask=ffffffff`): eight or more of a-f
    # alone, a run no word of a message is made of.
    MaskRule("hexword", _B + r"[a-fA-F]{8,}([^A-Za-z0-9_]|$)", "<HEX>", trailing=True),
    # A word that mixes letters and digits (hashes, ids, tokens such as 9f4ef63 or t761).
    MaskRule("id", _B + r"(?:[A-Za-z]+[0-9]|[0-9]+[A-Za-z])[A-Za-z0-9]*", "<ID>"),
    MaskRule("number", _B + r"[-+]?[0-9]+(?:\.[0-9]+)*", "<NUM>"),
    # Boolean values: in the train systems' ground-truth templates every true/false of a
    # message is a variable (<*>), never template text.
    MaskRule(
        "bool",
        _B + r"(?:true|false|True|False|TRUE|FALSE)([^A-Za-z0-9_]|$)",
        "<BOOL>",
        trailing=True,
    ),
)


# Rows are bounded at this many times `max_chars` before masking (see `MaskingConfig`).
PREPARE_FACTOR = 8


@dataclass(frozen=True)
class MaskingConfig:
    """What the masker does; stored in every bundle so serving masks like training did."""

    rules: tuple[MaskRule, ...] = DEFAULT_RULES
    # Rules listed here are skipped (for example ("path",) to keep paths verbatim).
    disabled: tuple[str, ...] = ()
    # Masked lines are cut to this many characters. Masking runs before the cut, so a value
    # straddling it is still masked whole; rows are first bounded at `PREPARE_FACTOR`
    # times this (the work per row, and the keys of the mask cache).
    max_chars: int = 2048
    # Runs of whitespace become one space, so alignment padding does not change tokens.
    collapse_whitespace: bool = True
    lowercase: bool = False
    # Structured bodies first (`logclust.text.structure`): form data, query strings,
    # JSON (also inside a log line) and XML keep their keys and lose their values to typed
    # placeholders; anything that does not parse is left to the rules.
    structured: bool = True

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be positive. Received: max_chars={self.max_chars}")
        unknown = set(self.disabled) - {r.name for r in self.rules}
        if unknown:
            raise ValueError(
                f"disabled names rules that do not exist. Received: disabled={sorted(unknown)}"
            )

    @property
    def active_rules(self) -> tuple[MaskRule, ...]:
        return tuple(r for r in self.rules if r.name not in self.disabled)

    @property
    def placeholders(self) -> list[str]:
        return sorted({r.placeholder for r in self.active_rules})

    def to_dict(self) -> dict[str, object]:
        return {
            "rules": [
                {
                    "name": r.name,
                    "pattern": r.pattern,
                    "placeholder": r.placeholder,
                    "bounded": r.bounded,
                    "trailing": r.trailing,
                }
                for r in self.rules
            ],
            "disabled": list(self.disabled),
            "max_chars": self.max_chars,
            "collapse_whitespace": self.collapse_whitespace,
            "lowercase": self.lowercase,
            "structured": self.structured,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> MaskingConfig:
        raw_rules: list[dict[str, Any]] = list(d.get("rules", []))  # type: ignore[call-overload]
        rules = tuple(MaskRule(**r) for r in raw_rules)
        return cls(
            rules=rules or DEFAULT_RULES,
            disabled=tuple(d.get("disabled", ())),  # type: ignore[arg-type]
            max_chars=int(d.get("max_chars", 2048)),  # type: ignore[call-overload]
            collapse_whitespace=bool(d.get("collapse_whitespace", True)),
            lowercase=bool(d.get("lowercase", False)),
            # Bundles made before the structured stage existed did not use it.
            structured=bool(d.get("structured", False)),
        )


@dataclass
class Masker:
    """Applies a `MaskingConfig` to Arrow string arrays or Python strings.

    A rule whose regex needs a literal (`@`, `://`, `0x`, ...; see
    `rule_analysis.required_literals`) that no row holds cannot change any row and is
    skipped, as is the whitespace pass when no row has whitespace to collapse: a cheap
    substring scan instead of an RE2 pass. The output is the same either way.
    """

    config: MaskingConfig = field(default_factory=MaskingConfig)
    # Per active rule: literals one of which a match needs, or None (always run).
    _needs: tuple[tuple[str, ...] | None, ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        self._needs = tuple(_needed(r.pattern) for r in self.config.active_rules)

    def mask(self, texts: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Masks every value of a string array; nulls stay null.

        Args:
            texts: a pyarrow `string` or `large_string` array (chunked or not).

        Returns:
            A `pa.StringArray` of the same length and order.
        """
        return self.apply_rules(self.prepare(texts))

    def prepare(self, texts: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The first step of `mask`: bound rows at `PREPARE_FACTOR * max_chars` code points
        (and lowercase when configured)."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise TypeError(f"mask() takes a string array. Received: type={texts.type}")
        cfg = self.config
        texts = _cut(texts, PREPARE_FACTOR * cfg.max_chars)
        return pc.utf8_lower(texts) if cfg.lowercase else texts

    def apply_rules(self, prepared: pa.Array) -> pa.Array:
        """The rest of `mask` on `prepare`'s output: the structured stage, the rules,
        whitespace, then the cut to `max_chars`."""
        cfg = self.config
        out = mask_structure(prepared) if cfg.structured else prepared
        raw: bytes | None = None  # the values' bytes the literal checks search
        for rule, needs in zip(cfg.active_rules, self._needs, strict=True):
            if needs is not None:
                raw = _data_bytes(out) if raw is None else raw
                if not _holds_any(raw, needs):
                    continue
            out = pc.replace_substring_regex(out, rule.pattern, rule.replacement)
            raw = None
        if cfg.collapse_whitespace:
            if _holds_any(_data_bytes(out) if raw is None else raw, _COLLAPSIBLE):
                out = pc.replace_substring_regex(out, r"\s+", " ")
            out = pc.utf8_trim_whitespace(out)
        return _cut(out, cfg.max_chars).cast(pa.string())

    def mask_texts(self, texts: Iterable[str]) -> list[str]:
        """Masks Python strings (convenience for training and tests)."""
        return self.mask(pa.array(list(texts), pa.string())).to_pylist()  # type: ignore[return-value]


# RE2's \s is [\t\n\f\r ]; without these, `\s+` -> " " only rewrites single spaces as
# themselves (\v is listed too, to stay on the safe side).
_COLLAPSIBLE = ("  ", "\t", "\n", "\r", "\f", "\v")
# Checking more literals than this costs about as much as running the rule.
_MAX_NEEDED = 4


def _needed(pattern: str) -> tuple[str, ...] | None:
    literals = required_literals(pattern)
    if literals is None or len(literals) > _MAX_NEEDED:
        return None
    return tuple(sorted(literals))


def _cut(texts: pa.Array, max_chars: int) -> pa.Array:
    """Values cut to `max_chars` code points."""
    # A row of at most max_chars bytes has at most max_chars code points: nothing to cut.
    if len(texts) and _max_bytes(texts) > max_chars:
        return pc.utf8_slice_codeunits(texts, 0, max_chars)
    return texts


def _max_bytes(texts: pa.Array) -> int:
    """The longest value's length in bytes, read off the offsets buffer."""
    width = 8 if pa.types.is_large_string(texts.type) else 4
    # Only the offsets in use: a valid buffer may be longer, and not a whole number of
    # offsets (a fuzzed IPC payload had 2 bytes more; numpy refused the whole buffer).
    offsets = np.frombuffer(texts.buffers()[1], f"<i{width}", texts.offset + len(texts) + 1)
    return int(np.diff(offsets[texts.offset :]).max())


def _data_bytes(texts: pa.Array) -> bytes:
    """The values' bytes as one string (the whole data buffer: for a sliced array, more)."""
    data = texts.buffers()[2] if len(texts) else None
    return b"" if data is None else data.to_pybytes()


def _holds_any(raw: bytes, literals: Sequence[str]) -> bool:
    """False only when no value contains any of `literals`.

    One `bytes.find` per literal over the values' bytes (memchr speed, far cheaper than a
    per-row kernel). A hit may straddle two values or lie outside a slice: that only
    means a rule runs when it could have been skipped.
    """
    return any(raw.find(lit.encode()) >= 0 for lit in literals)


def mask_texts(texts: Sequence[str], config: MaskingConfig | None = None) -> list[str]:
    """Masks `texts` with `config` (the default rules when None)."""
    return Masker(config or MaskingConfig()).mask_texts(texts)
