"""Topics of free text (`logclust.cluster.prose_topics`) on synthetic points: topics found
with k never given, one topic for structureless text, ids kept across refits and
restores, a replay placed the same."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from logclust.cluster.prose_topics import ProseTopics
from logclust.cluster.topic_fit import kmeans, silhouette


def _points(
    n: int, k: int, spread: float, seed: int, dim: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit points around `k` random unit centres (noise `spread`), and their topic."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    truth = rng.integers(0, k, n)
    x = centres[truth] / np.linalg.norm(centres[truth], axis=1, keepdims=True)
    x = x + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


def _stream(topics: ProseTopics, x: np.ndarray) -> tuple[list[int], list[int]]:
    """`(ids, clusters opened)` of points placed one by one."""
    counter = itertools.count(100)
    opened: list[int] = []

    def open_cluster() -> int:
        opened.append(next(counter))
        return opened[-1]

    return [topics.place(p, open_cluster)[0] for p in x], opened


def _per_topic(ids: list[int], truth: np.ndarray, share: float = 0.05) -> list[int]:
    """Ids holding at least `share` of each topic's rows."""
    g = np.asarray(ids)
    out = []
    for t in np.unique(truth):
        _, counts = np.unique(g[truth == t], return_counts=True)
        out.append(int((counts >= share * counts.sum()).sum()))
    return out


def test_topics_found_with_k_never_given() -> None:
    x, truth = _points(1500, 5, spread=0.9, seed=0)
    ids, opened = _stream(ProseTopics(), x)
    late = slice(1100, None)  # after the refit at 1024
    g, t = np.asarray(ids)[late], truth[late]
    # the topics overlap a little (as wordings do): a stray row may take a neighbour's id
    assert adjusted_rand_score(t, g) > 0.95
    assert len(set(g.tolist())) == 5
    assert max(_per_topic(ids, truth)) <= 2  # the first rows share the first topic's id
    assert len(opened) == len(set(ids)) <= 7


def test_text_without_topics_stays_one_group() -> None:
    x, _ = _points(1500, 1, spread=2.0, seed=1)
    ids, opened = _stream(ProseTopics(), x)
    assert len(set(ids)) == 1 and len(opened) == 1


def test_a_late_topic_gets_an_id_of_its_own() -> None:
    x, truth = _points(4000, 4, spread=0.9, seed=2)
    early = np.flatnonzero(truth[:2000] != 3)[:1200]  # topic 3 is absent from them
    order = np.concatenate([early, np.arange(2000, 4000)])
    ids, opened = _stream(ProseTopics(), x[order])
    t = truth[order]
    late, lt = np.asarray(ids)[-1000:], t[-1000:]  # refits at 2048 and 2560 saw topic 3
    assert not set(late[lt == 3].tolist()) & set(late[lt != 3].tolist())
    assert len(set(late[lt == 3].tolist())) == 1 and len(opened) == 4


def test_replay_places_the_same_and_state_round_trips() -> None:
    x, _ = _points(1100, 3, spread=0.9, seed=3)
    a, b = ProseTopics(), ProseTopics()
    assert _stream(a, x)[0] == _stream(b, x)[0]
    back = ProseTopics.from_doc(a.to_doc())
    assert back.ids == a.ids and back.seen == a.seen
    probe = x[:50]
    before = [a.place(p, lambda: -1)[0] for p in probe]
    after = [back.place(p, lambda: -1)[0] for p in probe]
    assert before == after


def test_zero_point_and_other_width() -> None:
    t = ProseTopics()
    cid, _, opened = t.place(np.zeros(8, np.float32), lambda: 7)
    assert cid == 7 and opened == [7]
    assert t.place(np.zeros(8, np.float32), lambda: 8)[0] == 7  # placed, not sampled
    # a point of another width (another bundle's prose space) starts the topics afresh
    cid, _, opened = t.place(np.ones(4, np.float32) / 2, lambda: 9)
    assert cid == 9 and opened == [9]


def test_bad_documents_are_refused() -> None:
    with pytest.raises(ValueError, match="Received: 2 ids"):
        ProseTopics.from_doc({"seen": 3, "ids": [1, 2], "centres": [[1.0, 0.0]]})
    assert ProseTopics.from_doc(None).centres is None


