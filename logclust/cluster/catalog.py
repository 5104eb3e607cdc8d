"""A catalog: the clusters of known kinds, per source, shared by every sidecar of a fleet.

A sidecar numbers its clusters in arrival order, so two sidecars fed the same lines in
two orders give one kind two ids. A catalog fixes the ids of the kinds it holds: each
source of a sidecar served with one starts from the catalog's clusters (their ids,
centroids, templates and aliases: a `SourceState` of the build), so a row of a catalog
kind gets the catalog's id everywhere; a kind the catalog lacks opens a local id at or
above the source's `next_id` (`Catalog.is_local`), which leaves the sidecar as a
fleet-unique external id (`logclust.cluster.local_ids`).

File format (version 2), little-endian:

    MAGIC (16 bytes) | version (u32) | body length (u64) | sha256 of the body (32 bytes)
    body: header length (u64) | header (JSON) | each source's state, zlib-compressed

The header holds the bundle's id (`bundle_id`), the embedding dimension, the clustering
settings of the build, and per source its compressed state's offset and length in the
payload, the state's own length (`state.encode_state`'s bytes) and its `next_id` (ids
below it are catalog ids). Reading checks the magic, the version, the length and the
checksum before anything else, so a truncated, corrupted or foreign file is refused with
its name and what is wrong. Version 1 (states not compressed) is still read.

States stay compressed in memory and are inflated only while a source starts from one: a
log catalog's centroids are mostly the empty rows of clusters that templates own, and its
JSON documents compress several times over, so a catalog held beside a running sidecar
costs a few percent of its file size in version 1 (and fits a ConfigMap's 1 MiB sooner).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.groups import GroupIndex
from logclust.cluster.id_stats import NO_TIME_HI, NO_TIME_LO
from logclust.cluster.local_ids import LocalIds
from logclust.cluster.source import SourceClusterer
from logclust.cluster.source_state import SourceCounters
from logclust.cluster.state import STATE_MAGIC, decode_state, encode_state

CATALOG_MAGIC = b"logclust-catalog"
CATALOG_VERSION = 2
# Versions read: 1 held the states as they are, 2 compresses them.
_READ_VERSIONS = (1, 2)
# zlib level of the states: the fastest (a log catalog's states shrink ~20x already).
_ZLIB_LEVEL = 1
# Bytes inflated at a time while a state is checked at reading.
_INFLATE_CHUNK = 1 << 16
_PREFIX = struct.Struct("<16sIQ32s")  # magic, version, body length, sha256 of the body
# Catalog files larger than this are refused before they are read (a catalog of 5,000
# clusters of dim 256 is about 6 MB).
MAX_CATALOG_BYTES = 1 << 30


class CatalogError(ValueError):
    """A catalog file that cannot be used (names the file and what is wrong)."""


def bundle_id(manifest: Mapping[str, Any]) -> str:
    """The identity of a model bundle: a hash of its files' hashes (its manifest's
    `files`), so a catalog is tied to the model whose embeddings it holds."""
    files = manifest.get("files") or {}
    doc = {name: meta.get("sha256") for name, meta in sorted(files.items())}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Catalog:
    """The clusters of known kinds per source.

    Attributes:
        bundle: `bundle_id` of the model the catalog was built with.
        dim: embedding dimension.
        states: each source's state, as `state.encode_state` writes it, zlib-compressed
            (`state_bytes` inflates one).
        next_ids: per source, the first id that is not a catalog id.
        settings: the clustering settings of the build (for the record).
        digest: sha256 of the file's body: the catalog's identity.
    """

    bundle: str
    dim: int
    states: Mapping[str, bytes] = field(repr=False)
    next_ids: Mapping[str, int]
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)
    digest: str = ""

    @property
    def clusters(self) -> int:
        """Catalog ids over every source."""
        return sum(self.next_ids.values())

    def state_bytes(self, source: str) -> bytes:
        """The state of `source` as `state.encode_state` wrote it.

        Raises:
            KeyError: `source` is not in the catalog.
        """
        return zlib.decompress(self.states[source])

    def is_local(self, source: str, cluster_id: int) -> bool:
        """Whether an id of `source` is a sidecar's own (not a catalog id)."""
        return cluster_id >= self.next_ids.get(source, 0)

    def clusterer(
        self,
        source: str,
        config: StreamClusterConfig,
        threshold: float,
        grouping: tuple[float, int] | None = None,
    ) -> SourceClusterer:
        """A clusterer of `source` starting from the catalog's clusters, with no rows
        counted yet, clustering at `threshold`; `grouping` is `(group threshold, where the
        semantic channel starts)` (None: the stream's default).

        Raises:
            KeyError: `source` is not in the catalog.
        """
        state, _ = decode_state(self.state_bytes(source), self.dim)
        tau, start = grouping or (config.group_threshold_for(None), 0)
        groups = GroupIndex.from_doc(state.groups, tau, start)
        clus = SourceClusterer.restored(state, config, threshold, saved=False, groups=groups)
        n = state.next_id
        zeros = np.zeros(n, np.int64)
        lo, hi = np.full(n, NO_TIME_LO), np.full(n, NO_TIME_HI)
        clus.set_counters(SourceCounters(0, clus.last_batch_ms, 0, n, zeros, lo, hi))
        clus.local_ids = LocalIds(source, n)
        return clus

    def check_bundle(self, bundle: str, where: str) -> None:
        """Raises `CatalogError` unless the catalog was built with bundle `bundle`."""
        if bundle != self.bundle:
            raise CatalogError(
                f"Catalog {where} was built with another model bundle; build it again with "
                f"`logclust catalog build` on this one. Received: bundle {self.bundle[:12]}…, "
                f"serving {bundle[:12]}…"
            )


