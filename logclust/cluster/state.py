"""A source's cluster state as bytes, without pickle, and the formats it was saved in.

- Format 3 (written now, `pack_state`): `STATE_MAGIC`, the header's length (8 bytes,
  little-endian), a JSON header (the document and each array's dtype, shape and offset),
  then the arrays' bytes. The state holds the centroids' sums and counts, the stable ids,
  and a document (ids, aliases, descriptions, counters); the counters alone
  (`counters_bytes`) use the same container. Since groups, an optional `groups` key
  (`GroupIndex.to_doc`) and its `group_totals` array; a state without them loads with
  each cluster its own group.
- Format 2: the same document and the unit centroids in an `.npz`.
- Format 1: an `.npz` of the k-search clusterer; its retired clusters are dropped.

A state of format 1 or 2 loads as unsaved, so the next flush writes it in format 3.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import ClusterStats
from logclust.cluster.groups import GroupIndex
from logclust.cluster.local_ids import LocalIds
from logclust.cluster.source import SourceClusterer
from logclust.cluster.source_state import SourceCounters, SourceState
from logclust.cluster.threshold import Centroids

STATE_VERSION = 3
STATE_MAGIC = b"logclust-state\x00"
_STATE_DTYPES = frozenset({"<f4", "<i4", "<i8"})


def pack_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Format 3 of a source's state. The arrays are joined straight into the result: with
    thousands of clusters, `np.savez` (a zip in a growing buffer, then copied out) made
    the centroids' bytes three times over at every flush."""
    specs: list[list[Any]] = []
    parts: list[memoryview] = []
    offset = 0
    for name, a in arrays.items():
        flat = np.ascontiguousarray(a).reshape(-1)
        specs.append([name, flat.dtype.str, list(a.shape), offset])
        parts.append(flat.view(np.uint8).data)
        offset += flat.nbytes
    head = json.dumps({"meta": meta, "arrays": specs}).encode()
    return b"".join([STATE_MAGIC, len(head).to_bytes(8, "little"), head, *parts])


