"""What the demo asks the sidecar once its traffic is in, whichever way it was sent.

Both senders (`logclust.cli.demo` through `Client.label`, `logclust.cli.otlp_demo`
through the OpenTelemetry SDK) end with `query`, and the report reads its `Answers`.
"""

from __future__ import annotations

import pyarrow as pa

from logclust.client import Client
from logclust.client.plots import PLOT_QUANTILES

# What the sidecar answers after the traffic: latency, latency per minute, clusters.
Answers = tuple[pa.Table, pa.Table, pa.Table]


def query(client: Client) -> Answers:
    """What the report needs from the sidecar once the traffic is in."""
    latency = client.latency(quantiles=(0.99,))
    # More quantiles than the p99 narrow the band of the plot's "other" series.
    over_time = client.latency(quantiles=PLOT_QUANTILES, window_s=60)
    return latency, over_time, client.clusters()
