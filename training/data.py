"""Loading of training and evaluation lines: the loghub layout and plain log files.

Loghub layout (one folder per system):
`<System>/<System>_2k.log` (raw lines, headers included) and
`<System>/<System>_2k.log_structured*.csv` (`Content`, `EventId`, `EventTemplate`, one row
per raw line, same order). A user's own logs are plain files with one record per line.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TRAIN_SYSTEMS: tuple[str, ...] = (
    "Apache",
    "BGL",
    "HDFS",
    "HPC",
    "Hadoop",
    "Linux",
    "Mac",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Windows",
    "Zookeeper",
)
# Held out from every training step, as in the original study.
TEST_SYSTEMS: tuple[str, ...] = ("Android",)


@dataclass(frozen=True)
class LogSet:
    """Lines of one source; `templates` holds ground-truth event ids when known, and
    `template_texts` their templates (`<*>` for variables)."""

    name: str
    raw: list[str]
    content: list[str]
    templates: list[str] | None = None
    template_texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.raw)


def default_data_dir() -> Path:
    """`../shared/data/loghub-2k` relative to the project root (may not exist)."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "loghub-2k"


def read_plain(path: str | Path, name: str | None = None) -> LogSet:
    """Reads a plain log file, one record per line; bytes that are not UTF-8 are replaced."""
    p = Path(path)
    with p.open("r", encoding="utf-8", errors="replace", newline="") as f:
        lines = [ln.rstrip("\r\n") for ln in f]
    lines = [ln for ln in lines if ln.strip()]
    return LogSet(name or p.stem, lines, lines, None)


def _structured_csv(folder: Path, system: str) -> Path | None:
    for suffix in ("_structured_corrected.csv", "_structured.csv"):
        cands = sorted(folder.glob(f"{system}_*.log{suffix}"))
        if cands:
            return cands[0]
    return None


def read_loghub_system(data_dir: str | Path, system: str) -> LogSet:
    """Reads one loghub system: raw lines plus `Content` and `EventId` when present."""
    folder = Path(data_dir) / system
    logs = sorted(folder.glob(f"{system}_*.log"))
    if not logs:
        raise FileNotFoundError(
            f"No {system}_*.log in {folder}: expected the loghub layout. Received: {data_dir}"
        )
    raw = read_plain(logs[0]).raw
    csv_path = _structured_csv(folder, system)
    if csv_path is None:
        return LogSet(system, raw, raw, None)
    with csv_path.open("r", encoding="utf-8", errors="replace", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(raw):
        logger.warning(
            "%s: %d raw lines but %d structured rows; using the structured Content",
            system,
            len(raw),
            len(rows),
        )
        raw = [r["Content"] for r in rows]
    content = [r["Content"] for r in rows]
    templates = [r["EventId"] for r in rows]
    return LogSet(system, raw, content, templates, [r["EventTemplate"] for r in rows])


def load_loghub(data_dir: str | Path, systems: Sequence[str] | None = None) -> dict[str, LogSet]:
    """Reads the given systems (all folders that hold a log when None)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder does not exist. Received: data_dir={data_dir}")
    if systems is None:
        systems = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.log")))
    return {s: read_loghub_system(root, s) for s in systems}


def load_training_lines(data_dir: str | Path) -> dict[str, LogSet]:
    """The training split: loghub train systems found under `data_dir`, or, when the
    folder is not in loghub layout, every `*.log`/`*.txt` file in it as a plain source."""
    root = Path(data_dir)
    present = [s for s in TRAIN_SYSTEMS if (root / s).is_dir()]
    if present:
        return load_loghub(root, present)
    files = sorted([*root.glob("*.log"), *root.glob("*.txt")]) if root.is_dir() else [root]
    if not files:
        raise FileNotFoundError(f"No loghub systems or *.log/*.txt files in {data_dir}")
    return {f.stem: read_plain(f) for f in files}
