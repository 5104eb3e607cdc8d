"""Training of the decoder: next-token prediction plus embedding objectives.

Losses, all on the same forward pass:
- next-token cross-entropy (the study's objective);
- supervised contrastive loss on the max-pooled embedding, where lines of the same
  loghub template are positives (teaches "same kind of line, different fields");
- relational distillation: the student's pairwise cosine similarities within a batch
  regress onto a general sentence-embedding teacher's (teaches meaning across formats).

Validation runs after each epoch; the epoch with the best validation next-token
accuracy is kept. Checkpoints (model, optimizer, epoch) make a run resumable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from logclust.text.tokenizer import EOS_ID, PAD_ID, Tokenizer
from training.config import ModelConfig, TrainConfig
from training.dataset import Example, batches, lm_arrays
from training.model import GPT, build, masked_max_pool

logger = logging.getLogger(__name__)


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then cosine decay to 10% of it at `total` steps."""

    def __init__(self, peak: float, warmup: int, total: int) -> None:
        self.peak, self.warmup, self.total = peak, warmup, max(total, warmup + 1)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        s = tf.cast(step, tf.float32)
        warm = self.peak * s / max(self.warmup, 1)
        frac = tf.clip_by_value((s - self.warmup) / (self.total - self.warmup), 0.0, 1.0)
        cos = self.peak * (0.1 + 0.9 * 0.5 * (1.0 + tf.cos(math.pi * frac)))
        return tf.where(s < self.warmup, warm, cos)

    def get_config(self) -> dict[str, object]:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total}


