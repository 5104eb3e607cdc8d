"""Distils the teacher into a static word-vector table for prose (`prose_words.npz`).

    python -m training.prose_words --bundle models/default [--dim 128]

Each token of the teacher's WordPiece vocabulary (special and `[unused]` tokens
dropped) is encoded alone, `[CLS] token [SEP]` mean-pooled and unit-normalised, as the
teacher pools a sentence (model2vec's recipe; a `##` continuation passes as its own id,
which placed topics better than encoding its text). The vectors are centred, their top
`--drop` principal components removed (they say "a token", not which: removing them
raised KMeans ARI on prose topics) and the next `--dim` kept. Then the whole words: each
English word of Zipf frequency >= `--word-zipf` (the `wordfreq` package's lists, read at
build time) that WordPiece splits into pieces is encoded whole (`[CLS] pieces [SEP]`,
mean-pooled), reduced by the same components, and kept when the mean of its pieces' rows
points elsewhere (cosine below `WORD_COSINE`), at most `--words` of them, most frequent
first: `refund`, `invoice` and `unsubscribe` say what their pieces do not. Each row weighs
`a / (a + p)`, p its word's frequency in English (`wordfreq`; 0 for a `##` piece or a word
it does not know) and a = `--sif` (smooth inverse frequency): `please`, `help` and
`still`, said in messages of every topic, weigh about half to two thirds of `refund`.
Rows are stored as 4-bit (or `--bits 8`) integers with one float32 scale each. Written
deterministically (fixed zip timestamps, component signs fixed), added to the bundle's
manifest (`files` and a `prose_words` entry). The serving side is
`logclust.text.prose_vectors`. Needs the extra `distill`.
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from logclust.embed.bundle import MANIFEST, write_manifest
from logclust.text.prose_vectors import FILE, ProseVectors, _is_stop
from training import teacher

# Width of the table: KMeans ARI on prose topics rose from 128 to 192 dims and little
# beyond (measured by `training.evaluate.prose_vectors`); 256 no longer fits the bundle's
# size budget at 4 bits.
DIM = 192
# Top principal components removed (common to all tokens).
DROP = 5
# Whole words: the least Zipf frequency (3.0: once in a million words), the most kept,
# and the cosine between a word's own row and its pieces' mean below which it is kept
# (where they agree, the pieces already say it). The bundle's size budget (30 MiB) holds
# about 6,000 more rows at 4 bits.
WORD_ZIPF = 3.0
MAX_WORDS = 6000
WORD_COSINE = 0.8
# Smooth inverse frequency, a in a / (a + p): topics found in prose-only streams rose
# most at 7e-4 of 5e-4 to 2e-3 (written sentences most; support messages, whose topics
# hang on common words such as `late` and `still`, lost a little); at 1e-4 the words of a
# topic weigh as little as the filler (BENCHMARKS.md, "Free text"). 0: every row 1.
SIF = 7e-4
# Bits per stored value: 4 placed prose topics as well as 8 (KMeans ARI within 0.005) in
# half the bytes, which keeps the bundle in its size budget.
BITS = 4
_BATCH = 1024


def vocabulary(model: Any) -> tuple[list[str], list[int]]:
    """`(tokens, ids)` of the teacher's WordPiece vocabulary in id order, without
    special or `[unused]` tokens."""
    vocab: dict[str, int] = model.tokenizer.get_vocab()
    pairs = sorted((i, t) for t, i in vocab.items() if not (t.startswith("[") and t.endswith("]")))
    return [t for _, t in pairs], [i for i, _ in pairs]


def token_vectors(model: Any, ids: list[int]) -> np.ndarray:
    """`(len(ids), width)` float32: each token alone through the teacher, mean-pooled
    over `[CLS] token [SEP]`, unit length."""
    import torch

    tok = model.tokenizer
    encoder = model[0].auto_model
    out = []
    with torch.no_grad():
        for s in range(0, len(ids), _BATCH):
            batch = torch.tensor(
                [[tok.cls_token_id, i, tok.sep_token_id] for i in ids[s : s + _BATCH]]
            )
            h = encoder(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            v = h.mean(dim=1)
            out.append((v / v.norm(dim=1, keepdim=True)).numpy())
    return np.concatenate(out).astype(np.float32)


def reduce(vectors: np.ndarray, dim: int = DIM, drop: int = DROP) -> np.ndarray:
    """Centred PCA: components `drop .. drop + dim` of `vectors`, each signed so that its
    largest loading is positive (the same input gives the same table)."""
    mean, comps = components(vectors, dim, drop)
    return project(vectors, mean, comps)


def components(
    vectors: np.ndarray, dim: int = DIM, drop: int = DROP
) -> tuple[np.ndarray, np.ndarray]:
    """`(mean, (dim, width) components)` of `reduce`, to project other vectors alike."""
    top = min(vectors.shape) - drop  # components there are, less those dropped
    if not 0 < dim <= top:
        raise ValueError(
            f"dim must be in 1..{top} ({vectors.shape} vectors, {drop} components dropped). "
            f"Received: dim={dim}"
        )
    mean = vectors.astype(np.float64).mean(axis=0)
    _, _, vt = np.linalg.svd(vectors.astype(np.float64) - mean, full_matrices=False)
    comps = vt[drop : drop + dim]
    signs = np.sign(comps[np.arange(dim), np.argmax(np.abs(comps), axis=1)])
    return mean, comps * signs[:, None]


def project(vectors: np.ndarray, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
    return ((vectors.astype(np.float64) - mean) @ comps.T).astype(np.float32)


def candidate_words(pv: ProseVectors, zipf: float = WORD_ZIPF) -> list[str]:
    """English words of Zipf frequency >= `zipf` (most frequent first) that are plain
    lower-case ASCII letters, not stop words, and split by WordPiece into 2+ pieces."""
    import wordfreq

    out = []
    for w in wordfreq.top_n_list("en", 200_000):
        if wordfreq.zipf_frequency(w, "en") < zipf:
            break
        if w.isascii() and w.isalpha() and w.islower() and not _is_stop(w):
            if len(pv.wordpiece(w)) > 1:
                out.append(w)
    return out


def word_vectors(model: Any, words: list[str]) -> np.ndarray:
    """`(len(words), width)` float32: each word alone through the teacher, mean-pooled
    over `[CLS] pieces [SEP]`, unit length (as `token_vectors` encodes one token)."""
    import torch

    tok = model.tokenizer
    encoder = model[0].auto_model
    out = []
    with torch.no_grad():
        for s in range(0, len(words), _BATCH):
            batch = tok(words[s : s + _BATCH], padding=True, return_tensors="pt")
            h = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
            v = (h * mask).sum(dim=1) / mask.sum(dim=1)
            out.append((v / v.norm(dim=1, keepdim=True)).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1), np.float32)


def choose_words(
    pv: ProseVectors,
    words: list[str],
    rows: np.ndarray,
    cosine: float = WORD_COSINE,
    most: int = MAX_WORDS,
) -> list[int]:
    """Indexes into `words` (rows `rows`, reduced like `pv`'s) of those kept: the mean
    of the word's pieces' rows points elsewhere than its own row, the first `most`."""
    table = pv.vectors
    keep = []
    for i, w in enumerate(words):
        pieces = table[list(pv.wordpiece(w))].sum(axis=0)
        denom = float(np.linalg.norm(pieces) * np.linalg.norm(rows[i]))
        if denom == 0.0 or float(pieces @ rows[i]) / denom < cosine:
            keep.append(i)
            if len(keep) == most:
                break
    return keep


def sif_weights(names: list[str], a: float = SIF) -> np.ndarray:
    """`(len(names),)` float32 weight of each token or word: `a / (a + p)`, p its
    frequency in English (0 for a `##` piece, an unknown word, or every name when a is 0,
    which weighs every row 1)."""
    if a <= 0:
        return np.ones(len(names), np.float32)
    import wordfreq

    p = np.array([0.0 if n.startswith("##") else wordfreq.word_frequency(n, "en") for n in names])
    return (a / (a + p)).astype(np.float32)


def quantize(rows: np.ndarray, bits: int = BITS) -> tuple[np.ndarray, np.ndarray]:
    """`(codes, float32 scale per row)` with `rows ~= values * scale`: values in
    -127..127 as int8 `(n, dim)` (`bits=8`), or in -7..7 packed two a byte as uint8
    `(n, dim / 2)`, offset by 8, the even column in the low nibble (`bits=4`)."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8. Received: bits={bits}")
    top = 127 if bits == 8 else 7
    peak = np.abs(rows).max(axis=1)
    scales = np.where(peak > 0, peak / top, 1.0).astype(np.float32)
    q = np.clip(np.rint(rows / scales[:, None]), -top, top).astype(np.int8)
    if bits == 8:
        return q, scales
    if q.shape[1] % 2:
        raise ValueError(f"4-bit rows need an even dim. Received: dim={q.shape[1]}")
    u = (q + 8).astype(np.uint8)
    return (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8), scales


