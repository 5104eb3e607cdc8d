"""Structured bodies by their fields: a form (`k=v&k=v`) by its field names, an XML body
by its element names.

The stream clusterer places a structured body by its embedding; a body with the fields of
one already placed takes that one's cluster instead (`FormIndex`): one kind whatever the
fields' order, a form's path, or an optional field more or less. An XML body's kind is its
skeleton, the elements that hold elements and the root (`INNER`): leaf elements may come
and go in any combination (optional fields), and a skeleton may hold a few elements more
than another's (an optional block). Two XML bodies of one envelope whose skeletons differ
both ways (`<GetBalance>` and `<TransferFunds>` in one SOAP envelope) are two kinds,
however close their embeddings: a body of a new kind joins its nearest cluster only when
no rival kind holds it (another skeleton of its root; for JSON, another named kind: two
GraphQL operations sent as persisted queries, two event types), else opens its own
(`FormIndex.plan`, `joinable`), and the clusterer never merges either. Pure data
structure: no I/O, no threads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from logclust.cluster.descriptions import ClusterStats
from logclust.text.structure import KIND_KEYS, KIND_NAME, KIND_NAME_RE

Fields = tuple[str, ...]

FORM = "<form>"
XML = "<xml>"
KIND = "<kind>"
# What masking keeps of a JSON body's kind (`logclust.text.structure.KIND_KEYS`): a
# top-level `"type": "click"` (nested ones and other values are placeholders).
_KIND_PAIR = re.compile(r'"(' + "|".join(sorted(KIND_KEYS)) + r')": "(' + KIND_NAME + ')"')
# A start tag: its name (not `</`, `<?`, `<!`; a masked value such as `<NUM>` is none),
# its attributes (masked values in them), and whether it closes itself.
_XML_TAG = re.compile(r"<([A-Za-z_][\w.:-]*)((?:[^<>]|<(?:\*|[A-Z][A-Z0-9_]*)>)*?)(/?)>")
_PLACEHOLDER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# Marks an element that holds elements (or is the root): the skeleton of a body's kind.
INNER = "/"


def form_keys(masked: str) -> Fields | None:
    """The fields of a structured body, sorted, behind a tag: a form's field names
    (`[path?]k=v&k=v...`), an XML body's element names, a JSON body's or a form's named
    kind (`"operationName": "GetCart"`, `action=delete`, kept by masking); None for other
    texts. Bodies with the same fields are one kind whatever their order or path."""
    s = masked.strip()
    if s.startswith("<") and s.endswith(">") and ("</" in s or "/>" in s):
        return _xml_fields(s)
    if s.startswith("{"):
        kind = {f"{k}={v}" for k, v in _KIND_PAIR.findall(s)}
        return (KIND, *sorted(kind)) if kind else None
    if " " in s or "=" not in s:
        return None
    query = s.split("?", 1)[1] if "?" in s else s
    pairs = [part.split("=", 1) for part in query.split("&") if part]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        return None
    kind = {f"{k}={v}" for k, v in pairs if k in KIND_KEYS and KIND_NAME_RE.fullmatch(v)}
    if kind:  # a form that names its kind (`action=delete`) is that kind, as JSON's
        return (KIND, *sorted(kind))
    return (FORM, *sorted(k for k, _ in pairs))


def _xml_fields(text: str) -> Fields | None:
    """`(XML, root, *the other element names sorted)` of an XML body, those that hold
    elements (and the root) marked with `INNER`; None without an element."""
    tags = [m for m in _XML_TAG.finditer(text) if not _is_placeholder(text, m.group(1))]
    if not tags:
        return None
    inner = {tags[0].group(1)}
    for m, nxt in zip(tags, tags[1:], strict=False):
        if not m.group(3) and not text[m.end() : nxt.start()].strip():
            inner.add(m.group(1))  # another element follows at once: a child
    names = {m.group(1) + INNER if m.group(1) in inner else m.group(1) for m in tags}
    root = tags[0].group(1) + INNER
    return (XML, root, *sorted(names - {root}))


def _rivals(held: Fields | None, kind: Fields) -> bool:
    """Whether a cluster of kind `held` must not take a body of another kind `kind`: two
    named JSON kinds, or two XML skeletons of one root (two operations in one envelope)."""
    if held is None or held == kind or held[0] != kind[0]:
        return False
    return kind[0] == KIND or (kind[0] == XML and held[1] == kind[1])


def _is_placeholder(text: str, name: str) -> bool:
    """Whether `<name>` in `text` is only ever a masked value (`<NUM>`), not a tag."""
    return bool(_PLACEHOLDER_NAME.fullmatch(name)) and f"</{name}>" not in text


@dataclass
class BodyPlan:
    """How a batch's structured bodies are placed (`FormIndex.plan`); rows are indexes
    into the caller's output."""

    known: list[tuple[int, int]] = field(default_factory=list)  # (row, its cluster id)
    later: list[tuple[int, int]] = field(default_factory=list)  # (row, row placed for it)
    left: list[int] = field(default_factory=list)  # rows placed by their embeddings
    # Of `left`: bodies of a kind (XML skeleton, named JSON kind) -> their fields: each
    # opens a cluster unless its nearest cluster is of its kind or of none known.
    apart: dict[int, Fields] = field(default_factory=dict)
    first: dict[Fields, int] = field(default_factory=dict)  # fields -> row placed for them


