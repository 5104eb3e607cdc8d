import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import LOGHUB, need_loghub
from training.data import (
    list_log_files,
    load_loghub,
    load_training_lines,
    read_loghub_system,
    read_plain,
    redraw_digits,
    sample_lines,
    shuffled_passes,
)


def test_plain_file_non_utf8_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "x.log"
    p.write_bytes(b"ok line\n\n\xff\xfe bad bytes\r\nlast")
    ls = read_plain(p)
    assert ls.raw == ["ok line", "\ufffd\ufffd bad bytes", "last"] and ls.templates is None


def test_plain_folder_as_training_data(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("x 1\ny 2\n")
    (tmp_path / "b.txt").write_text("z 3\n")
    assert sorted(load_training_lines(tmp_path)) == ["a", "b"]


def test_missing_layout_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="loghub layout"):
        read_loghub_system(tmp_path, "Nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_loghub(tmp_path / "missing")


@pytest.mark.integration
def test_loghub_layout() -> None:
    need_loghub()
    ls = read_loghub_system(LOGHUB, "HDFS")
    assert len(ls.raw) == len(ls.content) == len(ls.templates or []) == 2000
    assert ls.content[0] in ls.raw[0]
    train = load_training_lines(LOGHUB)
    assert "Android" not in train and len(train) == 12


def test_log_files_of_a_folder_or_glob(tmp_path: Path) -> None:
    for name in ("b.log", "a.log.gz", ".hidden", "c.txt"):
        (tmp_path / name).write_text("x\n")
    assert [p.name for p in list_log_files(tmp_path)] == ["a.log.gz", "b.log", "c.txt"]
    assert [p.name for p in list_log_files(tmp_path / "*.log")] == ["b.log"]
    with pytest.raises(FileNotFoundError, match="Received"):
        list_log_files(tmp_path / "*.nothing")


def test_sample_is_bounded_and_spread_over_a_large_file(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_text("".join(f"event {i:06d} happened\n\n" for i in range(20000)))
    sample = sample_lines([big], 500)
    assert len(sample) == 500 and len(set(sample)) == 500
    numbers = sorted(int(s.split()[1]) for s in sample)
    # Read in windows along the whole file, not its first 500 lines.
    assert numbers[0] < 700 and numbers[-1] > 19000
    assert len(sample_lines([big], 7)) == 7


def test_sample_shares_and_gzip(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}.log.gz"
        with gzip.open(p, "wt") as f:
            f.write("".join(f"file {i} line {j}\n" for j in range(100)))
        paths.append(p)
    sample = sample_lines(paths, 3)  # more files than lines: one line from three files
    assert len(sample) == 3 and len({s.split()[1] for s in sample}) == 3
    sample = sample_lines(paths, 50)
    assert len(sample) == 50 and sample[:10] == [f"file 0 line {j}" for j in range(10)]
    small = tmp_path / "small.log"
    small.write_text("a\r\n\n   \nb\n")
    assert sample_lines([small], 100) == ["a", "b"]


def test_redraw_digits_keeps_everything_but_the_digits() -> None:
    texts = ["id 123 at 0x1f ok", "x", "", "déjà 7\nnext 42", "ends with 0", "x0 starts"]
    out = redraw_digits(texts, 1)
    assert len(out) == len(texts)
    for before, after in zip(texts, out, strict=True):
        assert len(after) == len(before)
        for a, b in zip(before, after, strict=True):
            assert b.isdigit() if a.isdigit() else a == b
    # A hex prefix stays a hex prefix; digits elsewhere are drawn anew.
    assert out[0].split()[3].startswith("0x") and out[0] != texts[0]
    # A text's last `0` followed by the next text's `x` is no prefix: it is re-drawn too.
    assert {redraw_digits(["a0", "xb"], seed)[0] for seed in range(20)} != {"a0"}


def test_redraw_digits_seed_and_generator() -> None:
    texts = ["a 1 b 22 c 333"] * 3
    assert redraw_digits(texts, 5) == redraw_digits(texts, 5)
    assert redraw_digits(texts, 5) != redraw_digits(texts, 6)
    # A generator goes on where it was: the next call draws new digits.
    rng = np.random.default_rng(0)
    assert redraw_digits(texts, rng) != redraw_digits(texts, rng)


def test_shuffled_passes_repeat_the_base_with_new_digits() -> None:
    base = [f"line {i} kind {i % 3}" for i in range(10)]
    out = shuffled_passes(base, 25, seed=0)
    assert len(out) == 25 and out == shuffled_passes(base, 25, seed=0)

    def shape(t: str) -> str:
        return " ".join("N" if w.isdigit() else w for w in t.split())

    # The first pass is the base in another order, every number re-drawn.
    assert sorted(map(shape, out[:10])) == sorted(map(shape, base))
