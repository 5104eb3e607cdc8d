"""Topics of free text: prose grouped by what it says, k never given.

A threshold on the distance to the nearest group cannot find the topics of free text:
a message lies about as far from its own topic's centre as the centres of two topics lie
from each other (wordings differ more than topics do). Nearest centre is still right
for almost every message once the centres are known. So the centres are found the way
clustering finds them offline, on a sample, and the stream is placed by nearest centre:

- **Sample.** A reservoir of the prose points placed (uniform over them, slots chosen
  by a hash of the point's number, so a replay gives the same sample). In the sidecar a
  text is placed once and its repeats take its id from the placement memo until the
  next refit, so the sample is one of distinct texts rather than of rows (offering the
  repeats too was measured and moved nothing beyond the seeds' spread: BENCHMARKS.md).
- **Refit.** At 64, 128, 192, 256, 384 and 512 prose rows, then each time the rows seen
  have grown by a quarter (by a half while the last refit of a full sample changed no
  id; at least 512 rows apart, at most 32,768), the sample's centres are fitted again,
  k = 1..`max_topics` never given (`logclust.cluster.topic_fit`: the largest k whose
  clusters are found again in both halves of the sample, the k in use kept a little
  below that bar; else the fewest topics of about the best silhouette; else one topic,
  for one kind of text however worded). Each new centre
  keeps the id of the old topic that gave it most of its sampled rows (each old id
  once), else takes a new cluster id: a topic keeps its id from refit to refit, and rows
  already labelled keep theirs.
- **Place.** A prose text takes the id of the nearest centre. A text with no known word
  (emoji only, an unknown script) is placed but not sampled. A batch's texts are placed
  together (`place_many`): all enter the sample, a refit due within the batch runs after
  its last text, then each takes its nearest centre.

Not thread-safe (the source clusterer's lock covers it). The sample is one int8 matrix,
allocated at a source's first prose text (192 KiB at the shipped table's 192 dimensions;
`logclust.server.memory` budgets 256 KiB a source). The centres and ids are saved with
the source's state; the sample is not (it refills after a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from logclust.cluster.topic_fit import fit_centres, unit_rows

# Prose rows at which the first refits run (every row placed before the first refit
# shares one id, so they come early; a refit of a small sample is cheap); then every
# quarter of the rows seen, or every half while refits change nothing, within these
# bounds (a refit of the full sample takes 0.1-0.6 s of CPU: at most one per 512 rows).
_FIRST_REFITS = (64, 128, 192, 256, 384)
_PERIOD = (512, 32768)
# The least chance of a row to enter the sample (see `ProseTopics._keep`).
_RECENT = 1 / 8
# Rows of a source's sample of prose points (`ProseTopics.sample_size`).
SAMPLE_ROWS = 1024
# Dropped topics remembered, so that a topic found again keeps its id.
_RETIRED = 32


def _mix(n: int) -> int:
    """splitmix64 of `n`: a well-spread 64-bit hash."""
    z = (n + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def _match(before: np.ndarray, after: np.ndarray, old_ids: list[int]) -> list[int | None]:
    """The id each new centre keeps: by the sample's rows (`before`: their old topic,
    `after`: their new one), the old topic that gave it the most of its rows (most
    shared rows first, each old id once, at least a third of the new topic's rows),
    else None (a new topic)."""
    k_old, k_new = len(old_ids), int(after.max()) + 1
    shared = np.zeros((k_new, k_old), np.int64)
    np.add.at(shared, (after, before), 1)
    size = np.bincount(after, minlength=k_new)
    ids: list[int | None] = [None] * k_new
    taken: set[int] = set()
    for flat in np.argsort(-shared, axis=None, kind="stable").tolist():
        i, j = divmod(flat, k_old)
        if shared[i, j] * 3 < size[i] or shared[i, j] == 0:
            continue
        if ids[i] is None and j not in taken:
            ids[i] = old_ids[j]
            taken.add(j)
    return ids


@dataclass
class ProseTopics:
    """The topics of one source's prose (see the module docstring).

    Args:
        min_silhouette: mean silhouette below which the sample is one topic.
        max_topics: the largest k a refit tries.
        sample_size: rows in the reservoir.
    """

    min_silhouette: float = 0.08
    max_topics: int = 8
    sample_size: int = SAMPLE_ROWS
    centres: np.ndarray | None = None  # (k, dim) unit rows
    ids: list[int] = field(default_factory=list)
    seen: int = 0  # prose rows placed
    refits: int = 0  # refits run (a placement memo drops its prose texts after one)
    # Topics a refit dropped (most recent first, at most `_RETIRED`): a later refit that
    # finds one again gives it back its id.
    retired_ids: list[int] = field(default_factory=list)
    retired: np.ndarray | None = None  # (len(retired_ids), dim) unit rows
    _sample: np.ndarray | None = field(default=None, repr=False)  # (sample_size, dim) int8
    _filled: int = field(default=0, repr=False)  # rows of `_sample` in use
    _last_refit: int = field(default=0, repr=False)
    # The last refit, on a full sample, kept every topic and its id: refits slow down.
    _calm: bool = field(default=False, repr=False)

    def place(
        self, x: np.ndarray, open_cluster: Callable[[], int], at_cap: bool = False
    ) -> tuple[int, float, list[int]]:
        """`(cluster id, distance, ids opened)` of a prose point `x` (unit, or zero for
        a text with no known word). `open_cluster()` gives a new cluster id; at the
        cap no refit runs (a refit may open clusters)."""
        ids, dist, opened = self.place_many([x], open_cluster, at_cap)
        return ids[0], dist[0], opened

    def place_many(
        self, points: list[np.ndarray], open_cluster: Callable[[], int], at_cap: bool = False
    ) -> tuple[list[int], list[float], list[int]]:
        """`(cluster ids, distances, ids opened)` of a batch's prose points, placed
        together: every point is counted and sampled first, a refit due anywhere in the
        batch runs once after its last point, and then each point takes its nearest
        centre. A batch is thus placed by topics fitted on its own rows too: the first
        batch of a source with a few dozen prose rows is split by topic at once, where
        placing row by row gives every row before the first refit one id. Ids that rows
        already hold never change; `place` is this with a batch of one."""
        if not points:
            return [], [], []
        if self.centres is not None and self.centres.shape[1] != points[0].size:
            self.centres, self.ids, self._sample = None, [], None  # another prose space
            self.retired_ids, self.retired = [], None
        opened: list[int] = []
        due: list[tuple[int, int]] = []  # (rows sampled, rows seen) where a refit fell due
        for x in points:
            self.seen += 1
            if x.any():
                self._keep(x)
            if self.centres is None:
                opened.append(open_cluster())
                self.centres = (x if x.any() else np.full(x.size, x.size**-0.5))[None].copy()
                self.ids = [opened[-1]]
            elif not at_cap and self._due():
                due.append((self._filled, self.seen))
        if due:
            opened += self.refit(open_cluster, steps=due[:-1])
        assert self.centres is not None  # the first point set them
        sims = np.stack(points).astype(np.float32, copy=False) @ self.centres.T
        best = np.argmax(sims, axis=1)
        top = sims[np.arange(len(points)), best].astype(np.float64)
        dist = np.sqrt(np.maximum(2.0 - 2.0 * top, 0.0))
        return [self.ids[j] for j in best.tolist()], dist.tolist(), opened

    def _due(self) -> bool:
        """Whether a refit runs at this row (see `_FIRST_REFITS`, `_PERIOD`)."""
        if self.seen < _PERIOD[0]:
            return self.seen in _FIRST_REFITS
        share = 2 if self._calm else 4
        period = min(max(self.seen // share, _PERIOD[0]), _PERIOD[1])
        if self.seen - self._last_refit >= period:
            self._last_refit = self.seen
            return True
        return False

    def _keep(self, x: np.ndarray) -> None:
        """Reservoir sampling, drawn from a hash of the row's number: row n enters with
        probability max(sample_size / n, 1/8), so the sample is the stream's, with its
        last few thousand rows always in it (a new topic shows within them)."""
        if self._sample is None or self._sample.shape[1] != x.size:
            self._sample, self._filled = np.zeros((self.sample_size, x.size), np.int8), 0
        row = np.rint(x * (127.0 / float(np.abs(x).max())))  # its direction in 8 bits
        if self._filled < self.sample_size:
            self._sample[self._filled] = row
            self._filled += 1
            return
        h = _mix(self.seen)
        chance = max(self.sample_size / self.seen, _RECENT)
        if (h & 0xFFFFF) < chance * 0x100000:
            self._sample[(h >> 20) % self.sample_size] = row

    def refit(
        self, open_cluster: Callable[[], int], steps: Sequence[tuple[int, int]] = ()
    ) -> list[int]:
        """Refits the centres on the sample; returns the cluster ids it opened.
        `steps`: `(rows sampled, rows seen)` of refits that fell due earlier in a batch.
        Each fits the sample as it then was (its first rows), seeding the next with its
        centres, as placing row by row would have: the last fit then seeks k near them,
        and a batch that crosses several early refits costs their small samples, not a
        full search of k on a large one."""
        if self._sample is None or self._filled < _FIRST_REFITS[0] or self.centres is None:
            return []
        current = self.centres
        for filled, seen in steps:
            if filled >= _FIRST_REFITS[0]:
                early = unit_rows(self._sample[:filled].astype(np.float32))
                current = fit_centres(
                    early, self.max_topics, self.min_silhouette, current=current, seed=seen
                )
        x = unit_rows(self._sample[: self._filled].astype(np.float32))
        self.refits += 1
        new = fit_centres(x, self.max_topics, self.min_silhouette, current=current, seed=self.seen)
        old_ids = self.ids + self.retired_ids
        old = self.centres if self.retired is None else np.vstack([self.centres, self.retired])
        ids = _match(np.argmax(x @ old.T, axis=1), np.argmax(x @ new.T, axis=1), old_ids)
        opened: list[int] = []
        for i, cid in enumerate(ids):
            if cid is None:
                opened.append(open_cluster())
                ids[i] = opened[-1]
        dropped = [j for j, cid in enumerate(old_ids) if cid not in ids][:_RETIRED]
        self.retired_ids = [old_ids[j] for j in dropped]
        self.retired = old[dropped] if dropped else None
        self.centres = new.astype(np.float32)
        kept = [int(c) for c in ids if c is not None]
        self._calm = len(x) == self.sample_size and sorted(kept) == sorted(self.ids)
        self.ids = kept
        return opened

    # -- state ---------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """Centres, ids, the dropped topics and the row count as a JSON document (the
        sample is not kept)."""

        def rows(c: np.ndarray | None) -> list[list[float]]:
            return [] if c is None else np.round(c.astype(np.float64), 6).tolist()

        return {
            "seen": self.seen,
            "ids": list(self.ids),
            "centres": rows(self.centres),
            "retired_ids": list(self.retired_ids),
            "retired": rows(self.retired),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> ProseTopics:
        """The topics `to_doc` wrote (none for None).

        Raises:
            ValueError: centres and ids of different lengths, or ragged centres.
        """
        out = cls()
        if not doc:
            return out
        ids = [int(i) for i in doc["ids"]]
        centres = np.asarray(doc["centres"], np.float32)
        if ids and (centres.ndim != 2 or len(centres) != len(ids)):
            raise ValueError(
                f"Prose topics' centres and ids differ in number. Received: "
                f"{len(ids)} ids, centres of shape {centres.shape}"
            )
        out.seen = int(doc["seen"])
        if ids:
            out.centres, out.ids = unit_rows(centres), ids
        gone = [int(i) for i in doc.get("retired_ids", [])]
        if gone:
            retired = np.asarray(doc["retired"], np.float32)
            if retired.shape != (len(gone), centres.shape[-1]):
                raise ValueError(
                    f"Prose topics' dropped centres and ids differ. Received: {len(gone)} "
                    f"ids, centres of shape {retired.shape}"
                )
            out.retired_ids, out.retired = gone, unit_rows(retired)
        return out
