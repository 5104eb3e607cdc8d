"""Fleet-unique ids for the kinds a catalog lacks ("local" kinds).

Inside a sidecar every source numbers its clusters densely (per-id arrays need small
ids); under a fleet catalog the ids below the source's catalog `next_id` are the
catalog's, the rest the sidecar's own. Those are numbered in arrival order, so two pods'
local 12 are two kinds. Where ids leave the sidecar (the Label, Latency and Clusters
answers, OTLP attributes, metrics labels) a local id is given as its **external id**:

    external = LOCAL_BIT | (blake2b(source, masked text that opened the cluster) mod 2**62)

a non-negative int64 at or above `LOCAL_BIT` (2**62), so it never equals a catalog id
(those are below 2**31). It depends only on the source and the masked text that opened
the cluster, so two sidecars (or one sidecar after a restart or a catalog swap) that meet
a new kind through the same text give it the same id, and their rows merge in a fleet
query or a Prometheus sum. Two kinds opened by different texts collide with probability
2**-62 per pair: with N local kinds in one source over the whole fleet, about
N**2 / 2**63 (1e-9 at N = 100,000). Within one sidecar a collision cannot happen: an id
already given in the source makes the next one hash again with a counter.

A source started again from a catalog (a swap, a restart) drops its local clusters but
keeps their names (`carry`), so their latency history keeps its ids; when the same text
opens the kind again, the new cluster takes the old name and the old id becomes an alias
of it (`moved`), so the history and the new rows are one row of the answers.

A cluster no text was counted into yet (split off by a consolidation) is named when
first asked for: from its first member when it has one, else at random (2**-62 per pair
again). The map internal -> external is part of the source's saved state, so ids given
stay given across restarts.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

# External ids of local kinds have this bit set; catalog ids are far below it.
LOCAL_BIT = 1 << 62
_HASH_MASK = LOCAL_BIT - 1


def is_local_id(cluster_id: int) -> bool:
    """Whether an external id is a local kind's (not a catalog id)."""
    return cluster_id >= LOCAL_BIT


def local_id(source: str, text: str, salt: int = 0) -> int:
    """The external id of a local kind of `source` opened by masked `text` (`salt` > 0:
    the next try after a collision within the sidecar)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(source.encode())
    h.update(b"\0")
    h.update(text.encode())
    if salt:
        h.update(b"\0%d" % salt)
    return LOCAL_BIT | (int.from_bytes(h.digest(), "little") & _HASH_MASK)


class LocalIds:
    """The external ids of one source's local clusters (ids at or above `first`).

    Args:
        source: the source's name (part of every external id).
        first: the source's catalog `next_id`: ids below it are catalog ids, given as
            they are (0 for a source the catalog lacks).
    """

    def __init__(self, source: str, first: int) -> None:
        self.source = source
        self.first = first
        self.of: dict[int, int] = {}  # internal id -> external id
        self._taken: dict[int, int] = {}  # external id -> the internal id holding it
        self._carried: set[int] = set()  # ids named by a predecessor: no cluster here
        # Carried ids whose kind opened again here: old internal id -> new internal id.
        self.moved: dict[int, int] = {}
        self._table = np.zeros(0, np.int64)  # internal id - first -> external; 0: none yet

    def name(self, keys: list[str], uid: np.ndarray) -> bool:
        """Names the local clusters new in a counted batch after the first of its texts
        (`keys`, each text's cluster `uid`); returns whether any was new."""
        if not uid.size or int(uid.max()) < self.first:
            return False
        local = np.flatnonzero(uid >= self.first)
        named = self._lookup(uid[local] - self.first) != 0
        if named.all():  # the steady state: one gather, no Python loop
            return False
        ids, at = np.unique(uid[local[~named]], return_index=True)
        for cid, i in zip(ids.tolist(), local[~named][at].tolist(), strict=True):
            self._give(cid, keys[i])
        return True

    def _lookup(self, rows: np.ndarray) -> np.ndarray:
        """The table's entries at `rows` (ids minus `first`), grown to hold them."""
        top = int(rows.max()) + 1
        if self._table.size < top:
            self._rebuild(max(top, 2 * self._table.size))
        return self._table[rows]

    def _give(self, cid: int, text: str | None) -> None:
        salt, ext = 0, 0
        while ext == 0 or ext in self._taken:
            if text is None:
                ext = LOCAL_BIT | (secrets.randbits(62) & _HASH_MASK)
            else:
                ext, salt = local_id(self.source, text, salt), salt + 1
            holder = self._taken.get(ext)
            if holder in self._carried:  # the kind a predecessor named, opened again
                self._carried.discard(holder)
                self.moved = {g: cid if t == holder else t for g, t in self.moved.items()}
                self.moved[holder] = cid
                break
        self.of[cid] = ext
        self._taken[ext] = cid
        if 0 <= cid - self.first < self._table.size:
            self._table[cid - self.first] = ext

    def external(
        self, ids: np.ndarray, text_of: Callable[[int], str | None] | None = None
    ) -> np.ndarray:
        """`(n,)` int64 external id of each internal id (catalog ids as they are; -1 stays
        -1). A local id not named yet is named now (`text_of(cid)`: its first member, or
        None: at random)."""
        out = np.asarray(ids, np.int64).copy()
        local = out >= self.first
        if not local.any():
            return out
        rows = out[local] - self.first
        got = self._lookup(rows)
        if not got.all():  # unnamed ones
            for cid in np.unique(rows[got == 0] + self.first).tolist():
                self._give(cid, text_of(cid) if text_of is not None else None)
            got = self._table[rows]
        out[local] = got
        return out

    def _rebuild(self, top: int) -> None:
        n = max(top, max(self.of, default=self.first - 1) - self.first + 1)
        table = np.zeros(n, np.int64)
        for cid, ext in self.of.items():
            if cid >= self.first:
                table[cid - self.first] = ext
        self._table = table

    def carry(self, old: LocalIds) -> None:
        """Keeps the names `old` (the map of the clusterer this one replaces) gave to ids
        that are still local here: their rows' history keeps its ids."""
        for cid, ext in old.of.items():
            if cid >= self.first and cid not in self.of and ext not in self._taken:
                self.of[cid] = ext
                self._taken[ext] = cid
                self._carried.add(cid)
        self.moved.update({g: t for g, t in old.moved.items() if g >= self.first})
        self._table = np.zeros(0, np.int64)

    def to_doc(self) -> dict[str, Any]:
        """A JSON-able form (external ids as strings: JSON readers lose int64 precision)."""
        return {
            "first": self.first,
            "of": [[c, str(e)] for c, e in sorted(self.of.items())],
            "carried": sorted(self._carried),
            "moved": sorted(self.moved.items()),
        }

    @classmethod
    def from_doc(cls, source: str, doc: Mapping[str, Any]) -> LocalIds:
        """The map `to_doc` wrote.

        Raises:
            ValueError: a malformed document.
        """
        try:
            out = cls(source, int(doc["first"]))
            for cid, ext in doc["of"]:
                e = int(ext)
                if e < LOCAL_BIT or e >= 2 * LOCAL_BIT:
                    raise ValueError(f"external id {e} is not a local id")
                out.of[int(cid)] = e
                out._taken.setdefault(e, int(cid))
            out._carried = {int(c) for c in doc.get("carried", [])}
            out.moved = {int(g): int(t) for g, t in doc.get("moved", [])}
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Malformed local ids in the cluster state: {e}") from e
        return out
