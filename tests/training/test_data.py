from pathlib import Path

import pytest

from tests.conftest import LOGHUB, need_loghub
from training.data import load_loghub, load_training_lines, read_loghub_system, read_plain


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
