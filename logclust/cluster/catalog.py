"""A catalog: the clusters of known kinds, per source, shared by every sidecar of a fleet.

A sidecar numbers its clusters in arrival order, so two sidecars fed the same lines in
two orders give one kind two ids. A catalog fixes the ids of the kinds it holds: each
source of a sidecar served with one starts from the catalog's clusters (their ids,
centroids, templates and aliases: a `SourceState` of the build), so a row of a catalog
kind gets the catalog's id everywhere; a kind the catalog lacks opens a local id at or
above the source's `next_id` (`Catalog.is_local`).

File format (version 1), little-endian:

    MAGIC (16 bytes) | version (u32) | body length (u64) | sha256 of the body (32 bytes)
    body: header length (u64) | header (JSON) | each source's state (`state.encode_state`)

The header holds the bundle's id (`bundle_id`), the embedding dimension, the clustering
settings of the build, and per source its state's offset and length in the payload and
its `next_id` (ids below it are catalog ids). Reading checks the magic, the version, the
length and the checksum before anything else, so a truncated, corrupted or foreign file
is refused with its name and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.groups import GroupIndex
from logclust.cluster.id_stats import NO_TIME_HI, NO_TIME_LO
from logclust.cluster.source import SourceClusterer
from logclust.cluster.source_state import SourceCounters
from logclust.cluster.state import STATE_MAGIC, decode_state, encode_state

CATALOG_MAGIC = b"logclust-catalog"
CATALOG_VERSION = 1
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
        states: each source's state, as `state.encode_state` writes it (views of the
            file's bytes when read).
        next_ids: per source, the first id that is not a catalog id.
        settings: the clustering settings of the build (for the record).
        digest: sha256 of the file's body: the catalog's identity.
    """

    bundle: str
    dim: int
    states: Mapping[str, bytes | memoryview] = field(repr=False)
    next_ids: Mapping[str, int]
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)
    digest: str = ""

    @property
    def clusters(self) -> int:
        """Catalog ids over every source."""
        return sum(self.next_ids.values())

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
        state, _ = decode_state(bytes(self.states[source]), self.dim)
        tau, start = grouping or (config.group_threshold_for(None), 0)
        groups = GroupIndex.from_doc(state.groups, tau, start)
        clus = SourceClusterer.restored(state, config, threshold, saved=False, groups=groups)
        n = state.next_id
        zeros = np.zeros(n, np.int64)
        lo, hi = np.full(n, NO_TIME_LO), np.full(n, NO_TIME_HI)
        clus.set_counters(SourceCounters(0, clus.last_batch_ms, 0, n, zeros, lo, hi))
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
        name: encode_state(dataclasses.replace(c.state(), last_batch_ms=0))
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
    states: Mapping[str, bytes | memoryview],
    next_ids: Mapping[str, int],
    settings: Mapping[str, Any],
) -> bytes:
    sources, offset = [], 0
    for name, data in states.items():
        sources.append({"name": name, "offset": offset, "bytes": len(data)})
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
    if version != CATALOG_VERSION:
        raise CatalogError(
            f"Catalog {where} has format version {version}; this logclust reads "
            f"{CATALOG_VERSION}. Received: version={version}"
        )
    body = memoryview(data)[_PREFIX.size :]  # states are views of `data`: no copies
    if len(body) != length:
        raise CatalogError(
            f"Catalog {where} is truncated or has bytes past its end. Received: "
            f"{len(body)} body bytes, the header says {length}"
        )
    if hashlib.sha256(body).digest() != digest:
        raise CatalogError(f"Catalog {where} is corrupted: its checksum does not match")
    return _parse_body(body, where, digest.hex())


def _parse_body(body: memoryview, where: str, digest: str) -> Catalog:
    try:
        (n,) = struct.unpack_from("<Q", body)
        header = json.loads(bytes(body[8 : 8 + n]))
        payload = body[8 + n :]
        states, next_ids = {}, {}
        for s in header["sources"]:
            lo, hi = int(s["offset"]), int(s["offset"]) + int(s["bytes"])
            if lo < 0 or hi > len(payload):
                raise ValueError(f"source {s['name']!r} lies outside the payload")
            states[str(s["name"])] = payload[lo:hi]
            if bytes(payload[lo : lo + len(STATE_MAGIC)]) != STATE_MAGIC:
                raise ValueError(f"source {s['name']!r} is not a cluster state")
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
