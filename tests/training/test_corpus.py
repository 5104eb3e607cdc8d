from pathlib import Path

from training.corpus import messages_in, python_messages

SOURCE = """
import logging
logger = logging.getLogger(__name__)

def f(path, n):
    if n > 3:
        raise ValueError(f"Could not open {path}: only {n} bytes left")
    logger.warning("disk %s is almost full", path)
    logger.log(30, "retrying connection to %s", path)
    raise KeyError
"""


def test_messages_in_reads_raise_and_logging_calls() -> None:
    got = list(messages_in(SOURCE))
    assert "Could not open {}: only {} bytes left" in got
    assert "disk %s is almost full" in got
    assert "retrying connection to %s" in got
    assert list(messages_in("def (:")) == []


def test_python_messages_fills_fields_and_is_stable(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(SOURCE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text('raise ValueError("skipped test message here")')
    a = python_messages(roots=[tmp_path])
    assert a == python_messages(roots=[tmp_path])
    assert len(a) == 3 and not any("{}" in m or "%s" in m for m in a)
    assert not any("skipped" in m for m in a)