def unpack_state(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """`(meta, arrays)` of `pack_state` output.

    Raises:
        ValueError: a truncated or malformed state.
    """
    start = len(STATE_MAGIC) + 8
    n = int.from_bytes(data[len(STATE_MAGIC) : start], "little")
    if len(data) < start + n:
        raise ValueError(f"Cluster state is truncated. Received: {len(data)} bytes")
    head = json.loads(data[start : start + n])
    base, arrays = start + n, {}
    for name, dtype, shape, offset in head["arrays"]:
        if dtype not in _STATE_DTYPES:
            raise ValueError(f"Cluster state array {name!r} has dtype {dtype!r}")
        count = int(np.prod(shape))
        end = base + offset + count * np.dtype(dtype).itemsize
        if offset < 0 or end > len(data):
            raise ValueError(f"Cluster state array {name!r} lies outside the {len(data)} bytes")
        arrays[name] = np.frombuffer(data, dtype, count, base + offset).reshape(shape).copy()
    return head["meta"], arrays


def encode_state(state: SourceState) -> bytes:
    """Format 3 of `state`: a JSON document and the centroid arrays."""
    meta = {
        "version": STATE_VERSION,
        "source": state.source,
        "dim": state.dim,
        "threshold": state.threshold,
        "next_id": state.next_id,
        "rows_seen": state.rows_seen,
        "last_batch_ms": state.last_batch_ms,
        "cap_hits": state.cap_hits,
        "consolidations": state.consolidations,
        "aliases": [[g, t] for g, t in state.aliases.items()],
        "stats": [s.to_dict() for s in state.stats],
    }
    if state.templates and state.templates.get("templates"):
        meta["templates"] = state.templates  # absent: a state with no templates (older)
    if state.local_ids is not None:
        meta["local_ids"] = state.local_ids  # absent: no fleet catalog when saved
    groups = state.groups
    if groups and groups.get("of"):  # absent: a state saved before groups (older)
        meta["groups"] = {k: v for k, v in groups.items() if k != "totals"}
    table = state.table
    arrays = {  # the sums, not unit rows: no (k, dim) array made for a flush
        "sums": table.sums[: table.k],
        "counts": table.counts[: table.k],
        "ids": state.ids,
    }
    if "groups" in meta:
        arrays["group_totals"] = np.asarray(groups["totals"], np.float32)  # type: ignore[index]
    return pack_state(meta, arrays)


def decode_state(data: bytes, dim: int) -> tuple[SourceState, int]:
    """`(state, format version)` of a state saved in any format.

    Raises:
        ValueError: unknown format version, a different embedding dimension, or a
            truncated or malformed state.
    """
    if data[: len(STATE_MAGIC)] == STATE_MAGIC:
        meta, arrays = unpack_state(data)
    else:  # formats 1 and 2: an .npz
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            arrays = {k: z[k] for k in ("centroids", "counts", "ids") if k in z.files}
    version = meta.get("version")
    if version not in (1, 2, STATE_VERSION) or meta.get("dim") != dim:
        raise ValueError(
            f"Cluster state needs format 1 to {STATE_VERSION} and dim {dim}. "
            f"Received: version={version}, dim={meta.get('dim')}"
        )
    stats = [ClusterStats(**s) for s in meta["stats"] if s["cluster_id"] >= 0]  # 1 kept -1
    table, ids = _table_of(arrays, version, {st.cluster_id: st for st in stats}, dim)
    state = SourceState(
        source=meta["source"],
        dim=dim,
        threshold=meta.get("threshold"),
        next_id=meta["next_id"],
        rows_seen=meta["rows_seen"],
        last_batch_ms=None if "last_batch_ms" not in meta else int(meta["last_batch_ms"]),
        cap_hits=meta.get("cap_hits", 0),
        consolidations=meta.get("consolidations", meta.get("fits", 0)),
        aliases={int(g): int(t) for g, t in meta.get("aliases", [])},
        stats=stats,
        table=table,
        ids=ids,
        templates=meta.get("templates"),
        groups=_groups_of(meta, arrays),
        local_ids=meta.get("local_ids"),
    )
    return state, version


def _groups_of(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """The groups' document of a state, its sums back beside it (None: none saved)."""
    doc = meta.get("groups")
    if not doc:
        return None
    return {**doc, "totals": arrays.get("group_totals", np.zeros(0, np.float32))}


def _table_of(
    arrays: dict[str, np.ndarray], version: int, stats: dict[int, ClusterStats], dim: int
) -> tuple[Centroids, np.ndarray]:
    """The centroid table and the ids of its rows: from the sums (format 3) or from unit
    centroids (formats 1 and 2; format 1's retired k-search clusters dropped; a format 1
    state saved before its first fit has none)."""
    if "sums" in arrays:
        sums = np.ascontiguousarray(arrays["sums"], np.float32)
        counts = arrays["counts"].astype(np.int64)
        return Centroids(sums, counts, len(sums)), arrays["ids"].astype(np.int32)
    if "centroids" not in arrays:
        return Centroids.empty(dim), np.zeros(0, np.int32)
    centroids = arrays["centroids"].astype(np.float32)
    counts = arrays.get("counts", np.ones(len(centroids), np.int64))
    ids = arrays["ids"].astype(np.int32)
    if version == 1:
        live = np.array([stats.get(i, ClusterStats(i)).active for i in ids.tolist()], bool)
        return Centroids.of(centroids[live], counts[live]), ids[live]
    return Centroids.of(centroids, counts), ids


def encode_counters(counters: SourceCounters) -> bytes:
    """The counters in format 3's container (`pack_state`)."""
    meta = {
        "version": STATE_VERSION,
        "rows_seen": counters.rows_seen,
        "last_batch_ms": counters.last_batch_ms,
        "cap_hits": counters.cap_hits,
        "next_id": counters.next_id,
    }
    arrays = {"size": counters.size, "first": counters.first, "last": counters.last}
    return pack_state(meta, arrays)


def decode_counters(data: bytes) -> SourceCounters:
    """`encode_counters` output back.

    Raises:
        ValueError, KeyError: malformed counters.
    """
    meta, arrays = unpack_state(data)
    return SourceCounters(
        rows_seen=int(meta["rows_seen"]),
        last_batch_ms=int(meta["last_batch_ms"]),
        cap_hits=int(meta["cap_hits"]),
        next_id=int(meta["next_id"]),
        size=arrays["size"],
        first=arrays["first"],
        last=arrays["last"],
    )


def to_bytes(clusterer: SourceClusterer) -> bytes:
    """The state of `clusterer` in format 3, its local ids' external ids with it (call
    with its lock held)."""
    local = clusterer.local_ids
    doc = None if local is None else local.to_doc()
    return encode_state(dataclasses.replace(clusterer.state(), local_ids=doc))


def from_bytes(
    data: bytes,
    config: StreamClusterConfig,
    dim: int,
    threshold: float,
    groups: tuple[float, int] | None = None,
) -> SourceClusterer:
    """A clusterer restored from a state of any format. The thresholds given win over
    the stored ones, so a changed setting applies. `groups`: `(group threshold, where
    the semantic channel starts)`; None: `config`'s group threshold over the embedding.

    Raises:
        ValueError: unknown format version, a different embedding dimension, or a
            truncated or malformed state.
    """
    state, version = decode_state(data, dim)
    tau, start = groups or (config.group_threshold_for(None), 0)
    index = GroupIndex.from_doc(state.groups, tau, start)
    clus = SourceClusterer.restored(
        state, config, threshold, saved=version == STATE_VERSION, groups=index
    )
    if state.local_ids is not None:
        clus.local_ids = LocalIds.from_doc(state.source, state.local_ids)
    return clus


def counters_bytes(clusterer: SourceClusterer) -> bytes:
    """What a steady stream changes: rows seen, and each id's size and first and last
    time. Far smaller than `to_bytes` with many clusters (8 bytes x 3 a cluster against
    its centroid row and its members). Call with the clusterer's lock held."""
    return encode_counters(clusterer.counters())


def load_counters(clusterer: SourceClusterer, data: bytes) -> None:
    """Applies `counters_bytes` output saved after (or with) the state loaded.

    Raises:
        ValueError: malformed counters, or counters of ids this state does not have.
        KeyError: counters missing a field.
    """
    clusterer.set_counters(decode_counters(data))


@dataclass(frozen=True)
class SourceParts:
    """What a flush saves of one source, and which change it holds.

    Attributes:
        model: the whole state (`to_bytes`), or None when only counters changed.
        counters: `counters_bytes`, always.
        revision: the clusterer's revision the bytes were encoded at.
        clusterer: the clusterer they were encoded from (`mark_saved` goes to it).
    """

    model: bytes | None
    counters: bytes
    revision: int
    clusterer: SourceClusterer = field(repr=False, compare=False)

    def mark_saved(self) -> None:
        """The store holds these bytes: the clusterer counts them as saved."""
        self.clusterer.mark_saved(self.revision, model=self.model is not None)


def encode_parts(clusterer: SourceClusterer) -> SourceParts:
    """The parts of `clusterer` to save now: the whole state only when its clusters
    changed since the last confirmed save. Call with its lock held; marks nothing."""
    model = to_bytes(clusterer) if clusterer.model_dirty else None
    return SourceParts(model, counters_bytes(clusterer), clusterer.revision, clusterer)
