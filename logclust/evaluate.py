"""Evaluation of a bundle: writes `REPORT.md`, `metrics.json` and the PCA plot.

Figures: parameter count; next-token accuracy on held-out Android and on the validation
lines; clustering quality (adjusted Rand index, grouping accuracy; k = number of
templates) of logclust, TF-IDF + KMeans and Drain3 on the same masked messages of each
system; Keras vs TFLite parity; encoder throughput on one thread, float32 vs int8.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from logclust import data as data_mod
from logclust.bundle import Bundle, write_manifest
from logclust.labeler import Labeler
from logclust.metrics_quality import ari, grouping_accuracy

SEEDS = (0, 1, 2, 3, 4)  # KMeans restarts differ by a few hundredths of ARI: report means


def _kmeans_ids(x: Any, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def _tfidf(texts: list[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(token_pattern=r"[^\s=:,;()\[\]{}\"']+").fit_transform(texts)


def _over_seeds(truth: list[str], x: Any, k: int) -> dict[str, float]:
    """Mean ARI and GA (and the ARI's spread) of KMeans over `SEEDS`."""
    preds = [list(_kmeans_ids(x, k, seed)) for seed in SEEDS]
    aris = [ari(truth, p) for p in preds]
    return {
        "ari": float(np.mean(aris)),
        "ari_std": float(np.std(aris)),
        "ga": float(np.mean([grouping_accuracy(truth, p) for p in preds])),
    }


def split_parts(emb: np.ndarray, d_model: int) -> dict[str, np.ndarray]:
    """The decoder part and the semantic-channel part of bundle embeddings, each unit length."""
    out = {}
    for name, part in (("decoder", emb[:, :d_model]), ("channel", emb[:, d_model:])):
        if part.shape[1]:
            out[name] = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
    return out


def drain_ids(texts: list[str]) -> list[int]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    miner = TemplateMiner(config=cfg)
    return [miner.add_log_message(t)["cluster_id"] for t in texts]


def cluster_quality(
    lab: Labeler, sets: dict[str, data_mod.LogSet], parts: bool = False
) -> dict[str, dict[str, float]]:
    """Per system: ARI and grouping accuracy of the three methods on masked messages
    (KMeans methods: mean over `SEEDS`); with `parts`, also each part of the embedding."""
    out = {}
    for name, ls in sets.items():
        assert ls.templates is not None
        masked = lab.masker.mask_texts(ls.content)
        k = len(set(ls.templates))
        emb = lab.embed_masked(masked)
        inputs: dict[str, Any] = {"logclust": emb, "tfidf": _tfidf(masked)}
        if parts and lab.dim > lab.bundle.d_model:
            inputs.update(split_parts(emb, lab.bundle.d_model))
        row: dict[str, float] = {}
        for m, x in inputs.items():
            for key, v in _over_seeds(ls.templates, x, min(k, len(set(masked)))).items():
                row[f"{m}_{key}"] = v
        drain = drain_ids(masked)
        row["drain3_ari"] = ari(ls.templates, drain)
        row["drain3_ga"] = grouping_accuracy(ls.templates, drain)
        row["templates"] = k
        out[name] = row
    return out


PROBE = Path(__file__).resolve().parent.parent / "training" / "semantic_probe.tsv"


def read_probe(path: Path = PROBE) -> tuple[list[str], list[str]]:
    """(groups, lines) of the hand-written cross-format probe (`#` lines are comments)."""
    rows = [
        ln.split("\t", 1)
        for ln in path.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    return [g for g, _ in rows], [t for _, t in rows]


def semantic_probe(lab: Labeler, path: Path = PROBE) -> dict[str, float]:
    """Mean ARI over `SEEDS` of KMeans (k = number of groups) on the probe: logclust, each
    part of its embedding, TF-IDF, the teacher."""
    from logclust import teacher

    groups, lines = read_probe(path)
    k = len(set(groups))
    masked = lab.masker.mask_texts(lines)
    emb = lab.embed_masked(masked)
    inputs: dict[str, Any] = {"logclust": emb, "tfidf": _tfidf(masked)}
    if lab.dim > lab.bundle.d_model:
        inputs.update(split_parts(emb, lab.bundle.d_model))
    if teacher.available():
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            inputs["teacher_minilm"] = teacher.teacher_embeddings(masked, Path(tmp))
    return {m: _over_seeds(groups, x, k)["ari"] for m, x in inputs.items()}


def parity(bundle_dir: Path, encode: Any, lab: Labeler, texts: list[str]) -> dict[str, float]:
    """Cosine between the Keras encoder's and the TFLite embeddings (min, mean) per variant."""
    import tensorflow as tf

    rows = lab.tokenizer.encode(lab.masker.mask_texts(texts), lab.bundle.max_len)
    from logclust.tokenizer import pad

    ids, _ = pad(rows)
    ref = encode(tf.constant(ids)).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    res = {}
    for v in ("f32", "int8"):
        got = Labeler.load(bundle_dir, variant=v).embed(texts)
        cos = np.sum(ref * got, axis=1)
        res[f"{v}_min"], res[f"{v}_mean"] = float(cos.min()), float(cos.mean())
    return res


def throughput(bundle_dir: Path, texts: list[str], repeats: int = 2) -> dict[str, float]:
    """Encoder lines/s on one thread over distinct masked lines, per variant."""
    res = {}
    for v in ("f32", "int8"):
        lab = Labeler.load(bundle_dir, variant=v, num_threads=1)
        rows = lab.tokenizer.encode(lab.masker.mask_texts(texts), lab.bundle.max_len)
        lab.encoder.encode(rows[:64], lab.bundle.max_len)
        t = time.perf_counter()
        for _ in range(repeats):
            lab.encoder.encode(rows, lab.bundle.max_len)
        res[v] = repeats * len(rows) / (time.perf_counter() - t)
    return res


def pca_plot(lab: Labeler, ls: data_mod.LogSet, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert ls.templates is not None
    emb = lab.embed(ls.content)
    x = emb - emb.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    tmpl = np.asarray(ls.templates)
    names, counts = np.unique(tmpl, return_counts=True)
    top = list(names[np.argsort(-counts)][:12])
    fig, ax = plt.subplots(figsize=(7, 6))
    rest = ~np.isin(tmpl, top)
    ax.scatter(xy[rest, 0], xy[rest, 1], s=4, c="lightgrey", label="other templates")
    cmap = plt.get_cmap("tab20")
    for i, t in enumerate(top):
        m = tmpl == t
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(i), label=f"{t} ({int(m.sum())})")
    ax.set_title("Android (held out): logclust embeddings, PCA, coloured by template")
    ax.legend(fontsize=6, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def next_token(
    bundle: Bundle, work_dir: Path, android: data_mod.LogSet, val_texts: list[str]
) -> tuple[Any, dict[str, float]]:
    from logclust.config import ModelConfig
    from logclust.masking import Masker
    from logclust.model import build
    from logclust.pipeline import best_stage_dir
    from logclust.tokenizer import Tokenizer
    from logclust.train import next_token_accuracy

    mcfg = ModelConfig(**bundle.manifest["model_config"])
    model = build(mcfg)
    model.load_weights(str(best_stage_dir(work_dir) / "best.weights.h5"))
    tok = Tokenizer.load(bundle.file("tokenizer.model"))
    masked = Masker(bundle.masking).mask_texts(android.raw)
    uniq, counts = np.unique(np.asarray(masked, dtype=object), return_counts=True)
    acc = {
        "android_raw": next_token_accuracy(model, tok, list(uniq), mcfg.max_len - 1, list(counts)),
        "validation": next_token_accuracy(model, tok, val_texts, mcfg.max_len - 1),
    }
    return model, acc


def evaluate(bundle_dir: Path, data_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Runs every measurement and writes REPORT.md, metrics.json and android_pca.png."""
    from logclust.export import keras_encoder
    from logclust.model import count_params
    from logclust.pipeline import PipelineConfig, best_stage_dir, prepare

    bundle = Bundle.load(bundle_dir)
    lab = Labeler(bundle, variant="f32")
    sets = data_mod.load_loghub(data_dir, [*data_mod.TEST_SYSTEMS, *data_mod.TRAIN_SYSTEMS])
    android = sets["Android"]
    prep = prepare(PipelineConfig(data_dir, bundle_dir, work_dir))
    model, acc = next_token(bundle, work_dir, android, [e.text for e in prep.val])
    encoder = keras_encoder(bundle.manifest, best_stage_dir(work_dir) / "best.weights.h5", work_dir)
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
    (bundle_dir / "REPORT.md").write_text(render_report(metrics, bundle.manifest))
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("format", "format_version")}
    manifest["metrics"] = headline(metrics)
    write_manifest(bundle_dir, manifest)
    print((bundle_dir / "REPORT.md").read_text())
    return metrics


def headline(m: dict[str, Any]) -> dict[str, float]:
    cl = m["clustering_f32"]
    train = [r for s, r in cl.items() if s != "Android"]
    return {
        "android_next_token_accuracy": round(m["next_token_accuracy"]["android_raw"], 4),
        "android_ari": round(cl["Android"]["logclust_ari"], 4),
        "train_systems_mean_ari": round(float(np.mean([r["logclust_ari"] for r in train])), 4),
        "int8_lines_per_s": round(m["throughput_lines_per_s_1_thread"]["int8"], 1),
        **(
            {"semantic_probe_ari": round(m["semantic_probe_ari"]["logclust"], 4)}
            if "semantic_probe_ari" in m
            else {}
        ),
    }


def _channel_lines(manifest: dict[str, Any]) -> list[str]:
    sem = manifest.get("semantic")
    if not sem:
        return ["- Semantic channel: none (decoder embedding only)."]
    st = sem["stats"]
    return [
        f"- Semantic channel (`logclust/semantic.py`): {sem['dim']} dims "
        f"({int(manifest['model_config']['vocab_size']) * (sem['dim'] + 1):,} fixed values "
        "beside the decoder's parameters), share "
        f"{sem['weight']} of the embedding (decoder {np.sqrt(1 - sem['weight'] ** 2):.3f}); "
        f"piece table from the teacher, ridge {st['ridge_lambda']:g}, then "
        f"{int(st['tune_epochs'])} tuning epochs; held-out cosine to the teacher "
        f"{st['val_cosine_ridge']:.3f} (closed form) -> {st['val_cosine_to_teacher']:.3f}."
    ]


def _parts_lines(cl: dict[str, dict[str, float]], probe: dict[str, float]) -> list[str]:
    """The ablation table: the whole embedding vs each of its parts."""
    if "channel_ari" not in cl["Android"]:
        return []
    train = [r for s, r in cl.items() if s != "Android"]
    rows = [
        ("logclust", "whole embedding"),
        ("decoder", "decoder only"),
        ("channel", "channel only"),
    ]
    out = [
        "",
        "### Parts of the embedding",
        "",
        "The same KMeans on each part alone (unit length), from the same bundle:",
        "",
        "| embedding | Android ARI | train systems mean ARI | probe ARI |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in rows:
        mean = float(np.mean([r[f"{key}_ari"] for r in train]))
        pr = f"{probe[key]:.3f}" if key in probe else "-"
        out.append(f"| {label} | {cl['Android'][f'{key}_ari']:.3f} | {mean:.3f} | {pr} |")
    return out


def render_report(m: dict[str, Any], manifest: dict[str, Any]) -> str:
    acc, par, thr = (
        m["next_token_accuracy"],
        m["parity_cosine"],
        m["throughput_lines_per_s_1_thread"],
    )
    cl = m["clustering_f32"]
    tc = manifest.get("train_config", {})
    lines = [
        "# Model report: logclust default bundle",
        "",
        "Written by `logclust train --data ../shared/data/loghub-2k --out models/default "
        "--work runs/default --config training/default.toml --steps evaluate` "
        "(`logclust/evaluate.py`).",
        "",
        "## Model",
        "",
        f"- Parameters: **{m['parameters']:,}** (vocabulary {m['vocab_size']:,} pieces; "
        f"config {json.dumps(manifest['model_config'])})",
        f"- Training: {tc.get('epochs')} epochs (next-token + contrastive + distillation), then "
        f"{tc.get('finetune_epochs', 0)} distillation-heavy fine-tuning epochs; the bundle "
        f"holds epoch {m['training'].get('best_epoch')} of the "
        f"{m['training'].get('stage', 'train')} stage, chosen by validation accuracy.",
        *_channel_lines(manifest),
        "",
        "## Next-token accuracy",
        "",
        "| data | accuracy |",
        "| --- | --- |",
        f"| Android, held out (all 2,000 raw lines, masked) | {acc['android_raw']:.2%} |",
        f"| validation (distinct masked train-system lines held out) | {acc['validation']:.2%} |",
        "",
        "## Clustering against ground-truth templates",
        "",
        "Masked messages (`Content`) of each system, k = number of templates; the same text "
        "goes to all three methods. ARI = adjusted Rand index, GA = grouping accuracy. "
        f"KMeans figures are means over {len(SEEDS)} seeds (Android's ARI spread: logclust "
        f"±{cl['Android']['logclust_ari_std']:.3f}, TF-IDF ±{cl['Android']['tfidf_ari_std']:.3f}"
        "); Drain3 is deterministic.",
        "",
        "| system | templates | logclust ARI | TF-IDF+KMeans ARI | Drain3 ARI "
        "| logclust GA | TF-IDF GA | Drain3 GA |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s, r in cl.items():
        tag = f"{s} (held out)" if s == "Android" else s
        lines.append(
            f"| {tag} | {r['templates']} | {r['logclust_ari']:.3f} | {r['tfidf_ari']:.3f} | "
            f"{r['drain3_ari']:.3f} | {r['logclust_ga']:.3f} | {r['tfidf_ga']:.3f} | "
            f"{r['drain3_ga']:.3f} |"
        )
    train = [r for s, r in cl.items() if s != "Android"]
    mean = {k: float(np.mean([r[k] for r in train])) for k in train[0] if k != "templates"}
    lines.append(
        f"| mean of train systems | | {mean['logclust_ari']:.3f} | {mean['tfidf_ari']:.3f} | "
        f"{mean['drain3_ari']:.3f} | {mean['logclust_ga']:.3f} | {mean['tfidf_ga']:.3f} | "
        f"{mean['drain3_ga']:.3f} |"
    )
    a8 = m["clustering_int8"]["Android"]
    lines += [
        "",
        f"int8 encoder on Android: ARI {a8['logclust_ari']:.3f}, GA {a8['logclust_ga']:.3f}.",
        *_parts_lines(cl, m.get("semantic_probe_ari", {})),
        "",
        "## Export parity and speed",
        "",
        f"- Keras vs TFLite cosine on 500 Android lines: float32 min {par['f32_min']:.5f} "
        f"(mean {par['f32_mean']:.5f}); int8 min {par['int8_min']:.4f} "
        f"(mean {par['int8_mean']:.4f}).",
        f"- Encoder throughput, one thread, distinct Android lines: float32 {thr['f32']:,.0f} "
        f"lines/s, int8 {thr['int8']:,.0f} lines/s.",
        "",
        "## Embeddings",
        "",
        "![Android PCA](android_pca.png)",
        "",
    ]
    if "semantic_probe_ari" in m:
        sp = m["semantic_probe_ari"]
        lines += [
            "## Meaning across formats (hand-written probe)",
            "",
            "`training/semantic_probe.tsv`: 38 lines in 8 meanings (file missing, connection "
            "refused, ...), each written in several formats. KMeans with k = 8; mean ARI over "
            f"{len(SEEDS)} seeds:",
            "",
            "| method | ARI |",
            "| --- | --- |",
            *[f"| {k} | {v:.3f} |" for k, v in sp.items()],
            "",
        ]
    return "\n".join(lines)
