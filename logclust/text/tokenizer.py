"""SentencePiece tokenizer over masked text, runtime side (training: `training/tokenizer.py`).

Ids: 0 pad, 1 unknown, 2 beginning of line, 3 end of line. Every masking placeholder is a
single user-defined piece, so `<NUM>` is one token wherever it appears.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

logger = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    """Encodes masked lines into padded id matrices."""

    def __init__(self, model_proto: bytes) -> None:
        self._sp = spm.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(model_proto)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls(Path(path).read_bytes())

    @property
    def vocab_size(self) -> int:
        return int(self._sp.GetPieceSize())

    def encode(self, texts: Sequence[str], max_len: int) -> list[list[int]]:
        """Ids of each text, with the beginning-of-line id first, cut to `max_len`."""
        ids = self._sp.EncodeAsIds(list(texts))
        return [[BOS_ID, *row[: max_len - 1]] for row in ids]

    def piece(self, piece_id: int) -> str:
        return str(self._sp.IdToPiece(piece_id))

    def score(self, piece_id: int) -> float:
        """The unigram model's log-probability of a piece."""
        return float(self._sp.GetScore(piece_id))

    def pieces(self, text: str) -> list[str]:
        return list(self._sp.EncodeAsPieces(text))

    def encode_padded(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """`(ids, lengths)`: int32 `(n, L)` right-padded with 0 where L is the longest row."""
        rows = self.encode(texts, max_len)
        return pad(rows)


def pad(rows: Sequence[Sequence[int]], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads id rows with `PAD_ID` into an int32 matrix; returns it and the lengths."""
    lengths = np.fromiter((len(r) for r in rows), np.int32, count=len(rows))
    w = int(lengths.max(initial=1)) if width is None else width
    out = np.zeros((len(rows), w), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:w]
    return out, np.minimum(lengths, w)
