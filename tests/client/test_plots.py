"""The p99 plot: at most 12 clusters and "other", a legend inside the figure, any text."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.client import plots
from logclust.client.plots import TOP_SERIES, p99_figure, readable, write_p99_plot
from logclust.client.tables import clusters_to_table
from logclust.latency.book import LatencyBook
from logclust.proto import logclust_pb2 as pb

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

NOW_MS = 1_700_000_040_000
WINDOW_MS = 60_000


def _answers(
    n: int, templates: list[str] | None = None, sources: tuple[str, ...] = ("web",)
) -> tuple[pa.Table, pa.Table]:
    """A windowed Latency answer from a real LatencyBook, and its Clusters answer:
    cluster i has about 5000 / (i + 1) rows (so ranks follow ids) over five windows."""
    rng = np.random.default_rng(n)
    sizes = np.maximum(5000 // (np.arange(n) + 1), 1)
    cid = np.repeat(np.arange(n, dtype=np.int32), sizes)
    src = rng.integers(0, len(sources), cid.size).astype(np.int32)
    lat = rng.lognormal(0.5 + (np.arange(n) % 7)[cid], 0.6)
    t = NOW_MS - 5 * WINDOW_MS + rng.integers(0, 5 * WINDOW_MS, cid.size)
    book = LatencyBook(window_ms=WINDOW_MS, retention_ms=3600_000)
    book.record(list(sources), src, cid, t, lat, NOW_MS)
    over_time = book.query(plots.PLOT_QUANTILES, window_ms=WINDOW_MS)
    texts = templates or [f"k{i}=<*>&v=<NUM>" for i in range(n)]
    infos = [
        pb.ClusterInfo(
            source=s, cluster_id=i, group_id=i, size=int(sizes[i]), template=texts[i], active=True
        )
        for s in sources
        for i in range(n)
    ]
    return over_time, clusters_to_table(pb.ClustersResponse(clusters=infos))


def _legend_texts(fig: plt.Figure) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def _assert_legend_inside(fig: plt.Figure) -> None:
    fig.canvas.draw()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    page = fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    axes = fig.axes[0].get_window_extent()
    assert axes.x1 <= box.x0  # right of the axes: no line hidden behind it


@pytest.mark.parametrize("n", [1, 12, 13, 500])
def test_at_most_twelve_clusters_then_other(n: int, tmp_path: Path) -> None:
    over_time, clusters = _answers(n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = p99_figure(over_time, clusters)
    texts = _legend_texts(fig)
    shown = min(n, TOP_SERIES)
    assert len(texts) == shown + (n > TOP_SERIES)
    # The biggest clusters are the ones drawn, each with its rows and template.
    assert {t.split(" ")[0] for t in texts[:shown]} == {str(i) for i in range(shown)}
    assert any(t.startswith("0 (5,000): k0=<*>&v=<NUM>") for t in texts)
    if n > TOP_SERIES:
        rows = int(over_time.column("count").to_numpy().sum()) - sum(
            5000 // (i + 1) for i in range(TOP_SERIES)
        )
        assert texts[-1].startswith(f"other: {n - TOP_SERIES:,} clusters, {rows:,} rows")
    else:
        assert not any(t.startswith("other") for t in texts)
    _assert_legend_inside(fig)
    title = fig.axes[0].get_title()
    assert "source web" in title and "1 min windows" in title
    path = write_p99_plot(over_time, clusters, tmp_path / "sub" / "p99.png")
    height, width, _ = matplotlib.image.imread(path).shape
    w_in, h_in = fig.get_size_inches()
    assert abs(width - w_in * plots.DPI) <= 1 and abs(height - h_in * plots.DPI) <= 1
    plt.close(fig)


def test_empty_huge_and_non_ascii_templates_draw_without_missing_glyphs() -> None:
    templates = [
        "",
        "x=" + "<*>&" * 5000,
        "ошибка: диск <*> заполнен",
        "支付失败 <NUM> 次",
        "price $<NUM>\tin\n€ 😀 \x00done",
    ]
    over_time, clusters = _answers(len(templates), templates)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font" would raise
        fig = p99_figure(over_time, clusters)
        _assert_legend_inside(fig)
    texts = _legend_texts(fig)
    by_id = {t.split(" ")[0]: t.split(": ", 1)[1] for t in texts}
    assert by_id["0"] == "(no template)"
    assert len(by_id["1"]) == plots.LABEL_CHARS and by_id["1"].endswith("…")
    assert by_id["2"] == "ошибка: диск <*> заполнен"
    assert by_id["3"] == "???? <NUM> ?"
    assert by_id["4"].startswith(r"price \$<NUM> in € ") and "\x00" not in by_id["4"]
    plt.close(fig)


def test_readable() -> None:
    assert readable("  a \n\t b  ", 10) == "a b"
    assert readable("abcdefghijk", 5) == "abcd…"
    assert readable("\x01\x02", 5) == "(no template)"
    assert readable("$x$", 10) == r"\$x\$"


def test_other_is_a_band_under_a_dotted_line() -> None:
    over_time, clusters = _answers(40)
    fig = p99_figure(over_time, clusters, top=3)
    ax = fig.axes[0]
    (band,) = ax.collections
    other = [line for line in ax.get_lines() if line.get_label().startswith("other")]
    assert len(other) == 1 and len(ax.get_lines()) == 4 and other[0].get_linestyle() == ":"
    low = band.get_paths()[0].vertices[:, 1].min()
    assert low > 0 and other[0].get_ydata().max() >= low
    plt.close(fig)


def test_several_sources_log_scale_and_no_rows() -> None:
    over_time, clusters = _answers(3, sources=("web", "api"))
    fig = p99_figure(over_time, clusters)
    assert all(t.split(" ")[0].split("/")[0] in ("web", "api") for t in _legend_texts(fig))
    assert "2 sources" in fig.axes[0].get_title()
    plt.close(fig)
    # One cluster whose p99 stays within a factor of two: a linear axis.
    flat, clusters = _answers(1)
    fig = p99_figure(flat, clusters)
    assert fig.axes[0].get_yscale() == "linear"
    plt.close(fig)
    wide, clusters = _answers(13)
    fig = p99_figure(wide, clusters)
    assert fig.axes[0].get_yscale() == "log"  # p99 from ~3 ms to ~1 s
    plt.close(fig)
    empty = over_time.slice(0, 0)
    fig = p99_figure(empty, clusters)
    assert not fig.legends and "no latency recorded" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_bad_arguments_name_what_was_received() -> None:
    over_time, clusters = _answers(2)
    with pytest.raises(ValueError, match=r"Received: top=13"):
        p99_figure(over_time, clusters, top=13)
    with pytest.raises(ValueError, match=r"needs a p99 column. Received: \["):
        p99_figure(over_time.drop_columns(["p99"]), clusters)


def test_other_counts_the_groups_of_its_clusters_when_the_answer_has_them() -> None:
    over_time, clusters = _answers(20)
    groups = pa.array([i if i < 12 else 100 + i % 3 for i in range(20)], pa.int32())
    clusters = clusters.set_column(clusters.schema.get_field_index("group_id"), "group_id", groups)
    fig = p99_figure(over_time, clusters)
    assert _legend_texts(fig)[-1].startswith("other: 8 clusters in 3 groups, ")
    plt.close(fig)
