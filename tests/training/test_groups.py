"""The free-text workload and the group threshold's calibration (`training.evaluate.groups`)."""

from __future__ import annotations

from logclust.text.prose import is_prose
from tests.fakes import FakeLabeler
from training.evaluate.groups import (
    TOPICS,
    calibrate_group_threshold,
    group_scores,
    probe_lines,
    prose_messages,
)


def test_prose_messages_are_varied_prose_of_every_topic() -> None:
    texts, topics = prose_messages(400, seed=3)
    assert set(topics) == set(TOPICS)
    assert all(is_prose(t) for t in texts)
    assert len(set(texts)) > 0.8 * len(texts)  # wordings, not a handful of sentences
    assert prose_messages(50, seed=3) == prose_messages(50, seed=3)


def test_group_scores() -> None:
    ari, per, merged = group_scores([1, 1, 2, 2, 2], ["a", "a", "b", "b", "c"])
    assert 0 < ari < 1 and per == 1.0 and merged == 2  # b and c share group 2


def test_calibration_picks_a_grid_value_and_reports_each() -> None:
    tau, report = calibrate_group_threshold(FakeLabeler(), grid=(0.5, 1.5), n=60)
    assert tau in (0.5, 1.5)
    assert set(report) == {"0.5", "1.5"}
    assert {"prose_ari", "groups_per_topic", "probe_ari"} <= set(report["0.5"])
    assert len(probe_lines()[0]) >= 20
