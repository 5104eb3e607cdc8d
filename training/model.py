"""The GPT-style decoder (Keras 3, TensorFlow backend): training and export only.

Shapes: B batch, T tokens, C = d_model. Attention builds its causal mask with
`tf.linalg.band_part` and avoids `x[..., None]` so that the model converts to TFLite with
a dynamic batch AND length (see "Export" in training/README.md).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from logclust.text.tokenizer import PAD_ID
from training.config import ModelConfig


class CausalSelfAttention(keras.layers.Layer):
    """Multi-head self-attention where each position sees itself and earlier positions."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.d_model, self.n_heads, self.dropout = d_model, n_heads, dropout
        self.qkv = keras.layers.Dense(3 * d_model, name="qkv")
        self.proj = keras.layers.Dense(d_model, name="proj")
        self.drop = keras.layers.Dropout(dropout)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        hd = self.d_model // self.n_heads
        qkv = tf.reshape(self.qkv(x), [b, t, 3, self.n_heads, hd])  # (B, T, 3, H, hd)
        qkv = tf.transpose(qkv, [2, 0, 3, 1, 4])  # (3, B, H, T, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = tf.matmul(q, k, transpose_b=True) * (1.0 / float(hd) ** 0.5)  # (B, H, T, T)
        causal = tf.linalg.band_part(tf.ones([t, t], att.dtype), -1, 0)  # (T, T) lower
        att = att + (1.0 - causal) * -1e9
        att = tf.nn.softmax(att, axis=-1)
        y = tf.matmul(att, v)  # (B, H, T, hd)
        y = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [b, t, self.d_model])
        return self.drop(self.proj(y), training=training)

    def get_config(self) -> dict[str, object]:
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "dropout": self.dropout,
        }


class MLP(keras.layers.Layer):
    """Position-wise feed-forward network."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.d_model, self.d_ff, self.dropout = d_model, d_ff, dropout
        self.fc = keras.layers.Dense(d_ff, activation="gelu", name="fc")
        self.proj = keras.layers.Dense(d_model, name="proj")
        self.drop = keras.layers.Dropout(dropout)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.drop(self.proj(self.fc(x)), training=training)

    def get_config(self) -> dict[str, object]:
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "d_ff": self.d_ff,
            "dropout": self.dropout,
        }


class Block(keras.layers.Layer):
    """Pre-norm transformer block: attention then feed-forward, each with a residual."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.d_model, self.n_heads, self.d_ff, self.dropout = d_model, n_heads, d_ff, dropout
        self.ln1 = keras.layers.LayerNormalization(epsilon=1e-5, name="ln1")
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, name="attn")
        self.ln2 = keras.layers.LayerNormalization(epsilon=1e-5, name="ln2")
        self.mlp = MLP(d_model, d_ff, dropout, name="mlp")

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = x + self.attn(self.ln1(x), training=training)
        return x + self.mlp(self.ln2(x), training=training)

    def get_config(self) -> dict[str, object]:
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "d_ff": self.d_ff,
            "dropout": self.dropout,
        }


class GPT(keras.Model):
    """Token + position embeddings, `n_blocks` blocks, final layer norm, tied output head."""

    def __init__(self, config: ModelConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.config = config
        c = config
        self.wte = keras.layers.Embedding(c.vocab_size, c.d_model, name="wte")
        self.wpe = keras.layers.Embedding(c.max_len, c.d_model, name="wpe")
        self.drop = keras.layers.Dropout(c.dropout)
        self.blocks = [
            Block(c.d_model, c.n_heads, c.d_ff, c.dropout, name=f"block{i}")
            for i in range(c.n_blocks)
        ]
        self.ln_f = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_f")
        self.head_bias = self.add_weight(
            shape=(c.vocab_size,), initializer="zeros", name="head_bias"
        )

    def hidden(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Last layer's output `(B, T, C)` for token ids `(B, T)`."""
        t = tf.shape(ids)[1]
        pos = tf.range(t)
        x = self.wte(ids) + tf.expand_dims(self.wpe(pos), 0)  # (B, T, C)
        x = self.drop(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.ln_f(x)

    def logits(self, h: tf.Tensor) -> tf.Tensor:
        """Next-token logits `(B, T, V)` from hidden states, with the tied embedding matrix."""
        return tf.matmul(h, self.wte.embeddings, transpose_b=True) + self.head_bias

    def call(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.logits(self.hidden(ids, training=training))

    def embed(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Max-pool of the last layer over real (non-padding) positions: `(B, C)`."""
        return masked_max_pool(self.hidden(ids, training=training), ids)


def masked_max_pool(h: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """Max over T of `h` `(B, T, C)`, ignoring positions where `ids` is padding."""
    real = tf.cast(tf.not_equal(ids, PAD_ID), h.dtype)  # (B, T)
    real = tf.expand_dims(real, -1)  # (B, T, 1)
    return tf.reduce_max(h * real + (1.0 - real) * -1e9, axis=1)


class SemanticPool(keras.layers.Layer):
    """Weighted mean of a fixed piece table over the tokens (`training/semantic.py`).

    The table `(vocab_size, dim)` and the piece weights `(vocab_size,)` are set with
    `set_weights`; padding and the special ids weigh 0, so padding never changes the result.
    """

    def __init__(self, vocab_size: int, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.dim = vocab_size, dim
        self.table = self.add_weight(
            shape=(vocab_size, dim), initializer="zeros", trainable=False, name="table"
        )
        self.piece_weights = self.add_weight(
            shape=(vocab_size,), initializer="zeros", trainable=False, name="piece_weights"
        )
        self.built = True

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        w = tf.gather(self.piece_weights, ids)  # (B, T)
        v = tf.gather(self.table, ids)  # (B, T, D)
        total = tf.reduce_sum(tf.expand_dims(w, -1) * v, axis=1)  # (B, D)
        return total / tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1e-9)

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


def mixed_embedding(
    model: GPT, pool: SemanticPool | None, weight: float, ids: tf.Tensor
) -> tf.Tensor:
    """The bundle's embedding: `[g * decoder, weight * channel]`, both parts unit length
    first, g = sqrt(1 - weight^2); the decoder's max-pool alone when there is no channel."""
    dec = tf.math.l2_normalize(model.embed(ids), axis=1)
    if pool is None:
        return dec
    sem = tf.math.l2_normalize(pool(ids), axis=1)
    return tf.concat([float(np.sqrt(1.0 - weight**2)) * dec, weight * sem], axis=1)


def build(config: ModelConfig) -> GPT:
    """A GPT with its weights created (so it can be counted and restored)."""
    model = GPT(config)
    model(tf.zeros([1, 2], tf.int32))
    return model


def count_params(model: keras.Model) -> int:
    return int(sum(int(tf.size(w)) for w in model.weights))
