from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from logclust.embed.bundle import Bundle
from logclust.text.prose import MAX_PROSE_CHARS
from logclust.text.prose_vectors import ProseVectors, basic_words

TOKENS = ["un", "##aff", "##able", "refund", "late", "cafe", "我", "包", "bad", "##ly"]


@pytest.fixture
def small() -> ProseVectors:
    rng = np.random.default_rng(0)
    return ProseVectors(TOKENS, rng.normal(size=(len(TOKENS), 8)).astype(np.float32))


@pytest.fixture(scope="module")
def shipped() -> ProseVectors:
    pv = Bundle.load().prose_vectors
    assert pv is not None, "the shipped bundle has no prose_words.npz"
    return pv


def test_basic_words_follow_bert() -> None:
    assert basic_words("Café NAÏVE résumé") == ["cafe", "naive", "resume"]
    assert basic_words("héllo,world!!") == ["hello", ",", "world", "!", "!"]
    assert basic_words("我的包裹 ok") == ["我", "的", "包", "裹", "ok"]
    assert basic_words("don't") == ["don", "'", "t"]
    assert basic_words("tab\there\x0bx") == ["tab", "herex"]  # control characters dropped
    assert basic_words("") == [] and basic_words("  \n ") == []
    assert basic_words("great😀") == ["great😀"]  # emoji are neither space nor punctuation


def test_wordpiece_is_greedy_longest_match(small: ProseVectors) -> None:
    toks = [small.tokens[i] for i in small.wordpiece("unaffable")]
    assert toks == ["un", "##aff", "##able"]
    assert small.wordpiece("unknown") == ()  # "##known" is not in the vocabulary
    assert small.wordpiece("un" * 60) == ()  # over 100 characters: unknown
    assert small.wordpiece("badly") == (TOKENS.index("bad"), TOKENS.index("##ly"))


def test_embed_rows_are_unit_or_zero(small: ProseVectors) -> None:
    texts = ["a refund please", "", "the and of", "😀😀😀", "???", "late CAFÉ 我包"]
    e = small.embed(texts)
    assert e.shape == (6, 8) and e.dtype == np.float32
    norms = np.linalg.norm(e, axis=1)
    assert np.allclose(norms[[0, 5]], 1.0, atol=1e-5)
    assert not e[1:5].any()  # nothing known: zeros
    assert small.embed([]).shape == (0, 8)


def test_each_distinct_token_counts_once(small: ProseVectors) -> None:
    once, many = small.embed(["refund late", "refund " * 500 + "late"])
    assert np.allclose(once, many, atol=1e-6)
    assert np.allclose(small.embed(["refund " * 10_000])[0], small.embed(["refund"])[0])


def test_long_text_is_read_from_its_start(small: ProseVectors) -> None:
    head = "refund late " * 10
    text = head + "x" * (MAX_PROSE_CHARS - len(head)) + " cafe" * 20_000  # > 100 KB
    assert len(text) > 100_000
    got = small.embed([text])[0]
    assert np.allclose(got, small.embed([head])[0], atol=1e-6)  # "cafe" lies past the limit


def test_surrogates_and_odd_scripts_do_not_crash(small: ProseVectors) -> None:
    e = small.embed(["\udcff\ud800 refund", "Привет мир", "\x00\ufffd", "ＲＥＦＵＮＤ"])
    assert np.allclose(e[0], small.embed(["refund"])[0], atol=1e-6)
    assert not e[1].any() and not e[2].any()
    assert np.isfinite(e).all()


