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

    def __post_init__(self) -> None:
        for fmt in self.log_formats.values():
            LogFormat.resolve(fmt)  # raises ValueError naming what is wrong
        check_window(self.window_s, self.retention_s)
        for name in ("max_sources", "max_rows_per_batch"):
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