def test_kmeans_and_silhouette_agree_with_sklearn() -> None:
    from sklearn.metrics import silhouette_score

    x, truth = _points(400, 4, spread=0.5, seed=4)
    runs = [kmeans(x, 4, seed=s) for s in range(3)]  # k-means++ seeds: the best of three
    labels, centres = max(runs, key=lambda r: adjusted_rand_score(truth, r[0]))
    assert adjusted_rand_score(truth, labels) > 0.95
    assert np.allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-5)
    dist = np.sqrt(np.maximum(2 - 2 * x @ x.T, 0))
    np.fill_diagonal(dist, 0.0)
    ours = silhouette(dist, labels, 4)
    assert ours == pytest.approx(silhouette_score(dist, labels, metric="precomputed"), abs=1e-4)


def test_prediction_strength_finds_the_topics_not_a_blob() -> None:
    from logclust.cluster.topic_fit import fit_centres, prediction_strength

    x, _ = _points(600, 3, spread=0.9, seed=5)
    rng = np.random.default_rng(0)
    assert prediction_strength(x, 3, rng) >= 0.8 > prediction_strength(x, 6, rng)
    assert len(fit_centres(x, 8, 0.08)) == 3
    blob, _ = _points(600, 1, spread=2.0, seed=6)
    assert prediction_strength(blob, 3, rng) < 0.8
    assert len(fit_centres(blob, 8, 0.08)) == 1


def test_topics_are_learned_from_the_first_rows() -> None:
    """Refits start at 64 prose rows: rows before the 256th already take their topic's
    id (every row before the first refit shares one id)."""
    x, truth = _points(600, 4, spread=0.9, seed=10)
    topics = ProseTopics()
    ids, _ = _stream(topics, x[:256])
    g = np.asarray(ids)
    assert topics.refits == 4  # at 64, 128, 192 and 256 rows
    assert adjusted_rand_score(truth[64:256], g[64:256]) > 0.9
    assert len(set(g[:63].tolist())) == 1  # the 64th row is placed after its refit


def test_refits_slow_down_while_the_topics_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a refit of the full sample keeps every topic and id, the next comes when the
    rows seen have doubled, not grown by a quarter (a refit that changes an id, or one
    of a sample not yet full, brings the quarter back)."""
    import logclust.cluster.prose_topics as prose_topics

    at: list[int] = []
    fit = prose_topics.fit_centres

    def counted(x: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        at.append(len(x))
        return fit(x, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prose_topics, "fit_centres", counted)
    x, _ = _points(8000, 5, spread=0.9, seed=20)
    topics = ProseTopics()
    full: list[int] = []
    counter = itertools.count()
    for p in x:
        before = len(at)
        topics.place(p, lambda: next(counter))
        if len(at) > before and at[-1] == topics.sample_size:
            full.append(topics.seen)
    assert len(set(topics.ids)) == 5
    # by quarters they would run at 1024, 1536, 2048, 2731, 3641, 4855 and 6473
    assert full[0] == 1024 and len(full) == 3
    assert all(abs(b - 2 * a) < 8 for a, b in zip(full, full[1:], strict=False))
    assert not topics._due()  # 8000 rows: not yet twice the last refit's
    topics._calm = False
    assert topics._due()  # by quarters, it would be


def test_the_k_in_use_holds_just_below_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """A strength a little under `strength` keeps the k in use (a wavering strength
    does not flip k from one refit to the next) but does not make a new k."""
    import logclust.cluster.topic_fit as topic_fit

    x, _ = _points(600, 3, spread=0.9, seed=11)
    monkeypatch.setattr(topic_fit, "prediction_strength", lambda x, k, rng: 0.75)
    monkeypatch.setattr(topic_fit, "_SILHOUETTE_ROWS", 10**6)  # no fallback: one topic
    current = topic_fit.kmeans(x, 3, seed=0)[1]
    assert len(topic_fit.fit_centres(x, 8, 0.08, current=current)) == 3
    assert len(topic_fit.fit_centres(x, 8, 0.08)) == 1


@pytest.mark.parametrize(("strength", "k"), [(1.0, 3), (0.0, 2)])
def test_tied_silhouettes(monkeypatch: pytest.MonkeyPatch, strength: float, k: int) -> None:
    """Among stable ks, the most topics of about the best silhouette win (within 5%);
    with none stable, the fewest (within 10%)."""
    import logclust.cluster.topic_fit as topic_fit

    scores = {2: 0.200, 3: 0.195, 4: 0.150, 5: 0.185}
    monkeypatch.setattr(topic_fit, "prediction_strength", lambda x, k, rng: strength)
    monkeypatch.setattr(topic_fit, "silhouette", lambda dist, labels, k: scores[k])
    x, _ = _points(600, 5, spread=0.5, seed=12)
    assert len(topic_fit.fit_centres(x, 5, 0.08)) == k


def test_negative_silhouettes_still_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stable ks whose silhouettes are all below zero still give centres (the tie band
    is measured from the best, whatever its sign)."""
    import logclust.cluster.topic_fit as topic_fit

    scores = {2: -0.100, 3: -0.103, 4: -0.200}
    monkeypatch.setattr(topic_fit, "prediction_strength", lambda x, k, rng: 1.0)
    monkeypatch.setattr(topic_fit, "silhouette", lambda dist, labels, k: scores[k])
    x, _ = _points(600, 4, spread=0.5, seed=13)
    assert len(topic_fit.fit_centres(x, 4, 0.08)) == 3


