"""The sidecar demo: Online Boutique-like frontend traffic through the real gRPC service.

`generate_traffic` makes request bodies of three kinds with their latencies:

* `add_to_cart`: `product_id=...&quantity=...`, about 4 ms, with a short spike episode;
* `checkout`: `email=...&street_address=...&...&credit_card_number=...`, about 100 ms;
* `set_currency`: `currency_code=...`, about 0.2 ms.

`run_demo` starts a sidecar in-process on a real port, streams the traffic through
`Client.label`, and reports the adjusted Rand index of cluster ids against the true kind
(rows after warm-up), the per-cluster p99 from the `Latency` call next to the exact
numpy p99 of the rows sent, and a p99-over-time plot.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from logclust.client import Client
from logclust.client.plots import PLOT_EXTRA_MISSING, plotting_available, write_p99_plot
from logclust.client.tables import cluster_descriptions
from logclust.cluster import quality
from logclust.cluster.labeler import Labeler
from logclust.server.app import create_server
from logclust.server.config import ServerConfig

logger = logging.getLogger(__name__)

KINDS = ("add_to_cart", "checkout", "set_currency")
_PRODUCTS = (
    "OLJCESPC7Z",
    "66VCHSJNUP",
    "1YMWWN1N4O",
    "L9ECAV7KIM",
    "2ZYFJ3GM2N",
    "0PUK6V6EV0",
    "LS4PSXUNUM",
    "9SIQT8TOJO",
    "6E92ZMYYFZ",
)
_CURRENCIES = ("EUR", "USD", "JPY", "GBP", "CAD", "TRY")
_ADDRESSES = (
    ("Amphitheatre Parkway", "94043", "Mountain View", "CA"),
    ("Main Street", "10001", "New York", "NY"),
    ("Elm Avenue", "60601", "Chicago", "IL"),
    ("Market Street", "94105", "San Francisco", "CA"),
    ("Pine Road", "98101", "Seattle", "WA"),
    ("Oak Lane", "73301", "Austin", "TX"),
)
MIN_ARI = 0.95
MAX_REL_ERROR = 0.01
_NAMES = ("someone", "alice.smith", "bob", "carol99", "dave.jones", "erin")


def _bodies_add_to_cart(rng: np.random.Generator, n: int) -> list[str]:
    prod = rng.choice(_PRODUCTS, n)
    qty = rng.integers(1, 10, n)
    return [f"product_id={p}&quantity={q}" for p, q in zip(prod, qty, strict=True)]


def _bodies_currency(rng: np.random.Generator, n: int) -> list[str]:
    return [f"currency_code={c}" for c in rng.choice(_CURRENCIES, n)]


def _bodies_checkout(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        street, zip_code, city, state = _ADDRESSES[rng.integers(len(_ADDRESSES))]
        card = "-".join(f"{v:04d}" for v in rng.integers(0, 10_000, 4))
        out.append(
            f"email={rng.choice(_NAMES)}@example.com"
            f"&street_address={rng.integers(1, 3000)} {street}&zip_code={zip_code}"
            f"&city={city}&state={state}&country=United States&credit_card_number={card}"
            f"&credit_card_expiration_month={rng.integers(1, 13)}"
            f"&credit_card_expiration_year={rng.integers(2026, 2035)}"
            f"&credit_card_cvv={rng.integers(100, 1000)}"
        )
    return out


def generate_traffic(
    rows: int = 20_000, seed: int = 0, end_ms: int | None = None, span_s: float = 600.0
) -> pa.Table:
    """Frontend request bodies with latencies, spread evenly over `span_s` seconds.

    Returns:
        Columns `body`, `latency_ms` (float64), `time` (timestamp ms, UTC), `source`
        (`"frontend"`) and `kind` (the true request kind, passed through by the sidecar).
    """
    if rows < 1:
        raise ValueError(f"rows must be positive. Received: rows={rows}")
    rng = np.random.default_rng(seed)
    kind = rng.choice(len(KINDS), rows, p=[0.45, 0.15, 0.40])
    end_ms = int(time.time() * 1000) if end_ms is None else end_ms
    t = end_ms - int(span_s * 1000) + np.sort(rng.integers(0, int(span_s * 1000), rows))
    body = np.empty(rows, object)
    latency = np.empty(rows, np.float64)
    makers = (_bodies_add_to_cart, _bodies_checkout, _bodies_currency)
    medians = (4.0, 100.0, 0.2)
    for k in range(len(KINDS)):
        idx = np.flatnonzero(kind == k)
        body[idx] = makers[k](rng, idx.size)
        latency[idx] = medians[k] * rng.lognormal(0.0, 0.25, idx.size)
    # A short spike episode in add-to-cart (a slow cart backend) two thirds into the span:
    # 0.5% of the span, so it shows in its window's p99 but not in the overall p99.
    spike_at = end_ms - int(span_s * 1000 / 3)
    spiking = (kind == 0) & (t >= spike_at) & (t < spike_at + int(span_s * 5))
    latency[spiking] *= rng.uniform(5.0, 15.0, int(spiking.sum()))
    return pa.table(
        {
            "body": pa.array(body.tolist(), pa.string()),
            "latency_ms": pa.array(latency, pa.float64()),
            "time": pa.array(t, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "source": pa.array(["frontend"] * rows, pa.string()),
            "kind": pa.array(np.asarray(KINDS)[kind].tolist(), pa.string()),
        }
    )


@dataclass
class DemoReport:
    """What the demo measured; `render()` gives the text the CLI prints."""

    rows: int
    seconds: float
    ari: float
    warmup_rows: int
    table: pa.Table  # per cluster: id, description, count, p99 (sketch), p99 exact, error
    slowest_cluster: int
    checkout_cluster: int
    plot: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        return max(self.table.column("rel_error").to_pylist(), default=0.0)

    @property
    def passed(self) -> bool:
        """ARI >= 0.95, every p99 within 1% of exact, checkout the slowest cluster."""
        return (
            self.ari >= MIN_ARI
            and self.max_rel_error <= MAX_REL_ERROR
            and self.slowest_cluster == self.checkout_cluster
        )

    def render(self) -> str:
        lines = [
            f"labelled {self.rows} rows in {self.seconds:.2f} s "
            f"({self.rows / max(self.seconds, 1e-9):,.0f} rows/s) through the gRPC sidecar",
            f"adjusted Rand index vs true kind (rows after warm-up of {self.warmup_rows}): "
            f"{self.ari:.4f}",
            "",
            f"{'cluster':>7} {'rows':>7} {'p99 ms':>10} {'exact p99':>10} {'rel err':>8}  "
            "description",
        ]
        for r in self.table.to_pylist():
            lines.append(
                f"{r['cluster_id']:>7} {r['count']:>7} {r['p99']:>10.3f} {r['exact_p99']:>10.3f} "
                f"{r['rel_error']:>8.2%}  {_shorten(r['description'], 110)}"
            )
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
            f"checks: ARI >= {MIN_ARI}, p99 within {MAX_REL_ERROR:.0%} of exact numpy p99 "
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
) -> DemoReport:
    """Runs the whole demo against an in-process sidecar on a real port.

    Args:
        rows: requests to generate.
        plot: PNG path for p99 per cluster over time; None skips the plot.
        bundle: model bundle for `Labeler.load` (None: the default bundle).
        labeler: an already loaded embedder (tests pass a fake); overrides `bundle`.
        batch_size: rows per streamed batch.
        seed: traffic seed.
    """
    if labeler is None:
        labeler = Labeler.load(bundle)
    traffic = generate_traffic(rows, seed=seed)
    with tempfile.TemporaryDirectory(prefix="logclust-demo-") as store:
        config = ServerConfig(listen="127.0.0.1:0", store_dir=store)
        server, port = create_server(config, labeler=labeler)
        try:
            with Client(f"127.0.0.1:{port}") as client:
                t0 = time.perf_counter()
                labelled = client.label(traffic, batch_size=batch_size)
                seconds = time.perf_counter() - t0
                latency = client.latency(quantiles=(0.99,))
                over_time = client.latency(quantiles=(0.99,), window_s=60)
                clusters = client.clusters()
        finally:
            server.stop(grace=None)
    warmup = config.clusters.warmup_rows
    ids = labelled.column("cluster_id").to_numpy()
    kinds = labelled.column("kind").to_pylist()
    ari = quality.ari(kinds[warmup:], ids[warmup:].tolist())
    table = _p99_table(labelled, latency, clusters)
    report = DemoReport(
        rows=rows,
        seconds=seconds,
        ari=ari,
        warmup_rows=warmup,
        table=table,
        slowest_cluster=int(table.column("cluster_id")[0].as_py()),
        checkout_cluster=_majority_cluster(ids, kinds, "checkout"),
        plot=None,
    )
    if plot is not None and not plotting_available():
        report.notes.append(PLOT_EXTRA_MISSING)
    elif plot is not None:
        report.plot = write_p99_plot(over_time, clusters, plot)
    return report


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _majority_cluster(ids: np.ndarray, kinds: list[str], kind: str) -> int:
    mine = ids[np.asarray(kinds, object) == kind]
    values, counts = np.unique(mine, return_counts=True)
    return int(values[np.argmax(counts)])


def _p99_table(labelled: pa.Table, latency: pa.Table, clusters: pa.Table) -> pa.Table:
    """Sketch p99 per cluster next to the exact numpy p99 of the rows sent, slowest first."""
    ids = labelled.column("cluster_id").to_numpy()
    lat = labelled.column("latency_ms").to_numpy()
    desc = cluster_descriptions(clusters)
    rows = []
    for r in latency.to_pylist():
        exact = float(np.quantile(lat[ids == r["cluster_id"]], 0.99))
        rows.append(
            {
                "cluster_id": r["cluster_id"],
                "count": r["count"],
                "p99": r["p99"],
                "exact_p99": exact,
                "rel_error": abs(r["p99"] - exact) / exact,
                "description": desc.get((r["source"], r["cluster_id"]), ""),
            }
        )
    rows.sort(key=lambda r: -r["p99"])
    return pa.Table.from_pylist(rows)
