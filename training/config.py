"""Configuration of the model and its training, as frozen dataclasses (no TensorFlow).

Every bundle stores the resolved configs it was made with (`to_dict`), and a TOML file or
CLI flags override the defaults (`from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ModelConfig:
    """The GPT-style decoder (the study's shape: 6 blocks, d_model 256, ff 256, tied output)."""

    vocab_size: int = 16000  # set to the trained tokenizer's size before building
    max_len: int = 128  # longest sequence (tokens, with the beginning-of-line id)
    d_model: int = 256  # width of every block
    n_heads: int = 4  # attention heads of d_model / n_heads each
    n_blocks: int = 6  # decoder blocks
    d_ff: int = 256  # feed-forward width (the study's 6.47M parameters use 256)
    dropout: float = 0.1  # on attention output and feed-forward output while training

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(
                "d_model must be divisible by n_heads. "
                f"Received: d_model={self.d_model}, n_heads={self.n_heads}"
            )
        for name in ("vocab_size", "max_len", "d_model", "n_heads", "n_blocks", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained; defaults train the shipped model on 2 CPU cores."""

    epochs: int = 12  # passes over the distinct training lines
    batch_size: int = 32  # lines per step
    train_max_len: int = 96  # lines are cut to this many tokens while training (speed)
    learning_rate: float = 1e-3  # peak, after warm-up, cosine decay to 10%
    warmup_steps: int = 200
    weight_decay: float = 0.01
    val_fraction: float = 0.1  # distinct lines held out (stratified by source) for validation
    # Auxiliary objectives on the max-pooled embedding (0 disables each):
    contrastive_weight: float = 0.5  # supervised contrastive over template ids
    distill_weight: float = 1.0  # match the teacher's pairwise cosine similarities
    temperature: float = 0.1  # of the contrastive loss
    include_content: bool = True  # also train on the message without the line header
    # Extra lines from the Python message corpus (training/corpus.py): general language for
    # the next-token and distillation objectives; 0 trains on the log data alone.
    corpus_lines: int = 10000
    # Second stage, from the first stage's best weights: distillation-heavy fine-tuning
    # (0 epochs skips it). It raised the student/teacher similarity agreement on unseen
    # corpus lines from 0.30 to 0.43 (Pearson) without costing next-token accuracy.
    finetune_epochs: int = 0
    finetune_distill_weight: float = 10.0
    finetune_contrastive_weight: float = 0.1
    finetune_learning_rate: float = 3e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(
                "epochs must be >= 1 and batch_size >= 2. "
                f"Received: epochs={self.epochs}, batch_size={self.batch_size}"
            )
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5). Received: {self.val_fraction}")


@dataclass(frozen=True)
class SemanticConfig:
    """The semantic channel (`training/semantic.py`) and its share of the embedding."""

    dim: int = 128  # width of the channel (0 leaves it out: decoder embedding only)
    # Share of the channel in the unit-length embedding: [g * decoder, weight * channel]
    # with g = sqrt(1 - weight^2), both parts unit length first.
    weight: float = 0.95
    sif_a: float = 1e-3  # piece weight a / (a + p(piece))
    ridge_grid: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    val_fraction: float = 0.1  # lines held out to choose the ridge penalty and tuning epoch
    # Then Adam on the table itself toward the teacher's sentence embeddings (0 skips it):
    tune_epochs: int = 15
    tune_lr: float = 1e-3
    tune_batch: int = 128
    tune_patience: int = 2  # epochs without a better held-out cosine before stopping
    # What the channel learns to point at: "line", the teacher's embedding of each
    # training line as it is; "message", of the line's message (its header dropped, for
    # loghub lines) with placeholders dropped and identifiers split into words.
    targets: str = "line"
    # Tune each piece's weight too (log scale, within +-weight_range of its SIF weight):
    # pieces of line headers and formats learn to weigh less than the words that mean.
    tune_weights: bool = False
    tune_weight_lr: float = 0.02
    weight_range: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 0 or not 0.0 <= self.weight <= 1.0:
            raise ValueError(
                "dim must be >= 0 and weight in [0, 1]. "
                f"Received: dim={self.dim}, weight={self.weight}"
            )
        if self.targets not in ("line", "message"):
            raise ValueError(f"targets must be 'line' or 'message'. Received: {self.targets}")
        object.__setattr__(self, "ridge_grid", tuple(float(x) for x in self.ridge_grid))
        if not self.ridge_grid or min(self.ridge_grid) <= 0:
            raise ValueError(f"ridge_grid must hold positive values. Received: {self.ridge_grid}")


@dataclass(frozen=True)
class DataConfig:
    """Training from a user's own log files, streamed by `training/stream.py`.

    Memory is bounded by these settings, never by the size of the input.
    """

    # A folder or glob of plain log files (`.gz` too). Empty: the in-memory lines of
    # `--data` (the loghub systems, or plain files read whole).
    files: str = ""
    # The stream has no end: an epoch is this many steps, on every worker alike (each
    # step is a collective that all workers join).
    steps_per_epoch: int = 1000
    shuffle_buffer: int = 10000  # masked lines held for shuffling
    read_files: int = 4  # files read at once, their lines interleaved
    # Lines read from the files, spread over them, for the tokenizer, validation and the
    # bundle's default clusters.
    sample_lines: int = 300_000

    def __post_init__(self) -> None:
        for name in ("steps_per_epoch", "shuffle_buffer", "read_files", "sample_lines"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Builds `cls` from `d`, rejecting unknown keys with a message naming them."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields. Received: {unknown}")
    return cls(**d)
