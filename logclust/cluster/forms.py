"""Form bodies (`k=v&k=v`) by their fields: one kind whatever the fields' order, the
path before them, or one optional field more or less.

The stream clusterer places a structured body by its embedding; a form with the fields
of one already placed takes that one's cluster instead (`FormIndex`). Pure data
structure: no I/O, no threads.
"""

from __future__ import annotations

Fields = tuple[str, ...]


def form_keys(masked: str) -> Fields | None:
    """The field names of a form body (`[path?]k=v&k=v...`), sorted; None for other
    texts. Bodies with the same fields are one kind whatever their order or path."""
    s = masked.strip()
    if " " in s or "=" not in s:
        return None
    query = s.split("?", 1)[1] if "?" in s else s
    keys = [part.split("=", 1)[0] for part in query.split("&") if part]
    if not keys or any("=" not in part for part in query.split("&") if part):
        return None
    return ("<form>", *sorted(keys))


class FormIndex:
    """Fields of the forms placed so far -> their cluster, bounded (`capacity`: a cache,
    cleared when full; forms are then placed by their embeddings again)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[Fields, int] = {}

    def find(self, fields: Fields) -> int | None:
        """The cluster of a form with these fields (see `near`)."""
        return near(fields, self._ids)

    def add(self, placed: dict[Fields, int]) -> None:
        """Records the cluster each set of fields was placed in."""
        if len(self._ids) + len(placed) > self.capacity:
            self._ids.clear()
        for fields, cid in placed.items():
            self._ids.setdefault(fields, cid)


def near(keys: Fields, forms: dict[Fields, int]) -> int | None:
    """The value of `keys` in `forms`, or of a form with one field more or less (an
    optional field; both forms with at least two fields)."""
    found = forms.get(keys)
    if found is not None or len(keys) < 3:
        return found
    mine = set(keys[1:])
    for other, value in forms.items():
        if abs(len(other) - len(keys)) == 1 and min(len(other), len(keys)) >= 3:
            if len(mine.symmetric_difference(other[1:])) == 1:
                return value
    return None
