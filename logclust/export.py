"""Export of the encoder to TFLite (float32 and dynamic-range int8).

The encoder takes token ids `[batch, length]` (both dynamic, padding id 0 on the right)
and returns the max-pool of the last layer over the real positions. It has no next-token
head. Conversion goes through a SavedModel written by `keras.export.ExportArchive`,
which embeds the weights (converting concrete functions directly leaves them out).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from logclust.model import GPT, masked_max_pool

SIGNATURE = "encode"


def export_tflite(model: GPT, out_dir: Path) -> dict[str, Path]:
    """Writes `encoder_f32.tflite` and `encoder_int8.tflite` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)

        def encode(ids: tf.Tensor) -> tf.Tensor:
            return masked_max_pool(model.hidden(ids, training=False), ids)

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
