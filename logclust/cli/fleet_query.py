"""Queries of a fleet: the same question to several sidecars, answers merged by id.

Sidecars served with one catalog (docs/fleet.md) give a kind the same id, so their rows
merge by `(source, cluster_id)`: latency sketches exactly (DDSketch bucket counts add,
so the fleet's quantiles are as accurate as one sidecar's), cluster sizes and rates by
sum. A local id (a kind the catalog lacks, `local` true) is fleet-unique too
(`logclust.cluster.local_ids`): sidecars that met one new kind through the same text
give it the same id and their rows merge; other local kinds stay rows of their own. A
sidecar that does not answer is named in `FleetAnswer.unreachable` and the others are
still merged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pyarrow as pa

from logclust.client.client import Client, ClientTls
from logclust.latency.book import quantile_column_name
from logclust.latency.ddsketch import DDSketch
from logclust.wire.contract import DEFAULT_QUANTILES

# Exemplars a merged cluster keeps (the first sidecars' first ones).
FLEET_EXEMPLARS = 3


@dataclass(frozen=True)
class FleetAnswer:
    """A merged answer: the table, and each sidecar that did not answer with why."""

    table: pa.Table
    unreachable: dict[str, str] = field(default_factory=dict)


def _ask(
    addrs: Sequence[str],
    call: Callable[[Client], pa.Table],
    tls: ClientTls | None,
    timeout_s: float,
) -> tuple[list[tuple[str, pa.Table]], dict[str, str]]:
    answers, unreachable = [], {}
    for addr in addrs:
        try:
            with Client(addr, timeout_s=timeout_s, tls=tls) as client:
                answers.append((addr, call(client)))
        except grpc.RpcError as e:
            unreachable[addr] = f"{e.code().name}: {e.details()}"  # type: ignore[attr-defined]
    return answers, unreachable


def _key(row: dict[str, Any], windowed: bool) -> tuple[Any, ...]:
    """Rows of one kind share a key: its id (a catalog id or a fleet-unique local id),
    with whether it is local."""
    return (
        row["source"],
        row["cluster_id"],
        row.get("window_start") if windowed else 0,
        row["local"],
    )


def fleet_latency(
    addrs: Sequence[str],
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    since_s: float | None = None,
    window_s: float | None = None,
    source: str | None = None,
    tls: ClientTls | None = None,
    timeout_s: float = 30.0,
) -> FleetAnswer:
    """Per-cluster latency over every sidecar of `addrs`, sketches merged exactly.

    Returns:
        Columns `source`, `cluster_id` (int64), `window_start` (when windowed), `local`
        (a kind the catalog lacks), `sidecars` (how many had rows), `count`, `min`,
        `max`, `mean` and one column per quantile.
    """
    qs = list(quantiles) or list(DEFAULT_QUANTILES)

    def call(c: Client) -> pa.Table:
        return c.latency(qs, since_s=since_s, window_s=window_s, source=source, sketches=True)

    answers, unreachable = _ask(addrs, call, tls, timeout_s)
    merged: dict[tuple[Any, ...], tuple[DDSketch, int]] = {}
    for _, table in answers:
        for row in table.to_pylist():
            key = _key(row, window_s is not None)
            sketch = DDSketch.from_bytes(row["sketch"])
            if key in merged:
                acc, n = merged[key]
                acc.merge(sketch)
                merged[key] = (acc, n + 1)
            else:
                merged[key] = (sketch, 1)
    return FleetAnswer(_latency_table(merged, qs, window_s is not None), unreachable)


def _latency_table(
    merged: dict[tuple[Any, ...], tuple[DDSketch, int]], qs: list[float], windowed: bool
) -> pa.Table:
    keys = sorted(merged, key=lambda k: (k[0], k[1], k[2] or 0))
    sketches = [merged[k][0] for k in keys]
    cols: dict[str, pa.Array] = {
        "source": pa.array([k[0] for k in keys], pa.string()),
        "cluster_id": pa.array([k[1] for k in keys], pa.int64()),
    }
    if windowed:
        cols["window_start"] = pa.array([k[2] for k in keys], pa.timestamp("ms", tz="UTC"))
    cols["local"] = pa.array([bool(k[3]) for k in keys], pa.bool_())
    cols["sidecars"] = pa.array([merged[k][1] for k in keys], pa.int32())
    cols["count"] = pa.array([s.count for s in sketches], pa.int64())
    cols["min"] = pa.array([s.min for s in sketches], pa.float64())
    cols["max"] = pa.array([s.max for s in sketches], pa.float64())
    cols["mean"] = pa.array([s.sum / max(s.count, 1) for s in sketches], pa.float64())
    values = np.array([s.quantiles(qs) for s in sketches], np.float64).reshape(len(keys), len(qs))
    for j, q in enumerate(qs):
        cols[quantile_column_name(q)] = pa.array(values[:, j], pa.float64())
    return pa.table(cols)


def fleet_clusters(
    addrs: Sequence[str],
    source: str | None = None,
    tls: ClientTls | None = None,
    timeout_s: float = 30.0,
) -> FleetAnswer:
    """Every cluster over the sidecars of `addrs`, merged by catalog id: sizes and rates
    summed, first/last seen widened, the first template and exemplars kept.

    Returns:
        Columns `source`, `cluster_id`, `local` (a kind the catalog lacks), `sidecars`,
        `size`, `first_seen`, `last_seen`, `template`, `exemplars`, `active`,
        `rows_per_s`, `rows_per_s_before`.
    """
    answers, unreachable = _ask(addrs, lambda c: c.clusters(source), tls, timeout_s)
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _, table in answers:
        for row in table.to_pylist():
            key = _key(row, False)
            acc = merged.get(key)
            if acc is None:
                merged[key] = {**row, "sidecars": 1}
                continue
            acc["sidecars"] += 1
            for name in ("size", "rows_per_s", "rows_per_s_before"):
                acc[name] += row[name]
            acc["first_seen"] = _pick(min, acc["first_seen"], row["first_seen"])
            acc["last_seen"] = _pick(max, acc["last_seen"], row["last_seen"])
            acc["active"] = acc["active"] or row["active"]
            acc["template"] = acc["template"] or row["template"]
            more = [e for e in row["exemplars"] if e not in acc["exemplars"]]
            acc["exemplars"] = (acc["exemplars"] + more)[:FLEET_EXEMPLARS]
    names = ["source", "cluster_id", "local", "sidecars", "size", "first_seen", "last_seen"]
    names += ["template", "exemplars", "active", "rows_per_s", "rows_per_s_before"]
    rows = [merged[k] for k in sorted(merged, key=lambda k: (k[0], k[1]))]
    if not rows:
        return FleetAnswer(pa.table({n: pa.array([], pa.null()) for n in names}), unreachable)
    return FleetAnswer(pa.Table.from_pylist([{n: r[n] for n in names} for r in rows]), unreachable)


def _pick(f: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else f(a, b)
