"""Export of the encoder to TFLite (float32 and dynamic-range int8).

The encoder takes token ids `[batch, length]` (both dynamic, padding id 0 on the right)
and returns the bundle's embedding (`training.model.mixed_embedding`): the max-pool of the
decoder's last layer over the real positions, beside the semantic channel's weighted
mean when the bundle has one. It has no next-token head. Conversion goes through a
SavedModel written by `keras.export.ExportArchive`, which embeds the weights (converting
concrete functions directly leaves them out).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from training.config import ModelConfig
from training.model import GPT, SemanticPool, build, mixed_embedding
from training.semantic import FILE, SemanticTable

SIGNATURE = "encode"


def encoder_fn(
    model: GPT, channel: SemanticTable | None, weight: float
) -> tuple[Callable[[tf.Tensor], tf.Tensor], SemanticPool | None]:
    """The Keras encoder (what the TFLite files compute) and its channel layer."""
    pool = None
    if channel is not None:
        pool = SemanticPool(*channel.table.shape)
        pool.set_weights([channel.table, channel.weights])

    def encode(ids: tf.Tensor) -> tf.Tensor:
        return mixed_embedding(model, pool, weight, ids)

    return encode, pool


def keras_encoder(manifest: dict[str, Any], weights: Path, work_dir: Path) -> Callable:
    """The Keras encoder of a bundle, rebuilt from its training folders (for parity)."""
    model = build(ModelConfig(**manifest["model_config"]))
    model.load_weights(str(weights))
    sem = manifest.get("semantic")
    channel = SemanticTable.load(work_dir / FILE) if sem else None
    return encoder_fn(model, channel, sem["weight"] if sem else 0.0)[0]


def export_tflite(
    model: GPT, out_dir: Path, channel: SemanticTable | None = None, weight: float = 0.0
) -> dict[str, Path]:
    """Writes `encoder_f32.tflite` and `encoder_int8.tflite` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    encode, pool = encoder_fn(model, channel, weight)
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        if pool is not None:
            archive.track(pool)
        archive.add_endpoint(
            SIGNATURE, encode, input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")]
        )
        archive.write_out(tmp, verbose=False)
        paths = {}
        for variant in ("f32", "int8"):
            conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
            if variant == "int8":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            path = out_dir / f"encoder_{variant}.tflite"
            path.write_bytes(conv.convert())
            paths[variant] = path
    return paths
