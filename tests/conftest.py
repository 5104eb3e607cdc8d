"""Shared fixtures: a synthetic log corpus and a tiny bundle trained on it in seconds."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from training.data import default_data_dir

from .fakes import FakeLabeler

LOGHUB = default_data_dir()


def synthetic_lines(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    """(line, kind) pairs of a few log templates with random fields."""
    rng = random.Random(seed)
    kinds = {
        "open": lambda: (
            f"INFO fs: opened file /var/data/{rng.randint(1, 999)}.bin "
            f"size {rng.randint(1, 10**6)} bytes"
        ),
        "conn": lambda: (
            f"WARN net: connection from {rng.randint(1, 255)}.{rng.randint(0, 255)}"
            f".0.{rng.randint(1, 254)}:{rng.randint(1024, 65535)} refused"
        ),
        "user": lambda: (
            f"INFO auth: user u{rng.randint(100, 999)} logged in after {rng.randint(1, 50)} ms"
        ),
        "gc": lambda: (
            f"DEBUG jvm: garbage collection took {rng.randint(1, 900)} ms freed "
            f"{rng.randint(1, 512)} MB"
        ),
        "cart": lambda: (
            f"product_id={rng.choice('ABCDEFGH')}{rng.randint(10, 99)}X"
            f"&quantity={rng.randint(1, 9)}"
        ),
    }
    names = list(kinds)
    return [(kinds[k](), k) for k in (names[i % len(names)] for i in range(n))]


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    (d / "app.log").write_text("\n".join(t for t, _ in synthetic_lines()) + "\n")
    return d


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    """A real bundle (tokenizer, TFLite encoders, clusters) from a tiny model, ~20 s."""
    pytest.importorskip("tensorflow", reason="training needs logclust[train]")
    from logclust.text.tokenizer import Tokenizer
    from training import semantic
    from training.config import ModelConfig, SemanticConfig, TrainConfig
    from training.pipeline import PipelineConfig, run
    from training.tokenizer import TokenizerConfig

    root = tmp_path_factory.mktemp("tiny")
    cfg = PipelineConfig(
        data_dir=corpus_dir,
        out_dir=root / "bundle",
        work_dir=root / "work",
        model=ModelConfig(d_model=32, n_heads=2, n_blocks=2, d_ff=64, max_len=64, dropout=0.0),
        train=TrainConfig(
            epochs=2,
            batch_size=16,
            warmup_steps=5,
            distill_weight=0.0,
            corpus_lines=0,
            contrastive_weight=0.5,
            val_fraction=0.2,
            train_max_len=48,
        ),
        tokenizer=TokenizerConfig(vocab_size=120),
    )
    run(cfg, ("tokenizer", "train"))
    # The semantic channel from a stand-in teacher (the real one is the distill extra):
    # enough to carry the channel through export, parity and serving.
    tok = Tokenizer.load(cfg.out_dir / "tokenizer.model")
    texts = [t for t, _ in synthetic_lines(300, seed=11)]
    channel = semantic.build(
        tok, texts, fake_teacher, SemanticConfig(dim=16, tune_epochs=3), cfg.model.max_len
    )
    channel.save(cfg.work_dir / semantic.FILE)
    run(cfg, ("export",))
    return root / "bundle"


def fake_teacher(texts: Sequence[str]) -> np.ndarray:
    """Hashed character trigrams (48 dims) standing in for the sentence-embedding model."""
    return FakeLabeler(48).embed_masked(pa.array(list(texts), pa.string()))


@pytest.fixture(scope="session")
def tiny_work(tiny_bundle: Path) -> Path:
    return tiny_bundle.parent / "work"


def need_loghub() -> None:
    if not (LOGHUB / "Android").is_dir():
        pytest.skip(f"loghub-2k data not found at {LOGHUB} (place it beside the repository)")
