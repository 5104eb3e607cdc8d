"""Static word vectors for free text (prose), distilled from the teacher.

The sentence model the encoder was distilled from (all-MiniLM-L6-v2) places support
messages by topic far better than the encoder's semantic channel does, but it cannot run
on the serving path. Most of what it knows about a short message is in its words, so
`training/prose_words.py` encodes every token of the teacher's WordPiece vocabulary
alone, reduces the vectors by PCA and ships them as `prose_words.npz` in the bundle. A
text's vector is then the weighted mean of its content tokens' vectors (a row weighs
less the more common its word is in English: smooth inverse frequency, set when the table
is built): numpy and the standard library only, thousands of texts per second.

Tokenization follows BERT's (uncased): control characters dropped, accents stripped,
punctuation and CJK ideographs split into tokens of their own, then greedy
longest-match-first WordPiece with `##` continuations (a word of more than 100
characters, or one that cannot be split, is unknown). Stop words
(`logclust.text.prose`), punctuation and single ASCII characters carry no topic and are
dropped; each distinct token counts once, so a word repeated ten thousand times weighs
as one.

**Whole words.** WordPiece splits many common words into pieces whose vectors, each
encoded alone, say little of the word (`refund` is `ref ##und`, `invoice` is `in ##vo
##ice`). The table also holds a vector for each such frequent English word, the teacher's
encoding of the whole word reduced the same way; a word found there is one token and is
not split.

File format (`prose_words.npz`, loaded without pickle): `tokens` (one string: the
vocabulary joined by newlines), optionally `words` (the whole words, one string joined
by newlines; their rows follow the tokens' rows), `vectors` either `(n, dim)` int8 or
`(n, dim / 2)` uint8 (two 4-bit values a byte, each offset by 8, the even column in the
low nibble), `scales` `(n,)` float32 (a row is its values times its scale), `weights`
`(n,)` float32; `n` is the number of tokens plus words.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from logclust.text.prose import _STOP, MAX_PROSE_CHARS

FILE = "prose_words.npz"
# A word longer than this is unknown (BERT's `max_input_chars_per_word`).
MAX_WORD_CHARS = 100
# Words whose WordPiece split is remembered (each entry a word and a few token ids).
CACHE_WORDS = 50_000
# Tokens summed per numpy step (bounds the `(tokens, dim)` float32 gather to ~12 MB).
_CHUNK_TOKENS = 16_384

_ASCII_DROP = str.maketrans(
    "", "", "".join(chr(c) for c in (*range(9), 11, 12, *range(14, 32), 127))
)
_ASCII_WORDS = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))  # fmt: skip


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK)


def _is_punct(c: str) -> bool:
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def basic_words(text: str) -> list[str]:
    """BERT's basic tokenization (uncased): lower case, accents stripped, control
    characters dropped, punctuation and CJK ideographs as words of their own."""
    if text.isascii():
        return _ASCII_WORDS.findall(text.translate(_ASCII_DROP).lower())
    out: list[str] = []
    cur: list[str] = []
    for c in unicodedata.normalize("NFD", unicodedata.normalize("NFC", text).lower()):
        cat = unicodedata.category(c)
        if c in "\t\n\r" or cat == "Zs":
            pass
        elif cat in ("Mn", "Cc", "Cf") or c == "\ufffd":
            continue
        elif _is_punct(c) or _is_cjk(ord(c)):
            if cur:
                out.append("".join(cur))
                cur = []
            out.append(c)
            continue
        else:
            cur.append(c)
            continue
        if cur:  # a space ends the word
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def _is_stop(word: str) -> bool:
    return word in _STOP or (len(word) == 1 and (word.isascii() or _is_punct(word)))


class ProseVectors:
    """A static word-vector table (see the module docstring). `embed` may be called from
    several threads at once: the word cache is only ever added to or replaced whole.

    Args:
        tokens: the vocabulary, `##`-prefixed for word continuations.
        values: `(len(tokens) + len(words), dim)` rows: float32, or int8 codes kept as
            they are (a quarter of the memory), each row read as `values * scales`.
        scales: `(len(tokens) + len(words),)` factor of each row (its scale times its
            weight); ones when None.
        words: whole words whose rows follow the tokens' (see the module docstring).
    """

    def __init__(
        self,
        tokens: Sequence[str],
        values: np.ndarray,
        scales: np.ndarray | None = None,
        words: Sequence[str] = (),
    ) -> None:
        n = len(tokens) + len(words)
        if (
            values.ndim != 2
            or values.shape[0] != n
            or (scales is not None and scales.shape != (n,))
        ):
            raise ValueError(
                f"values must be (len(tokens) + len(words), dim) and scales of that length. "
                f"Received: values {values.shape}, scales "
                f"{None if scales is None else scales.shape}, {len(tokens)} tokens, "
                f"{len(words)} words"
            )
        self.tokens = list(tokens)
        self.words = list(words)
        self._whole = {w: (len(self.tokens) + i,) for i, w in enumerate(self.words)}
        self.values = np.ascontiguousarray(
            values if values.dtype == np.int8 else values.astype(np.float32)
        )
        self.scales = np.ones(n, np.float32) if scales is None else scales.astype(np.float32)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        self._longest = max((len(t) for t in self.tokens), default=1)
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def vectors(self) -> np.ndarray:
        """`(len(tokens), dim)` float32: every row as `embed` reads it."""
        return self.values.astype(np.float32) * self.scales[:, None]

    @classmethod
    def load(cls, path: str | Path) -> ProseVectors:
        """Reads a `prose_words.npz`; a ValueError names the file when it is malformed."""
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                tokens = str(z["tokens"][()]).split("\n")
                words = str(z["words"][()]).split("\n") if "words" in z.files else []
                q, scales, weights = z["vectors"], z["scales"], z["weights"]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{p} is not a prose word table ({e}). Received: path={p}") from e
        words = [w for w in words if w]
        n = len(tokens) + len(words)
        if q.ndim != 2 or q.shape[0] != n or scales.shape != (n,) or weights.shape != (n,):
            raise ValueError(
                f"{p} is not a prose word table: shapes disagree. Received: {len(tokens)} "
                f"tokens, {len(words)} words, vectors {q.shape}, scales {scales.shape}, "
                f"weights {weights.shape}"
            )
        if q.dtype == np.uint8:  # 4-bit, two a byte
            values = np.empty((n, 2 * q.shape[1]), np.int8)
            values[:, 0::2] = (q & 15).astype(np.int8) - 8
            values[:, 1::2] = (q >> 4).astype(np.int8) - 8
        elif q.dtype == np.int8:
            values = q
        else:
            raise ValueError(f"{p}: vectors must be int8 or uint8. Received: {q.dtype}")
        return cls(tokens, values, (scales * weights).astype(np.float32), words)

    def wordpiece(self, word: str) -> tuple[int, ...]:
        """Token ids of one basic word: its whole-word row when the table has one, else
        greedy longest-match-first WordPiece; empty when the word is too long or cannot
        be split (BERT's [UNK])."""
        if len(word) > MAX_WORD_CHARS:  # not cached: the cache holds short keys only
            return ()
        got = self._cache.get(word)
        if got is not None:
            return got
        ids = self._whole.get(word) or self._split(word)
        if len(self._cache) >= CACHE_WORDS:  # start afresh: bounded, and safe across threads
            self._cache = {}
        self._cache[word] = ids
        return ids

    def _split(self, word: str) -> tuple[int, ...]:
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self._longest)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                i = self._ids.get(piece)
                if i is not None:
                    ids.append(i)
                    break
                end -= 1
            if end == start:  # no piece fits: the whole word is unknown
                return ()
            start = end
        return tuple(ids)

    def token_ids(self, text: str) -> list[int]:
        """The distinct content tokens of a text (first `MAX_PROSE_CHARS` characters),
        in order of first appearance."""
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings. Received: {type(text).__name__}")
        seen: dict[int, None] = {}
        for w in basic_words(text[:MAX_PROSE_CHARS]):
            if not _is_stop(w):
                seen.update(dict.fromkeys(self.wordpiece(w)))
        return list(seen)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """`(len(texts), dim)` float32: each row the unit-length weighted mean of the
        text's distinct content tokens; zeros when it has no known one."""
        out = np.zeros((len(texts), self.dim), np.float32)
        rows: list[int] = []
        ids: list[list[int]] = []
        total = 0
        for r, text in enumerate(texts):
            got = self.token_ids(text)
            if got:
                rows.append(r)
                ids.append(got)
                total += len(got)
            if total >= _CHUNK_TOKENS:  # bounds the `(tokens, dim)` gather
                self._sum_into(out, rows, ids)
                rows, ids, total = [], [], 0
        if rows:
            self._sum_into(out, rows, ids)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _sum_into(self, out: np.ndarray, rows: list[int], ids: list[list[int]]) -> None:
        """`out[rows[i]] = sum of the vectors of ids[i]` (each `ids[i]` non-empty)."""
        counts = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(counts.sum()))
        vals = self.values[flat].astype(np.float32)  # (tokens, dim)
        vals *= self.scales[flat, None]
        out[rows] = np.add.reduceat(vals, np.cumsum(counts) - counts, axis=0)
