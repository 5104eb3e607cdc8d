"""`logclust_sampled_rows_total{source,outcome}`: rows kept and dropped by the storage
budget per source (`outcome` is `kept` or `dropped`), read from the sampler at scrape time.
Registered by the sidecar only when a budget is set."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class SampledRowsCollector(Collector):
    """Kept and dropped rows per source; `read()` gives source -> (kept, dropped)."""

    def __init__(self, read: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily(
            "logclust_sampled_rows",
            "Rows kept and dropped by the storage budget (sampling), per source.",
            labels=["source", "outcome"],
        )
        for source, (kept, dropped) in sorted(self.read().items()):
            fam.add_metric([source, "kept"], kept)
            fam.add_metric([source, "dropped"], dropped)
        yield fam
