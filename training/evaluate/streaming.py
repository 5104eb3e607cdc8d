"""Streaming evaluation: clusters as a user gets them, k never given.

Every system's lines are streamed as their own source, several passes, the digits of
every pass after the first re-drawn (a live stream repeats kinds of lines, not lines);
the last pass is scored against the ground-truth templates. Used by the `calibrate`
pipeline step (in process, over a grid of thresholds) and by `bench/stream_quality.py`
(through a real sidecar, next to Drain3 streaming the same lines).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.quality import ari
from logclust.cluster.router import StreamClusters
from logclust.embed.embedding_cache import Embedder
from logclust.text.masking import Masker
from training.data import redraw_digits
from training.evaluate.grouping import fga, ga, normalise_template


def passes(texts: Sequence[str], n: int, seed: int = 0) -> list[list[str]]:
    """`n` passes over `texts`: the first as is, the others with digits re-drawn."""
    return [list(texts)] + [redraw_digits(texts, seed + i) for i in range(1, n)]


def template_accuracy(
    truth_templates: Sequence[str], pred: Sequence[int], templates: dict[int, str]
) -> float:
    """Share of predicted clusters that hold exactly one ground-truth group's lines and
    whose template reads as that group's template (loghub-2.0's parsing template
    accuracy, after `normalise_template` on both sides)."""
    rows: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(pred):
        rows[p].append(i)
    by_truth = Counter(truth_templates)
    correct = 0
    for cid, members in rows.items():
        truths = {truth_templates[i] for i in members}
        if len(truths) != 1:
            continue
        (truth,) = truths
        if by_truth[truth] != len(members):
            continue
        if normalise_template(templates.get(cid, "")) == normalise_template(truth):
            correct += 1
    return correct / max(1, len(rows))


@dataclass(frozen=True)
class StreamScore:
    """Scores of one stream's last pass."""

    ari: float
    grouping_accuracy: float  # GA (`training.evaluate.grouping.ga`)
    fga: float  # F1 of template-level grouping (`training.evaluate.grouping.fga`)
    clusters: int
    templates: int
    unassigned: float  # share of rows labelled -1

    def to_dict(self) -> dict[str, float]:
        return {
            "ari": self.ari,
            "ga": self.grouping_accuracy,
            "fga": self.fga,
            "clusters": self.clusters,
            "templates": self.templates,
            "unassigned": self.unassigned,
        }


def score(truth: Sequence[str], ids: Sequence[int]) -> StreamScore:
    """ARI, GA, FGA and counts of one pass's ids against the truth."""
    arr = np.asarray(ids)
    pred = arr.tolist()
    return StreamScore(
        ari=ari(truth, pred),
        grouping_accuracy=ga(truth, pred),
        fga=fga(truth, pred),
        clusters=len(set(arr.tolist()) - {-1}),
        templates=len(set(truth)),
        unassigned=float((arr == -1).mean()) if arr.size else 0.0,
    )


class CachedEmbedder:
    """An `Embedder` that embeds each masked text once across many runs (calibration
    streams the same texts at every threshold)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._seen: dict[str, np.ndarray] = {}

    @property
    def masker(self) -> Masker:
        return self.inner.masker

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def threshold(self) -> float | None:
        return self.inner.threshold

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        texts: list[str] = masked.to_pylist()
        new = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if new:
            emb = self.inner.embed_masked(pa.array(new, pa.string()))
            self._seen.update(zip(new, emb, strict=True))
        return np.stack([self._seen[t] for t in texts]).astype(np.float32)


def stream_in_process(
    embedder: Embedder,
    systems: dict[str, tuple[list[str], list[str]]],
    threshold: float,
    n_passes: int = 3,
    batch: int = 500,
    seed: int = 0,
) -> dict[str, StreamScore]:
    """Streams each system (`name -> (lines, truth)`) as its own source through the
    serving clusterer at `threshold`; scores each last pass."""
    clusters = StreamClusters(
        embedder,
        StreamClusterConfig(threshold=threshold, background_consolidation=False),
        max_sources=max(1, len(systems)),
    )
    out: dict[str, StreamScore] = {}
    for name, (lines, truth) in systems.items():
        ids = np.zeros(0, np.int32)
        for rows in passes(lines, n_passes, seed):
            got = []
            for start in range(0, len(rows), batch):
                body = pa.array(rows[start : start + batch], pa.string())
                source = pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(len(body), np.int32)), pa.array([name])
                )
                now = np.zeros(len(body), np.int64)
                got.append(clusters.label(body, source, now)[0])
            ids = np.concatenate(got)
        out[name] = score(truth, ids.tolist())
    return out


# Thresholds tried by the calibration (Euclidean distance between unit embeddings).
GRID: tuple[float, ...] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def calibration_score(scores: dict[str, StreamScore]) -> float:
    """What the calibration maximises: the mean over systems of (GA + ARI) / 2. GA is
    what a user sees first (a template split or merged costs all its lines), ARI keeps
    the big templates' weight; either alone can be gamed by the other's failure."""
    return float(np.mean([(s.grouping_accuracy + s.ari) / 2 for s in scores.values()]))


def calibrate(
    embedder: Embedder,
    train: dict[str, tuple[list[str], list[str]]],
    held_out: dict[str, tuple[list[str], list[str]]],
    grid: Sequence[float] = GRID,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The threshold with the best `calibration_score` (GA and ARI together) over the
    stream of each `train` system, and the curves.

    Returns:
        `{"threshold", "rule", "grid", "train_score", "train_mean_ari", "train_mean_ga",
        "per_system": {threshold: {system: ari}}, "per_system_ga": {...: {system: ga}},
        "held_out": {threshold: {system: ari}}, "held_out_ga": {...}}`; held-out systems
        are reported, never used to choose.
    """
    cached = CachedEmbedder(embedder)
    result: dict[str, Any] = {
        "rule": "max over the grid of the train systems' mean (GA + ARI) / 2",
        "grid": [float(t) for t in grid],
        "train_score": [],
        "train_mean_ari": [],
        "train_mean_ga": [],
        "per_system": {},
        "per_system_ga": {},
        "held_out": {},
        "held_out_ga": {},
    }
    for t in grid:
        key = f"{t:g}"
        per = stream_in_process(cached, train, t)
        held = stream_in_process(cached, held_out, t)
        result["per_system"][key] = {n: s.ari for n, s in per.items()}
        result["per_system_ga"][key] = {n: s.grouping_accuracy for n, s in per.items()}
        result["held_out"][key] = {n: s.ari for n, s in held.items()}
        result["held_out_ga"][key] = {n: s.grouping_accuracy for n, s in held.items()}
        result["train_score"].append(calibration_score(per))
        result["train_mean_ari"].append(float(np.mean([s.ari for s in per.values()])))
        result["train_mean_ga"].append(float(np.mean([s.grouping_accuracy for s in per.values()])))
        progress(
            f"threshold {key}: train mean GA {result['train_mean_ga'][-1]:.4f}, ARI "
            f"{result['train_mean_ari'][-1]:.4f}; held out GA {result['held_out_ga'][key]}"
        )
    result["threshold"] = float(grid[int(np.argmax(result["train_score"]))])
    return result
