"""The bundle's manifest after evaluation: headline metrics written in, hashes renewed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from logclust.embed.bundle import Bundle, write_manifest


def headline(m: dict[str, Any]) -> dict[str, float]:
    """The few figures the manifest carries (`metrics`)."""
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


def add_headline(bundle: Bundle, metrics: dict[str, Any]) -> None:
    """Rewrites the bundle's manifest with `headline(metrics)` and fresh file hashes."""
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("format", "format_version")}
    manifest["metrics"] = headline(metrics)
    write_manifest(Path(bundle.path), manifest)
