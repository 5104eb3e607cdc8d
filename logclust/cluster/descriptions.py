"""How a cluster is described: a template over its masked members, exemplars, counters.

Only masked text is kept, never raw bodies, so e-mail addresses or card numbers in bodies
are not stored.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from logclust.text.privacy import scrub

_TOKEN_SPLIT = re.compile(r"([\s&=,;:?/|()\[\]{}\"']+)")


def template_of(members: list[str]) -> str:
    """Token-wise template: words equal in every member stay, the others become `<*>`.

    Members are split into words and separators; only members with the most common token
    count are aligned (a different count means a different shape). A separator that
    differs between members is written as its most common form (a variable never
    swallows the `=` of `key=`), so constant words and their separators stay readable.
    """
    if not members:
        return ""
    split = [_TOKEN_SPLIT.split(m) for m in members]
    length = Counter(len(t) for t in split).most_common(1)[0][0]
    rows = [t for t in split if len(t) == length]
    # Members whose keys (a word before `=`) come in another order are another layout
    # of the same fields: the most common layout is described, so that no key is lost.
    layout = Counter(_keys(r) for r in rows).most_common(1)[0][0]
    rows = [r for r in rows if _keys(r) == layout]
    out = []
    for i, col in enumerate(zip(*rows, strict=True)):
        if len(set(col)) == 1:
            out.append(col[0])
        elif i % 2:  # a separator (odd places of a split with a captured separator)
            out.append(Counter(col).most_common(1)[0][0])
        else:
            out.append("<*>")
    return "".join(out)


def _keys(tokens: list[str]) -> tuple[str, ...]:
    """The words followed by a separator starting with `=` (field names), in order."""
    return tuple(
        tokens[i] for i in range(0, len(tokens) - 1, 2) if tokens[i + 1].lstrip().startswith("=")
    )


@dataclass(slots=True)
class ClusterStats:
    """What is known about one cluster id of one source."""

    cluster_id: int
    size: int = 0
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    members: list[str] = field(default_factory=list)
    template: str = ""
    active: bool = True
    # Set when a consolidation merged this cluster into another: the id that now stands
    # for its rows (its latency is reported under that id).
    merged_into: int | None = None
    # The cluster's group (`logclust.cluster.groups`), set on the copies `describe` gives;
    # not saved with the stats (the groups' own state holds it).
    group_id: int | None = field(default=None, compare=False)
    # Raw texts already offered (not saved; bounds the scrubbing work). None until the
    # cluster is first offered members: a catalog's thousands of clusters hold no set.
    _seen: set[str] | None = field(default=None, repr=False, compare=False)

    def add_members(self, texts: list[str], cap: int) -> None:
        """Keeps up to `cap` distinct members, scrubbed (`logclust.text.privacy`)."""
        if len(self.members) >= cap:
            return
        # Texts scrubbed before are not scrubbed again (a cluster looks for members as it
        # grows, mostly finding the ones it has).
        seen = self._seen if self._seen is not None else set()
        fresh = [t for t in dict.fromkeys(texts) if t not in seen]
        if len(seen) > 16 * cap:
            seen.clear()
        seen.update(fresh)
        self._seen = seen
        new = [t for t in dict.fromkeys(map(scrub, fresh)) if t not in self.members]
        if new and len(self.members) < cap:
            self.members.extend(new[: cap - len(self.members)])
            self.template = template_of(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "size": self.size,
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "members": self.members,
            "template": self.template,
            "active": self.active,
            "merged_into": self.merged_into,
        }
