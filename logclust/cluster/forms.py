"""Structured bodies by their fields: a form (`k=v&k=v`) by its field names, an XML body
by its element names.

The stream clusterer places a structured body by its embedding; a body with the fields of
one already placed takes that one's cluster instead (`FormIndex`): one kind whatever the
fields' order, a form's path, or an optional field more or less (for XML, any elements
more or less while one body's elements hold all of the other's). Two XML bodies of one
envelope whose elements differ both ways (`<GetBalance>` and `<TransferFunds>` in one
SOAP envelope) are two kinds, however close their embeddings: an XML body whose element
names no cluster holds opens its own cluster (`FormIndex.plan`), and the clusterer
never merges it. Pure data structure: no I/O, no threads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

Fields = tuple[str, ...]

FORM = "<form>"
XML = "<xml>"
# A start tag's name (not `</`, `<?`, `<!`); a masked value (`<NUM>`, `<ID>`) is none.
_XML_NAME = re.compile(r"<([A-Za-z_][\w.:-]*)")
_PLACEHOLDER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def form_keys(masked: str) -> Fields | None:
    """The fields of a structured body, sorted, behind a tag: a form's field names
    (`[path?]k=v&k=v...`), an XML body's element names; None for other texts. Bodies
    with the same fields are one kind whatever their order or path."""
    s = masked.strip()
    if s.startswith("<") and s.endswith(">") and ("</" in s or "/>" in s):
        names = {n for n in _XML_NAME.findall(s) if not _is_placeholder(s, n)}
        return (XML, *sorted(names)) if names else None
    if " " in s or "=" not in s:
        return None
    query = s.split("?", 1)[1] if "?" in s else s
    keys = [part.split("=", 1)[0] for part in query.split("&") if part]
    if not keys or any("=" not in part for part in query.split("&") if part):
        return None
    return (FORM, *sorted(keys))


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
    apart: list[int] = field(default_factory=list)  # of `left`: XML that opens its own
    first: dict[Fields, int] = field(default_factory=dict)  # fields -> row placed for them


class FormIndex:
    """Fields of the bodies placed so far -> their cluster, bounded (`capacity`: a cache,
    cleared when full; bodies are then placed by their embeddings again, and an XML
    body's cluster is found by its fields again through `restore`)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[Fields, int] = {}

    def find(self, fields: Fields) -> int | None:
        """The cluster of a body with these fields (see `near`)."""
        return near(fields, self._ids)

    def add(self, placed: dict[Fields, int]) -> None:
        """Records the cluster each set of fields was placed in."""
        if len(self._ids) + len(placed) > self.capacity:
            self._ids.clear()
        for fields, cid in placed.items():
            self._ids.setdefault(fields, cid)

    def plan(self, texts: list[str], rows: list[int]) -> BodyPlan:
        """Sorts the bodies `texts` (at `rows`): those whose fields have a cluster
        (`known`), those whose fields an earlier body of the batch brings (`later`), and
        the rest (`left`, one body per set of fields), placed by their embeddings; of
        those, XML bodies (`apart`) each open a cluster of their own."""
        out = BodyPlan()
        for text, j in zip(texts, rows, strict=True):
            keys = form_keys(text)
            known = None if keys is None else self.find(keys)
            if known is not None:
                out.known.append((j, known))
            elif keys is not None and (lead := near(keys, out.first)) is not None:
                out.later.append((j, lead))
            else:
                out.left.append(j)
                if keys is not None:
                    out.first[keys] = j
                    if keys[0] == XML:
                        out.apart.append(j)
        return out

    def restore(self, members: Iterable[tuple[int, str]]) -> set[int]:
        """Records the XML fields of clusters restored from a state, by a member of each
        (`(cluster id, masked text)`); returns the ids of those clusters."""
        found: dict[Fields, int] = {}
        for cid, text in members:
            keys = form_keys(text)
            if keys is not None and keys[0] == XML:
                found.setdefault(keys, cid)
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
    mine = set(keys[1:])
    if keys[0] == XML:
        best: tuple[int, int] | None = None
        for other, value in forms.items():
            theirs = set(other[1:])
            if other[0] == XML and (mine <= theirs or theirs <= mine):
                apart = len(mine ^ theirs)
                if 2 * apart <= max(len(mine), len(theirs)) and (best is None or apart < best[0]):
                    best = (apart, value)
        return None if best is None else best[1]
    if len(keys) < 3:
        return None
    for other, value in forms.items():
        if abs(len(other) - len(keys)) == 1 and min(len(other), len(keys)) >= 3:
            if len(mine.symmetric_difference(other[1:])) == 1:
                return value
    return None
