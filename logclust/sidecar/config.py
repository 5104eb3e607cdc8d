"""Settings of a `StreamLabeler` (`logclust.sidecar.stream_labeler`), in a module light to
import: the CLI parser reads its defaults at every start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from logclust.cluster.config import StreamClusterConfig
from logclust.latency.book import check_window
from logclust.text.log_format import LogFormat


@dataclass(frozen=True)
class StreamLabelerConfig:
    """What a `StreamLabeler` keeps and how much it accepts."""

    # Base latency window, seconds; query windows are multiples of it.
    window_s: int = 10
    # How long latency windows are kept, seconds (memory and store).
    retention_s: int = 6 * 3600
    # Relative accuracy of the latency quantiles.
    relative_accuracy: float = 0.01
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
        if self.latency_max_bytes is not None and self.latency_max_bytes < 1:
            raise ValueError(
                f"latency_max_bytes must be positive. Received: latency_max_bytes="
                f"{self.latency_max_bytes}"
            )