def catalog_of(
    clusterers: Mapping[str, SourceClusterer],
    bundle: str,
    dim: int,
    config: StreamClusterConfig,
) -> Catalog:
    """The catalog of clusterers' states (call while nothing else changes them). No wall
    clock is kept: the same clusters give the same bytes, so the same digest."""
    states = {
        name: zlib.compress(
            encode_state(dataclasses.replace(c.state(), last_batch_ms=0, local_ids=None)),
            _ZLIB_LEVEL,
        )
        for name, c in sorted(clusterers.items())
    }
    next_ids = {name: c.state().next_id for name, c in sorted(clusterers.items())}
    settings = _settings_doc(config)
    body = _body(bundle, dim, states, next_ids, settings)
    return Catalog(bundle, dim, states, next_ids, settings, hashlib.sha256(body).hexdigest())


def _settings_doc(config: StreamClusterConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name in config.__dataclass_fields__:
        value = getattr(config, name)
        doc[name] = dict(value) if isinstance(value, Mapping) else value
    return doc


def _body(
    bundle: str,
    dim: int,
    states: Mapping[str, bytes],
    next_ids: Mapping[str, int],
    settings: Mapping[str, Any],
) -> bytes:
    sources, offset = [], 0
    for name, data in states.items():
        raw = len(zlib.decompress(data))  # a build's step, not a sidecar's
        sources.append({"name": name, "offset": offset, "bytes": len(data), "state_bytes": raw})
        sources[-1]["next_id"] = int(next_ids[name])
        offset += len(data)
    header = {
        "bundle": bundle,
        "dim": dim,
        "settings": dict(settings),
        "sources": sources,
    }
    head = json.dumps(header, sort_keys=True).encode()
    return b"".join([struct.pack("<Q", len(head)), head, *states.values()])


def write_catalog(catalog: Catalog, path: str | Path) -> str:
    """Writes `catalog` to `path` atomically (a reader sees the old file or the new one,
    never a part); returns the digest of what was written."""
    body = _body(catalog.bundle, catalog.dim, catalog.states, catalog.next_ids, catalog.settings)
    digest = hashlib.sha256(body)
    prefix = _PREFIX.pack(CATALOG_MAGIC, CATALOG_VERSION, len(body), digest.digest())
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(prefix)
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return digest.hexdigest()


def read_catalog(path: str | Path) -> Catalog:
    """Reads and checks a catalog file.

    Raises:
        CatalogError: a missing, truncated, corrupted, foreign or empty catalog, or one
            of another format version (the message names the file).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_CATALOG_BYTES:
            raise CatalogError(f"Catalog {p} is too large. Received: {size} bytes")
        data = p.read_bytes()
    except OSError as e:
        raise CatalogError(f"Catalog {p} cannot be read. Received: {e}") from e
    return parse_catalog(data, str(p))


def parse_catalog(data: bytes, where: str) -> Catalog:
    """`read_catalog` of bytes already read (`where` names them in errors)."""
    if len(data) < _PREFIX.size:
        what = "a logclust catalog cut short" if data.startswith(CATALOG_MAGIC) else "empty"
        if data and not CATALOG_MAGIC.startswith(data[:16]):
            what = "not a logclust catalog"
        raise CatalogError(f"Catalog {where} is {what}. Received: {len(data)} bytes")
    magic, version, length, digest = _PREFIX.unpack_from(data)
    if magic != CATALOG_MAGIC:
        raise CatalogError(
            f"Catalog {where} is not a logclust catalog. Received: a file starting {magic!r}"
        )
    if version not in _READ_VERSIONS:
        raise CatalogError(
            f"Catalog {where} has format version {version}; this logclust reads "
            f"{' and '.join(map(str, _READ_VERSIONS))}. Received: version={version}"
        )
    body = memoryview(data)[_PREFIX.size :]
    if len(body) != length:
        raise CatalogError(
            f"Catalog {where} is truncated or has bytes past its end. Received: "
            f"{len(body)} body bytes, the header says {length}"
        )
    if hashlib.sha256(body).digest() != digest:
        raise CatalogError(f"Catalog {where} is corrupted: its checksum does not match")
    return _parse_body(body, where, digest.hex(), version)


def _parse_body(body: memoryview, where: str, digest: str, version: int) -> Catalog:
    try:
        (n,) = struct.unpack_from("<Q", body)
        header = json.loads(bytes(body[8 : 8 + n]))
        payload = body[8 + n :]
        states, next_ids = {}, {}
        for s in header["sources"]:
            lo, hi = int(s["offset"]), int(s["offset"]) + int(s["bytes"])
            if lo < 0 or hi > len(payload):
                raise ValueError(f"source {s['name']!r} lies outside the payload")
            states[str(s["name"])] = _held_state(payload[lo:hi], s, version)
            next_ids[str(s["name"])] = int(s["next_id"])
        catalog = Catalog(
            str(header["bundle"]),
            int(header["dim"]),
            states,
            next_ids,
            header.get("settings", {}),
            digest,
        )
    except (KeyError, ValueError, TypeError, struct.error) as e:
        raise CatalogError(f"Catalog {where} has a malformed header. Received: {e!r}") from e
    if catalog.clusters == 0:
        raise CatalogError(f"Catalog {where} holds no clusters. Received: {len(states)} sources")
    return catalog


def _held_state(data: memoryview, source: Mapping[str, Any], version: int) -> bytes:
    """A source's state as a `Catalog` holds it (compressed), checked: it inflates to
    the length the header gives (bounded like a file: a small file cannot inflate to
    more) and is a cluster state.

    Raises:
        ValueError: a state that does not inflate, or is not a cluster state.
    """
    if version == 1:  # held as it is in the file
        raw = bytes(data)
        packed = zlib.compress(raw, _ZLIB_LEVEL)
    else:
        size = int(source["state_bytes"])
        if not 0 <= size <= MAX_CATALOG_BYTES:
            raise ValueError(f"source {source['name']!r} claims a state of {size} bytes")
        packed = bytes(data)
        raw = _inflated_head(packed, size, str(source["name"]))
    if raw[: len(STATE_MAGIC)] != STATE_MAGIC:
        raise ValueError(f"source {source['name']!r} is not a cluster state")
    return packed


def _inflated_head(packed: bytes, size: int, name: str) -> bytes:
    """The first bytes of a compressed state, once the whole of it was inflated a chunk
    at a time (never more than `size` bytes, never all of them in memory at once).

    Raises:
        ValueError: it does not inflate, or not to `size` bytes.
    """
    inflate = zlib.decompressobj()
    head, done, tail = b"", 0, packed
    try:
        while tail and done <= size:
            part = inflate.decompress(tail, _INFLATE_CHUNK)
            head, done, tail = head or part, done + len(part), inflate.unconsumed_tail
        done += len(inflate.flush())
    except zlib.error as e:
        raise ValueError(f"source {name!r} does not inflate: {e}") from e
    if done != size or not inflate.eof:
        raise ValueError(f"source {name!r} inflates to another length than {size}")
    return head
