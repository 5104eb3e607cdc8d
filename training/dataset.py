"""Training examples: distinct masked lines with their source and template labels.

Masked loghub lines repeat a lot (24k lines hold about 2k distinct masked texts), so one
epoch visits each distinct text once; the next-token objective loses nothing and an epoch
costs a tenth as much.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from logclust.text.masking import Masker
from logclust.text.tokenizer import EOS_ID, Tokenizer, pad
from training.data import LogSet


@dataclass(frozen=True)
class Example:
    text: str  # masked
    source: str
    label: int  # template class id, -1 when unknown
    count: int  # how often the masked text occurs in the source


def make_examples(
    sets: Mapping[str, LogSet], masker: Masker, include_content: bool
) -> tuple[list[Example], list[str]]:
    """Distinct masked texts per source; labels are the majority template of each text.

    Returns:
        The examples and the label names (`source:EventId`) indexed by `Example.label`.
    """
    label_names: list[str] = []
    label_ids: dict[str, int] = {}
    out: list[Example] = []
    for source, ls in sets.items():
        variants = [masker.mask_texts(ls.raw)]
        if include_content and ls.content is not ls.raw:
            variants.append(masker.mask_texts(ls.content))
        seen: dict[str, Counter[str]] = defaultdict(Counter)
        for masked in variants:
            tmpl = ls.templates or [""] * len(masked)
            for text, t in zip(masked, tmpl, strict=True):
                if text:
                    seen[text][t] += 1
        for text, counter in seen.items():
            t = counter.most_common(1)[0][0]
            label = -1
            if t:
                name = f"{source}:{t}"
                label = label_ids.setdefault(name, len(label_names))
                if label == len(label_names):
                    label_names.append(name)
            out.append(Example(text, source, label, sum(counter.values())))
    return out, label_names


def val_bucket(text: str) -> float:
    """A stable number in [0, 1) for a masked text; below `val_fraction` means validation."""
    h = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def split(examples: list[Example], val_fraction: float) -> tuple[list[Example], list[Example]]:
    """Stable split by a hash of the text: the same line is always on the same side."""
    val = [e for e in examples if val_bucket(e.text) < val_fraction]
    train = [e for e in examples if val_bucket(e.text) >= val_fraction]
    return train, val


def lm_arrays(tok: Tokenizer, texts: list[str], max_len: int) -> np.ndarray:
    """`(n, L+1)` int32: beginning-of-line id, tokens, end-of-line id, right-padded.

    Inputs are `[:, :-1]` and next-token targets `[:, 1:]`.
    """
    rows = [[*r, EOS_ID] for r in tok.encode(texts, max_len)]
    seq, _ = pad(rows)
    return seq


def batches(
    n: int, batch_size: int, lengths: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar length (less padding), in shuffled order."""
    order = rng.permutation(n)
    chunk = batch_size * 16
    groups = []
    for s in range(0, n, chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        groups += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(groups)  # type: ignore[arg-type]
    return [g for g in groups if len(g) >= 2]
