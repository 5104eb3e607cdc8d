from pathlib import Path

import numpy as np
import pytest

from logclust.text.tokenizer import BOS_ID, PAD_ID, Tokenizer, pad
from tests.conftest import synthetic_lines
from training.tokenizer import TokenizerConfig, train_tokenizer


def test_train_roundtrip_and_placeholders(tmp_path: Path) -> None:
    texts = [t for t, _ in synthetic_lines(200)] + ["value <NUM> at <IP>"] * 5
    tok = train_tokenizer(
        texts, ["<NUM>", "<IP>"], TokenizerConfig(vocab_size=100), tmp_path / "t.model"
    )
    again = Tokenizer.load(tmp_path / "t.model")
    assert again.vocab_size == tok.vocab_size <= 100
    assert "<NUM>" in again.pieces("took <NUM> ms")
    ids, lengths = again.encode_padded(["a b", "took <NUM> ms in total"], max_len=8)
    assert ids.dtype == np.int32 and ids.shape[1] == lengths.max() <= 8
    assert (ids[:, 0] == BOS_ID).all()
    assert ids[0, lengths[0] :].tolist() == [PAD_ID] * (ids.shape[1] - lengths[0])


def test_pad_width() -> None:
    ids, lengths = pad([[2, 5, 6], [2]], width=2)
    assert ids.tolist() == [[2, 5], [2, 0]] and lengths.tolist() == [2, 1]


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        TokenizerConfig(vocab_size=3)
    with pytest.raises(ValueError, match="model_type"):
        TokenizerConfig(model_type="word")
    with pytest.raises(ValueError, match="at least one line"):
        train_tokenizer([], [], TokenizerConfig(), Path("/nonexistent/x.model"))
