"""Groups: the meaning level above clusters (`group_id` beside `cluster_id`).

A cluster is a template (exact, right for logs); a group gathers the clusters that mean
the same thing. Groups are found online, like clusters, by distance between meanings:

- **Space.** The semantic channel of the embedding (`embedding[semantic_from:]`, unit
  length; the decoder's part says a line's form, not its meaning). Prose adds its
  content words (`logclust.text.prose.lexical_vector`), so wordings that share them
  meet even where the channel is weak.
- **Kinds never mix.** A cluster joins only a group of its own kind: log lines with log
  lines, prose with prose, and a structured body only with bodies of the same
  vocabulary (field names and literal words): two GraphQL operations that share their
  keys, or two SOAP operations that share an envelope, differ in their words and stay
  apart.
- **Placement.** A new cluster joins the nearest group of its kind whose centroid (the
  running mean of its clusters' points) lies within `threshold`, else opens a group whose
  id is its own cluster id. A cluster's group never changes afterwards, so ids are
  stable; a cluster with no group recorded (split off by a consolidation, or kept by a
  state written before groups) is its own group.
- **Prose** is placed at this level directly, by topic (`logclust.cluster.prose_topics`):
  its point is the bundle's prose vector of its words (`prose_embed`; without one, the
  channel and its content words), it takes the id of the nearest topic as its cluster id
  (prose clusters are groups), so a stream of messages on a few topics gives a few
  clusters, not one per sentence.

The index is saved with the source's state (`to_doc` / `from_doc`): ids survive restarts.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from logclust.cluster.prose_topics import ProseTopics
from logclust.cluster.templates import is_structured
from logclust.text.prose import LEXICAL_DIM, is_prose, lexical_vector

PROSE = "prose"
LINE = "line"
# Share of the prose point given to its content words (the rest: the semantic channel).
LEXICAL_WEIGHT = 0.5


def body_kind(masked: str) -> str:
    """The kind of a structured body: its vocabulary (letter words: field names,
    element names, literal values), hashed. Two bodies share a kind only when they use
    the same words."""
    words = sorted({w for w in _words(masked)})
    return f"body:{zlib.crc32(' '.join(words).encode()):08x}"


def _words(text: str) -> list[str]:
    out, cur = [], []
    for c in text:
        if c.isalpha():
            cur.append(c)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


@dataclass
class _Group:
    kind: str
    width: int  # of its points
    row: int  # its row in the `_Table` of its kind and width
    clusters: int = 1


class _Table:
    """The groups of one kind: `(m, width)` sums of their points (unit each; a group's
    centroid is its sum's direction), grown by doubling, so that the nearest group is
    one matrix product away."""

    def __init__(self, width: int) -> None:
        self.ids: list[int] = []
        self.totals = np.zeros((8, width), np.float32)

    def add(self, gid: int, x: np.ndarray) -> int:
        row = len(self.ids)
        if row == len(self.totals):
            self.totals = np.concatenate([self.totals, np.zeros_like(self.totals)])
        self.totals[row] = x
        self.ids.append(gid)
        return row

    def nearest(self, x: np.ndarray) -> tuple[int, float]:
        """`(group id, distance)` of the nearest centroid (the table is not empty)."""
        t = self.totals[: len(self.ids)]
        norms = np.maximum(np.linalg.norm(t, axis=1), 1e-12)
        # |x - c|^2 = 2 - 2 x.c for unit x and c; x of norm 0 (no words) gives 1 from all
        d2 = np.maximum(float(x @ x) + 1.0 - 2.0 * (t @ x) / norms, 0.0)
        i = int(np.argmin(d2))
        return self.ids[i], float(np.sqrt(d2[i]))


@dataclass
class GroupIndex:
    """The groups of one source (see the module docstring). Not thread-safe.

    Args:
        threshold: Euclidean distance between unit points within which a cluster joins
            a group.
        semantic_from: where the semantic channel starts in an embedding (0: the whole
            embedding is used).
    """

    threshold: float
    semantic_from: int = 0
    of: dict[int, int] = field(default_factory=dict)  # cluster id -> group id
    groups: dict[int, _Group] = field(default_factory=dict)
    # Texts -> (n, dim) unit prose points (zeros: no known word); None: `point`'s channel
    # and words.
    prose_embed: Callable[[list[str]], np.ndarray] | None = None
    prose: ProseTopics = field(default_factory=ProseTopics)
    _tables: dict[tuple[str, int], _Table] = field(default_factory=dict, repr=False)
    _lookup: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def point(self, embedding: np.ndarray, text: str, kind: str) -> np.ndarray:
        """The unit point of a cluster's first text in the groups' space."""
        sem = np.asarray(embedding[self.semantic_from :], np.float32)
        sem = sem / max(float(np.linalg.norm(sem)), 1e-12)
        if kind != PROSE:
            return sem
        lex = lexical_vector(text)
        if not lex.any():  # no content word (one repeated stop word, emoji only)
            return np.concatenate([sem, np.zeros(LEXICAL_DIM, np.float32)])
        a = np.sqrt(1.0 - LEXICAL_WEIGHT**2)
        return np.concatenate([a * sem, LEXICAL_WEIGHT * lex]).astype(np.float32)

    def nearest(self, x: np.ndarray, kind: str, within: bool = True) -> tuple[int | None, float]:
        """`(group id, distance)` of the nearest group of `kind` (within the threshold
        unless not `within`); `(None, distance)` when none is near enough."""
        table = self._tables.get((kind, x.size))
        if table is None:
            return None, float("inf")
        best, d = table.nearest(x)
        return (best, d) if d <= self.threshold or not within else (None, d)

    def _open(self, gid: int, x: np.ndarray, kind: str, clusters: int = 1) -> None:
        """A new group `gid` of `kind` whose points sum to `x`."""
        table = self._tables.setdefault((kind, x.size), _Table(x.size))
        self.groups[gid] = _Group(kind, x.size, table.add(gid, x), clusters)

    def total(self, gid: int) -> np.ndarray:
        """The sum of group `gid`'s points (a view)."""
        g = self.groups[gid]
        return self._tables[(g.kind, g.width)].totals[g.row]

    def add(self, cid: int, x: np.ndarray, kind: str) -> int:
        """Places new cluster `cid` (point `x`, of `kind`): joins the nearest group of its
        kind within the threshold, else opens group `cid`. Returns the group id."""
        gid, _ = self.nearest(x, kind)
        if gid is None:
            self._open(cid, x, kind)
            gid = cid
        else:
            self.join(gid, x)
            self.groups[gid].clusters += 1
        self.of[cid] = gid
        return gid

    def join(self, gid: int, x: np.ndarray) -> None:
        """Moves group `gid`'s centroid toward a new member's point `x`."""
        self.total(gid)[:] += x

    def add_cluster(self, cid: int, embedding: np.ndarray, text: str) -> int:
        """Places the new cluster `cid` of a log line or a structured body by its first
        text and that text's embedding; returns its group id."""
        if is_structured(text):
            kind = body_kind(text)
        else:  # a line with no word at all (empty, numbers only) means nothing to group by
            kind = LINE if any(c.isalpha() for c in text) else "no words"
        return self.add(cid, self.point(embedding, text, kind), kind)

    def add_clusters(self, ids: np.ndarray, emb: np.ndarray, texts: list[str]) -> None:
        """Gives each cluster opened for `texts` (embeddings `emb`) that has no group yet
        its group."""
        for cid, e, text in zip(ids.tolist(), emb, texts, strict=True):
            if cid not in self.of:
                self.add_cluster(cid, e, text)

    def prose_points(self, texts: list[str], on: bool = True) -> dict[int, np.ndarray | None]:
        """Index -> point of each prose text of `texts` (`is_prose`; none unless `on`):
        the bundle's word vectors (`prose_embed`) of all of them in one batch, or None
        without a word table (`place_prose` then asks for the text's embedding)."""
        at = [j for j, t in enumerate(texts) if is_prose(t)] if on else []
        if not at or self.prose_embed is None:
            return dict.fromkeys(at)
        return dict(zip(at, self.prose_embed([texts[j] for j in at]), strict=True))

    def place_prose(
        self,
        texts: list[str],
        points: dict[int, np.ndarray | None],
        out: tuple[np.ndarray, np.ndarray],
        embed: Callable[[np.ndarray], np.ndarray],
        rows: np.ndarray,
        open_cluster: Callable[[], int],
        at_cap: bool,
    ) -> None:
        """Places a batch's prose texts together by topic (`ProseTopics.place_many`):
        `points` maps the index of each into `texts` to its point (`prose_points`), and
        each text's cluster id and distance go to that index of `out`, `(ids,
        distances)`. Topics opened on the way get clusters from `open_cluster()`, each its
        own group. Without a word table the points are made from the texts' embeddings
        (`embed(rows[indexes])`)."""
        at = np.fromiter(points, np.intp, len(points))
        xs = [x for x in points.values() if x is not None]
        if len(xs) < len(at):  # no word table (`prose_points`): points of the embeddings
            emb = embed(rows[at])
            xs = [self.point(e, texts[j], PROSE) for e, j in zip(emb, at.tolist(), strict=True)]
        cids, dist, opened = self.prose.place_many(xs, open_cluster, at_cap)
        out[0][at], out[1][at] = cids, dist
        for new in opened:
            self._open(new, self.prose.centres[self.prose.ids.index(new)], PROSE)  # type: ignore[index]
            self.of[new] = new
        if opened:
            self.changed()

    def prose_clusters(self) -> set[int]:
        """Clusters of prose (the clusterer never merges nor splits them)."""
        return {c for c, g in self.of.items() if self.groups[g].kind == PROSE}

    def group_ids(self, ids: np.ndarray, aliases: dict[int, int]) -> np.ndarray:
        """`(n,)` int64 group id of each cluster id in `ids` (a merged id's group is its
        survivor's; a cluster with no group is its own)."""
        top = int(ids.max()) + 1 if ids.size else 0
        if self._lookup.size < top or self._lookup.size < len(self.of):
            self._rebuild(max(top, max(self.of, default=-1) + 1), aliases)
        return self._lookup[ids]

    def changed(self) -> None:
        """Drops the lookup table (call after any change of ids or aliases)."""
        self._lookup = np.zeros(0, np.int64)

    def _rebuild(self, n: int, aliases: dict[int, int]) -> None:
        look = np.arange(n, dtype=np.int64)
        for c, g in self.of.items():
            if c < n:
                look[c] = g
        for gone, into in aliases.items():
            if gone < n:
                look[gone] = self.of.get(into, into)
        self._lookup = look

    def members(self) -> dict[int, list[int]]:
        """Group id -> its cluster ids."""
        out: dict[int, list[int]] = {}
        for c, g in sorted(self.of.items()):
            out.setdefault(g, []).append(c)
        return out

    # -- state ---------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """The index as a JSON document plus one array: `totals`, the groups' centroid
        sums one after another (float32; each group's width in `groups`). The state
        codec stores `totals` among its binary arrays, not as JSON text."""
        ordered = sorted(self.groups.items())
        totals = [self.total(gid) for gid, _ in ordered]
        return {
            "threshold": self.threshold,
            "of": [[c, g] for c, g in sorted(self.of.items())],
            "groups": [[gid, g.kind, g.clusters, g.width] for gid, g in ordered],
            "totals": np.concatenate(totals) if totals else np.zeros(0, np.float32),
            "prose": self.prose.to_doc(),
        }

    @classmethod
    def from_doc(
        cls, doc: dict[str, Any] | None, threshold: float, semantic_from: int
    ) -> GroupIndex:
        """The index `to_doc` wrote (empty for None: a state saved before groups). The
        threshold given wins over the stored one, so a changed setting applies.

        Raises:
            ValueError, KeyError, TypeError: a malformed document.
        """
        out = cls(threshold, semantic_from)
        if not doc:
            return out
        totals = np.asarray(doc["totals"], np.float32)
        start = 0
        for gid, kind, n, width in doc["groups"]:
            if width < 1 or start + width > totals.size:
                raise ValueError(
                    f"Group state's sums are too short. Received: {totals.size} values"
                )
            out._open(int(gid), totals[start : start + width].copy(), str(kind), int(n))
            start += width
        for c, g in doc["of"]:
            if int(g) not in out.groups:
                raise ValueError(f"Group state names an unknown group. Received: {g}")
            out.of[int(c)] = int(g)
        out.prose = ProseTopics.from_doc(doc.get("prose"))
        return out