def test_a_batch_is_placed_by_topics_fitted_on_its_own_rows() -> None:
    # 150 rows of 3 topics in one batch: the refits due at 64 and 128 run once, after the
    # batch's last row, so every row is placed by topic; row by row, the first 63 rows
    # share the first topic's id whatever their topic.
    x, truth = _points(150, 3, spread=0.6, seed=3)
    opened: list[int] = []
    counter = itertools.count(100)

    def open_cluster() -> int:
        opened.append(next(counter))
        return opened[-1]

    together = ProseTopics()
    ids, dist, new = together.place_many(list(x), open_cluster)
    assert adjusted_rand_score(truth, ids) > 0.95
    assert sorted(set(ids)) == sorted(new) == opened  # each topic opened once
    assert together.seen == 150 and together.refits == 1
    assert all(0.0 <= d < 2.0 for d in dist)
    one_by_one, _ = _stream(ProseTopics(), x)
    assert len(set(one_by_one[:63])) == 1
    assert adjusted_rand_score(truth[:63], one_by_one[:63]) == 0.0

    # The next batch keeps the ids: rows already placed never change, topics go on.
    more, more_truth = _points(90, 3, spread=0.6, seed=3)
    later, _, _ = together.place_many(list(more), open_cluster)
    assert adjusted_rand_score(more_truth, later) > 0.95
    assert set(later) <= set(ids)


def test_place_many_of_nothing_and_of_one() -> None:
    t = ProseTopics()
    assert t.place_many([], lambda: 1) == ([], [], [])
    ids, dist, opened = t.place_many([np.ones(4, np.float32) / 2], lambda: 5)
    assert ids == [5] and opened == [5] and dist[0] == pytest.approx(0.0, abs=1e-3)


def test_a_batch_crossing_early_refits_fits_their_small_samples(monkeypatch) -> None:
    # The refits due within a batch fit the sample as it was at each (seeding the next),
    # and the last fits the whole batch: a large first batch costs what row-by-row
    # placing costs, not a search of every k on its full sample.
    import logclust.cluster.prose_topics as pt

    sizes: list[int] = []
    real = pt.fit_centres

    def recorded(x: np.ndarray, *args, **kw):  # type: ignore[no-untyped-def]
        sizes.append(len(x))
        return real(x, *args, **kw)

    monkeypatch.setattr(pt, "fit_centres", recorded)
    x, truth = _points(600, 3, spread=0.6, seed=4)
    counter = itertools.count()
    ids, _, _ = ProseTopics().place_many(list(x), lambda: next(counter))
    assert sizes == [64, 128, 192, 256, 384, 600]
    assert adjusted_rand_score(truth, ids) > 0.95
    sizes.clear()
    _stream(ProseTopics(), x)
    assert sizes == [64, 128, 192, 256, 384, 512]
