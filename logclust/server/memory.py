"""The sidecar's memory: a budget that sizes what grows with use, and process settings.

**Budget.** `sizes_for_budget(budget_mb, max_sources, dim)` sizes what grows with use so
that the worst case (every source present, every cache and reservoir full, the latency
book at its bound) fits the budget above the process itself (`BASE_MIB`, `HEADROOM_MIB`):
the shared embedding and mask caches, each source's reservoir and placement memo, the
clusters over all sources, and the latency windows kept in memory. The costs per item
are named constants below, each saying how it was measured.

**Process settings.** Freed memory goes back to the system.

A sidecar's resident memory is what its host budgets for, and its allocations come in
bursts (a batch's Arrow buffers, a refit's matrices) that the default allocators keep
after they are freed. `lean_process_memory` lowers the peak at no cost in speed
(`python -m bench.sidecar`; the runs that chose each setting are in
docs/benchmark-history.md):

- Arrow allocates from the system allocator instead of mimalloc, which holds freed pages;
- glibc's malloc gets a fixed mmap threshold of 1 MiB (a refit's matrices are mapped and
  unmapped, instead of the default threshold rising after each free until they land on
  a heap that is rarely trimmed; a batch's smaller buffers stay on the heap, as a lower
  threshold such as 128 KiB makes every batch pay for mapping), and trims above 4 MiB;
- glibc's malloc keeps at most 2 arenas (unless `MALLOC_ARENA_MAX` is set): each thread
  that allocates may otherwise get one of its own (up to 8 per core), each holding freed
  memory, and the Label pool has threads beyond its slots for work parked at a
  checkpoint. The cap lowers the peak without lowering throughput with the fair pool
  (with the earlier pool of 8 threads it had cost the gRPC threads throughput).

Other C libraries (musl) are left as they are. `keep_pandas_out` answers `import pandas`
in the serving process as if it were not installed (see there).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import importlib.abc
import logging
import math
import os
import resource
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pyarrow as pa

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.prose_topics import SAMPLE_ROWS
from logclust.latency.book import SKETCH_BUCKET_BYTES, SKETCH_FIXED_BYTES

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_AT, _TRIM_AT = 1 << 20, 4 << 20
_M_ARENA_MAX, _ARENAS = -8, 2


def lean_process_memory() -> dict[str, bool]:
    """Applies the settings above; returns which of them took effect."""
    pa.set_memory_pool(pa.system_memory_pool())
    done = {"arrow_system_pool": pa.default_memory_pool().backend_name == "system"}
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    done["glibc_mallopt"] = bool(
        mallopt is not None
        and mallopt(_M_MMAP_THRESHOLD, _MMAP_AT)
        and mallopt(_M_TRIM_THRESHOLD, _TRIM_AT)
        and (bool(os.environ.get("MALLOC_ARENA_MAX")) or mallopt(_M_ARENA_MAX, _ARENAS))
    )
    logger.info("memory settings: %s", done)
    return done


def raise_open_file_limit() -> int:
    """Raises this process's open-file soft limit to its hard limit; returns the soft
    limit now. Every connection is a descriptor: at the common default of 1,024 a
    thousand idle clients would lock out the next (and the listeners' own files)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            logger.info("open-file limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as e:
            logger.warning("open-file limit stays at %d (hard %d): %s", soft, hard, e)
    return int(soft)


class _NoPandas(importlib.abc.MetaPathFinder):
    """Answers `import pandas` as if it were not installed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (kept out of logclust serve)", name=fullname
            )
        return None


def keep_pandas_out() -> bool:
    """Keeps pandas out of this process; False when it is already imported.

    pyarrow imports pandas, when it is installed, the first time `pa.array` converts a
    Python list, only to check whether the list is a pandas object: pandas and its
    libraries then stay resident, memory the sidecar never uses (compare the RSS of a
    process importing pyarrow before and after its first `pa.array`; docs/memory.md).
    pandas is no serving dependency, so a `serve` process behaves the
    same whether or not an environment (the dev extra, pyspark) happens to hold it.
    """
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
    return True


def rss_mib() -> float:
    """VmRSS of this process in MiB (NaN where /proc is not there)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


# --- budget -------------------------------------------------------------------------------

MIB = 1 << 20
# RSS of `logclust serve` with the shipped model (dim 384) once it has labelled lines of
# every token width (16 to 128 tokens; the encoder's arenas and packed weights), with no
# state to speak of, rounded up by a tenth and more: measured as the VmRSS of `logclust
# serve` (pandas kept out) after 64 lines each of 2, 6, 14, 30 and 60 random words, then
# 400 of 2 to 60: 149-155 MiB with `--encoder-variant` float32, int8 and auto (2026-12-07;
# 188-200 MiB with the encoders of 2026-12-01). Another bundle, or a platform with other
# libraries, differs: `serve` logs its RSS at start.
BASE_MIB = 170
# Above the steady state, for a moment: a batch's request, table and answer, a
# consolidation's copies, the label threads' allocator arenas. Measured as peak minus
# final RSS in tests/reliability/test_memory_budget.py (64 sources, 8 client threads),
# rounded up above every run (BENCHMARKS.md, "Memory budget").
HEADROOM_MIB = 40
# Characters of a distinct masked text the costs are sized for: above the 90th percentile
# of loghub's (151; mean 84) and of the demo's traffic (mean 55). Streams of longer texts
# take more than their budget, by the `per_char` costs below.
TEXT_CHARS = 160


@dataclass(frozen=True)
class ItemCost:
    """Resident bytes of one item: `fixed + per_dim * dim + per_char * chars`."""

    fixed: float
    per_dim: float
    per_char: float

    def bytes(self, dim: int, chars: int = TEXT_CHARS) -> float:
        return self.fixed + self.per_dim * dim + self.per_char * chars


# Costs measured by `python -m bench.memory_costs --chars 24 160` (VmRSS growth over 16,384
# items, or 2,048 clusters, in a fresh process, at dim 384; strings held by the structure
# alone), split into the float32 vectors (4 bytes a dimension) and the rest, fitted on the
# two text lengths; the current figures are in BENCHMARKS.md ("Memory budget"). Rerun it
# after changing any of these structures, and keep each fit at or above what it prints.
# Embedding cache entry (a ring row, key, index) plus mask cache entry (shape, masked
# text, two dict entries).
CACHE_ENTRY = ItemCost(fixed=490, per_dim=4, per_char=2.8)
# Mask cache entry alone (shape, masked text, two dict entries): the mask cache holds more
# texts than the embedding cache, each beyond it at this cost.
MASK_ENTRY = ItemCost(fixed=320, per_dim=0, per_char=2.8)
# Reservoir row (embedding and text).
RESERVOIR_ROW = ItemCost(fixed=137, per_dim=4, per_char=1.1)
# Placement memo entry (dict entry, id, distance, text).
MEMO_ENTRY = ItemCost(fixed=247, per_dim=0, per_char=1.1)
# Cluster with `template_members` (16) members, with its centroid row; the fit covers the
# table's growth either way (by a quarter or by doubling). per_dim 8, not 4: the table
# holds spare rows, and a consolidation holds a copy of it for a moment.
CLUSTER = ItemCost(fixed=916, per_dim=8, per_char=20.3)
# Free text's topics (`logclust.cluster.prose_topics`): a source's sample of prose points,
# `SAMPLE_ROWS` rows of int8, for prose tables of up to 256 dimensions (the shipped one
# has 192), a source.
PROSE_SAMPLE_BYTES = SAMPLE_ROWS * 256
# The bundle's prose word table once loaded (`Bundle.prose_vectors`: 6.8 MB measured, its
# int8 codes and scales, tokens and whole words), rounded up; once a process.
PROSE_WORDS_BYTES = 7 * MIB
# A latency sketch of ~235 buckets, as many as `bench.memory_costs`'s sketch holds (the
# book bounds the exact estimate).
SKETCH_BYTES = SKETCH_FIXED_BYTES + 235 * SKETCH_BUCKET_BYTES

# What the budget left above the process goes to, after the minimums below.
CACHE_SHARE = 0.10
MASK_SHARE = 0.10  # texts the mask cache holds beyond the embedding cache's
RESERVOIR_SHARE = 0.30
MEMO_SHARE = 0.05
CLUSTER_SHARE = 0.30
LATENCY_SHARE = 0.15  # and whatever the others cannot use past their defaults
# The smallest sizes that still work: a budget that cannot give them is refused.
MIN_CACHE = 1024
MIN_RESERVOIR = 256
MIN_MEMO = 256
MIN_CLUSTERS_PER_SOURCE = StreamClusterConfig().reserved_clusters
MIN_LATENCY_MIB = 4
# Fields of `StreamClusterConfig` a budget sets.
SIZED_FIELDS = (
    "cache_size",
    "mask_cache_size",
    "reservoir_size",
    "memo_size",
    "max_clusters_total",
)


@dataclass(frozen=True)
class MemorySizes:
    """What a memory budget allows (see `sizes_for_budget`).

    Attributes:
        cache_size: texts of the shared embedding cache.
        mask_cache_size: text shapes of the shared mask cache (at least `cache_size`).
        reservoir_size: rows of each source's reservoir.
        memo_size: texts of each source's placement memo.
        max_clusters_total: clusters over all sources (each source may always open
            `StreamClusterConfig.reserved_clusters` of them; `max_clusters` still caps one
            source).
        latency_max_bytes: resident bytes of the latency sketches.
    """

    cache_size: int
    mask_cache_size: int
    reservoir_size: int
    memo_size: int
    max_clusters_total: int
    latency_max_bytes: int

    def apply(
        self, clusters: StreamClusterConfig, keep: Collection[str] = ()
    ) -> StreamClusterConfig:
        """`clusters` with these sizes, except fields named in `keep` and fields set to
        other values than their defaults (an explicit setting wins)."""
        default = StreamClusterConfig()
        sized = {
            name: getattr(self, name)
            for name in SIZED_FIELDS
            if name not in keep and getattr(clusters, name) == getattr(default, name)
        }
        if "memo_size" in sized:  # the memo is bounded by the cache too
            sized["memo_size"] = min(sized["memo_size"], sized.get("cache_size", 1 << 62))
        return dataclasses.replace(clusters, **sized)


def state_bytes(
    clusters: StreamClusterConfig,
    max_sources: int,
    dim: int,
    latency_max_bytes: int,
    chars: int = TEXT_CHARS,
) -> float:
    """Worst-case resident bytes of what grows with use: every source present, caches,
    reservoirs, memos and prose samples full, the clusters at their bound, the latency
    book at its, the prose word table loaded."""
    memo = min(clusters.memo_size, clusters.cache_size)
    total = clusters.max_clusters_total
    per_source_clusters = clusters.max_clusters * max_sources
    n_clusters = per_source_clusters if total is None else min(total, per_source_clusters)
    return (
        clusters.cache_size * CACHE_ENTRY.bytes(dim, chars)
        + max(0, clusters.mask_cache_size - clusters.cache_size) * MASK_ENTRY.bytes(dim, chars)
        + max_sources * clusters.reservoir_size * RESERVOIR_ROW.bytes(dim, chars)
        + max_sources * memo * MEMO_ENTRY.bytes(dim, chars)
        + n_clusters * CLUSTER.bytes(dim, chars)
        + max_sources * PROSE_SAMPLE_BYTES
        + PROSE_WORDS_BYTES
        + latency_max_bytes
    )


def minimum_budget_mb(max_sources: int, dim: int) -> int:
    """The smallest budget `sizes_for_budget` accepts for `max_sources` sources."""
    least = StreamClusterConfig(
        cache_size=MIN_CACHE,
        mask_cache_size=MIN_CACHE,
        reservoir_size=MIN_RESERVOIR,
        memo_size=MIN_MEMO,
        max_clusters_total=MIN_CLUSTERS_PER_SOURCE * max_sources,
    )
    state = state_bytes(least, max_sources, dim, MIN_LATENCY_MIB * MIB)
    return BASE_MIB + HEADROOM_MIB + math.ceil(state / MIB)


def sizes_for_budget(budget_mb: int, max_sources: int, dim: int) -> MemorySizes:
    """Sizes of what grows with use such that the worst case fits `budget_mb`.

    The budget less the process itself (`BASE_MIB + HEADROOM_MIB`) first gives every
    structure its minimum (`MIN_*`); the rest is shared out by the `*_SHARE` constants at
    the `ItemCost`s above for texts of `TEXT_CHARS` characters. No size exceeds its
    default in `StreamClusterConfig` (more would not be faster); what that leaves over
    goes to the latency windows.

    Args:
        budget_mb: resident memory of the whole process, MiB.
        max_sources: sources kept at once.
        dim: embedding width of the bundle.

    Raises:
        ValueError: the budget is below `minimum_budget_mb(max_sources, dim)`.
    """
    if max_sources < 1 or dim < 1:
        raise ValueError(
            f"max_sources and dim must be positive. Received: max_sources={max_sources}, dim={dim}"
        )
    least = minimum_budget_mb(max_sources, dim)
    if budget_mb < least:
        raise ValueError(
            f"A memory budget of {budget_mb} MiB is too small for {max_sources} sources: "
            f"the process itself takes about {BASE_MIB + HEADROOM_MIB} MiB (model loaded, "
            f"with headroom) and the smallest caches, reservoirs and clusters of "
            f"{max_sources} sources {least - BASE_MIB - HEADROOM_MIB} MiB more. Give at "
            f"least {least} MiB (--memory-budget-mb) or fewer sources (--max-sources). "
            f"Received: memory_budget_mb={budget_mb}, max_sources={max_sources}"
        )
    default = StreamClusterConfig()
    rest = (budget_mb - least) * MIB
    n = max_sources

    def grown(least_count: int, share: float, cost: ItemCost, copies: int, most: int) -> int:
        return min(least_count + int(rest * share / (copies * cost.bytes(dim))), most)

    cache = grown(MIN_CACHE, CACHE_SHARE, CACHE_ENTRY, 1, default.cache_size)
    masks = grown(cache, MASK_SHARE, MASK_ENTRY, 1, max(cache, default.mask_cache_size))
    reservoir = grown(MIN_RESERVOIR, RESERVOIR_SHARE, RESERVOIR_ROW, n, default.reservoir_size)
    memo = grown(MIN_MEMO, MEMO_SHARE, MEMO_ENTRY, n, min(default.memo_size, cache))
    clusters = grown(
        MIN_CLUSTERS_PER_SOURCE * n, CLUSTER_SHARE, CLUSTER, 1, default.max_clusters * n
    )
    sized = StreamClusterConfig(
        cache_size=cache,
        mask_cache_size=masks,
        reservoir_size=reservoir,
        memo_size=memo,
        max_clusters_total=clusters,
    )
    latency = int((budget_mb - BASE_MIB - HEADROOM_MIB) * MIB - state_bytes(sized, n, dim, 0))
    return MemorySizes(cache, masks, reservoir, memo, clusters, latency)