def test_word_cache_stays_bounded(small: ProseVectors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("logclust.text.prose_vectors.CACHE_WORDS", 100)
    small.embed([f"word{i} refund" for i in range(1000)])
    assert len(small._cache) <= 100


def test_malformed_files_are_named(tmp_path: Path, shipped: ProseVectors) -> None:
    bundle = Bundle.load()
    good = bundle.file("prose_words.npz").read_bytes()
    cases = {
        "truncated.npz": good[: len(good) // 2],
        "garbage.npz": b"not a zip file at all",
        "empty.npz": b"",
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ValueError, match=name):
            ProseVectors.load(p)
    p = tmp_path / "shapes.npz"
    ones = np.ones(2, np.float32)
    np.savez(
        p, tokens=np.array("a\nb"), vectors=np.zeros((3, 4), np.int8), scales=ones, weights=ones
    )
    with pytest.raises(ValueError, match="shapes disagree"):
        ProseVectors.load(p)
    p = tmp_path / "keys.npz"
    np.savez(p, tokens=np.array("a"))
    with pytest.raises(ValueError, match="keys.npz"):
        ProseVectors.load(p)
    with pytest.raises(ValueError, match="missing.npz"):
        ProseVectors.load(tmp_path / "missing.npz")


def test_shipped_table_neighbours(shipped: ProseVectors) -> None:
    words = ["damaged", "broken", "refund", "reimbursement", "password", "late", "delayed"]
    e = shipped.embed(words)
    sim = e @ e.T
    np.fill_diagonal(sim, -1)
    near = {w: words[int(np.argmax(sim[i]))] for i, w in enumerate(words)}
    assert near["damaged"] == "broken" and near["broken"] == "damaged"
    assert near["refund"] == "reimbursement"
    assert near["late"] == "delayed"


def test_shipped_table_groups_prose_topics(shipped: ProseVectors) -> None:
    pytest.importorskip("sklearn")
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from training.evaluate.groups import prose_messages

    texts, topics = prose_messages(800, seed=2)
    x = shipped.embed(texts)
    scores = [
        adjusted_rand_score(topics, KMeans(4, n_init=10, random_state=s).fit_predict(x))
        for s in range(3)
    ]
    assert float(np.mean(scores)) >= 0.85, scores  # measured 0.915 (3 seeds)


def test_threads_share_a_table(small: ProseVectors, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr("logclust.text.prose_vectors.CACHE_WORDS", 7)  # resets all the time
    texts = [f"refund w{i} late cafe{i % 5} badly" for i in range(300)]
    want = ProseVectors(small.tokens, small.values).embed(texts)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(small.embed, [texts] * 8))
    assert all(np.array_equal(g, want) for g in got)


def test_bad_items_and_many_tokens(small: ProseVectors, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="Received: NoneType"):
        small.embed(["refund", None])  # type: ignore[list-item]
    monkeypatch.setattr("logclust.text.prose_vectors._CHUNK_TOKENS", 3)  # many small sums
    texts = ["refund late", "", "badly cafe 我", "late"] * 5
    want = ProseVectors(small.tokens, small.values).embed(texts)
    assert np.allclose(small.embed(texts), want, atol=1e-6)
    assert small.wordpiece("un" * 60) == () and "un" * 60 not in small._cache


def test_a_whole_word_is_one_row_and_not_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(len(TOKENS) + 1, 8)).astype(np.float32)
    pv = ProseVectors(TOKENS, values, words=["unaffable"])
    assert pv.wordpiece("unaffable") == (len(TOKENS),)  # its own row, after the tokens
    assert [pv.tokens[i] for i in pv.wordpiece("badly")] == ["bad", "##ly"]  # others split
    got = pv.embed(["unaffable", "unaffable unaffable"])
    want = values[len(TOKENS)] / np.linalg.norm(values[len(TOKENS)])
    assert np.allclose(got[0], want, atol=1e-6) and np.allclose(got[1], want, atol=1e-6)
    with pytest.raises(ValueError, match="len\\(words\\)"):
        ProseVectors(TOKENS, values[:-1], words=["unaffable"])


def test_the_shipped_table_holds_whole_words(shipped: ProseVectors) -> None:
    # Words that WordPiece cuts into pieces that say little of them (`ref ##und`).
    assert {"refund", "invoice", "unsubscribe"} <= set(shipped.words)
    assert len(shipped.wordpiece("refund")) == 1
    assert shipped.vectors.shape[0] == len(shipped.tokens) + len(shipped.words)
