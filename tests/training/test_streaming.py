"""The streaming evaluation and the threshold calibration, on the fake embedder."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import FakeLabeler, fake_traffic
from training.evaluate import streaming
from training.evaluate.report import threshold_section
from training.evaluate.streaming import (
    StreamScore,
    calibrate,
    normalise_template,
    passes,
    stream_in_process,
    template_accuracy,
)


def _system(rows: int, seed: int) -> tuple[list[str], list[str]]:
    t = fake_traffic(rows, seed=seed)
    return t.column("body").to_pylist(), t.column("kind").to_pylist()


def test_passes_redraw_digits_only() -> None:
    first, second = passes(["id 123 ok", "x"], 2, seed=1)
    assert first == ["id 123 ok", "x"]
    assert second[0] != first[0] and second[0][:3] == "id " and second[1] == "x"


def test_stream_in_process_scores_the_last_pass() -> None:
    scores = stream_in_process(FakeLabeler(), {"web": _system(600, 1)}, threshold=0.6)
    assert scores["web"].ari >= 0.95 and scores["web"].unassigned == 0.0


def test_calibrate_picks_the_best_train_threshold_and_reports_held_out() -> None:
    train = {"a": _system(400, 2), "b": _system(400, 3)}
    result = calibrate(FakeLabeler(), train, {"held": _system(300, 4)}, grid=(0.05, 0.6, 1.9))
    assert result["threshold"] == 0.6  # 0.05 splits every text, 1.9 merges every kind
    assert set(result["per_system"]) == {"0.05", "0.6", "1.9"}
    assert set(result["held_out"]["0.6"]) == {"held"}
    assert result["train_mean_ari"][1] == max(result["train_mean_ari"])
    assert result["train_score"][1] == max(result["train_score"])
    assert set(result["per_system_ga"]["0.6"]) == {"a", "b"}
    assert set(result["held_out_ga"]["0.6"]) == {"held"}


def _scored(ari: float, ga: float) -> StreamScore:
    return StreamScore(ari=ari, grouping_accuracy=ga, fga=ga, clusters=1, templates=1, unassigned=0)


def test_calibrate_chooses_by_ga_and_ari_together_never_by_held_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Threshold 1: the best ARI, poor GA; threshold 2: both good; the held-out system
    # is best at threshold 3 and must not sway the choice.
    table = {
        ("train", 1.0): _scored(0.99, 0.50),
        ("train", 2.0): _scored(0.95, 0.95),
        ("train", 3.0): _scored(0.60, 0.40),
        ("held", 1.0): _scored(0.1, 0.1),
        ("held", 2.0): _scored(0.1, 0.1),
        ("held", 3.0): _scored(1.0, 1.0),
    }

    def fake_stream(_: Any, systems: dict[str, Any], t: float, *a: Any) -> dict[str, Any]:
        return {n: table[(n, t)] for n in systems}

    monkeypatch.setattr(streaming, "stream_in_process", fake_stream)
    result = calibrate(FakeLabeler(), {"train": ([], [])}, {"held": ([], [])}, grid=(1, 2, 3))
    assert result["threshold"] == 2.0
    assert result["train_mean_ari"] == [0.99, 0.95, 0.60]  # ARI alone would pick 1
    assert result["train_score"] == pytest.approx([0.745, 0.95, 0.5])
    section = threshold_section({"threshold": 2.0, "calibration": result})
    assert "| 2 | 0.950 | 0.950 | 0.950 | 0.100 | 0.100 | **yes** |" in section


def test_template_accuracy_needs_the_group_and_the_text() -> None:
    truth = ["user <*> logged in", "user <*> logged in", "disk full"]
    assert normalise_template("user <NUM> logged  in") == "user <*> logged in"
    assert template_accuracy(truth, [0, 0, 1], {0: "user <NUM> logged in", 1: "disk full"}) == 1
    assert template_accuracy(truth, [0, 0, 0], {0: "<*>"}) == 0
