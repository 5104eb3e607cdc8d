"""Settings of per-source online clustering (`logclust.cluster.source`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# Used only by a bundle whose manifest records no calibrated threshold (bundles made
# before calibration existed); the value the calibration chose for the shipped model.
FALLBACK_THRESHOLD = 0.4
# Used by a bundle whose manifest records no `clustering.group_threshold` (bundles made
# before groups existed); the value `training/evaluate/groups.py` chose for the shipped
# model.
FALLBACK_GROUP_THRESHOLD = 1.05


@dataclass(frozen=True)
class StreamClusterConfig:
    """Settings of per-source online clustering (see `logclust.cluster.source`)."""

    # Euclidean distance between unit embeddings within which a line joins a cluster
    # (cosine distance = threshold**2 / 2). None: the bundle's calibrated threshold.
    # Larger gives coarser groups, smaller finer ones.
    threshold: float | None = None
    # Distance (between unit points of the groups' space, `logclust.cluster.groups`)
    # within which a new cluster joins a group of clusters that mean the same, and a
    # prose text joins a prose cluster. None: the bundle's calibrated group threshold.
    group_threshold: float | None = None
    # Place free text (`logclust.text.prose`) by meaning: its clusters are its groups.
    # False: prose is placed like any log line (one cluster per wording).
    prose: bool = True
    # Group log lines by meaning too (a new log template joins the group of a template of
    # the same meaning). Each new template then costs one encoder pass, which templates
    # otherwise spare: `bench.novelty`, 1% of rows new, 46,222 rows/s against 73,863
    # without. False: a log template is its own group (prose and bodies are grouped).
    line_groups: bool = False
    # Keep a log line's header (times, host, pid, level, component: what its logger wrote
    # before the message, found without a format by `logclust.text.header`) in its
    # masked text. False: templates, clusters and embeddings are of the message, so the
    # same message under another host, process or month is one template, as loghub's
    # ground truth has it (`python -m bench.stream_quality --format line`).
    keep_headers: bool = False
    # Per-source overrides of `threshold` (source name -> threshold).
    source_thresholds: Mapping[str, float] = field(default_factory=dict)
    # Clusters one source may hold: bounds memory (a cluster's cost grows with dim and
    # its members' lengths; `python -m bench.memory_costs` measures it).
    # Past it, far lines join their nearest cluster (logged and counted).
    max_clusters: int = 4096
    # Clusters over all sources (bounds memory with many sources); None: no shared bound.
    # Each source may always open `reserved_clusters`, whatever the others hold; beyond
    # that, sources take what is left first come first served, up to `max_clusters` each.
    max_clusters_total: int | None = None
    reserved_clusters: int = 64
    # Rows kept (uniform reservoir sample) for consolidations.
    reservoir_size: int = 4096
    # Rows between two scheduled consolidations.
    consolidate_every_rows: int = 50_000
    # New clusters that bring a consolidation forward; 0 disables.
    consolidate_new_clusters: int = 64
    # Largest share of the time spent consolidating: after one that took t seconds the
    # next waits t * (1 - share) / share.
    consolidate_max_share: float = 0.1
    # A consolidation that changes no cluster doubles the rows to the next scheduled one,
    # up to this multiple of consolidate_every_rows; one that changes any sets it back.
    consolidate_backoff_max: int = 16
    # Consolidate on a background thread so batches are not held up.
    background_consolidation: bool = True
    # Distinct masked members kept per cluster for its template; exemplars shown.
    template_members: int = 16
    max_exemplars: int = 3
    # Masked texts whose embeddings are cached across batches, shared by all sources
    # (an entry's cost, with a mask cache entry of its own, grows with dim and the
    # text's length, measured by `python -m bench.memory_costs`; a steady stream repeats
    # far fewer texts).
    cache_size: int = 16_384
    # Distinct text shapes (the text with every digit written as one digit) whose masked
    # text the mask cache remembers, shared by all sources. An entry holds no vector, so
    # it costs a fraction of an embedding cache entry (`python -m bench.memory_costs`),
    # and a stream has many shapes per masked text (numbers of other widths, ids and
    # names the rules mask): when its shapes outgrow the cache, batches are masked again,
    # the sidecar's largest cost.
    mask_cache_size: int = 65_536
    # Texts whose placement one source remembers (at most `cache_size`), so a steady
    # stream places each text once (an entry's cost: `python -m bench.memory_costs`).
    # Under `StreamClusters` this is each source's share when all of its `max_sources`
    # are present: fewer sources share the same total.
    memo_size: int = 16_384
    # Seed of the reservoir sampling (the same stream keeps the same sample).
    seed: int = 0
    # Place lines by their word templates first (`logclust.cluster.templates`): a line
    # that fits a known template needs no embedding, and word positions decide which
    # words are variables. False: every new text is placed by its embedding alone.
    templates: bool = True
    # Distinct words one position takes before it is a variable (user names); a
    # position of few values, each often (Paused, Resumed), keeps distinct templates.
    template_family_values: int = 4
    # The same after a word that names a slot (`user`, `host`, `file`, ...).
    template_slot_values: int = 2

    def __post_init__(self) -> None:
        positive = {
            "max_clusters": self.max_clusters,
            "reservoir_size": self.reservoir_size,
            "consolidate_every_rows": self.consolidate_every_rows,
            "consolidate_backoff_max": self.consolidate_backoff_max,
            "template_members": self.template_members,
            "cache_size": self.cache_size,
            "mask_cache_size": self.mask_cache_size,
            "memo_size": self.memo_size,
            "reserved_clusters": self.reserved_clusters,
            "template_family_values": self.template_family_values,
            "template_slot_values": self.template_slot_values,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={value}")
        if self.max_clusters_total is not None and self.max_clusters_total < 1:
            raise ValueError(
                "max_clusters_total must be positive. "
                f"Received: max_clusters_total={self.max_clusters_total}"
            )
        if self.consolidate_new_clusters < 0:
            raise ValueError(
                "consolidate_new_clusters must be >= 0. "
                f"Received: consolidate_new_clusters={self.consolidate_new_clusters}"
            )
        if not 0.0 < self.consolidate_max_share <= 1.0:
            raise ValueError(
                "consolidate_max_share must be in (0, 1]. "
                f"Received: consolidate_max_share={self.consolidate_max_share}"
            )
        given: list[tuple[str, float | None]] = [
            ("threshold", self.threshold),
            ("group_threshold", self.group_threshold),
        ]
        for label, tau in given + list(self.source_thresholds.items()):
            if tau is not None and not (math.isfinite(tau) and 0.0 < tau <= 2.0):
                raise ValueError(
                    "A threshold is a distance between unit vectors, in (0, 2]. "
                    f"Received: {label}={tau}"
                )

    def threshold_for(self, source: str, bundle_threshold: float | None) -> float:
        """The threshold of `source`: its override, else `threshold`, else the bundle's."""
        if source in self.source_thresholds:
            return float(self.source_thresholds[source])
        if self.threshold is not None:
            return float(self.threshold)
        return FALLBACK_THRESHOLD if bundle_threshold is None else float(bundle_threshold)

    def group_threshold_for(self, bundle_group_threshold: float | None) -> float:
        """The group threshold: `group_threshold`, else the bundle's, else the fallback."""
        if self.group_threshold is not None:
            return float(self.group_threshold)
        if bundle_group_threshold is None:
            return FALLBACK_GROUP_THRESHOLD
        return float(bundle_group_threshold)