class FormIndex:
    """Fields of the bodies placed so far -> their cluster, bounded (`capacity`: a cache,
    cleared when full; bodies are then placed by their embeddings again, and an XML
    body's cluster is found by its fields again through `restore`)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[Fields, int] = {}
        self._of: dict[int, Fields] = {}  # cluster -> the first fields placed in it
        self._roots: dict[str, dict[Fields, int]] = {}  # XML fields by their root

    def find(self, fields: Fields) -> int | None:
        """The cluster of a body with these fields (see `near`; XML among the bodies of
        its root element only, so a stream of many roots costs no scan of them all)."""
        if fields[0] == XML:
            return near(fields, self._roots.get(fields[1], {}))
        return near(fields, self._ids)

    def add(self, placed: dict[Fields, int]) -> None:
        """Records the cluster each set of fields was placed in."""
        if len(self._ids) + len(placed) > self.capacity:
            self._ids.clear()
            self._of.clear()
            self._roots.clear()
        for fields, cid in placed.items():
            self._ids.setdefault(fields, cid)
            self._of.setdefault(cid, fields)
            if fields[0] == XML:
                self._roots.setdefault(fields[1], {}).setdefault(fields, cid)

    def joinable(self, cids: np.ndarray, within: np.ndarray, kinds: list[Fields]) -> np.ndarray:
        """Which bodies of `kinds` may join their nearest cluster (`cids`, `within` the
        threshold) rather than open their own: one of the same kind or of no rival kind
        (another named JSON kind, another XML skeleton of the same root), such as a
        cluster of no kind known (a fleet catalog's, one placed before the index knew
        kinds) or of another root, and no rival of it joining in the same batch."""
        out = np.zeros(len(cids), bool)
        joined: dict[int, list[Fields]] = {}  # kinds that join each cluster in this batch
        rows = zip(cids.tolist(), within.tolist(), kinds, strict=True)
        for i, (cid, near, kind) in enumerate(rows):
            others = [self._of.get(cid), *joined.get(cid, [])]
            if near and not any(_rivals(other, kind) for other in others):
                out[i] = True
                joined.setdefault(cid, []).append(kind)
        return out

    def plan(self, texts: list[str], rows: list[int]) -> BodyPlan:
        """Sorts the bodies `texts` (at `rows`): those whose fields have a cluster
        (`known`; never by a named kind alone), those whose fields an earlier body of the
        batch brings (`later`), and the rest (`left`, one body per set of fields), placed
        by their embeddings; of those, bodies of a kind (`apart`) join their nearest
        cluster only where `joinable`, else each opens its own."""
        out = BodyPlan()
        for text, j in zip(texts, rows, strict=True):
            keys = form_keys(text)
            known = None if keys is None or keys[0] == KIND else self.find(keys)
            if known is not None:
                out.known.append((j, known))
            elif keys is not None and (lead := near(keys, out.first)) is not None:
                out.later.append((j, lead))
            else:
                out.left.append(j)
                if keys is not None:
                    out.first[keys] = j
                    if keys[0] != FORM:
                        out.apart[j] = keys
        return out

    def restore(self, stats: Iterable[ClusterStats]) -> set[int]:
        """Records the kinds (XML skeletons, named JSON kinds) of clusters restored from a
        state, read from a kept member of each; returns the ids of those clusters."""
        found: dict[Fields, int] = {}
        for st in stats:
            keys = form_keys(st.members[0]) if st.members else None
            if keys is not None and keys[0] != FORM:
                found.setdefault(keys, st.cluster_id)
        self.add(found)
        return set(found.values())


def near(keys: Fields, forms: dict[Fields, int]) -> int | None:
    """The value of `keys` in `forms`, else of a body of the same kind: for a form, one
    with one field more or less (an optional field; both with at least two fields); for
    XML, one whose elements hold all of these or whose elements these hold all of (those
    that differ at most half of the larger), the fewest differences first."""
    found = forms.get(keys)
    if found is not None:
        return found
    if keys[0] == XML:
        return _near_xml(keys, forms)
    if keys[0] == KIND or len(keys) < 3:  # a named kind is that name only
        return None
    mine = set(keys[1:])
    for other, value in forms.items():
        if abs(len(other) - len(keys)) == 1 and min(len(other), len(keys)) >= 3:
            if len(mine.symmetric_difference(other[1:])) == 1:
                return value
    return None


def _near_xml(keys: Fields, forms: dict[Fields, int]) -> int | None:
    """The cluster of an XML body of the same kind as one with fields `keys`: the same
    root, and its elements that hold elements (`INNER`) are those of the other or hold
    all of them or are all held by them, differing in at most half; leaf elements may
    differ (optional fields). The fewest differences first."""
    mine = set(keys[1:])
    skeleton = {n for n in mine if n.endswith(INNER)}
    best: tuple[int, int, int] | None = None
    for other, value in forms.items():
        if other[0] != XML or other[1] != keys[1]:
            continue
        theirs = {n for n in other[1:] if n.endswith(INNER)}
        if skeleton <= theirs or theirs <= skeleton:
            apart = len(skeleton ^ theirs)
            if 2 * apart <= max(len(skeleton), len(theirs)):
                rank = (apart, len(mine.symmetric_difference(other[1:])), value)
                best = rank if best is None or rank[:2] < best[:2] else best
    return None if best is None else best[2]
