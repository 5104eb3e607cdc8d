"""Templates of one source's stream, learnt online: which word positions are variables.

A masked text becomes a *shape*: its words, each run of characters that holds a
placeholder (`<NUM>`, `<IP>`, ...) written `<*>`, a unit after a variable (`<*> KB`)
folded into it, and a run of variables as one. Shapes are matched against the source's
templates (word lists where `<*>` stands for any word):

1. **Fits.** A shape of a template's length with every constant word in place joins it
   (the template with most constant words wins). No encoder is needed.
2. **Variable words.** A shape that differs from a template of its length in a few
   positions (at most `max_diff_share` of them), each *variable-like* (a digit, the same
   `key=` or `call(` prefix, dotted or slashed names, a position already `<*>`), turns
   those positions of the template into `<*>` and joins it.
3. **Position statistics.** A shape that differs from a template in one constant word
   (never the first) belongs to the *family* of templates that differ only there. A
   position that takes many values across the stream (user names) is a variable: once
   the family has seen `family_values` distinct words (`slot_values` after a word such as
   `user` or `host`), its templates merge into one with `<*>` there. A position that
   takes few values, each often (Paused, Resumed, Stopped), keeps distinct templates;
   capitalised or upper-case words need twice as many values, and upper-case enum words
   (`ACTION_DOWN`) are never variable-like by themselves.
4. **Optional variables.** A shape of another length whose words align with a template's
   except for variables only (an optional `(<*> KB)`) joins it.

Anything else is a new form: the caller opens a cluster for it and registers it with
`add`, so that the next texts can match it.

Templates carry the cluster id they give. The index is an algorithm only: no threads, no
I/O; `to_doc`/`from_doc` give a JSON-able form for the source's state.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the config module imports nothing of the clusterer
    from logclust.cluster.config import StreamClusterConfig

WILDCARD = "<*>"
# A run between delimiters that holds a placeholder (greedy on both sides: the whole run).
_VARIABLE_RUN = re.compile(r"[^\s=&()\[\]{},;:\"'?]*<(?:[A-Z]+|\*)>[^\s=&()\[\]{},;:\"'?]*")
_LEAD = "([{\"'"
_TRAIL = ")]}\"',;:."
# Units folded into the variable before them: `<*> KB` and `<*> B` are one variable.
_UNITS = frozenset({"B", "KB", "MB", "GB", "TB", "kB", "ms", "s", "sec", "secs", "us", "ns", "%"})
_ENUM = re.compile(r"[A-Z][A-Z0-9_]*")
# Words after which a word is a name (a variable) once it has taken `slot_values` values.
SLOT_WORDS = frozenset(
    {
        "user", "username", "host", "hostname", "domain", "node", "file", "filename",
        "path", "dir", "directory", "port", "uid", "name", "account", "group", "table",
        "database", "queue", "topic", "device", "interface",
    }
)  # fmt: skip
# Templates of other lengths tried for an optional variable (lengths within this).
_ALIGN_SPAN = 4

Shape = tuple[str, ...]


def shape_of(masked: str) -> Shape:
    """The words of a masked text as templates compare them (see the module docstring)."""
    out: list[str] = []
    for word in masked.split():
        w = _VARIABLE_RUN.sub(WILDCARD, word) if "<" in word else word
        core = _split(w)[1]
        if out and out[-1].endswith(WILDCARD) and (core in _UNITS or (w == WILDCARD == out[-1])):
            continue
        out.append(w)
    return tuple(out)


def is_structured(masked: str) -> bool:
    """A structured body (a JSON object or array, XML, a form of several fields), which
    its embedding places: its fields may come in any order or be left out."""
    s = masked.strip()
    if (s[:1], s[-1:]) in (("{", "}"), ("[", "]")):
        return True
    if s.startswith("<") and s.endswith(">") and ("</" in s or "/>" in s):
        return True
    return "&" in s and "=" in s and " " not in s


def _split(word: str) -> tuple[str, str, str]:
    """`(leading punctuation, core, trailing punctuation)` of a word."""
    i, j = 0, len(word)
    while i < j and word[i] in _LEAD:
        i += 1
    while j > i and word[j - 1] in _TRAIL:
        j -= 1
    return word[:i], word[i:j], word[j:]


def is_variable(word: str) -> bool:
    """A word that is variables and punctuation only (`<*>`, `(<*>)`, `<*>:<*>`, `()`)."""
    return not any(c.isalnum() for c in word.replace(WILDCARD, ""))


def _key(word: str) -> str | None:
    """The `key=` or `call(` prefix of a word, if any."""
    cuts = [i for i in (word.find("="), word.find("(")) if i > 0]
    return word[: min(cuts) + 1] if cuts else None


def _value(word: str) -> str:
    key = _key(word)
    return _split(word[len(key) :] if key else word)[1]


def variable_like(a: str, b: str) -> bool:
    """Whether a template's word `a` and a new word `b` at one position read as two
    values of a variable. A plain word against a masked value is left to the position's
    statistics (`SOCKS5` masks as an id, yet `HTTPS` and `SOCKS5` are constants)."""
    if is_variable(a):
        return True
    if is_variable(b):
        return not _split(a)[1].isalpha()
    va, vb = _value(a), _value(b)
    if _ENUM.fullmatch(va) and _ENUM.fullmatch(vb) and not any(c.isdigit() for c in va + vb):
        return False  # ACTION_DOWN / ACTION_UP: constants of an enum
    if any(c.isdigit() for c in a + b):
        return True
    ka = _key(a)
    if ka is not None and ka == _key(b):
        return True
    return _dotted(_split(a)[1]) and _dotted(_split(b)[1])


def _dotted(core: str) -> bool:
    return any(ch in core for ch in "./\\_@:")


def _capitalised(word: str) -> bool:
    core = _split(word)[1]
    return core[:1].isupper() and core.isalpha()


@dataclass(slots=True)
class Template:
    """A template: its words (`<*>` where variable) and the cluster id it gives."""

    words: list[str]
    cid: int
    alive: bool = True
    # The constant words, in order (kept by `refresh` when words change). No set of
    # them is kept: a frozenset per template was most of a large catalog's templates'
    # memory; `words_of_shape.issuperset(const_seq)` asks the same in C.
    const_seq: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.const_seq = tuple(w for w in self.words if not is_variable(w))

    @property
    def constants(self) -> int:
        return len(self.const_seq)


@dataclass(frozen=True)
class Match:
    """What `TemplateIndex.match` found for a shape.

    Attributes:
        cid: the cluster id of the template it joined; None for a new form.
        merged: `(gone, into)` cluster ids merged because a position became a variable
            (the caller records each as an alias), in order.
    """

    cid: int | None
    merged: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class TemplateSettings:
    """How templates decide variables (see the module docstring)."""

    family_values: int = 4
    slot_values: int = 2
    max_diff_share: float = 0.34
    max_templates: int = 8192
    max_shapes: int = 16_384


@dataclass
class TemplateIndex:
    """The templates of one source (see the module docstring). Not thread-safe, except
    `fits`, which only reads."""

    settings: TemplateSettings = field(default_factory=TemplateSettings)
    _templates: list[Template] = field(default_factory=list)
    _by_len: dict[int, list[int]] = field(default_factory=dict)
    _shapes: dict[Shape, int] = field(default_factory=dict)
    # Templates by their constant words in order (rule 4 looks them up there).
    _by_consts: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    # A retired template -> the one that absorbed it (shapes remembered for it follow).
    _forward: dict[int, int] = field(default_factory=dict)
    _alive: int = 0
    # (length, position, words before, words after) -> words seen at the position.
    _families: dict[tuple[int, int, Shape, Shape], set[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return self._alive

    def _known(self, shape: Shape) -> int | None:
        """The live template a remembered shape went to (following absorptions)."""
        i = self._shapes.get(shape)
        while i is not None and not self._templates[i].alive:
            i = self._forward.get(i)
        return i

    def fits(self, masked: str) -> bool:
        """Whether a text is placed without its embedding (its shape is known or fits a
        template); reads only, so it may run beside `match` (a stale answer only costs
        an embedding)."""
        shape = shape_of(masked)
        return self._known(shape) is not None or self._fitting(shape) is not None

    def find(self, shape: Shape) -> int | None:
        """The cluster a shape's template gives, without learning anything (None: no
        template fits)."""
        known = self._known(shape)
        if known is not None:
            return self._templates[known].cid
        fit = self._fitting(shape)
        return None if fit is None else self._templates[fit].cid

    def match(self, shape: Shape) -> Match:
        """Places a shape on the templates (see the module docstring); may generalise
        templates and merge their clusters."""
        known = self._known(shape)
        if known is not None:
            return Match(self._templates[known].cid)
        fit = self._fitting(shape)
        if fit is not None:
            return self._joined(shape, fit)
        cands = self._near(shape)
        for i, diffs in cands:
            if self._generalise(i, shape, diffs):
                return self._joined(shape, i, self._absorb(i))
        family = self._family(shape, cands)
        if family is not None:
            return self._joined(shape, *family)
        opt = self._optional(shape)
        if opt is not None:
            return self._joined(shape, opt)
        return Match(None)

    def add(self, shape: Shape, cid: int) -> None:
        """Registers a new form placed by its embedding in cluster `cid` (a shape that
        already has a template is left as it is)."""
        if self._known(shape) is not None or len(self) >= self.settings.max_templates:
            return
        self._remember(shape, self._new(list(shape), cid))

    def remap(self, to: Mapping[int, int]) -> None:
        """Cluster ids merged elsewhere (`gone -> into`): templates and pairs follow."""
        if not to:
            return
        for t in self._templates:
            t.cid = to.get(t.cid, t.cid)

    def cluster_ids(self) -> set[int]:
        """The clusters templates give."""
        return {t.cid for t in self._templates if t.alive}

    # -- matching -------------------------------------------------------------------------

    def _fitting(self, shape: Shape) -> int | None:
        """The template of the shape's length whose constants are all in place (most
        constants first); an all-variable template fits all-variable shapes only."""
        best: tuple[int, int] | None = None
        shape_constants = any(not is_variable(w) for w in shape)
        words = frozenset(shape)
        for i in list(self._by_len.get(len(shape), ())):
            t = self._templates[i]
            if not words.issuperset(t.const_seq) or _diffs(t.words, shape):
                continue
            c = t.constants
            if c == 0 and shape_constants:
                continue
            if best is None or c > best[0]:
                best = (c, i)
        return None if best is None else best[1]

    def _near(self, shape: Shape) -> list[tuple[int, list[int]]]:
        """Templates of the shape's length that differ in few positions, closest first."""
        n = len(shape)
        most = max(1, int(self.settings.max_diff_share * n))
        words = frozenset(shape)
        out = []
        for i in self._by_len.get(n, ()):
            t = self._templates[i]
            # Each constant missing is a difference.
            if not words.issuperset(t.const_seq) and len(set(t.const_seq) - words) > most:
                continue
            d = _diffs(t.words, shape)
            if len(d) <= most:
                out.append((len(d), i, d))
        out.sort(key=lambda x: (x[0], x[1]))
        return [(i, d) for _, i, d in out]

    def _generalise(self, i: int, shape: Shape, diffs: list[int]) -> bool:
        """Turns `diffs` of template `i` into variables when each reads as one and a
        constant word remains."""
        words = self._templates[i].words
        rest = sum(1 for q, w in enumerate(words) if q not in diffs and not is_variable(w))
        if len(shape) < 2 or rest < 1:
            return False
        if not all(variable_like(words[p], shape[p]) for p in diffs):
            return False
        for p in diffs:
            words[p] = WILDCARD
        self._changed(i)
        return True

    def _family(
        self, shape: Shape, cands: list[tuple[int, list[int]]]
    ) -> tuple[int, list[tuple[int, int]]] | None:
        """Position statistics (rule 3): `(template, merged pairs)` when a position of a
        family became a variable, else None."""
        n = len(shape)
        for i, diffs in cands:
            words = self._templates[i].words
            if len(diffs) != 1 or n < 2 or diffs[0] == 0:
                continue
            p = diffs[0]
            if sum(1 for q, w in enumerate(words) if q != p and not is_variable(w)) < 1:
                continue
            key = (n, p, tuple(words[:p]), tuple(words[p + 1 :]))
            values = self._families.setdefault(key, set())
            if len(values) <= 4 * self.settings.family_values:
                values.update((words[p], shape[p]))
            if self._is_variable_position(values, words[p - 1]):
                return self._merge_family(i, p)
        return None

    def _is_variable_position(self, values: set[str], before: str) -> bool:
        s = self.settings
        need = s.slot_values if _split(before)[1].lower() in SLOT_WORDS else s.family_values
        if all(_capitalised(v) for v in values):
            need *= 2
        return len(values) >= need

    def _merge_family(self, i: int, p: int) -> tuple[int, list[tuple[int, int]]]:
        """Template `i` with `<*>` at `p`, absorbing every template it now covers."""
        self._templates[i].words[p] = WILDCARD
        self._changed(i)
        return i, self._absorb(i)

    def _absorb(self, i: int) -> list[tuple[int, int]]:
        """Retires the templates of `i`'s length that `i` now covers; their clusters
        merge into `i`'s. Returns the merged `(gone, into)` cluster ids."""
        keep = self._templates[i]
        pairs: list[tuple[int, int]] = []
        for j in list(self._by_len.get(len(keep.words), ())):
            other = self._templates[j]
            if j == i or _diffs(keep.words, tuple(other.words)):
                continue
            self._retire(j, into=i)
            if other.cid != keep.cid:
                pairs.append((other.cid, keep.cid))
        if pairs:
            self.remap(dict(pairs))
        return pairs

    def _optional(self, shape: Shape) -> int | None:
        """Rule 4: a template of another length whose words align with the shape's
        except for variables on either side: the same constant words in the same order
        (at least two), lengths at most `_ALIGN_SPAN` apart."""
        n = len(shape)
        consts = tuple(w for w in shape if not is_variable(w))
        if len(consts) < 2:
            return None
        for i in self._by_consts.get(consts, ()):
            m = len(self._templates[i].words)
            if m != n and abs(m - n) <= _ALIGN_SPAN:
                return i
        return None

    def _joined(self, shape: Shape, i: int, merged: list[tuple[int, int]] | None = None) -> Match:
        self._remember(shape, i)
        return Match(self._templates[i].cid, tuple(merged or ()))

    def _remember(self, shape: Shape, i: int) -> None:
        if len(self._shapes) >= self.settings.max_shapes:
            self._shapes.clear()  # a cache: shapes are matched again when asked
        self._shapes[shape] = i

    def _new(self, words: list[str], cid: int) -> int:
        t = Template(words, cid)
        self._templates.append(t)
        i = len(self._templates) - 1
        self._by_len.setdefault(len(words), []).append(i)
        self._by_consts.setdefault(t.const_seq, []).append(i)
        self._alive += 1
        return i

    def _changed(self, i: int) -> None:
        """Template `i`'s words changed: its constants and their index follow."""
        t = self._templates[i]
        self._by_consts[t.const_seq].remove(i)
        t.refresh()
        self._by_consts.setdefault(t.const_seq, []).append(i)

    def _retire(self, j: int, into: int) -> None:
        t = self._templates[j]
        t.alive = False
        self._by_len[len(t.words)].remove(j)
        self._by_consts[t.const_seq].remove(j)
        self._forward[j] = into
        self._alive -= 1

    # -- state ----------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """A JSON-able form: the live templates (shapes and position statistics are
        rebuilt by the stream)."""
        return {"templates": [[t.cid, t.words] for t in self._templates if t.alive]}

    @classmethod
    def from_doc(
        cls, doc: Mapping[str, Any], settings: TemplateSettings | None = None
    ) -> TemplateIndex:
        """The index `to_doc` describes.

        Raises:
            ValueError: a malformed document.
        """
        index = cls(settings or TemplateSettings())
        try:
            for cid, words in doc.get("templates", []):
                if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                    raise ValueError(f"template words must be strings. Received: {words!r}")
                # One string per distinct word: a catalog's thousands of templates
                # share their common words (JSON gives each its own string).
                index._new([sys.intern(w) for w in words], int(cid))
        except (TypeError, ValueError) as e:
            raise ValueError(f"Malformed templates in the cluster state: {e}") from e
        return index


def _diffs(words: list[str], shape: Shape) -> list[int]:
    """Positions where a template's constant word differs from the shape's."""
    return [
        p
        for p, (w, s) in enumerate(zip(words, shape, strict=True))
        if w != s and not is_variable(w)
    ]


def template_settings(config: StreamClusterConfig) -> TemplateSettings:
    """The template rules `config` sets (bounded like the clusters and the memo)."""
    return TemplateSettings(
        family_values=config.template_family_values,
        slot_values=config.template_slot_values,
        max_templates=config.max_clusters,
        max_shapes=min(config.cache_size, config.memo_size),
    )
