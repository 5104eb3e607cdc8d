"""Settings of a `StreamLabeler` (`logclust.sidecar.stream_labeler`), in a module light to
import: the CLI parser reads its defaults at every start."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from logclust.cluster.config import StreamClusterConfig
from logclust.latency.book import check_window
from logclust.latency.ddsketch import MIN_INDEXABLE, DDSketch
from logclust.text.log_format import LogFormat
from logclust.wire.contract import MAX_LATENCY_MS


def check_fraction(name: str, value: float) -> None:
    """A share of rows to keep: in (0, 1].

    Raises:
        ValueError: outside (0, 1] (NaN included), naming `name`.
    """
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise ValueError(f"{name} must be in (0, 1]. Received: {name}={value}")


@dataclass(frozen=True)
class SamplingConfig:
    """A storage budget per source: which rows the answers mark `keep`, and their weight
    (`logclust.sidecar.sampling`, docs/sampling.md). Every row still counts in the
    sidecar's own statistics."""

    # Share of rows to keep on average, for every source (e.g. 0.1); None: no budget
    # (then the answers have no `keep` and `sample_weight` columns).
    fraction: float | None = None
    # Per-source budgets, source name -> share kept; they override `fraction`. A source
    # named here that never sends a row costs nothing.
    source_fractions: Mapping[str, float] = field(default_factory=dict)
    # The window a budget holds over spans at least this many rows of a source...
    window_rows: int = 5_000
    # ... and at least this many seconds of its row times (the longer of the two).
    window_s: float = 300.0
    # Each cluster keeps its first row of every window, and of every slot of this many
    # seconds of row time (weight 1), so a kind seen in a window is never lost from it.
    slot_s: float = 300.0
    # Seed of the row hash: the same stream with the same seed keeps the same rows.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fraction is not None:
            check_fraction("fraction", self.fraction)
        for source, value in self.source_fractions.items():
            if not isinstance(source, str) or not source:
                raise ValueError(f"A sampled source needs a name. Received: {source!r}")
            check_fraction(f"the fraction of source {source!r}", value)
        if self.window_rows < 1:
            raise ValueError(f"window_rows must be positive. Received: {self.window_rows}")
        for name in ("window_s", "slot_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0. Received: {name}={getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        """Whether any source has a budget (the answers then carry the sample columns)."""
        return self.fraction is not None or bool(self.source_fractions)

    def fraction_for(self, source: str) -> float | None:
        """The budget of `source`; None: kept whole."""
        return self.source_fractions.get(source, self.fraction)


@dataclass(frozen=True)
class StreamLabelerConfig:
    """What a `StreamLabeler` keeps and how much it accepts."""

    # Base latency window, seconds; query windows are multiples of it.
    window_s: int = 10
    # How long latency windows are kept, seconds (memory and store).
    retention_s: int = 6 * 3600
    # Relative accuracy of the latency quantiles.
    relative_accuracy: float = 0.01
    # Largest latency recorded, ms (one day): a row with a larger one is labelled, its
    # latency treated as not measured and counted (`logclust_latency_over_max_rows`), so
    # one absurd value (1e30) cannot move a cluster's percentiles.
    max_latency_ms: float = MAX_LATENCY_MS
    # Resident bytes the latency sketches may take; past it the oldest windows leave
    # memory early (`LatencyBook.max_bytes`). None: the memory budget's share, or bounded
    # by the retention alone without a budget.
    latency_max_bytes: int | None = None
    # Distinct sources kept (each has its own clusters).
    max_sources: int = 64
    # Rows allowed in one batch (one Label request).
    max_rows_per_batch: int = 1_000_000
    # Per-source online clustering.
    clusters: StreamClusterConfig = field(default_factory=StreamClusterConfig)
    # Raw log lines with headers, per source: source name (or "*" for every source) ->
    # a `LogFormat` preset name or format string. The content is clustered; the header
    # fields come back as `log_<field>` columns; `body` is returned as sent.
    log_formats: Mapping[str, str] = field(default_factory=dict)
    # Sampling by cluster under a storage budget (docs/sampling.md); off by default.
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Width of the "rows/s now" of a cluster, seconds: rows over the last window, beside
    # the window before it (the rate of change in `Clusters` and the page).
    rate_window_s: int = 60
    # A cluster first seen this long after its source's first batch (in this process) is
    # a new kind: counted in `logclust_new_clusters_total`, logged, shown on the page.
    # Earlier ones are the source's start-up, not news.
    new_kind_grace_s: int = 300

    def __post_init__(self) -> None:
        for fmt in self.log_formats.values():
            LogFormat.resolve(fmt)  # raises ValueError naming what is wrong
        check_window(self.window_s, self.retention_s)
        if self.new_kind_grace_s < 0:
            raise ValueError(
                f"new_kind_grace_s must be >= 0. Received: new_kind_grace_s={self.new_kind_grace_s}"
            )
        for name in ("max_sources", "max_rows_per_batch", "rate_window_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")
        self._check_latency_range()
        if self.latency_max_bytes is not None and self.latency_max_bytes < 1:
            raise ValueError(
                f"latency_max_bytes must be positive. Received: latency_max_bytes="
                f"{self.latency_max_bytes}"
            )

    def _check_latency_range(self) -> None:
        """`max_latency_ms` must be positive and fit a sketch's buckets at
        `relative_accuracy` (past its cap the lowest buckets would collapse)."""
        if not 0.0 < self.relative_accuracy < 1.0:
            raise ValueError(
                f"relative_accuracy must be in (0, 1). Received: {self.relative_accuracy}"
            )
        if not (math.isfinite(self.max_latency_ms) and self.max_latency_ms > MIN_INDEXABLE):
            raise ValueError(
                f"max_latency_ms must be finite and above {MIN_INDEXABLE}. "
                f"Received: max_latency_ms={self.max_latency_ms}"
            )
        sketch = DDSketch(self.relative_accuracy)
        buckets = math.log(self.max_latency_ms / MIN_INDEXABLE) / math.log(sketch.gamma) + 2
        if buckets > sketch.max_bins:
            raise ValueError(
                f"max_latency_ms spans {buckets:.0f} sketch buckets at relative_accuracy "
                f"{self.relative_accuracy}, over the cap of {sketch.max_bins}; lower one of "
                f"them. Received: max_latency_ms={self.max_latency_ms}"
            )
