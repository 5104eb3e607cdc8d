"""Distils the teacher into a static word-vector table for prose (`prose_words.npz`).

    python -m training.prose_words --bundle models/default [--dim 128]

Each token of the teacher's WordPiece vocabulary (special and `[unused]` tokens
dropped) is encoded alone, `[CLS] token [SEP]` mean-pooled and unit-normalised, as the
teacher pools a sentence (model2vec's recipe; a `##` continuation passes as its own id,
which placed topics better than encoding its text). The vectors are centred, their top
`--drop` principal components removed (they say "a token", not which: removing them
raised KMeans ARI on prose topics) and the next `--dim` kept. Rows are stored as 4-bit
(or `--bits 8`) integers with one float32 scale each. Written deterministically (fixed
zip timestamps, component signs fixed), added to the bundle's manifest (`files` and a
`prose_words` entry). The serving side is `logclust.text.prose_vectors`. Needs the extra `distill`.
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
from logclust.text.prose_vectors import FILE, ProseVectors
from training import teacher

# Width of the table: KMeans ARI on prose topics rose from 128 to 192 dims and little
# beyond (measured by `training.evaluate.prose_vectors`); 256 no longer fits the bundle's
# size budget at 4 bits.
DIM = 192
# Top principal components removed (common to all tokens).
DROP = 5
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
    top = min(vectors.shape) - drop  # components there are, less those dropped
    if not 0 < dim <= top:
        raise ValueError(
            f"dim must be in 1..{top} ({vectors.shape} vectors, {drop} components dropped). "
            f"Received: dim={dim}"
        )
    x = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[drop : drop + dim]
    signs = np.sign(comps[np.arange(dim), np.argmax(np.abs(comps), axis=1)])
    return (x @ (comps * signs[:, None]).T).astype(np.float32)


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
    path: Path, tokens: list[str], rows: np.ndarray, weights: np.ndarray, bits: int = BITS
) -> None:
    """Writes the `.npz` with fixed timestamps (byte-identical for the same input)."""
    q, scales = quantize(rows, bits)
    arrays = {
        "tokens": np.array("\n".join(tokens)),
        "vectors": q,
        "scales": scales,
        "weights": weights.astype(np.float32),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue(), compresslevel=9)


def build(bundle: Path, dim: int = DIM, drop: int = DROP, bits: int = BITS) -> dict[str, Any]:
    """Writes `prose_words.npz` into `bundle` and records it in the manifest; returns
    the manifest entry."""
    model = teacher.load()
    tokens, ids = vocabulary(model)
    rows = reduce(token_vectors(model, ids), dim, drop)
    write_table(bundle / FILE, tokens, rows, np.ones(len(tokens), np.float32), bits)
    ProseVectors.load(bundle / FILE)  # it reads back
    manifest = json.loads((bundle / MANIFEST).read_text())
    entry = {
        "file": FILE,
        "dim": dim,
        "dropped_components": drop,
        "bits": bits,
        "tokens": len(tokens),
        "teacher": teacher.TEACHER_NAME,
        "command": "python -m training.prose_words --bundle <bundle> "
        f"--dim {dim} --drop {drop} --bits {bits}",
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
    args = ap.parse_args(argv)
    entry = build(args.bundle, args.dim, args.drop, args.bits)
    size = (args.bundle / FILE).stat().st_size
    print(f"wrote {args.bundle / FILE}: {entry['tokens']} tokens x {entry['dim']} ({size:,} bytes)")


if __name__ == "__main__":
    main()