def write_table(
    path: Path,
    tokens: list[str],
    rows: np.ndarray,
    weights: np.ndarray,
    bits: int = BITS,
    words: list[str] | None = None,
) -> None:
    """Writes the `.npz` with fixed timestamps (byte-identical for the same input);
    `rows` holds the tokens' rows, then the whole words'."""
    q, scales = quantize(rows, bits)
    arrays = {
        "tokens": np.array("\n".join(tokens)),
        "vectors": q,
        "scales": scales,
        "weights": weights.astype(np.float32),
    }
    if words:
        arrays["words"] = np.array("\n".join(words))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue(), compresslevel=9)


def build(
    bundle: Path,
    dim: int = DIM,
    drop: int = DROP,
    bits: int = BITS,
    word_zipf: float = WORD_ZIPF,
    most_words: int = MAX_WORDS,
    sif: float = SIF,
) -> dict[str, Any]:
    """Writes `prose_words.npz` into `bundle` and records it in the manifest; returns
    the manifest entry."""
    model = teacher.load()
    tokens, ids = vocabulary(model)
    vectors = token_vectors(model, ids)
    mean, comps = components(vectors, dim, drop)
    rows = project(vectors, mean, comps)
    words: list[str] = []
    if most_words > 0:
        pieces = ProseVectors(tokens, rows)
        candidates = candidate_words(pieces, word_zipf)
        whole = project(word_vectors(model, candidates), mean, comps)
        kept = choose_words(pieces, candidates, whole, most=most_words)
        words = [candidates[i] for i in kept]
        rows = np.vstack([rows, whole[kept]])
    write_table(bundle / FILE, tokens, rows, sif_weights(tokens + words, sif), bits, words)
    ProseVectors.load(bundle / FILE)  # it reads back
    manifest = json.loads((bundle / MANIFEST).read_text())
    entry = {
        "file": FILE,
        "dim": dim,
        "dropped_components": drop,
        "bits": bits,
        "tokens": len(tokens),
        "whole_words": len(words),
        "word_zipf": word_zipf,
        "sif": sif,
        "teacher": teacher.TEACHER_NAME,
        "command": "python -m training.prose_words --bundle <bundle> "
        f"--dim {dim} --drop {drop} --bits {bits} --word-zipf {word_zipf} --words {most_words} "
        f"--sif {sif}",
    }
    manifest["prose_words"] = entry
    manifest["files"][FILE] = {}
    write_manifest(bundle, manifest)
    return entry


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--dim", type=int, default=DIM)
    ap.add_argument("--drop", type=int, default=DROP)
    ap.add_argument("--bits", type=int, choices=(4, 8), default=BITS)
    ap.add_argument("--word-zipf", type=float, default=WORD_ZIPF)
    ap.add_argument("--words", type=int, default=MAX_WORDS, help="whole words at most (0: none)")
    ap.add_argument("--sif", type=float, default=SIF, help="a of a / (a + p) (0: weights 1)")
    args = ap.parse_args(argv)
    if args.sif < 0:
        ap.error(f"--sif must be >= 0. Received: {args.sif}")
    entry = build(args.bundle, args.dim, args.drop, args.bits, args.word_zipf, args.words, args.sif)
    size = (args.bundle / FILE).stat().st_size
    print(
        f"wrote {args.bundle / FILE}: {entry['tokens']} tokens and {entry['whole_words']} "
        f"whole words x {entry['dim']} ({size:,} bytes)"
    )


if __name__ == "__main__":
    main()
