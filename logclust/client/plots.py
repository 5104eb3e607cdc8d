"""Plots of the sidecar's answers (needs matplotlib: the `plot` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pyarrow as pa

from logclust.client.tables import cluster_descriptions

PLOT_EXTRA_MISSING = "plot skipped: install logclust[plot]"


def plotting_available() -> bool:
    """Whether matplotlib can be imported (the `plot` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def write_p99_plot(over_time: pa.Table, clusters: pa.Table, path: str | Path) -> Path:
    """Line plot of p99 per cluster over time (log scale), written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    desc = cluster_descriptions(clusters)
    fig, ax = plt.subplots(figsize=(10, 6))
    for (source, cid), part in _group_by_cluster(over_time).items():
        # `$` would start matplotlib's math mode (GraphQL variables have them).
        label = f"{cid}: {desc.get((source, cid), '')}"[:60].replace("$", r"\$")
        ax.plot(part["window_start"], part["p99"], marker=".", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("p99 latency per cluster")
    # Below the axes, so that no line is hidden behind it.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _group_by_cluster(table: pa.Table) -> dict[tuple[str, int], dict[str, list[Any]]]:
    groups: dict[tuple[str, int], dict[str, list[Any]]] = {}
    for r in table.to_pylist():
        g = groups.setdefault((r["source"], r["cluster_id"]), {"window_start": [], "p99": []})
        g["window_start"].append(r["window_start"])
        g["p99"].append(r["p99"])
    return groups
