"""The sidecar demo: Online Boutique-like frontend traffic through the real gRPC service.

`logclust.cli.traffic.generate_traffic` makes request bodies of thirteen kinds (forms,
query strings, JSON, GraphQL, XML, plain text) with their latencies; k is never given.
`run_demo` starts a sidecar in-process on a real port, streams the traffic through
`Client.label`, and reports the adjusted Rand index of cluster ids against the true kind
(rows after the first `SCORED_AFTER`), the share of rows without a cluster, the
per-cluster p99 from the `Latency` call next to the exact numpy p99 of the rows sent,
and a p99-over-time plot. With `otlp=True` the OpenTelemetry SDK sends the same traffic
to the sidecar's OTLP/gRPC receiver instead (`logclust.cli.otlp_demo`).
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from logclust.cli import demo_table
from logclust.cli.demo_answers import Answers, query
from logclust.cli.traffic import KINDS, generate_traffic
from logclust.client import Client
from logclust.client.plots import PLOT_EXTRA_MISSING, plotting_available, write_p99_plot
from logclust.client.tables import GROUP_ID, cluster_descriptions, cluster_groups
from logclust.cluster import quality
from logclust.cluster.labeler import Labeler
from logclust.server.app import create_server
from logclust.server.config import ServerConfig

logger = logging.getLogger(__name__)

MIN_ARI = 0.95
MAX_REL_ERROR = 0.01
# Rows scored: those after the first SCORED_AFTER (a new kind of request opens its cluster
# at once, but the first rows of a kind show the stream its neighbours).
SCORED_AFTER = 1000
# Largest share of scored rows labelled -1 (none expected: every row gets a cluster).
MAX_UNASSIGNED = 0.001
OTLP_EXTRA_MISSING = "demo --otlp needs the OpenTelemetry SDK: install logclust[otel]"


def otlp_sdk_available() -> bool:
    """Whether the OpenTelemetry SDK and its OTLP/gRPC exporter (the `otel` extra) import."""
    try:
        return all(
            importlib.util.find_spec(m) is not None
            for m in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.grpc")
        )
    except ModuleNotFoundError:  # a parent package is missing
        return False


@dataclass
class DemoReport:
    """What the demo measured; `render()` gives the text the CLI prints."""

    rows: int
    seconds: float
    ari: float
    unassigned: float  # share of scored rows labelled -1
    clusters: int  # clusters the scored rows fell into
    table: pa.Table  # per cluster: id, [group], description, count, p99 (sketch), exact, error
    summary: demo_table.Summary  # what the printed table shows
    slowest_cluster: int
    checkout_cluster: int
    plot: Path | None
    notes: list[str] = field(default_factory=list)
    sender: str = "the gRPC sidecar"  # how the rows reached the sidecar

    @property
    def max_rel_error(self) -> float:
        return max(self.table.column("rel_error").to_pylist(), default=0.0)

    @property
    def passed(self) -> bool:
        """ARI >= 0.95, no rows left without a cluster, every p99 within 1% of exact,
        checkout the slowest cluster."""
        return (
            self.ari >= MIN_ARI
            and self.unassigned <= MAX_UNASSIGNED
            and self.max_rel_error <= MAX_REL_ERROR
            and self.slowest_cluster == self.checkout_cluster
        )

    def render(self) -> str:
        lines = [
            f"labelled {self.rows} rows in {self.seconds:.2f} s "
            f"({self.rows / max(self.seconds, 1e-9):,.0f} rows/s) through {self.sender}",
            f"{len(KINDS)} kinds of request, k never given: {self.clusters} clusters; "
            f"adjusted Rand index vs true kind (rows after the first {SCORED_AFTER}): "
            f"{self.ari:.4f}; rows without a cluster: {self.unassigned:.2%}",
            "",
            *demo_table.render(self.summary),
        ]
        lines.append("")
        lines.append(
            f"slowest cluster: {self.slowest_cluster} "
            + (
                "(the checkout cluster)"
                if self.slowest_cluster == self.checkout_cluster
                else "(NOT the checkout cluster)"
            )
        )
        if self.plot is not None:
            lines.append(f"p99 over time written to {self.plot}")
        lines.append(
            f"checks: ARI >= {MIN_ARI}, rows -1 <= {MAX_UNASSIGNED:.1%}, "
            f"p99 within {MAX_REL_ERROR:.0%} of exact numpy p99 "
            f"(max {self.max_rel_error:.2%}), checkout slowest: "
            + ("PASSED" if self.passed else "FAILED")
        )
        return "\n".join(lines + self.notes)


def run_demo(
    rows: int = 20_000,
    plot: str | Path | None = None,
    bundle: str | Path | None = None,
    labeler: Any = None,
    batch_size: int = 1000,
    seed: int = 0,
    otlp: bool = False,
) -> DemoReport:
    """Runs the whole demo against an in-process sidecar on a real port.

    Args:
        rows: requests to generate.
        plot: PNG path for p99 per cluster over time; None skips the plot.
        bundle: model bundle for `Labeler.load` (None: the default bundle).
        labeler: an already loaded embedder (tests pass a fake); overrides `bundle`.
        batch_size: rows per streamed batch.
        seed: traffic seed.
        otlp: send through the OpenTelemetry SDK to the OTLP/gRPC receiver (needs the
            `otel` extra, see `otlp_sdk_available`) instead of `Client.label`.

    Raises:
        ValueError: `otlp` without the OpenTelemetry SDK installed.
    """
    if otlp and not otlp_sdk_available():
        raise ValueError(f"{OTLP_EXTRA_MISSING}. Received: otlp=True")
    if labeler is None:
        labeler = Labeler.load(bundle)
    traffic = generate_traffic(rows, seed=seed)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="logclust-demo-") as store:
        config = ServerConfig(listen="127.0.0.1:0", store_dir=store)
        if otlp:
            # Imported only here: the SDK is an optional extra, checked above.
            from logclust.cli import otlp_demo

            sender = otlp_demo.SENDER
            labelled, seconds, answers, note = otlp_demo.send(traffic, config, labeler, batch_size)
            notes.append(note)
        else:
            sender = "the gRPC sidecar"
            labelled, seconds, answers = _send_label(traffic, config, labeler, batch_size)
    latency, over_time, clusters = answers
    ids = labelled.column("cluster_id").to_numpy()
    kinds = labelled.column("kind").to_pylist()
    scored = ids[SCORED_AFTER:]
    ari = quality.ari(kinds[SCORED_AFTER:], scored.tolist())
    table = _p99_table(labelled, latency, clusters)
    merged_ids = _as_merged(ids, clusters)
    lat = labelled.column("latency_ms").to_numpy()
    report = DemoReport(
        rows=rows,
        seconds=seconds,
        ari=ari,
        unassigned=float((scored == -1).mean()) if scored.size else 0.0,
        clusters=len(set(scored.tolist()) - {-1}),
        table=table,
        summary=demo_table.summarize(table, merged_ids, lat, latency, kinds),
        slowest_cluster=int(table.column("cluster_id")[0].as_py()),
        checkout_cluster=_majority_cluster(merged_ids, kinds, "checkout"),
        plot=None,
        notes=notes,
        sender=sender,
    )
    if plot is not None and not plotting_available():
        report.notes.append(PLOT_EXTRA_MISSING)
    elif plot is not None:
        report.plot = write_p99_plot(over_time, clusters, plot)
    return report


def _send_label(
    traffic: pa.Table, config: ServerConfig, labeler: Any, batch_size: int
) -> tuple[pa.Table, float, Answers]:
    """The traffic through `Client.label`: (labelled rows, seconds, answers)."""
    server, port = create_server(config, labeler=labeler)
    try:
        with Client(f"127.0.0.1:{port}") as client:
            t0 = time.perf_counter()
            labelled = client.label(traffic, batch_size=batch_size)
            seconds = time.perf_counter() - t0
            return labelled, seconds, query(client)
    finally:
        server.stop(grace=None)


def _as_merged(ids: np.ndarray, clusters: pa.Table) -> np.ndarray:
    """Ids with merged clusters replaced by the id standing for them (as latency is
    reported)."""
    merged = {
        r["cluster_id"]: r["merged_into"]
        for r in clusters.select(["cluster_id", "merged_into"]).to_pylist()
        if r["merged_into"] is not None
    }
    if not merged:
        return ids
    return np.fromiter((merged.get(i, i) for i in ids.tolist()), np.int32, ids.size)


def _majority_cluster(ids: np.ndarray, kinds: list[str], kind: str) -> int:
    mine = ids[np.asarray(kinds, object) == kind]
    values, counts = np.unique(mine, return_counts=True)
    return int(values[np.argmax(counts)])


def _p99_table(labelled: pa.Table, latency: pa.Table, clusters: pa.Table) -> pa.Table:
    """Sketch p99 per cluster next to the exact numpy p99 of the rows sent, slowest first."""
    ids = _as_merged(labelled.column("cluster_id").to_numpy(), clusters)
    lat = labelled.column("latency_ms").to_numpy()
    desc = cluster_descriptions(clusters)
    groups = _group_ids(labelled, ids, clusters)
    rows = []
    for r in latency.to_pylist():
        exact = float(np.quantile(lat[ids == r["cluster_id"]], 0.99))
        group = {GROUP_ID: groups.get((r["source"], r["cluster_id"]), -1)} if groups else {}
        rows.append(
            {
                "cluster_id": r["cluster_id"],
                **group,
                "count": r["count"],
                "p99": r["p99"],
                "exact_p99": exact,
                "rel_error": abs(r["p99"] - exact) / exact,
                "description": desc.get((r["source"], r["cluster_id"]), ""),
            }
        )
    rows.sort(key=lambda r: -r["p99"])
    return pa.Table.from_pylist(rows)


def _group_ids(
    labelled: pa.Table, ids: np.ndarray, clusters: pa.Table
) -> dict[tuple[str, int], int]:
    """`(source, cluster id)` -> group id, from the Clusters answer or else from the Label
    answer's `group_id` column (the group most of a cluster's rows got); empty when the
    sidecar answers without groups."""
    groups = cluster_groups(clusters)
    if groups or GROUP_ID not in labelled.column_names:
        return groups
    n = labelled.num_rows
    has_source = "source" in labelled.column_names
    sources = labelled.column("source").to_pylist() if has_source else [""] * n
    gids = labelled.column(GROUP_ID).to_pylist()
    votes: dict[tuple[str, int], dict[int, int]] = {}
    for source, cid, gid in zip(sources, ids.tolist(), gids, strict=True):
        key = (source, cid)
        counts = votes.setdefault(key, {})
        counts[gid] = counts.get(gid, 0) + 1
    return {key: max(c, key=lambda g: (c[g], -g)) for key, c in votes.items()}
