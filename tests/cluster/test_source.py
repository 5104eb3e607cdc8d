"""One source's clustering (`SourceClusterer`): new kinds at once, stable ids through
consolidations, merges and aliases, the cap, thresholds, what it counts as changed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import template_of
from logclust.cluster.quality import ari
from logclust.cluster.router import StreamClusters
from logclust.cluster.source import SourceClusterer
from logclust.text.masking import Masker
from tests.cluster.streams import (
    VectorEmbedder,
    angle,
    at,
    merging_vectors,
    run,
    saved,
    with_source,
)
from tests.fakes import FakeLabeler, fake_traffic

# The embedding rule alone (templates off): these tests pin how vectors place texts.
CFG = StreamClusterConfig(reservoir_size=1000, background_consolidation=False, templates=False)


def test_template_keeps_agreeing_tokens() -> None:
    members = ["user <NUM> logged in from <IP>", "user <NUM> logged out from <IP>"]
    assert template_of(members) == "user <NUM> logged <*> from <IP>"
    mixed = ["a=<NUM>&b=x", "a=<NUM>&b=y", "other shape"]
    assert template_of(mixed) == "a=<NUM>&b=<*>"
    assert template_of([]) == ""


def test_request_kinds_found_without_k_and_without_warmup() -> None:
    table = fake_traffic(3000, seed=1)
    sc = StreamClusters(FakeLabeler(), CFG)
    ids = run(sc, table, batch=100)
    assert (ids >= 0).all()  # no warm-up, no -1: the first batch is labelled
    kinds = table.column("kind").to_pylist()
    assert ari(kinds, ids.tolist()) >= 0.99
    clusterer = sc.sources["frontend"]
    assert len(set(kinds)) <= clusterer.k <= len(set(kinds)) + 2
    templates = {st.template for st in clusterer.describe()}
    assert "product_id=<*>&quantity=<NUM>" in templates
    assert "currency_code=<*>" in templates


def test_a_new_kind_opens_a_cluster_in_its_own_batch() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    first = fake_traffic(500, seed=2)
    first = first.filter(pa.compute.equal(first.column("kind"), "add_to_cart"))
    known = set(run(sc, first).tolist())
    mixed = pa.table({"body": ["product_id=ABC&quantity=2", '{"username": "x", "password": "y"}']})
    ids = run(sc, mixed)
    assert ids[0] in known
    assert ids[1] >= 0 and ids[1] not in known


def test_ids_stable_across_100_consolidations() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    table = fake_traffic(2000, seed=3)
    run(sc, table)
    sc.consolidate_now("frontend")  # the first may move centroids to their means
    reference = run(sc, table)
    for _ in range(100):
        sc.consolidate_now("frontend")
        np.testing.assert_array_equal(run(sc, table, batch=1000), reference)
    clusterer = sc.sources["frontend"]
    assert clusterer.consolidations == 101
    assert not clusterer.aliases


def test_close_clusters_merge_and_the_larger_keeps_its_id() -> None:
    sc = StreamClusters(VectorEmbedder(merging_vectors()), CFG)
    ids = run(sc, pa.table({"body": ["a"] * 10 + ["b"]}))
    ids = np.concatenate([ids, run(sc, pa.table({"body": ["aa"] * 10 + ["bb"]}))])
    a_id, b_id = int(ids[0]), int(ids[10])
    assert a_id != b_id and int(ids[11]) == a_id and int(ids[21]) == b_id
    assert sc.consolidate_now("default")
    clusterer = sc.sources["default"]
    assert clusterer.aliases == {b_id: a_id}
    assert run(sc, pa.table({"body": ["b"]})).tolist() == [a_id]
    stats = {st.cluster_id: st for st in clusterer.describe()}
    assert stats[b_id].merged_into == a_id and not stats[b_id].active
    assert stats[a_id].size == 23  # both clusters' 22 rows, then the "b" labelled after


def test_texts_placed_before_a_merge_follow_the_survivor_without_being_placed_again() -> None:
    sc = StreamClusters(VectorEmbedder(merging_vectors()), CFG)
    ids = run(sc, pa.table({"body": ["a"] * 10 + ["b", "aa", "bb"]}))
    a_id, b_id = int(ids[0]), int(ids[10])
    assert sc.consolidate_now("default")
    clusterer = sc.sources["default"]
    assert clusterer.aliases == {b_id: a_id}
    members = int(clusterer._table.counts[: clusterer.k].sum())
    again = run(sc, pa.table({"body": ["bb", "b", "aa", "a"]}))
    assert again.tolist() == [a_id] * 4
    # Placing a text adds it to its centroid's running mean: nothing was placed again.
    assert int(clusterer._table.counts[: clusterer.k].sum()) == members


def test_cap_on_clusters_is_counted_not_silent() -> None:
    vectors = {name: np.eye(8)[i] for i, name in enumerate("abcdef")}
    cfg = StreamClusterConfig(max_clusters=3, background_consolidation=False)
    sc = StreamClusters(VectorEmbedder(vectors), cfg)
    ids = run(sc, pa.table({"body": list("abcdef")}))
    assert sc.sources["default"].k == 3
    assert set(ids.tolist()) == {0, 1, 2}
    assert sc.counts() == {"default": (3, 3)}


def test_threshold_comes_from_the_bundle_the_config_or_the_source() -> None:
    fake = FakeLabeler()
    fake.threshold = 0.55
    cfg = StreamClusterConfig(source_thresholds={"coarse": 1.5})
    sc = StreamClusters(fake, cfg, threshold=fake.threshold)
    assert sc.threshold_for("any") == 0.55
    assert sc.threshold_for("coarse") == 1.5
    assert StreamClusters(fake, StreamClusterConfig(threshold=0.3)).threshold_for("x") == 0.3
    # A coarse source puts every kind of request in a handful of clusters.
    t = with_source(fake_traffic(600, seed=5), "coarse")
    run(sc, t)
    assert sc.sources["coarse"].k < len(set(t.column("kind").to_pylist()))


def _assign(clus: SourceClusterer, texts: list[str], emb: VectorEmbedder) -> np.ndarray:
    """Feeds one batch straight to the clusterer (no router, no lock, no thread)."""
    keys = list(dict.fromkeys(texts))
    inv = np.array([keys.index(t) for t in texts])
    vecs = emb.embed_masked(pa.array(keys))
    ids, _ = clus.assign(keys, lambda idx: vecs[idx], inv, np.zeros(len(texts), np.int64))
    return ids


def test_the_clusterer_counts_its_changes_until_a_save_is_confirmed() -> None:
    emb = VectorEmbedder({"a": at(0.0), "c": at(np.pi / 2), "a2": at(angle(0.1))})
    clus = SourceClusterer("s", CFG, emb.dim, 0.4)
    assert clus.dirty and clus.model_dirty  # new: nothing saved yet
    _assign(clus, ["a", "a", "c"], emb)
    clus.mark_saved(clus.revision, model=True)
    assert not clus.dirty and not clus.model_dirty
    _assign(clus, ["a", "c"], emb)  # placed from the memo: only counters move
    assert clus.dirty and not clus.model_dirty
    at_encode = clus.revision
    _assign(clus, ["a2"], emb)  # a new text: placed, the model moves
    clus.mark_saved(at_encode, model=False)  # a save of counters encoded before it
    assert clus.dirty and clus.model_dirty
    clus.mark_saved(at_encode - 1, model=True)  # an older confirmation changes nothing
    assert clus.model_dirty


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="Received: threshold=0"):
        SourceClusterer("s", CFG, 8, 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_clusters": 0},
        {"threshold": 0.0},
        {"threshold": float("nan")},
        {"source_thresholds": {"a": 3.0}},
        {"consolidate_max_share": 0.0},
        {"consolidate_new_clusters": -1},
    ],
)
def test_config_checks(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Received"):
        StreamClusterConfig(**kwargs)  # type: ignore[arg-type]


def test_rows_placed_then_counted_after_a_merge_count_for_the_survivor() -> None:
    emb = VectorEmbedder({"a": at(0.0), "c": at(np.pi / 2)})
    clus = SourceClusterer("s", CFG, emb.dim, 0.4)
    vecs = emb.embed_masked(pa.array(["a", "c"]))
    ids, _, uid = clus.place(["a", "c"], lambda idx: vecs[idx], np.array([0, 0, 1]))
    assert not clus.describe()  # placed: nothing counted yet
    clus._merge(int(ids[2]), int(ids[0]))  # a merge between the placement and the count
    clus.count(["a", "c"], uid, ids, np.zeros(3, np.int64))
    sizes = {st.cluster_id: st.size for st in clus.describe()}
    assert sizes[int(ids[0])] == 3 and sizes.get(int(ids[2]), 0) == 0


def test_xml_bodies_of_other_elements_stay_apart_through_consolidation_and_restore() -> None:
    body = "<env><body><%s><account>a</account>%s</%s></body></env>"
    get, move = body % ("Get", "", "Get"), body % ("Move", "", "Move")
    get_note = body % ("Get", "<note>b</note>", "Get")  # an optional element more
    get_tag = body % ("Get", "<tag>c</tag>", "Get")  # seen first after the restore
    reordered = "<env><body><Get><note>b</note><account>a</account></Get></body></env>"
    # One point for all: no embedding tells these apart; their elements do.
    masked = Masker().mask(pa.array([get, move, get_note, get_tag, reordered])).to_pylist()
    vectors = {t: at(0.0) for t in masked}
    cfg = StreamClusterConfig(background_consolidation=False)
    sc = StreamClusters(VectorEmbedder(vectors), cfg)
    ids = run(sc, pa.table({"body": [get, move, get_note, reordered] * 5}))
    assert ids[0] != ids[1] and ids[0] == ids[2] == ids[3]
    for _ in range(3):
        sc.consolidate_now("default")
    assert run(sc, pa.table({"body": [get, move]})).tolist() == ids[:2].tolist()
    states, _ = saved(sc)
    again = StreamClusters(VectorEmbedder(vectors), cfg)
    again.load_states(states)
    again.consolidate_now("default")
    after = run(again, pa.table({"body": [move, get_tag, get]}))
    assert after.tolist() == [ids[1], ids[0], ids[0]]


def test_xml_fields_and_their_near_kin() -> None:
    from logclust.cluster.forms import form_keys, near

    soap = "<s:Env><s:Body><%s><id><NUM></id></%s></s:Body></s:Env>"
    # The root first, then the other names; those that hold elements are marked.
    assert form_keys(soap % ("Get", "Get")) == ("<xml>", "s:Env/", "Get/", "id", "s:Body/")
    assert form_keys("<a x=<*>><ID></a>") == ("<xml>", "a/")  # a masked value is no element
    assert form_keys("<a><ID>x</ID></a>") == ("<xml>", "a/", "ID")  # an element in capitals
    known = {form_keys(soap % ("Get", "Get")): 1}
    assert near(form_keys(soap % ("Move", "Move")), known) is None  # skeletons differ both ways
    more = "<s:Env><s:Body><Get><id><NUM></id><n>x</n></Get></s:Body></s:Env>"
    assert near(form_keys(more), known) == 1  # one optional element more
    assert near(form_keys("<s:Env><x/></s:Env>"), known) is None  # too little in common
    # Optional leaves in any combination are one kind: the skeleton (`Order`) is the same.
    order = {form_keys("<Order><id><NUM></id><coupon><*></coupon></Order>"): 7}
    assert near(form_keys("<Order><id><NUM></id><gift><*></gift></Order>"), order) == 7


def test_json_bodies_of_other_named_kinds_never_share_a_cluster() -> None:
    click, view = '{"type": "click", "x": 1}', '{"type": "view", "x": 1}'
    click_more = '{"type": "click", "x": 1, "y": "z"}'  # the same kind, another field
    plain = '{"x": 1}'  # no named kind: placed by its embedding alone
    masked = Masker().mask(pa.array([click, view, click_more, plain])).to_pylist()
    vectors = {t: at(0.0) for t in masked}  # one point for all
    sc = StreamClusters(VectorEmbedder(vectors), StreamClusterConfig())
    ids = run(sc, pa.table({"body": [plain, click, view, click_more] * 3}))
    # The kinds keep apart; the first kind joins the cluster of no kind it lies in.
    assert ids[1] != ids[2] and ids[1] == ids[3] == ids[0]


def test_a_body_of_a_new_kind_joins_only_where_no_rival_kind_is() -> None:
    from logclust.cluster.forms import FormIndex, form_keys

    index = FormIndex(100)
    get = form_keys("<s:Env><Get><id><NUM></id></Get></s:Env>")
    move = form_keys("<s:Env><Move><id><NUM></id></Move></s:Env>")
    other_root = form_keys("<feed><entry><t><*></t></entry></feed>")
    click, view = form_keys('{"type": "click"}'), form_keys('{"type": "view"}')
    assert None not in (get, move, other_root, click, view)
    index.add({get: 1, click: 2})  # clusters 1 and 2 hold a kind; 3 holds none known
    cids, near = np.array([1, 1, 2, 3, 3, 3]), np.array([True, True, True, True, True, False])
    ok = index.joinable(cids, near, [move, other_root, view, click, view, get])
    # another skeleton of its root: no; another root: yes; another named kind: no; a
    # cluster of no kind: the first kind yes, its rival in the same batch no; too far: no
    assert ok.tolist() == [False, True, False, True, False, False]
