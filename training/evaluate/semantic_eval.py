"""ARI of embeddings on lines grouped by meaning: the semantic dev set and the probe.

KMeans with k = the number of categories, over `SEEDS` (mean and spread), for: the
bundle's whole embedding as a user takes it (`Labeler.embed` on the raw lines), each of
its parts (decoder, semantic channel), TF-IDF and the teacher(s) on the masked lines and
on their messages (the header cut as `Labeler.embed` cuts it, `logclust.text.header`).
With `--channel`, a channel table not yet exported (`semantic.npz` of a training run) is
scored too, alone and inside the whole embedding (the bundle's decoder part beside it at
the bundle's weight, or `--weight`).

    python -m training.evaluate.semantic_eval --bundle models/default
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from logclust.cluster.labeler import Labeler
from logclust.text.header import message
from training import teacher
from training.evaluate.baselines import tfidf
from training.evaluate.quality import SEEDS, over_seeds, read_probe, split_parts
from training.evaluate.semantic_dev import read as read_dev
from training.semantic import SemanticTable, pooled

Sets = dict[str, tuple[list[str], list[str]]]  # name -> (groups, raw lines)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def channel_embed(lab: Labeler, table: SemanticTable, masked: list[str]) -> np.ndarray:
    """Unit channel vectors of masked lines, as the exported encoder computes them."""
    rows = lab.tokenizer.encode(masked, lab.bundle.max_len)
    return _unit(pooled(rows, table.table, table.weights))


def mixed(decoder: np.ndarray, channel: np.ndarray, weight: float) -> np.ndarray:
    """The bundle's whole embedding from its unit parts (`training.model.mixed_embedding`)."""
    return np.concatenate([np.sqrt(1.0 - weight**2) * decoder, weight * channel], axis=1)


def inputs_for(
    lab: Labeler,
    lines: list[str],
    teachers: dict[str, Callable[[list[str]], np.ndarray]],
    candidate: SemanticTable | None = None,
    weight: float | None = None,
) -> dict[str, Any]:
    """Every method's vectors (or sparse rows) of `lines`, by method name."""
    masked = lab.masker.mask_texts(lines)
    messages = [message(t) for t in masked]  # what the encoder reads (`Labeler.embed_masked`)
    emb = lab.embed(lines)
    out: dict[str, Any] = {"logclust": emb}
    parts = split_parts(emb, lab.bundle.d_model)
    out.update(parts)
    if candidate is not None:
        chan = channel_embed(lab, candidate, messages)
        sem = lab.bundle.manifest.get("semantic") or {}
        w = weight if weight is not None else float(sem.get("weight", 0.95))
        out["candidate"] = mixed(parts["decoder"], chan, w)
        out["candidate_channel"] = chan
    # The baselines read the whole masked line, and its message as the encoder does.
    out["tfidf"] = tfidf(masked)
    out["tfidf_message"] = tfidf(messages)
    for name, fn in teachers.items():
        out[f"teacher_{name}"] = fn(masked)
        out[f"teacher_{name}_message"] = fn(messages)
    return out


def score(lab: Labeler, sets: Sets, teachers: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """{set: {method: {ari, ari_std}}} over `SEEDS`."""
    res: dict[str, Any] = {}
    for name, (groups, lines) in sets.items():
        k = len(set(groups))
        res[name] = {}
        for m, x in inputs_for(lab, lines, teachers, **kw).items():
            r = over_seeds(groups, x, k)
            res[name][m] = {"ari": r["ari"], "ari_std": r["ari_std"]}
    return res


def default_sets() -> Sets:
    cats, _, lines = read_dev()
    groups, probe = read_probe()
    return {"dev": (cats, lines), "probe": (groups, probe)}


def table(res: dict[str, Any]) -> str:
    sets = list(res)
    methods = list(res[sets[0]])
    head = "| method | " + " | ".join(f"{s} ARI (mean ± sd)" for s in sets) + " |"
    rows = [head, "|---|" + "---|" * len(sets)]
    for m in methods:
        cells = [f"{res[s][m]['ari']:.3f} ± {res[s][m]['ari_std']:.3f}" for s in sets]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def teacher_fns(names: list[str], cache: Path) -> dict[str, Callable[[list[str]], np.ndarray]]:
    out: dict[str, Callable[[list[str]], np.ndarray]] = {}
    for n in names:
        if teacher.available(n):
            out[n] = functools.partial(teacher.teacher_embeddings, cache_dir=cache, name=n)
        else:
            print(f"teacher {n} not installed: left out")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--variant", default="f32")
    ap.add_argument("--channel", type=Path, help="a run's semantic.npz to score too")
    ap.add_argument("--weight", type=float, help="channel weight for --channel")
    ap.add_argument("--teachers", default="minilm")
    ap.add_argument("--cache", type=Path, help="teacher embedding cache (default: temporary)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    lab = Labeler.load(args.bundle, variant=args.variant)
    cand = SemanticTable.load(args.channel) if args.channel else None
    with tempfile.TemporaryDirectory() as tmp:
        fns = teacher_fns([t for t in args.teachers.split(",") if t], args.cache or Path(tmp))
        res = score(lab, default_sets(), fns, candidate=cand, weight=args.weight)
    print(f"KMeans, k = groups, seeds {list(SEEDS)}; bundle {args.bundle} ({args.variant})")
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
