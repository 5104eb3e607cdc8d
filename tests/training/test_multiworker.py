"""Two training workers as two local processes (MultiWorkerMirroredStrategy on 127.0.0.1):
both take part, only the chief writes, a second run resumes from the chief's checkpoint,
and the result exports to the same bundle format."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow", reason="multi-worker training needs logclust[train]")

from logclust.text.tokenizer import Tokenizer  # noqa: E402
from training.__main__ import main  # noqa: E402
from training.config import ModelConfig  # noqa: E402
from training.model import build  # noqa: E402

from .test_train import TINY, train_args  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = {"d_model": 16, "n_heads": 2, "n_blocks": 1, "d_ff": 16, "max_len": 32}  # as TINY


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_workers(args: list[str], n: int = 2) -> list[str]:
    """Starts `n` workers of `python -m training args`; returns each one's output."""
    workers = ",".join(f"127.0.0.1:{p}" for p in free_ports(n))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "training",
                *args,
                "--workers",
                workers,
                "--worker-index",
                str(i),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=100)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, out[-3000:]
        outs.append(out)
    return outs


def test_two_workers_train_checkpoint_resume_and_export(corpus_dir: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "bundle"
    conf1, conf2 = tmp_path / "c1.toml", tmp_path / "c2.toml"
    conf1.write_text(TINY.format(epochs=1))
    conf2.write_text(TINY.format(epochs=2))
    assert main(train_args(corpus_dir, out, conf1, work=work, steps="tokenizer")) == 0

    outs = run_workers(train_args(corpus_dir, out, conf1, work=work, steps="train"))
    for i, text in enumerate(outs):
        assert f"worker {i}/2 epoch 1/1" in text, text[-2000:]
    assert (work / "ckpt" / "checkpoint").is_file()  # the chief's
    assert not list(work.glob("worker-*-scratch"))  # the other's were discarded

    # A restarted cluster resumes from the chief's checkpoint: epoch 1 is not rerun.
    outs = run_workers(train_args(corpus_dir, out, conf2, work=work, steps="train"))
    for i, text in enumerate(outs):
        assert f"worker {i}/2 epoch 2/2" in text and "epoch 1/2" not in text, text[-2000:]
    hist = json.loads((work / "history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2]

    # The chief's files are what `export` makes the bundle from (the same code as on one
    # worker): its best weights load, and its checkpoint restores the trained state.
    mcfg = ModelConfig(
        **dict(TINY_MODEL, vocab_size=Tokenizer.load(out / "tokenizer.model").vocab_size)
    )
    model = build(mcfg)
    model.load_weights(str(work / "best.weights.h5"))
    restored, epoch = build(mcfg), tf.Variable(0, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(model=restored, epoch=epoch)
    ckpt.restore(tf.train.latest_checkpoint(str(work / "ckpt"))).expect_partial()
    assert int(epoch.numpy()) == 2
    x = tf.constant([[1, 5, 6, 7]])
    assert restored(x).shape == (1, 4, mcfg.vocab_size)


def test_training_steps_only_on_a_cluster(corpus_dir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(TINY.format(epochs=1))
    args = train_args(corpus_dir, tmp_path / "o", conf, steps="tokenizer,train")
    assert main(args + ["--workers", "127.0.0.1:1,127.0.0.1:2", "--worker-index", "0"]) == 2
    os.environ.pop("TF_CONFIG", None)