def lm_loss_and_acc(
    logits: tf.Tensor, targets: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Masked cross-entropy, number of correct predictions and of counted tokens.

    Accuracy counts real tokens only: neither padding nor the end-of-line id.
    """
    real = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    loss = tf.reduce_sum(ce * real) / tf.maximum(tf.reduce_sum(real), 1.0)
    counted = real * tf.cast(tf.not_equal(targets, EOS_ID), tf.float32)
    hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), targets), tf.float32)
    return loss, tf.reduce_sum(hit * counted), tf.reduce_sum(counted)


def contrastive_loss(e: tf.Tensor, labels: tf.Tensor, temperature: float) -> tf.Tensor:
    """Supervised contrastive loss over L2-normalised embeddings `(B, C)`."""
    b = tf.shape(e)[0]
    eye = tf.eye(b)
    sim = tf.matmul(e, e, transpose_b=True) / temperature - eye * 1e9
    logp = sim - tf.reduce_logsumexp(sim, axis=1, keepdims=True)
    same = tf.cast(tf.equal(labels[:, None], labels[None, :]), tf.float32)
    known = tf.cast(labels >= 0, tf.float32)
    pos = same * (1.0 - eye) * known[:, None] * known[None, :]
    npos = tf.reduce_sum(pos, axis=1)
    per_anchor = -tf.reduce_sum(pos * logp, axis=1) / tf.maximum(npos, 1.0)
    has = tf.cast(npos > 0, tf.float32)
    return tf.reduce_sum(per_anchor * has) / tf.maximum(tf.reduce_sum(has), 1.0)


def distill_loss(e: tf.Tensor, teacher: tf.Tensor) -> tf.Tensor:
    """Mean squared gap between student and teacher pairwise cosine similarities."""
    b = tf.shape(e)[0]
    off = 1.0 - tf.eye(b)
    gap = tf.matmul(e, e, transpose_b=True) - tf.matmul(teacher, teacher, transpose_b=True)
    return tf.reduce_sum(tf.square(gap) * off) / tf.maximum(tf.reduce_sum(off), 1.0)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = -1.0


class Trainer:
    """Owns the model, optimizer, checkpoints and logs of one training run in `work_dir`."""

    def __init__(
        self,
        mcfg: ModelConfig,
        tcfg: TrainConfig,
        work_dir: Path,
        steps_per_epoch: int,
        teacher_dim: int,
        init_weights: Path | None = None,
        strategy: tf.distribute.Strategy | None = None,
        worker: tuple[int, int] = (0, 1),
    ) -> None:
        self.mcfg, self.tcfg, self.work = mcfg, tcfg, work_dir
        # (index, count) of this worker; only the chief (index 0) writes into work_dir.
        self.strategy, self.worker = strategy, worker
        self.is_chief = worker[0] == 0
        keras.utils.set_random_seed(tcfg.seed)
        with strategy.scope() if strategy else contextlib.nullcontext():
            self.model: GPT = build(mcfg)
            total = steps_per_epoch * tcfg.epochs
            sched = WarmupCosine(tcfg.learning_rate, tcfg.warmup_steps, total)
            self.opt = keras.optimizers.AdamW(
                learning_rate=sched, weight_decay=tcfg.weight_decay, clipnorm=1.0
            )
            self.opt.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.opt, epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(ckpt, str(work_dir / "ckpt"), max_to_keep=2)
        # Saving is collective under a strategy: the other workers save too, into a
        # scratch folder of their own that is removed at once (`save`).
        self._scratch = work_dir / f"worker-{worker[0]}-scratch"
        self._scratch_manager = (
            None
            if self.is_chief
            else tf.train.CheckpointManager(ckpt, str(self._scratch), max_to_keep=1)
        )
        if self.manager.latest_checkpoint:
            # Every worker restores the chief's checkpoint (work_dir is shared).
            ckpt.restore(self.manager.latest_checkpoint)
            logger.info(
                "resumed from %s (epoch %d)",
                self.manager.latest_checkpoint,
                int(self.epoch.numpy()),
            )
        elif init_weights is not None:
            # A fresh fine-tuning run starts from an earlier stage's best weights.
            self.model.load_weights(str(init_weights))
            logger.info("initialised from %s", init_weights)
        board = work_dir / ("tensorboard" if self.is_chief else f"worker-{worker[0]}-tensorboard")
        self.writer = tf.summary.create_file_writer(str(board))
        self.teacher_dim = teacher_dim
        sig = [
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, teacher_dim], tf.float32),
        ]
        step = self._train_step if strategy is None else self._distributed_step
        self.train_step = tf.function(step, input_signature=sig)

    def save(self) -> None:
        """Checkpoint: the chief's into `work_dir/ckpt`; the others' discarded."""
        if self._scratch_manager is None:
            self.manager.save()
            return
        self._scratch_manager.save()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def _losses(
        self, seq: tf.Tensor, labels: tf.Tensor, teacher: tf.Tensor, training: bool
    ) -> dict[str, tf.Tensor]:
        inp, tgt = seq[:, :-1], seq[:, 1:]
        h = self.model.hidden(inp, training=training)
        lm, hit, cnt = lm_loss_and_acc(self.model.logits(h), tgt)
        e = tf.math.l2_normalize(masked_max_pool(h, inp), axis=-1)
        c = self.tcfg
        con = contrastive_loss(e, labels, c.temperature) if c.contrastive_weight else 0.0 * lm
        dis = distill_loss(e, teacher) if c.distill_weight and self.teacher_dim > 1 else 0.0 * lm
        total = lm + c.contrastive_weight * con + c.distill_weight * dis
        return {"loss": total, "lm": lm, "con": con, "dis": dis, "hit": hit, "cnt": cnt}

    def _train_step(
        self, seq: tf.Tensor, labels: tf.Tensor, teacher: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            out = self._losses(seq, labels, teacher, training=True)
        grads = tape.gradient(out["loss"], self.model.trainable_variables)
        self.opt.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        return out

    def _distributed_step(
        self, seq: tf.Tensor, labels: tf.Tensor, teacher: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """One step on every worker's own batch; gradients are summed across workers, so
        each worker's loss is divided by their number (the mean over workers)."""
        assert self.strategy is not None
        n = self.strategy.num_replicas_in_sync

        def replica(seq: tf.Tensor, labels: tf.Tensor, teacher: tf.Tensor) -> dict[str, tf.Tensor]:
            with tf.GradientTape() as tape:
                out = self._losses(seq, labels, teacher, training=True)
                scaled = out["loss"] / n
            grads = tape.gradient(scaled, self.model.trainable_variables)
            self.opt.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
            return out

        per = self.strategy.run(replica, args=(seq, labels, teacher))
        sums = ("hit", "cnt")
        ops = {
            k: tf.distribute.ReduceOp.SUM if k in sums else tf.distribute.ReduceOp.MEAN for k in per
        }
        return {k: self.strategy.reduce(ops[k], v, axis=None) for k, v in per.items()}


def next_token_accuracy(
    model: GPT,
    tok: Tokenizer,
    texts: list[str],
    max_len: int,
    weights: list[int] | None = None,
    batch_size: int = 64,
) -> float:
    """Share of real tokens (not the end-of-line id) whose argmax prediction is right.

    `weights` counts each text that many times (distinct texts stand for repeated lines).
    """
    w = np.ones(len(texts)) if weights is None else np.asarray(weights, np.float64)
    seq_all = lm_arrays(tok, texts, max_len + 1)
    hits = cnts = 0.0

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def per_row(seq: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        inp, tgt = seq[:, :-1], seq[:, 1:]
        pred = tf.argmax(model(inp, training=False), -1, output_type=tf.int32)
        counted = tf.cast((tgt != PAD_ID) & (tgt != EOS_ID), tf.float32)
        return (
            tf.reduce_sum(tf.cast(pred == tgt, tf.float32) * counted, 1),
            tf.reduce_sum(counted, 1),
        )

    for s in range(0, len(texts), batch_size):
        seq = seq_all[s : s + batch_size]
        seq = seq[:, : int((seq != PAD_ID).sum(1).max())]
        h, c = per_row(tf.constant(seq))
        hits += float(np.sum(h.numpy() * w[s : s + batch_size]))
        cnts += float(np.sum(c.numpy() * w[s : s + batch_size]))
    return hits / max(cnts, 1.0)


Batch = tuple[Any, Any, Any]  # seq (B, W) int32, labels (B,) int32, teacher (B, T) float32


class Feed(Protocol):
    """Where an epoch's batches come from: `MemoryFeed`, or `training.stream.Stream`."""

    def epoch(self, epoch: int) -> tuple[int, Iterator[Batch]]:
        """The number of steps of `epoch` and its batches."""
        ...


class MemoryFeed:
    """The distinct in-memory training lines, reshuffled into batches every epoch."""

    def __init__(
        self,
        tok: Tokenizer,
        train: list[Example],
        teacher_train: np.ndarray,
        tcfg: TrainConfig,
        worker: tuple[int, int] = (0, 1),
    ) -> None:
        self.seq = lm_arrays(tok, [e.text for e in train], tcfg.train_max_len + 1)
        self.lengths = (self.seq != PAD_ID).sum(1)
        self.labels = np.array([e.label for e in train], np.int32)
        self.teacher, self.tcfg, self.worker = teacher_train, tcfg, worker

    def epoch(self, epoch: int) -> tuple[int, Iterator[Batch]]:
        c = self.tcfg
        rng = np.random.default_rng(c.seed + epoch)
        groups = shard(batches(len(self.seq), c.batch_size, self.lengths, rng), *self.worker)
        return len(groups), (
            (self.seq[g, : int(self.lengths[g].max())], self.labels[g], self.teacher[g])
            for g in groups
        )


def fit(trainer: Trainer, tok: Tokenizer, feed: Feed, val: list[Example]) -> History:
    """Runs the remaining epochs; keeps the best weights in `work_dir/best.weights.h5`."""
    c, work = trainer.tcfg, trainer.work
    hist_path = work / "history.json"
    hist = History(**json.loads(hist_path.read_text())) if hist_path.exists() else History()
    for epoch in range(int(trainer.epoch.numpy()), c.epochs):
        steps, epoch_batches = feed.epoch(epoch)
        bar = keras.utils.Progbar(steps, stateful_metrics=["lm", "acc", "con", "dis"])
        t0, tot_hit, tot_cnt = time.time(), 0.0, 0.0
        for i, (seq, labels, teacher) in enumerate(epoch_batches):
            as_tensors = [tf.convert_to_tensor(x) for x in (seq, labels, teacher)]
            out = trainer.train_step(*as_tensors)
            tot_hit += float(out["hit"])
            tot_cnt += float(out["cnt"])
            bar.update(
                i + 1,
                [
                    ("lm", float(out["lm"])),
                    ("acc", tot_hit / max(tot_cnt, 1)),
                    ("con", float(out["con"])),
                    ("dis", float(out["dis"])),
                ],
            )
        val_acc = next_token_accuracy(
            trainer.model, tok, [e.text for e in val], trainer.mcfg.max_len - 1
        )
        rec = {
            "epoch": epoch + 1,
            "train_acc": tot_hit / max(tot_cnt, 1),
            "val_acc": val_acc,
            "lm": float(out["lm"]),
            "con": float(out["con"]),
            "dis": float(out["dis"]),
            "seconds": time.time() - t0,
        }
        hist.epochs.append(rec)
        who = f"worker {trainer.worker[0]}/{trainer.worker[1]} " if trainer.worker[1] > 1 else ""
        print(
            f"{who}epoch {epoch + 1}/{c.epochs}: val next-token accuracy {val_acc:.4f}", flush=True
        )
        with trainer.writer.as_default():
            for k, v in rec.items():
                tf.summary.scalar(k, v, step=epoch + 1)
        if val_acc > hist.best_val_acc:
            hist.best_val_acc, hist.best_epoch = val_acc, epoch + 1
            if trainer.is_chief:
                trainer.model.save_weights(str(work / "best.weights.h5"))
        trainer.epoch.assign(epoch + 1)
        trainer.save()
        if trainer.is_chief:
            hist_path.write_text(json.dumps(hist.__dict__, indent=1))
    return hist


def shard(groups: list[np.ndarray], index: int, count: int) -> list[np.ndarray]:
    """Worker `index`'s share of an epoch's batches (all of them with one worker).

    Every worker draws the same batches (same seed) and takes every `count`-th; all take
    the same number (at least one, wrapping around on a tiny epoch), since each step is a
    collective that every worker must join.
    """
    if count == 1:
        return groups
    per = max(1, len(groups) // count)
    return [groups[(index + k * count) % len(groups)] for k in range(per)]
