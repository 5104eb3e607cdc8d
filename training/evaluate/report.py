"""`REPORT.md` of a bundle, rendered from its metrics and manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate.quality import SEEDS


def _channel_lines(manifest: dict[str, Any]) -> list[str]:
    sem = manifest.get("semantic")
    if not sem:
        return ["- Semantic channel: none (decoder embedding only)."]
    st = sem["stats"]
    return [
        f"- Semantic channel (`training/semantic.py`): {sem['dim']} dims "
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
    """The Markdown report of `evaluate`'s metrics `m` for the bundle of `manifest`."""
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
        "Written by `python -m training --data ../shared/data/loghub-2k --out models/default "
        "--work runs/default --config training/default.toml --steps evaluate` "
        "(`training/evaluate/`).",
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


# Sections written by other steps or scripts (`calibrate`, `bench.stream_quality`) sit
# between these markers; `evaluate` keeps them when it writes the report again.
_BEGIN = "<!-- section:{} -->"
_END = "<!-- /section:{} -->"


def write_section(report: Path, key: str, text: str) -> None:
    """Puts `text` into the report as section `key`, replacing an earlier one."""
    old = report.read_text() if report.exists() else ""
    begin, end = _BEGIN.format(key), _END.format(key)
    section = f"{begin}\n{text.rstrip()}\n{end}\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + section + old[old.index(end) + len(end) + 1 :]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    report.write_text(new)


def kept_sections(report: Path) -> str:
    """The marked sections of an existing report, to append to a fresh one."""
    if not report.exists():
        return ""
    text = report.read_text()
    out, start = [], 0
    while (i := text.find("<!-- section:", start)) >= 0:
        key = text[i + len("<!-- section:") : text.index(" -->", i)]
        end = _END.format(key)
        j = text.find(end, i)
        if j < 0:
            break
        out.append(text[i : j + len(end)])
        start = j + len(end)
    return "\n\n".join(out)


def threshold_section(clustering: dict[str, Any]) -> str:
    """The calibration of the clustering threshold, as a report section (a calibration
    made before GA was scored shows ARI alone)."""
    cal = clustering["calibration"]
    held = next(iter(next(iter(cal["held_out"].values()))), None)
    with_ga = "train_mean_ga" in cal
    rule = "the best mean (GA + ARI) / 2" if with_ga else "the best mean ARI"
    lines = [
        "## Clustering threshold (k never given)",
        "",
        "The sidecar and `Labeler.fit(k=None)` cluster by distance: a line joins the nearest "
        "cluster within the threshold, else opens one (`logclust/cluster/threshold.py`). The "
        "`calibrate` step streams each train system's `Content` through the serving clusterer "
        "(3 passes, digits re-drawn after the first, last pass scored) at each threshold and "
        f"keeps {rule}: **{clustering['threshold']:g}** (Euclidean between unit "
        f"embeddings; cosine distance {clustering['threshold'] ** 2 / 2:.3f}). "
        + (f"{held} is held out: reported, never used to choose." if held else ""),
        "",
    ]
    heads = ["threshold", "train mean ARI"]
    if with_ga:
        heads += ["train mean GA", "train (GA + ARI) / 2"]
    if held:
        heads += [f"{held} ARI"] + ([f"{held} GA"] if with_ga else [])
    heads.append("chosen")
    lines += ["| " + " | ".join(heads) + " |", "| " + " | ".join("---" for _ in heads) + " |"]
    for i, t in enumerate(cal["grid"]):
        key = f"{t:g}"
        cells = [key, f"{cal['train_mean_ari'][i]:.3f}"]
        if with_ga:
            cells += [f"{cal['train_mean_ga'][i]:.3f}", f"{cal['train_score'][i]:.3f}"]
        if held:
            cells.append(f"{cal['held_out'][key][held]:.3f}")
            if with_ga:
                cells.append(f"{cal['held_out_ga'][key][held]:.3f}")
        cells.append("**yes**" if t == clustering["threshold"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Command: `python -m training --data ../shared/data/loghub-2k --out models/default "
        "--work runs/default --config training/default.toml --steps calibrate`.",
    ]
    return "\n".join(lines)
