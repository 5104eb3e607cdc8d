"""Rows/s per cluster and new-kind events: the arithmetic, then through the sidecar."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from logclust.sidecar.activity import ClusterActivity, NewKind
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.sidecar.store import MemoryStore
from logclust.sidecar.stream_labeler import StreamLabeler
from tests.fakes import FakeLabeler, fake_traffic

W = 10_000  # rate window, ms


def _record(a: ClusterActivity, ids: list[int], now: int, source: str = "s") -> list:
    return a.record([source], np.zeros(len(ids), np.int64), np.array(ids, np.int32), now)


def test_rates_slide_over_two_windows() -> None:
    a = ClusterActivity(W, grace_ms=0)
    _record(a, [0] * 100 + [1] * 10, now=0)  # window [0, 10 s)
    _record(a, [0] * 50, now=W)  # window [10 s, 20 s)
    now, before = a.rates("s", W, 3)  # at the start of the second window
    assert now.tolist() == [15.0, 1.0, 0.0]  # 150 rows over the last 10 s
    assert before.tolist() == [0.0, 0.0, 0.0]  # [-10 s, 0): no rows
    now, before = a.rates("s", W + W // 2, 2)  # halfway: [5 s, 15 s) and [-5 s, 5 s)
    assert now.tolist() == [(50 + 100 / 2) / 10, 10 / 2 / 10]
    assert before.tolist() == [100 / 2 / 10, 10 / 2 / 10]
    now, before = a.rates("s", 5 * W, 2)  # idle since: nothing now
    assert now.tolist() == [0.0, 0.0] and before.tolist() == [0.0, 0.0]
    assert a.rates("unknown", 0, 2)[0].tolist() == [0.0, 0.0]


def test_new_kinds_after_the_grace_only() -> None:
    a = ClusterActivity(W, grace_ms=60_000)
    assert _record(a, [0, 1, 2], now=1_000) == []  # start-up: not news
    assert _record(a, [3], now=30_000) == []  # still within the grace
    assert _record(a, [0, 3], now=61_000) == []  # known ids
    assert _record(a, [4, 5, 4, 1], now=62_000) == [("s", [4, 5])]
    assert _record(a, [4, 6], now=63_000, source="t") == []  # another source starts
    assert a.new_counts() == {"s": 2, "t": 0}
    a.restored("r", max_id=7)  # restored: past its start-up, ids up to 7 known
    assert _record(a, [7], now=64_000, source="r") == []
    assert _record(a, [8], now=64_000, source="r") == [("r", [8])]
    a.add_event(NewKind("s", 4, 62_000, "GET /x"))
    a.forget("s")
    assert "s" not in a.new_counts() and a.events() == []


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="Received: window_ms=0"):
        ClusterActivity(0, 0)
    with pytest.raises(ValueError, match="new_kind_grace_s=-1"):
        StreamLabelerConfig(new_kind_grace_s=-1)
    with pytest.raises(ValueError, match="rate_window_s=0"):
        StreamLabelerConfig(rate_window_s=0)


def test_sidecar_counts_logs_and_shows_new_kinds(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    labeler = StreamLabeler(FakeLabeler(), StreamLabelerConfig(new_kind_grace_s=0))
    sidecar = Sidecar(labeler, MemoryStore(), metrics)
    table = fake_traffic(500).select(["body", "latency_ms", "source"])
    with caplog.at_level(logging.INFO, logger="logclust.sidecar.core"):
        sidecar.label(table)
    lines = [json.loads(r.getMessage()) for r in caplog.records if "new_cluster" in r.message]
    k = len(sidecar.describe())
    assert len(lines) == k and {ln["source"] for ln in lines} == {"frontend"}
    assert all(ln["template"] for ln in lines)
    sample = metrics.registry.get_sample_value(
        "logclust_new_clusters_total", {"source": "frontend"}
    )
    assert sample == k
    assert {e.cluster_id for e in sidecar.activity.events()} == {ln["cluster_id"] for ln in lines}
    views = sidecar.cluster_views()
    window = sidecar.config.rate_window_s
    assert sum(v.rows_per_s for v in views) == pytest.approx(table.num_rows / window)
    assert all(v.rows_per_s_before == 0 for v in views)
    # A restart restores the clusters: they are not news again.
    store = MemoryStore()
    sidecar = Sidecar(labeler, store, None)
    sidecar.flush()
    again = Sidecar(StreamLabeler(FakeLabeler(), labeler.config), store, None)
    again.label(table)
    assert again.activity.events() == []


def test_past_grace_tells_when_a_new_cluster_counts_as_a_new_kind() -> None:
    activity = ClusterActivity(window_ms=1000, grace_ms=5000)
    assert not activity.past_grace("s", 0)  # no batch yet
    activity.record(["s"], np.zeros(1, np.int32), np.array([0], np.int32), 10_000)
    assert not activity.past_grace("s", 14_999) and activity.past_grace("s", 15_000)
