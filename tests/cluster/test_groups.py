"""Groups (`logclust.cluster.groups`) and prose with the shipped bundle: bad input, kinds
that must stay apart, ids that survive a save and a restore."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from logclust.cli.traffic import generate_traffic
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.groups import GroupIndex
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.stream_labeler import StreamLabeler
from training.evaluate.groups import prose_messages

CFG = StreamLabelerConfig(clusters=StreamClusterConfig(background_consolidation=False))
TOPICS = [
    "My package arrived damaged and the box was crushed, please help.",
    "I want a refund for my order, please send my money back.",
]
BAD = [
    "",
    "   ",
    "my parcel was late again and I am really angry about it. " * 1800,  # ~100 KB
    "我的包裹还没有到，已经等了两个星期了，请帮帮我",
    "Мой заказ пришёл повреждённым, пожалуйста помогите мне",
    "😍😍 I love it, thank you so much! 🎉",
    "spam " * 500,
    "the the the the the the the the",
]


@pytest.fixture(scope="module")
def labeler() -> StreamLabeler:
    return StreamLabeler.load(config=CFG)


def _majority(groups: np.ndarray, topics: np.ndarray, topic: str) -> int:
    ids, counts = np.unique(groups[topics == topic], return_counts=True)
    return int(ids[np.argmax(counts)])


def test_bad_input_each_gets_a_group_none_collapses(labeler: StreamLabeler) -> None:
    prose, topics = prose_messages(600, seed=5, topics=["damaged", "refund"])
    texts = prose[:300] + BAD + prose[300:] + BAD  # topics are learned from 256 rows on
    r = labeler.label(texts, source="bad")
    assert r.groups is not None and r.groups.dtype == np.int64
    assert len(r.groups) == len(texts)
    assert (r.groups >= 0).all()
    # After the odd inputs, the two topics still have groups of their own.
    late = r.groups[300 + len(BAD) : 600 + len(BAD)]
    t = np.asarray(topics[300:])
    damaged, refund = _majority(late, t, "damaged"), _majority(late, t, "refund")
    assert damaged != refund
    assert (late[t == "damaged"] == refund).mean() < 0.05
    assert (late[t == "refund"] == damaged).mean() < 0.05
    # each topic in at most two groups of 5% of its rows or more
    for topic in ("damaged", "refund"):
        _, counts = np.unique(late[t == topic], return_counts=True)
        assert (counts >= 0.05 * counts.sum()).sum() <= 2, topic


def test_topics_of_free_text_give_a_few_groups(labeler: StreamLabeler) -> None:
    prose, topics = prose_messages(1200, seed=6, topics=["damaged", "late", "refund"])
    ids, groups = [], []
    for start in range(0, len(prose), 100):  # batches, as a stream comes: texts repeat
        r = labeler.label(prose[start : start + 100], source="topics")
        assert r.groups is not None
        ids += r.ids.tolist()
        groups += r.groups.tolist()
    assert ids == groups  # prose clusters are its groups
    g, t = np.asarray(groups), np.asarray(topics)
    assert adjusted_rand_score(t[600:], g[600:]) > 0.7  # after the first refits
    tops = {}
    for topic in ("damaged", "late", "refund"):
        ids_, counts = np.unique(g[600:][t[600:] == topic], return_counts=True)
        # most of a topic's rows in its top two groups (a sub-topic may get its own)
        assert np.sort(counts)[-2:].sum() >= 0.8 * counts.sum(), topic
        tops[topic] = int(ids_[np.argmax(counts)])
    assert len(set(tops.values())) == 3  # each topic's main group is its own


def test_one_kind_of_free_text_stays_one_group(labeler: StreamLabeler) -> None:
    """Free text with no topics (the demo's feedback: random product words after a few
    openings) is one group, not one per sentence."""
    traffic = generate_traffic(30000, seed=7)
    kinds = traffic.column("kind").to_pylist()
    feedback = [
        b for b, k in zip(traffic.column("body").to_pylist(), kinds, strict=True) if k == "feedback"
    ]
    r = labeler.label(feedback, source="feedback")
    assert r.groups is not None and len(feedback) > 500
    assert len(set(r.groups.tolist())) <= 2


def test_structured_kinds_sharing_keys_stay_apart(labeler: StreamLabeler) -> None:
    gql = '{"operationName":"%s","query":"query %s($id: ID!) { %s(id: $id) { %s } }",'
    gql += '"variables":{"id":"%d"}}'
    soap = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        "<%s><id>%d</id></%s></soap:Body></soap:Envelope>"
    )
    # GraphQL persisted queries: no query text, only the operation's name
    persisted = '{"operationName":"%s","variables":{"id":"%d"},'
    persisted += '"extensions":{"persistedQuery":{"version":1,"sha256Hash":"%s"}}}'
    texts = []
    for i in range(20):
        texts.append(gql % ("GetUser", "GetUser", "user", "name email", i))
        texts.append(gql % ("GetOrder", "GetOrder", "order", "total status", i))
        texts.append(soap % ("GetQuote", i, "GetQuote"))
        texts.append(soap % ("CancelOrder", i, "CancelOrder"))
        texts.append(persisted % ("GetCart", i, "9f86d081884c"))
        texts.append(persisted % ("EmptyCart", i, "60303ae22b99"))
        texts.append(f"action=archive&item={i}&note=n{i}")  # forms that name their kind
        texts.append(f"action=restore&item={i}&note=n{i}")
    r = labeler.label(texts, source="structured")
    assert r.groups is not None
    kinds = np.array([i % 8 for i in range(len(texts))])
    # Each operation is one cluster and one group of its own, at both levels: the two
    # SOAP operations differ only in their element names, the persisted queries only in
    # `operationName`, the forms only in `action`, which no embedding tells apart as well.
    for a in range(8):
        assert len(set(r.ids[kinds == a].tolist())) == 1
        for b in range(a + 1, 8):
            assert not set(r.ids[kinds == a].tolist()) & set(r.ids[kinds == b].tolist())
            shared = set(r.groups[kinds == a].tolist()) & set(r.groups[kinds == b].tolist())
            assert not shared, f"kinds {a} and {b} share groups {shared}"
    assert len(set(r.groups.tolist())) == len(set(r.ids.tolist())) == 8


def test_groups_survive_save_and_restore(labeler: StreamLabeler) -> None:
    first = labeler.label(TOPICS + ["Failed password for root from 10.0.0.1 port 22"], "keep")
    parts = labeler.stream.dirty_parts()
    again = StreamLabeler.load(config=CFG)
    again.stream.load_states({n: p.model for n, p in parts.items() if p.model is not None})
    second = again.label(TOPICS + ["Failed password for root from 10.0.0.1 port 22"], "keep")
    assert second.groups is not None and first.groups is not None
    assert second.ids.tolist() == first.ids.tolist()
    assert second.groups.tolist() == first.groups.tolist()
    # A new wording of a known topic still finds its group after the restore.
    more = again.label(["I want a refund for my order, send my money back please."], "keep")
    assert more.groups is not None and more.groups[0] == first.groups[1]


def test_latency_by_group_merges_the_sketches(labeler: StreamLabeler) -> None:
    texts = ["I want a refund for my order.", "Please, I want a refund for my order asap!"]
    labeler.label(texts, source="lat", latency_ms=[10.0, 30.0])
    by_group = labeler.latency(source="lat", by="group").to_pylist()
    assert [row["count"] for row in by_group] == [2]
    with pytest.raises(ValueError, match="Received: by='x'"):
        labeler.latency(by="x")


def test_group_index_round_trip_and_bad_doc() -> None:
    g = GroupIndex(1.0)
    x = np.ones(4, np.float32) / 2
    assert g.add(3, x, "line") == 3
    assert g.add(5, x, "line") == 3  # the same meaning: the same group
    assert g.add(6, x, "body:1") == 6  # another kind never joins
    back = GroupIndex.from_doc(g.to_doc(), 1.0, 0)
    assert back.of == g.of
    assert back.group_ids(np.array([3, 5, 6, 7]), {7: 5}).tolist() == [3, 3, 6, 3]
    with pytest.raises(ValueError, match="unknown group"):
        GroupIndex.from_doc({"groups": [], "of": [[1, 2]], "totals": []}, 1.0, 0)
    with pytest.raises(ValueError, match="too short"):
        GroupIndex.from_doc({"groups": [[1, "line", 1, 4]], "of": [], "totals": [0.5]}, 1.0, 0)


@pytest.mark.parametrize("line_groups", [False, True])
def test_log_templates_group_by_meaning_only_when_asked(line_groups: bool) -> None:
    """`line_groups`: a new log template joins a group by meaning (one encoder pass), else
    it is its own group and templates spare the encoder."""
    clusters = StreamClusterConfig(background_consolidation=False, line_groups=line_groups)
    lab = StreamLabeler.load(config=StreamLabelerConfig(clusters=clusters))
    lines = [f"Receiving block blk_{i} src: /10.0.0.{i}:50010" for i in range(3)] + [
        "Verification succeeded for blk_77",
        "PacketResponder 1 for block blk_8 terminating",
    ]
    lab.label(lines[:1], source="hdfs")  # the first line of a source
    r = lab.label(lines, source="hdfs")
    assert r.groups is not None and len(set(r.ids.tolist())) == 3
    known = set(lab.stream.sources["hdfs"].groups.of)
    assert (set(r.ids.tolist()) <= known) == line_groups
    if not line_groups:  # each template its own group
        assert r.groups.tolist() == r.ids.astype(np.int64).tolist()


def test_texts_seen_before_the_topics_take_their_topic_after(labeler: StreamLabeler) -> None:
    """The first prose rows share one id while topics are learned; the same texts sent
    again after the topics are found take their topic's id (the placement memo drops
    prose texts at each refit)."""
    prose, topics = prose_messages(400, seed=8, topics=["damaged", "refund"])
    for start in range(0, 400, 100):
        labeler.label(prose[start : start + 100], source="again")
    r = labeler.label(prose[:200], source="again")
    assert r.groups is not None
    assert adjusted_rand_score(topics[:200], r.groups) > 0.8


def test_prose_is_placed_without_the_encoder() -> None:
    """With the bundle's word vectors, free text needs no embedding (the encoder is the
    costly part of a new text)."""
    lab = StreamLabeler.load(config=CFG)
    prose, _ = prose_messages(300, seed=9)
    r = lab.label(prose, source="words")
    assert r.groups is not None and len(set(prose)) > 100
    assert lab.stream.cache.size == 0
    lab.label(['{"user": "ann", "cart": 3}'], source="words")
    assert lab.stream.cache.size == 1  # a structured body still is embedded
