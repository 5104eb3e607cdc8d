"""GA, FGA, PA and the error lists, on hand-made groupings whose scores are known."""

from __future__ import annotations

import pytest

from training.evaluate.grouping import fga, ga, merges, normalise_template, pa, splits

# Three true templates: A (4 lines), B (2), C (1).
TRUTH = ["A", "A", "A", "A", "B", "B", "C"]


def test_a_perfect_grouping_scores_one_whatever_the_ids() -> None:
    assert ga(TRUTH, [7, 7, 7, 7, 3, 3, 9]) == 1.0
    assert fga(TRUTH, [7, 7, 7, 7, 3, 3, 9]) == 1.0


def test_a_template_split_in_two_scores_zero_for_all_its_lines() -> None:
    # A in two groups of 2: its 4 lines are wrong, even the groups it was split into are
    # pure; B and C (3 lines) are right.
    pred = [1, 1, 2, 2, 3, 3, 4]
    assert ga(TRUTH, pred) == pytest.approx(3 / 7)
    # 2 correct groups of 4 predicted; 2 of 3 templates.
    p, r = 2 / 4, 2 / 3
    assert fga(TRUTH, pred) == pytest.approx(2 * p * r / (p + r))


def test_two_templates_merged_score_zero_for_both() -> None:
    pred = [1, 1, 1, 1, 2, 2, 2]  # B and C share group 2
    assert ga(TRUTH, pred) == pytest.approx(4 / 7)
    p, r = 1 / 2, 1 / 3
    assert fga(TRUTH, pred) == pytest.approx(2 * p * r / (p + r))


def test_a_split_and_a_merge_at_once() -> None:
    # One line of A goes to B's group: A is split and B's group is merged; only C right.
    pred = [1, 1, 1, 2, 2, 2, 3]
    assert ga(TRUTH, pred) == pytest.approx(1 / 7)


def test_everything_in_one_group_and_every_line_its_own() -> None:
    assert ga(TRUTH, [0] * 7) == 0.0 and fga(TRUTH, [0] * 7) == 0.0
    # Singletons: only the one-line template C is right.
    assert ga(TRUTH, list(range(7))) == pytest.approx(1 / 7)
    p, r = 1 / 7, 1 / 3
    assert fga(TRUTH, list(range(7))) == pytest.approx(2 * p * r / (p + r))


def test_unplaced_rows_are_never_right() -> None:
    # C's only line unplaced (-1): wrong, and a predicted group of its own.
    pred = [1, 1, 1, 1, 2, 2, -1]
    assert ga(TRUTH, pred) == pytest.approx(6 / 7)
    # Two unplaced lines of B are not a group of B, however alone they are.
    assert ga(TRUTH, [1, 1, 1, 1, -1, -1, 3]) == pytest.approx(5 / 7)
    p, r = 2 / 4, 2 / 3  # groups 1 and 3 right; 4 groups (1, 3 and two -1 rows)
    assert fga(TRUTH, [1, 1, 1, 1, -1, -1, 3]) == pytest.approx(2 * p * r / (p + r))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="Received: 2, 1"):
        ga(["a", "b"], [1])
    with pytest.raises(ValueError, match="Received"):
        fga(["a"], [])
    assert ga([], []) == 0.0 and fga([], []) == 0.0


def test_splits_and_merges_list_the_errors_largest_first() -> None:
    pred = [1, 1, 1, 2, 2, 2, 3]  # A split over 1 and 2; group 2 merges A and B
    (split,) = splits(TRUTH, pred)
    assert (split.key, split.lines, split.parts) == ("A", 4, ((1, 3), (2, 1)))
    (merge,) = merges(TRUTH, pred)
    assert (merge.key, merge.lines, merge.parts) == (2, 3, (("B", 2), ("A", 1)))
    many = splits(["x"] * 3 + ["y"] * 5, [1, 2, 3, 4, 5, 5, 5, 5])
    assert [e.key for e in many] == ["y", "x"]
    assert splits(TRUTH, [1, 1, 1, 1, 2, 2, 3]) == [] == merges(TRUTH, [1, 1, 1, 1, 2, 2, 3])


def test_an_unplaced_row_splits_its_template_but_merges_nothing() -> None:
    pred = [1, 1, 1, -1, 2, 2, 3]
    assert [e.key for e in splits(TRUTH, pred)] == ["A"]
    assert merges(TRUTH, pred) == []


def test_normalise_template_reads_templates_as_loghub_2_does() -> None:
    assert normalise_template("user <NUM> logged  in") == "user <*> logged in"
    # Words joined to a variable, paths, host:port pairs.
    assert normalise_template("block blk_<*> src: /<*>") == "block <*> src: <*>"
    assert normalise_template("at <IP>:<NUM> now") == "at <*> now"
    assert normalise_template("a <*> <*> b") == "a <*> b"
    assert normalise_template("session for user root") == "session for user <*>"
    # Constant words stay.
    assert normalise_template("VM Paused") != normalise_template("VM Resumed")


def test_pa_needs_the_template_text_of_each_line() -> None:
    truth = ["user <*> logged in", "user <*> logged in", "disk full", "disk full"]
    templates = {0: "user <NUM> logged in", 1: "disk full", 2: "disk <*>"}
    assert pa(truth, [0, 0, 1, 1], templates) == 1.0
    # Line 4 in a cluster whose template is wrong; unplaced and unknown ids never count.
    assert pa(truth, [0, 0, 1, 2], templates) == pytest.approx(3 / 4)
    assert pa(truth, [-1, 5, 1, 1], templates) == pytest.approx(2 / 4)
