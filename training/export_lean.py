"""A lean re-export of a bundle's encoder: the same function, fewer and faster ops.

The Keras export (`training/export.py`) lowers `Dense` on 3-D inputs, the 5-D q/k/v
reshape and the layer norm into ~250 ops of shape arithmetic (SHAPE, GATHER,
REDUCE_PROD, STRIDED_SLICE, PACK) around the products. This module rebuilds the same
function as a plain `tf.Module`: activations stay 2-D `(B*T, C)` so every product is one
FULLY_CONNECTED, q/k/v come from one reshape, transpose and `tf.split`, the shapes are
computed once per call, and the attention scale is folded into the query weights (a
power of two for these head widths, so the fold is exact).

The weights come from the bundle's float32 `.tflite` itself (its constant tensors,
matched by name), so a shipped bundle can be re-exported without its Keras checkpoint:

    python -m training.export_lean --bundle models/default --out DIR

writes a copy of the bundle into DIR with the new `encoder_f32.tflite` and
`encoder_int8.tflite` (dynamic-range int8) and an updated manifest; every other file is
copied unchanged; `--channel semantic.npz` (a table the `semantic` step made for the
bundle's tokenizer) and `--weight` put another semantic channel in. The source must be
a Keras export (the names are Keras's); a lean
file cannot be re-exported again. Dynamic-range int8 quantizes the semantic channel's
table and piece weights as whole tensors, as it does in the Keras export: that, not the
decoder, sets int8's worst-line cosine (about 0.97 on loghub for both exports).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers  # type: ignore[import-untyped]
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.python import schema_py_generated as schema  # type: ignore[import-not-found]

from logclust.embed.bundle import MANIFEST, write_manifest
from logclust.text.tokenizer import PAD_ID
from training.semantic import SemanticTable

SIGNATURE = "encode"
LN_EPS = 1e-5  # training/model.py: LayerNormalization(epsilon=1e-5)
_S = r"(?:_\d+)*"  # suffixes Keras and tracing add (`block0_1/attn_1/`, `semantic_pool_1_1/`)
_DENSE = re.compile(
    rf"block(\d+){_S}/(attn|mlp){_S}/(qkv|proj|fc){_S}/(Tensordot/MatMul|BiasAdd/ReadVariableOp)$"
)
_NORM = re.compile(rf"(?:block(\d+){_S}/)?(ln1|ln2|ln_f){_S}/Reshape(_1)?$")
_TABLE = re.compile(rf"^(wte|wpe|semantic_pool){_S}/")


@dataclass
class EncoderWeights:
    """The trained arrays of one encoder. Dense kernels are `(in, out)`; `dense` maps
    `"{block}/{attn|mlp}/{qkv|proj|fc}"` to `(kernel, bias)`, `norm` maps
    `"{block}/ln1"`, `"{block}/ln2"` and `"ln_f"` to `(gamma, beta)`."""

    wte: np.ndarray  # (V, C)
    wpe: np.ndarray  # (max_len, C)
    dense: dict[str, tuple[np.ndarray, np.ndarray]]
    norm: dict[str, tuple[np.ndarray, np.ndarray]]
    table: np.ndarray | None  # semantic channel (V, D), None without a channel
    piece_weights: np.ndarray | None  # (V,)


def read_weights(path: Path, n_blocks: int) -> EncoderWeights:
    """The constant tensors of a float32 encoder written by `training/export.py`.

    TFLite stores FULLY_CONNECTED kernels as `(out, in)`; they are transposed back.
    """
    interp = Interpreter(model_path=str(path))
    kernels: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    norms: dict[tuple[str, str], np.ndarray] = {}
    found: dict[str, np.ndarray] = {}
    for d in interp.get_tensor_details():
        name = d["name"]
        if d["dtype"] != np.float32:
            continue
        try:
            value = np.array(interp.get_tensor(d["index"]))
        except ValueError:  # not a constant (activations have no data before a call)
            continue
        if m := _DENSE.search(name):
            key = f"{m[1]}/{m[2]}/{m[3]}"
            if m[4].endswith("MatMul"):
                kernels[key] = value.T.copy()
            else:
                biases[key] = value
        elif m := _NORM.search(name):
            key = "ln_f" if m[2] == "ln_f" else f"{m[1]}/{m[2]}"
            norms[(key, "beta" if m[3] else "gamma")] = value.reshape(-1)
        elif (m := _TABLE.search(name)) and value.ndim in (1, 2):
            if m[1] == "semantic_pool":
                found["table" if value.ndim == 2 else "piece_weights"] = value
            elif value.ndim == 2:
                found[m[1]] = value
    dense_keys = [
        f"{i}/{part}"
        for i in range(n_blocks)
        for part in ("attn/qkv", "attn/proj", "mlp/fc", "mlp/proj")
    ]
    norm_keys = [f"{i}/{ln}" for i in range(n_blocks) for ln in ("ln1", "ln2")] + ["ln_f"]
    missing = [k for k in dense_keys if k not in kernels or k not in biases]
    missing += [f"{k}/{p}" for k in norm_keys for p in ("gamma", "beta") if (k, p) not in norms]
    missing += [k for k in ("wte", "wpe") if k not in found]
    if missing:
        raise ValueError(
            f"{path} lacks trained tensors the lean export needs (is it a float32 encoder "
            f"written by training/export.py?). Received: missing={missing}"
        )
    return EncoderWeights(
        wte=found["wte"],
        wpe=found["wpe"],
        dense={k: (kernels[k], biases[k]) for k in dense_keys},
        norm={k: (norms[(k, "gamma")], norms[(k, "beta")]) for k in norm_keys},
        table=found.get("table"),
        piece_weights=found.get("piece_weights"),
    )


class LeanEncoder(tf.Module):
    """`training.model.mixed_embedding` as plain TensorFlow ops, for conversion only.

    Args:
        w: the trained arrays.
        n_heads: attention heads.
        weight: the semantic channel's share (`[semantic] weight`); unused without one.
    """

    def __init__(
        self, w: EncoderWeights, n_heads: int, weight: float, int_channel: bool = False
    ) -> None:
        super().__init__(name="lean_encoder")
        self.n_blocks = sum(1 for k in w.norm if k.endswith("/ln1"))
        self.d_model = int(w.wte.shape[1])
        self.n_heads = n_heads
        self.hd = self.d_model // n_heads
        self.weight = weight
        const = tf.constant
        self.wte, self.wpe = const(w.wte), const(w.wpe)
        dense = dict(w.dense)
        scale = np.float32(1.0 / np.sqrt(self.hd))
        for i in range(self.n_blocks):  # fold the attention scale into the queries
            k, b = (a.copy() for a in dense[f"{i}/attn/qkv"])
            k[:, : self.d_model] *= scale
            b[: self.d_model] *= scale
            dense[f"{i}/attn/qkv"] = (k, b)
        self.dense = {k: (const(a), const(b)) for k, (a, b) in dense.items()}
        self.norm = {k: (const(g), const(b)) for k, (g, b) in w.norm.items()}
        self.table = self.piece_weights = self.row_weights = None
        self.int_channel = int_channel and w.table is not None
        if w.table is not None and w.piece_weights is not None:
            self.table = const(w.table)
            self.piece_weights = const(w.piece_weights)
            if self.int_channel:
                self._int_channel(w.table, w.piece_weights)

    def _int_channel(self, table: np.ndarray, weights: np.ndarray) -> None:
        """The channel in integers, which dynamic-range int8 leaves alone: quantizing the
        piece weights as one tensor (they span 0..1) costs rare lines up to 0.03 of cosine.
        Rows of int16 at full scale each; the row scale goes into the int32 weights."""
        scale = np.maximum(np.abs(table).max(axis=1), 1e-12)  # (V,)
        self.table = tf.constant(np.round(table / scale[:, None] * 32767).astype(np.int16))
        row = weights.astype(np.float64) * scale / 32767  # weight of one int16 step
        self.row_unit = float(row.max() / 2**30) if row.max() > 0 else 1.0
        self.row_weights = tf.constant(np.round(row / self.row_unit).astype(np.int32))
        self.weight_unit = float(max(weights.max(), 1e-12) / 2**30)
        self.piece_weights = tf.constant(np.round(weights / self.weight_unit).astype(np.int32))

    def _norm(self, x: tf.Tensor, key: str) -> tf.Tensor:
        gamma, beta = self.norm[key]
        mean, var = tf.nn.moments(x, axes=[1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + LN_EPS) * gamma + beta

    def _dense(self, x: tf.Tensor, key: str) -> tf.Tensor:
        kernel, bias = self.dense[key]
        return tf.matmul(x, kernel) + bias

    def _attention(self, x: tf.Tensor, i: int, qkv_shape: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        qkv = tf.reshape(self._dense(x, f"{i}/attn/qkv"), qkv_shape)  # (B, T, 3H, hd)
        q, k, v = tf.split(tf.transpose(qkv, [0, 2, 1, 3]), 3, axis=1)  # (B, H, T, hd) each
        att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) + mask, axis=-1)  # (B, H, T, T)
        y = tf.transpose(tf.matmul(att, v), [0, 2, 1, 3])  # (B, T, H, hd)
        return self._dense(tf.reshape(y, [-1, self.d_model]), f"{i}/attn/proj")

    def _mlp(self, x: tf.Tensor, i: int) -> tf.Tensor:
        h = tf.nn.gelu(self._dense(x, f"{i}/mlp/fc"), approximate=False)  # Keras "gelu"
        return self._dense(h, f"{i}/mlp/proj")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")])
    def encode(self, ids: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(ids)  # computed once, reused by every block
        t = shape[1]
        qkv_shape = tf.concat([shape, [3 * self.n_heads, self.hd]], 0)
        causal = tf.linalg.band_part(tf.ones(tf.stack([t, t]), tf.float32), -1, 0)
        mask = (1.0 - causal) * -1e9  # (T, T)
        x = tf.gather(self.wte, ids) + tf.expand_dims(tf.gather(self.wpe, tf.range(t)), 0)
        x = tf.reshape(x, [-1, self.d_model])  # (B*T, C)
        for i in range(self.n_blocks):
            x = x + self._attention(self._norm(x, f"{i}/ln1"), i, qkv_shape, mask)
            x = x + self._mlp(self._norm(x, f"{i}/ln2"), i)
        h = tf.reshape(self._norm(x, "ln_f"), tf.concat([shape, [self.d_model]], 0))
        real = tf.expand_dims(tf.cast(tf.not_equal(ids, PAD_ID), tf.float32), -1)  # (B, T, 1)
        dec = tf.math.l2_normalize(tf.reduce_max(h + (real - 1.0) * 1e9, axis=1), axis=1)
        if self.table is None or self.piece_weights is None:
            return dec
        if self.int_channel:
            rw = tf.cast(tf.gather(self.row_weights, ids), tf.float32) * self.row_unit
            v = tf.cast(tf.gather(self.table, ids), tf.float32)  # (B, T, D)
            total = tf.reduce_sum(tf.expand_dims(rw, -1) * v, axis=1)
            pw = tf.cast(tf.gather(self.piece_weights, ids), tf.float32) * self.weight_unit
        else:
            pw = tf.gather(self.piece_weights, ids)  # (B, T)
            total = tf.reduce_sum(tf.expand_dims(pw, -1) * tf.gather(self.table, ids), axis=1)
        wsum = tf.reduce_sum(pw, axis=1, keepdims=True)  # (B, 1)
        sem = tf.math.l2_normalize(total / tf.maximum(wsum, 1e-9), axis=1)
        g = float(np.sqrt(1.0 - self.weight**2))
        return tf.concat([g * dec, self.weight * sem], axis=1)


def convert(module: LeanEncoder, variant: str) -> bytes:
    """TFLite flatbuffer of `module.encode` (`f32`, or `int8` for dynamic-range int8)."""
    fn = module.encode.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    if variant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    flat: bytes = conv.convert()
    return _rename_signature(flat)


def _rename_signature(flat: bytes) -> bytes:
    """`from_concrete_functions` names the signature `serving_default`; serving looks for
    `encode` (`logclust.embed.encoder`). Checked by the caller through LiteRT."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flat, 0))
    for sig in model.signatureDefs or []:
        sig.signatureKey = SIGNATURE
    builder = flatbuffers.Builder(len(flat) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def lean_module(
    bundle: Path,
    int_channel: bool = False,
    channel: SemanticTable | None = None,
    weight: float | None = None,
) -> LeanEncoder:
    """The lean encoder of a bundle, its weights read from `encoder_f32.tflite`
    (`int_channel`: the semantic channel in integers, for the int8 variant). `channel`
    replaces the bundle's semantic channel (a table made for the bundle's tokenizer) and
    `weight` its share."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    cfg = manifest["model_config"]
    w = read_weights(bundle / "encoder_f32.tflite", int(cfg["n_blocks"]))
    sem = manifest.get("semantic")
    if sem and w.table is None:
        raise ValueError(
            "The manifest has a semantic channel but the encoder's table was not found. "
            f"Received: bundle={bundle}"
        )
    if channel is not None:
        if channel.table.shape[0] != w.wte.shape[0]:
            raise ValueError(
                "The channel's table must have a row per token of the bundle's vocabulary. "
                f"Received: rows={channel.table.shape[0]}, vocab={w.wte.shape[0]}"
            )
        w.table, w.piece_weights = channel.table, channel.weights
    share = weight if weight is not None else float(sem["weight"]) if sem else 0.0
    return LeanEncoder(w, int(cfg["n_heads"]), share if w.table is not None else 0.0, int_channel)


def export_bundle(
    bundle: Path, out: Path, channel: SemanticTable | None = None, weight: float | None = None
) -> dict[str, Path]:
    """Copies `bundle` into `out` with lean encoders and an updated manifest (with a new
    semantic `channel` and `weight` when given)."""
    if out.resolve() != bundle.resolve():
        shutil.copytree(bundle, out, dirs_exist_ok=True)
    flats = {
        v: convert(lean_module(bundle, v == "int8", channel, weight), v) for v in ("f32", "int8")
    }
    paths = {}
    for variant, flat in flats.items():
        paths[variant] = out / f"encoder_{variant}.tflite"
        paths[variant].write_bytes(flat)
    manifest: dict[str, Any] = json.loads((out / MANIFEST).read_text())
    manifest["export"] = "lean (training/export_lean.py)"
    if channel is not None:
        sem = dict(manifest.get("semantic") or {})
        sem.update(dim=int(channel.table.shape[1]), stats=channel.stats)
        if weight is not None:
            sem["weight"] = weight
        manifest["semantic"] = sem
        manifest["embedding_dim"] = int(manifest["model_config"]["d_model"]) + sem["dim"]
    write_manifest(out, manifest)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="bundle whose encoder is re-exported")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for the new bundle (may be --bundle)"
    )
    p.add_argument("--channel", type=Path, help="semantic.npz to put in place of the channel")
    p.add_argument("--weight", type=float, help="the channel's share (default: the bundle's)")
    args = p.parse_args(argv)
    channel = SemanticTable.load(args.channel) if args.channel else None
    for variant, path in export_bundle(args.bundle, args.out, channel, args.weight).items():
        print(f"{variant}: {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
