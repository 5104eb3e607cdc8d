"""The consolidation runner: when consolidations run, how far apart, on which thread."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.cluster.runner import ConsolidationRunner
from logclust.cluster.source import SourceClusterer
from logclust.cluster.threshold import Consolidation, ConsolidationJob
from tests.cluster.streams import run
from tests.fakes import FakeLabeler, fake_traffic


def _feed(runner: ConsolidationRunner, texts: list[str], fake: FakeLabeler) -> None:
    """One batch of `texts` straight to the runner."""
    keys = list(dict.fromkeys(texts))
    inv = np.array([keys.index(t) for t in texts])
    emb = fake.embed_masked(pa.array(keys))
    ids, _, uid = runner.place(keys, lambda idx: emb[idx], inv)
    runner.count(keys, uid, ids, np.zeros(len(texts), np.int64))


def test_scheduled_consolidations_back_off_on_a_steady_stream() -> None:
    cfg = StreamClusterConfig(
        consolidate_every_rows=500, consolidate_max_share=1.0, background_consolidation=False
    )
    sc = StreamClusters(FakeLabeler(), cfg)
    table = fake_traffic(1000, seed=4)
    for _ in range(8):
        run(sc, table, batch=500)
    # About 16 batches of 500 rows: without backoff a consolidation after each; with it
    # the gaps double (1, 2, 4, 8 batches) while nothing changes.
    assert 3 <= sc.sources["frontend"].consolidations <= 6


def test_consolidations_are_spaced_by_their_share_of_the_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    run_job = ConsolidationJob.run

    def one_second(job: ConsolidationJob) -> Consolidation:
        now[0] += 1.0  # every consolidation takes one second of the fake clock
        return run_job(job)

    monkeypatch.setattr(ConsolidationJob, "run", one_second)
    cfg = StreamClusterConfig(
        consolidate_every_rows=10,
        consolidate_new_clusters=0,
        consolidate_max_share=0.25,  # after 1 s of work, 3 s without
        consolidate_backoff_max=1,
        background_consolidation=False,
    )
    fake = FakeLabeler(dim=32)
    runner = ConsolidationRunner(SourceClusterer("s", cfg, 32, 0.6), clock=lambda: now[0])
    texts = ["GET /cart", "POST /checkout"] * 5
    _feed(runner, texts, fake)
    assert runner.clusterer.consolidations == 1 and now[0] == 1.0
    now[0] = 3.9
    for _ in range(5):  # due by rows, not by time
        _feed(runner, texts, fake)
    assert runner.clusterer.consolidations == 1
    now[0] = 4.0
    _feed(runner, texts, fake)
    assert runner.clusterer.consolidations == 2


def test_a_background_consolidation_runs_apart_and_can_be_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, release = threading.Event(), threading.Event()
    run_job = ConsolidationJob.run
    threads: list[str] = []

    def held(job: ConsolidationJob) -> Consolidation:
        threads.append(threading.current_thread().name)
        started.set()
        assert release.wait(30)
        return run_job(job)

    monkeypatch.setattr(ConsolidationJob, "run", held)
    cfg = StreamClusterConfig(consolidate_every_rows=10, consolidate_max_share=1.0)
    fake = FakeLabeler(dim=32)
    runner = ConsolidationRunner(SourceClusterer("s", cfg, 32, 0.6))
    texts = ["GET /cart", "POST /checkout"] * 5
    _feed(runner, texts, fake)
    assert started.wait(30)
    _feed(runner, texts, fake)  # the batch is not held up by the consolidation
    assert runner.clusterer.consolidations == 0
    release.set()
    runner.wait_for_consolidation(30)
    assert runner.clusterer.consolidations == 1
    assert threads == ["logclust-consolidate-s"]


def test_a_failed_consolidation_keeps_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(job: ConsolidationJob) -> Consolidation:
        raise np.linalg.LinAlgError("singular")

    cfg = StreamClusterConfig(background_consolidation=False)
    fake = FakeLabeler(dim=32)
    runner = ConsolidationRunner(SourceClusterer("s", cfg, 32, 0.6))
    _feed(runner, ["GET /cart", "POST /checkout"], fake)
    monkeypatch.setattr(ConsolidationJob, "run", fails)
    assert not runner.consolidate_now()
    assert runner.clusterer.consolidations == 0 and runner.clusterer.k == 2
    empty = ConsolidationRunner(SourceClusterer("t", cfg, 32, 0.6))
    assert not empty.consolidate_now()  # no clusters: nothing to do
