"""Training of the SentencePiece unigram tokenizer over masked text (no TensorFlow)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from logclust.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer


@dataclass(frozen=True)
class TokenizerConfig:
    """How the tokenizer is trained."""

    # The study's 16k; a small corpus may support fewer pieces (the trained size is kept).
    vocab_size: int = 16000
    # Unigram model as in the study; "bpe" also works.
    model_type: str = "unigram"
    character_coverage: float = 0.9999
    # Lines longer than this many characters are cut when training the tokenizer.
    max_sentence_length: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < 16:
            raise ValueError(f"vocab_size is too small. Received: vocab_size={self.vocab_size}")
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(f"model_type must be unigram or bpe. Received: {self.model_type!r}")


def train_tokenizer(
    texts: Sequence[str], placeholders: Sequence[str], config: TokenizerConfig, out: Path
) -> Tokenizer:
    """Trains a SentencePiece model on masked `texts` and writes it to `out` (.model)."""
    if not texts:
        raise ValueError("train_tokenizer needs at least one line. Received: 0 lines")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        vocab_size=config.vocab_size,
        model_type=config.model_type,
        character_coverage=config.character_coverage,
        max_sentence_length=config.max_sentence_length,
        user_defined_symbols=list(placeholders),
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        # A small corpus cannot fill a large vocabulary: keep what it supports.
        hard_vocab_limit=False,
        split_digits=True,
        byte_fallback=False,
        num_threads=2,
        minloglevel=2,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return Tokenizer(buf.getvalue())
