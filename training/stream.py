"""Training input streamed from log files: `tf.data` reads, masks and tokenizes.

A folder of many large files is never read whole. Each worker reads its own files (or
every n-th line when there are fewer files than workers), a few files at a time with
their lines interleaved; lines are masked and tokenized in chunks inside the pipeline,
shuffled in a bounded buffer and batched as the in-memory path batches them
(`training.dataset.lm_arrays`: beginning-of-line id, tokens, end-of-line id, padded to the
longest row of the batch). Lines whose masked text falls on the validation side of the
stable split (`val_bucket`) are left out, so the validation lines, taken from the bounded
sample, stay unseen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from logclust.text.masking import Masker
from logclust.text.tokenizer import Tokenizer
from training.config import DataConfig, TrainConfig
from training.dataset import lm_arrays, val_bucket

logger = logging.getLogger(__name__)

MASK_CHUNK = 1024  # raw lines masked together (one Arrow call per chunk)
Batch = tuple[tf.Tensor, tf.Tensor, tf.Tensor]


def line_dataset(
    paths: Sequence[Path], worker: tuple[int, int] = (0, 1), read_files: int = 4, seed: int = 0
) -> tf.data.Dataset:
    """Worker `(index, count)`'s raw lines of `paths` (`.gz` files decompressed).

    Files are sharded before they are opened; with fewer files than workers, lines are,
    before any masking or tokenizing. The files' order is shuffled on every pass, by the
    same seed on every worker so that line sharding stays disjoint.
    """
    index, count = worker
    files = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    by_file = len(paths) >= count
    if by_file:
        files = files.shard(count, index)
    files = files.shuffle(len(paths), seed=seed)

    def read(path: tf.Tensor) -> tf.data.Dataset:
        gz = tf.strings.regex_full_match(path, r".*\.gz")
        return tf.data.TextLineDataset(path, compression_type=tf.where(gz, "GZIP", ""))

    lines = files.interleave(read, cycle_length=read_files, block_length=1)
    return lines if by_file else lines.shard(count, index)


def _masker_fn(masker: Masker, val_fraction: float) -> Callable[[np.ndarray], np.ndarray]:
    def mask(raw: np.ndarray) -> np.ndarray:
        """Raw lines to this chunk's distinct masked training texts (UTF-8 bytes)."""
        lines = [b.decode("utf-8", "replace").rstrip("\r\n") for b in raw]
        masked = masker.mask_texts([ln for ln in lines if ln.strip()])
        # The in-memory path trains on distinct masked texts; repeats within a chunk
        # (a heartbeat line, a retry loop) are dropped likewise.
        keep = dict.fromkeys(t for t in masked if t and val_bucket(t) >= val_fraction)
        return np.array([t.encode() for t in keep], dtype=object)

    return mask


def training_stream(
    paths: Sequence[Path],
    tok: Tokenizer,
    masker: Masker,
    train: TrainConfig,
    data: DataConfig,
    worker: tuple[int, int] = (0, 1),
    repeat: bool = True,
) -> tf.data.Dataset:
    """Batches `(seq, labels, teacher)` as `Trainer.train_step` takes them.

    `seq` is `(B, W)` int32 (inputs `[:, :-1]`, next-token targets `[:, 1:]`); streamed
    lines have no template labels (-1) nor teacher targets (`(B, 1)` zeros).

    Args:
        repeat: pass over the files again and again (training); False makes one pass and
            keeps a last, smaller batch.
    """
    mask = _masker_fn(masker, train.val_fraction)

    def encode(texts: np.ndarray) -> np.ndarray:
        return lm_arrays(tok, [t.decode() for t in texts], train.train_max_len + 1)

    def masked(raw: tf.Tensor) -> tf.Tensor:
        return tf.ensure_shape(tf.numpy_function(mask, [raw], tf.string, stateful=False), [None])

    def to_batch(texts: tf.Tensor) -> Batch:
        seq = tf.numpy_function(encode, [texts], tf.int32, stateful=False)
        seq = tf.ensure_shape(seq, [None, None])
        n = tf.shape(texts)[0]
        return seq, tf.fill([n], -1), tf.zeros([n, 1], tf.float32)

    lines = line_dataset(paths, worker, data.read_files, train.seed)
    texts = lines.batch(MASK_CHUNK).map(masked, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if repeat:
        # After masking: a pass that yields no text ends the stream instead of looping.
        texts = texts.repeat()
    return (
        texts.shuffle(data.shuffle_buffer, seed=train.seed)
        .batch(train.batch_size, drop_remainder=repeat)
        .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )


@dataclass
class Stream:
    """Endless training batches and how many of them make an epoch (a `train.Feed`)."""

    dataset: tf.data.Dataset
    steps: int
    _it: Iterator[Batch] | None = field(default=None, init=False, repr=False)

    def epoch(self, epoch: int) -> tuple[int, Iterator[Batch]]:
        """The next `steps` batches; an epoch carries on where the last one stopped."""
        if self._it is None:
            self._it = iter(self.dataset)
        return self.steps, self._take(self._it)

    def _take(self, it: Iterator[Batch]) -> Iterator[Batch]:
        for i in range(self.steps):
            batch = next(it, None)
            if batch is None:
                raise ValueError(
                    "The input files gave no training batch: are they empty, or all lines "
                    f"held out for validation? Received: {i} of {self.steps} steps"
                )
            yield batch
