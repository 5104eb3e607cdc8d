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


def _kmeans_ids(x: Any, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def tfidf_ids(texts: list[str], k: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(token_pattern=r"[^\s=:,;()\[\]{}\"']+").fit_transform(texts)
    return _kmeans_ids(x, min(k, x.shape[0]))


def drain_ids(texts: list[str]) -> list[int]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    miner = TemplateMiner(config=cfg)
    return [miner.add_log_message(t)["cluster_id"] for t in texts]


def cluster_quality(lab: Labeler, sets: dict[str, data_mod.LogSet]) -> dict[str, dict[str, float]]:
    """Per system: ARI and grouping accuracy of the three methods on masked messages."""
    out = {}
    for name, ls in sets.items():
        assert ls.templates is not None
        masked = lab.masker.mask_texts(ls.content)
        k = len(set(ls.templates))
        ours = _kmeans_ids(lab.embed_masked(masked), min(k, len(set(masked))))
        methods: dict[str, list[Any]] = {
            "logclust": list(ours),
            "tfidf": list(tfidf_ids(masked, k)),
            "drain3": drain_ids(masked),
        }
        row = {}
        for m, pred in methods.items():
            row[f"{m}_ari"] = ari(ls.templates, pred)
            row[f"{m}_ga"] = grouping_accuracy(ls.templates, pred)
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
    """ARI of KMeans (k = number of groups) on the probe: logclust, TF-IDF, teacher."""
    from logclust import teacher

    groups, lines = read_probe(path)
    k = len(set(groups))
    masked = lab.masker.mask_texts(lines)
    res = {
        "logclust": ari(groups, list(_kmeans_ids(lab.embed_masked(masked), k))),
        "tfidf": ari(groups, list(tfidf_ids(masked, k))),
    }
    if teacher.available():
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            emb = teacher.teacher_embeddings(masked, Path(tmp))
        res["teacher_minilm"] = ari(groups, list(_kmeans_ids(emb, k)))
    return res


def parity(bundle_dir: Path, model: Any, lab: Labeler, texts: list[str]) -> dict[str, float]:
    """Cosine between Keras and TFLite embeddings (min and mean) per variant."""
    import tensorflow as tf

    rows = lab.tokenizer.encode(lab.masker.mask_texts(texts), lab.bundle.max_len)
    from logclust.tokenizer import pad

    ids, _ = pad(rows)
    ref = model.embed(tf.constant(ids)).numpy()
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
    from logclust.model import count_params
    from logclust.pipeline import PipelineConfig, prepare

    bundle = Bundle.load(bundle_dir)
    lab = Labeler(bundle, variant="f32")
    sets = data_mod.load_loghub(data_dir, [*data_mod.TEST_SYSTEMS, *data_mod.TRAIN_SYSTEMS])
    android = sets["Android"]
    prep = prepare(PipelineConfig(data_dir, bundle_dir, work_dir))
    model, acc = next_token(bundle, work_dir, android, [e.text for e in prep.val])
    metrics: dict[str, Any] = {
        "parameters": count_params(model),
        "vocab_size": bundle.manifest["model_config"]["vocab_size"],
        "next_token_accuracy": acc,
        "parity_cosine": parity(bundle_dir, model, lab, android.raw[:500]),
        "throughput_lines_per_s_1_thread": throughput(bundle_dir, sorted(set(android.raw))),
        "clustering_f32": cluster_quality(lab, sets),
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
    }


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
        "goes to all three methods. ARI = adjusted Rand index, GA = grouping accuracy.",
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
            "refused, ...), each written in several formats. KMeans with k = 8; ARI:",
            "",
            "| method | ARI |",
            "| --- | --- |",
            *[f"| {k} | {v:.3f} |" for k, v in sp.items()],
            "",
        ]
    return "\n".join(lines)
