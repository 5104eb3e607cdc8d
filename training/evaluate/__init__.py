"""Evaluation of a bundle: writes `REPORT.md`, `metrics.json` and the PCA plot.

Figures: parameter count; next-token accuracy on held-out Android and on the validation
lines; clustering quality (adjusted Rand index, grouping accuracy; k = number of
templates) of logclust, TF-IDF + KMeans and Drain3 on the same masked messages of each
system; Keras vs TFLite parity; encoder throughput on one thread, float32 vs int8.
Modules: `quality` (the measurements), `baselines` (TF-IDF, Drain3), `report`,
`plots`, `manifest`; `evaluate` below runs them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from logclust.cluster.labeler import Labeler
from logclust.embed.bundle import Bundle
from training import data as data_mod
from training.evaluate.manifest import add_headline
from training.evaluate.plots import pca_plot
from training.evaluate.quality import (
    PROBE,
    cluster_quality,
    next_token,
    parity,
    semantic_probe,
    throughput,
)
from training.evaluate.report import kept_sections, render_report

__all__ = ["evaluate"]


def evaluate(
    bundle_dir: Path, data_dir: Path, work_dir: Path, weights: Path, val_texts: list[str]
) -> dict[str, Any]:
    """Runs every measurement and writes REPORT.md, metrics.json and android_pca.png.

    Args:
        bundle_dir: the exported bundle (its manifest gets the headline metrics).
        data_dir: loghub-2k.
        work_dir: the training run's folder (scratch space for the Keras encoder).
        weights: the Keras weights the bundle was exported from.
        val_texts: the distinct masked lines held out for validation.
    """
    from training.export import keras_encoder
    from training.model import count_params

    bundle = Bundle.load(bundle_dir)
    lab = Labeler(bundle, variant="f32")
    sets = data_mod.load_loghub(data_dir, [*data_mod.TEST_SYSTEMS, *data_mod.TRAIN_SYSTEMS])
    android = sets["Android"]
    model, acc = next_token(bundle, weights, android, val_texts)
    encoder = keras_encoder(bundle.manifest, weights, work_dir)
    metrics: dict[str, Any] = {
        "parameters": count_params(model),
        "vocab_size": bundle.manifest["model_config"]["vocab_size"],
        "next_token_accuracy": acc,
        "parity_cosine": parity(bundle_dir, encoder, lab, android.raw[:500]),
        "throughput_lines_per_s_1_thread": throughput(bundle_dir, sorted(set(android.raw))),
        "clustering_f32": cluster_quality(lab, sets, parts=True),
        "clustering_int8": cluster_quality(Labeler(bundle, variant="int8"), {"Android": android}),
        "training": bundle.manifest.get("training", {}),
    }
    if PROBE.is_file():
        metrics["semantic_probe_ari"] = semantic_probe(lab)
    pca_plot(lab, android, bundle_dir / "android_pca.png")
    (bundle_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    report = bundle_dir / "REPORT.md"
    kept = kept_sections(report)
    report.write_text(
        render_report(metrics, bundle.manifest) + ("\n" + kept + "\n" if kept else "")
    )
    add_headline(bundle, metrics)
    print((bundle_dir / "REPORT.md").read_text())
    return metrics
