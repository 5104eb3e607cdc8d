"""`python -m training`: TOML config, resuming, best-epoch keeping, losses."""

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from training.__main__ import main  # noqa: E402
from training.train import contrastive_loss, distill_loss  # noqa: E402

TINY = """
[model]
d_model = 16
n_heads = 2
n_blocks = 1
d_ff = 16
max_len = 32
[train]
epochs = {epochs}
batch_size = 16
warmup_steps = 2
distill_weight = 0.0
corpus_lines = 0
train_max_len = 24
[tokenizer]
vocab_size = 80
"""


def train_args(
    data: Path, out: Path, conf: Path, work: Path | None = None, steps: str | None = None
) -> list[str]:
    """`python -m training` arguments for the tiny configurations."""
    args = ["--data", str(data), "--out", str(out), "--config", str(conf)]
    args += ["--work", str(work)] if work else []
    return args + (["--steps", steps] if steps else [])


def test_cli_train_resumes(corpus_dir: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "bundle"
    for epochs, steps in ((1, "tokenizer,train"), (2, "train,export")):
        conf = tmp_path / f"c{epochs}.toml"
        conf.write_text(TINY.format(epochs=epochs))
        args = train_args(corpus_dir, out, conf, work=work, steps=steps)
        assert main(args) == 0
    hist = json.loads((work / "history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2]  # epoch 1 was not rerun
    best = max(hist["epochs"], key=lambda e: e["val_acc"])
    assert hist["best_epoch"] == best["epoch"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_config"]["d_model"] == 16
    assert manifest["training"]["best_epoch"] == hist["best_epoch"]
    assert (work / "tensorboard").is_dir()


def test_unknown_config_key_is_named(corpus_dir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("[model]\nwidth = 3\n")
    args = train_args(corpus_dir, tmp_path / "o", conf)
    assert main(args) == 2


def test_contrastive_pulls_same_label_together() -> None:
    e = tf.math.l2_normalize(tf.constant([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0]]), -1)
    apart = tf.math.l2_normalize(tf.constant([[1.0, 0.1], [0.0, 1.0], [1.0, 0.0]]), -1)
    labels = tf.constant([0, 0, 1])
    assert float(contrastive_loss(e, labels, 0.1)) < float(contrastive_loss(apart, labels, 0.1))
    assert float(contrastive_loss(e, tf.constant([-1, -1, -1]), 0.1)) == 0.0


def test_distill_zero_when_similarities_match() -> None:
    x = tf.math.l2_normalize(tf.constant(np.random.default_rng(0).random((4, 3)), tf.float32), -1)
    assert float(distill_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(x, tf.reverse(x, [0]))) > 0.0


def test_finetune_stage_starts_from_best_and_is_exported(corpus_dir: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "bundle"
    conf = tmp_path / "c.toml"
    conf.write_text(
        TINY.format(epochs=1).replace(
            "corpus_lines = 0\n", "corpus_lines = 0\nfinetune_epochs = 1\n"
        )
    )
    args = train_args(corpus_dir, out, conf, work=work, steps="tokenizer,train,finetune,export")
    assert main(args) == 0
    assert (work / "finetune" / "best.weights.h5").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["stage"] == "finetune"
    assert manifest["train_config"]["finetune_epochs"] == 1
