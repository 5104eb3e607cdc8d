"""Training input streamed from files: same arrays as the in-memory path, disjoint worker
shards, and a few training steps from files through `python -m training`."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="streamed training needs logclust[train]")

from logclust.text.masking import Masker  # noqa: E402
from logclust.text.tokenizer import PAD_ID, Tokenizer  # noqa: E402
from training.__main__ import main  # noqa: E402
from training.config import DataConfig, TrainConfig  # noqa: E402
from training.data import LogSet, read_plain  # noqa: E402
from training.dataset import lm_arrays, make_examples, split  # noqa: E402
from training.stream import Stream, line_dataset, training_stream  # noqa: E402
from training.tokenizer import TokenizerConfig, train_tokenizer  # noqa: E402

from .test_train import TINY, train_args  # noqa: E402

WORDS = ("disk", "cache", "queue", "socket", "worker", "shard", "index", "token")
TRAIN = TrainConfig(batch_size=8, train_max_len=12, val_fraction=0.2, seed=3)
DATA = DataConfig(shuffle_buffer=16, read_files=2)


def write_files(root: Path) -> list[Path]:
    """Three files (one gzip) of varied lines; numbers mask alike, so texts repeat."""
    lines = [
        f"{a} {b} failed after {n} tries on {c}"
        for (a, b, c), n in zip(itertools.permutations(WORDS, 3), range(150), strict=False)
    ]
    root.mkdir()
    paths = [root / "a.log", root / "b.log", root / "c.log.gz"]
    paths[0].write_text("\n".join(lines[:60]) + "\n\n   \r\n" + lines[0].replace("tries", "times"))
    paths[1].write_bytes("\r\n".join(lines[60:100] + lines[:5]).encode() + b"\r\n\xff odd\n")
    with gzip.open(paths[2], "wt") as f:
        f.write("\n".join(lines[100:]) + "\n")
    return paths


def all_lines(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        if p.suffix == ".gz":
            out += [ln for ln in gzip.open(p, "rt").read().split("\n") if ln.strip()]
        else:
            out += read_plain(p).raw
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_files(tmp_path_factory.mktemp("stream") / "logs")


@pytest.fixture(scope="module")
def tok(files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    masker = Masker()
    out = tmp_path_factory.mktemp("tok") / "t.model"
    texts = masker.mask_texts(all_lines(files))
    return train_tokenizer(texts, masker.config.placeholders, TokenizerConfig(vocab_size=60), out)


def rows(seq: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(t) for t in r if t != PAD_ID) for r in seq]


def test_stream_gives_the_in_memory_arrays(files: list[Path], tok: Tokenizer) -> None:
    lines = all_lines(files)
    examples, _ = make_examples({"f": LogSet("f", lines, lines)}, Masker(), False)
    train, val = split(examples, TRAIN.val_fraction)
    assert val and len(train) < len(lines)  # some lines held out, repeats merged
    expected = lm_arrays(tok, [e.text for e in train], TRAIN.train_max_len + 1)

    got: list[tuple[int, ...]] = []
    for seq, labels, teacher in training_stream(files, tok, Masker(), TRAIN, DATA, repeat=False):
        # As in memory: beginning id, train_max_len tokens, end id.
        assert seq.dtype == tf.int32 and seq.shape[1] <= TRAIN.train_max_len + 2
        assert labels.numpy().tolist() == [-1] * seq.shape[0] and teacher.shape == (seq.shape[0], 1)
        got += rows(seq.numpy())
    assert sorted(got) == sorted(rows(expected))


@pytest.mark.parametrize("n_files", [4, 1])
def test_two_workers_read_disjoint_halves(tmp_path: Path, n_files: int) -> None:
    paths = [tmp_path / f"{i}.log" for i in range(n_files)]  # one file: lines are sharded
    for i, p in enumerate(paths):
        p.write_text("".join(f"file {i} line {j}\n" for j in range(50)))

    def read(worker: tuple[int, int]) -> list[bytes]:
        return [x.numpy() for x in line_dataset(paths, worker, read_files=2)]

    every, first, second = read((0, 1)), read((0, 2)), read((1, 2))
    assert len(every) == 50 * n_files == len(set(every))
    assert first and second and not set(first) & set(second)
    assert sorted(first + second) == sorted(every)


def test_stream_of_blank_files_is_refused(tmp_path: Path, tok: Tokenizer) -> None:
    (tmp_path / "blank.log").write_text("\n  \n")
    ds = training_stream([tmp_path / "blank.log"], tok, Masker(), TRAIN, DATA)
    steps, batches = Stream(ds, 2).epoch(0)
    with pytest.raises(ValueError, match="no training batch"):
        next(batches)


def test_train_steps_from_files(files: list[Path], corpus_dir: Path, tmp_path: Path) -> None:
    work, out, conf = tmp_path / "work", tmp_path / "bundle", tmp_path / "c.toml"
    conf.write_text(TINY.format(epochs=2) + "[data]\nsteps_per_epoch = 3\nsample_lines = 40\n")
    args = train_args(corpus_dir, out, conf, work=work, steps="tokenizer,train")
    assert main([*args, "--input-files", str(files[0].parent / "*")]) == 0
    hist = json.loads((work / "history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2]
    assert (work / "ckpt" / "checkpoint").is_file()
    # The tokenizer learnt from the files' sample: their words are pieces of their own.
    assert "▁socket" in Tokenizer.load(out / "tokenizer.model").pieces("socket")


def test_two_workers_stream_their_own_files(
    files: list[Path], corpus_dir: Path, tmp_path: Path
) -> None:
    from .test_multiworker import run_workers

    work, out, conf = tmp_path / "work", tmp_path / "bundle", tmp_path / "c.toml"
    conf.write_text(TINY.format(epochs=1) + "[data]\nsteps_per_epoch = 2\nsample_lines = 40\n")
    args = [*train_args(corpus_dir, out, conf, work=work), "--input-files", str(files[0].parent)]
    assert main([*args, "--steps", "tokenizer"]) == 0
    # The strategy is made before the stream touches TensorFlow (collectives come first).
    outs = run_workers([*args, "--steps", "train"])
    for i, text in enumerate(outs):
        assert f"worker {i}/2 epoch 1/1" in text, text[-2000:]
    assert (work / "ckpt" / "checkpoint").is_file()
