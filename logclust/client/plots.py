"""Plots of the sidecar's answers (needs matplotlib: the `plot` extra).

`p99_figure` draws p99 latency over time for the clusters with the most rows (at most
`TOP_SERIES`), each labelled with its shortened template, and the rest merged into one
"other" series. The client has quantiles, not sketches, so "other" is drawn as the band
its p99 must lie in (`logclust.client.tables.merge_latency_rows`) with its upper edge as a
line. The legend sits right of the axes and the figure widens to hold it.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from logclust.client.tables import (
    ClusterKey,
    cluster_groups,
    cluster_templates,
    merge_latency_rows,
    rank_by_rows,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_EXTRA_MISSING = "plot skipped: install logclust[plot]"
# Series drawn one by one: more colours than this cannot be told apart.
TOP_SERIES = 12
# Characters of a template shown in the legend.
LABEL_CHARS = 56
# A log latency axis once the largest p99 is this many times the smallest.
LOG_SPAN = 20.0
# Width of the axes, inches; the legend's width is added to the figure's.
AXES_WIDTH_IN = 8.0
FIGURE_HEIGHT_IN = 5.5
DPI = 100
OTHER_COLOR = "0.45"
# Quantiles to ask of Latency for the plot: those past the p99 narrow the "other" band.
PLOT_QUANTILES = (0.5, 0.9, 0.99, 0.999)
_SPACE = re.compile(r"\s+")


def plotting_available() -> bool:
    """Whether matplotlib can be imported (the `plot` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def write_p99_plot(
    over_time: pa.Table,
    clusters: pa.Table,
    path: str | Path,
    top: int = TOP_SERIES,
    window_s: float | None = None,
) -> Path:
    """Writes `p99_figure` as a PNG at `path` (parent folders made) and returns the path."""
    import matplotlib.pyplot as plt

    fig = p99_figure(over_time, clusters, top=top, window_s=window_s)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def p99_figure(
    over_time: pa.Table, clusters: pa.Table, top: int = TOP_SERIES, window_s: float | None = None
) -> Figure:
    """p99 per cluster over time: the `top` clusters by rows, then "other".

    Args:
        over_time: a windowed Latency answer (`source`, `cluster_id`, `window_start`,
            `count`, `min`, `max`, `mean`, `p99` and any other quantiles: more quantiles
            narrow the "other" band).
        clusters: `Client.clusters()`, for the templates.
        top: clusters drawn one by one (1 to `TOP_SERIES`).
        window_s: the window width, for the title (None: read from the window starts).

    Raises:
        ValueError: `top` out of range, or `over_time` without a `p99` column.
    """
    if not 1 <= top <= TOP_SERIES:
        raise ValueError(f"top must be in [1, {TOP_SERIES}]. Received: top={top}")
    if "p99" not in over_time.column_names:
        raise ValueError(f"over_time needs a p99 column. Received: {over_time.column_names}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = rank_by_rows(over_time)
    shown = ranked[:top]
    fig, ax = plt.subplots(figsize=(AXES_WIDTH_IN, FIGURE_HEIGHT_IN), layout="constrained")
    sources = sorted({key[0] for key, _ in ranked})
    templates = cluster_templates(clusters)
    ys = _draw_clusters(ax, over_time, shown, templates, multi_source=len(sources) > 1)
    rest = [key for key, _ in ranked[top:]]
    if rest:
        groups = cluster_groups(clusters)
        in_groups = len({groups[k] for k in rest if k in groups}) if groups else None
        ys += _draw_other(ax, over_time, rest, sum(n for _, n in ranked[top:]), in_groups)
    _style_axes(ax, ys)
    ax.set_title(_title(over_time, sources, window_s), fontsize="medium")
    if ranked:
        title = f"cluster (rows): template, top {len(shown)} of {len(ranked)} by rows"
        _place_legend(fig, title)
    else:
        ax.text(0.5, 0.5, "no latency recorded", ha="center", transform=ax.transAxes)
    return fig


def _draw_clusters(
    ax: Axes,
    over_time: pa.Table,
    shown: list[tuple[ClusterKey, int]],
    templates: dict[ClusterKey, str],
    multi_source: bool,
) -> list[float]:
    """One line per shown cluster, slowest (median p99) first so the legend reads top down."""
    series = _series(over_time, {key for key, _ in shown})
    rows = dict(shown)
    order = sorted(series, key=lambda k: (-_median(series[k][1]), k))
    for i, key in enumerate(order):
        times, p99 = series[key]
        name = f"{key[0]}/{key[1]}" if multi_source else str(key[1])
        label = f"{name} ({rows[key]:,}): {readable(templates.get(key, ''), LABEL_CHARS)}"
        ax.plot(_days(times), p99, label=label, marker=".", linewidth=1.4, **_style(i))
    return [v for _, p99 in series.values() for v in p99]


def _draw_other(
    ax: Axes, over_time: pa.Table, rest: list[ClusterKey], rows: int, groups: int | None
) -> list[float]:
    """The rest as one series: the band its p99 lies in, its upper edge as a dotted line
    (`groups`: how many groups the rest's clusters are in, when the answer says)."""
    keys = pa.array([f"{s}\x00{c}" for s, c in rest])
    joined = pa.compute.binary_join_element_wise(
        over_time.column("source"), over_time.column("cluster_id").cast(pa.string()), "\x00"
    )
    merged = merge_latency_rows(over_time.filter(pa.compute.is_in(joined, keys)))
    times = _days(merged.column("window_start").to_pylist())
    low = merged.column("p99_low").to_pylist()
    high = merged.column("p99_high").to_pylist()
    ax.fill_between(times, low, high, color=OTHER_COLOR, alpha=0.18, linewidth=0)
    # Groups are named only where they say more than the clusters (fewer of them).
    grouped = (
        ""
        if groups is None or groups >= len(rest)
        else f" in {groups:,} group{'s' * (groups != 1)}"
    )
    label = f"other: {len(rest):,} clusters{grouped}, {rows:,} rows (p99 in band, at most the line)"
    ax.plot(times, high, label=label, color=OTHER_COLOR, linestyle=":", marker=".", linewidth=2.2)
    return low + high


def _series(
    over_time: pa.Table, keys: set[ClusterKey]
) -> dict[ClusterKey, tuple[list[dt.datetime], list[float]]]:
    out: dict[ClusterKey, tuple[list[dt.datetime], list[float]]] = {}
    cols = over_time.select(["source", "cluster_id", "window_start", "p99"]).to_pylist()
    for r in sorted(cols, key=lambda r: r["window_start"]):
        key = (r["source"], r["cluster_id"])
        if key in keys:
            times, p99 = out.setdefault(key, ([], []))
            times.append(r["window_start"])
            p99.append(r["p99"])
    return out


def _days(times: list[dt.datetime]) -> Any:
    """Matplotlib's date numbers (days since its epoch) of UTC times."""
    import matplotlib.dates as mdates

    return mdates.date2num(times)


def _style(i: int) -> dict[str, Any]:
    """Ten tab10 colours solid, then again dashed: twelve lines stay apart."""
    return {"color": f"C{i % 10}", "linestyle": "-" if i < 10 else "--"}


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if s else 0.0


def _style_axes(ax: Axes, ys: list[float]) -> None:
    import matplotlib.dates as mdates
    import matplotlib.ticker as mticker

    positive = [y for y in ys if y > 0]
    if positive and max(positive) > LOG_SPAN * min(positive):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("p99 latency (ms)")
    ax.grid(True, which="major", alpha=0.3)
    locator = mdates.AutoDateLocator(tz=dt.UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.UTC))
    ax.set_xlabel("window start (UTC)")
    ax.set_xmargin(0.02)


def _place_legend(fig: Figure, title: str) -> None:
    """Legend right of the axes; the figure widens by the legend's width (never cut off)."""
    legend = fig.legend(
        loc="outside right upper", fontsize="small", title=title, title_fontsize="small"
    )
    legend.set_alignment("left")
    fig.canvas.draw()  # the legend's size is known once drawn
    width_in = legend.get_window_extent().width / fig.dpi
    fig.set_size_inches(AXES_WIDTH_IN + width_in + 0.3, fig.get_size_inches()[1])


def _title(over_time: pa.Table, sources: list[str], window_s: float | None) -> str:
    where = f"source {readable(sources[0], 40)}" if len(sources) == 1 else f"{len(sources)} sources"
    starts = sorted(set(over_time.column("window_start").to_pylist()))
    if window_s is None and len(starts) > 1:
        window_s = min((b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False))
    if not starts:
        return f"p99 latency per cluster, {where}"
    end = starts[-1] + dt.timedelta(seconds=window_s or 0)
    end_format = "%H:%M" if end.date() == starts[0].date() else "%Y-%m-%d %H:%M"
    span = f"{starts[0]:%Y-%m-%d %H:%M} to {end.strftime(end_format)} UTC"
    width = f", {_duration(window_s)} windows" if window_s else ""
    return f"p99 latency per cluster, {where}, {span}{width}"


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def readable(text: str, width: int) -> str:
    """`text` on one line, at most `width` characters, as matplotlib can draw it.

    Whitespace runs become one space, control characters go, characters the font lacks
    become `?`, `$` is escaped (it would start math mode), and a longer text ends in `…`.
    An empty text reads `(no template)`.
    """
    text = _SPACE.sub(" ", text).strip()
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    if not text:
        return "(no template)"
    if len(text) > width:
        text = text[: width - 1].rstrip() + "…"
    glyphs = _font_glyphs()
    text = "".join(c if ord(c) in glyphs else "?" for c in text)
    return text.replace("$", r"\$")


@functools.cache
def _font_glyphs() -> frozenset[int]:
    """Code points the default font draws (others would be boxes and a warning each)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties())
    return frozenset(FT2Font(path).get_charmap())
