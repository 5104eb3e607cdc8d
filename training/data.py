"""Loading of training and evaluation lines: the loghub layout and plain log files.

Loghub layout (one folder per system):
`<System>/<System>_2k.log` (raw lines, headers included) and
`<System>/<System>_2k.log_structured*.csv` (`Content`, `EventId`, `EventTemplate`, one row
per raw line, same order). A user's own logs are plain files with one record per line.
"""

from __future__ import annotations

import csv
import glob
import gzip
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
# A large file's sample is read at this many evenly spaced places (a stride sample).
SAMPLE_WINDOWS = 32


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


def redraw_digits(texts: Sequence[str], rng: np.random.Generator | int) -> list[str]:
    """`texts` with every ASCII digit replaced by a random one: new ids, numbers,
    addresses and times in the same kinds of lines (what a live stream repeats).

    The `0` of a `0x`/`0X` prefix stays: a new hex value is still a hex value (redrawing
    it made `7x0b85` tokens that no real field holds, and a new masked text on most
    passes). Vectorised over the texts' joined bytes; a digit is one byte in UTF-8 and no
    byte of a multi-byte character, so every text keeps its length and its other bytes.

    Args:
        texts: the lines to change (any characters, newlines included).
        rng: the random source, or a seed for one (`np.random.default_rng`); a generator
            goes on from where it is, so successive calls draw new digits.

    Returns:
        One text per text of `texts`, in order.
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    encoded = [t.encode("utf-8") for t in texts]
    if not encoded:
        return []
    # Joined with a separator, so a text's last `0` and the next one's `x` are no prefix.
    buf = np.frombuffer(b"\n".join(encoded), np.uint8).copy()
    digits = (buf >= ord("0")) & (buf <= ord("9"))
    hex_prefix = (buf[:-1] == ord("0")) & ((buf[1:] == ord("x")) | (buf[1:] == ord("X")))
    digits[:-1] &= ~hex_prefix
    buf[digits] = gen.integers(ord("0"), ord("9") + 1, int(digits.sum()), dtype=np.uint8)
    out = buf.tobytes()
    starts = np.cumsum([0] + [len(e) + 1 for e in encoded[:-1]]).tolist()
    return [out[a : a + len(e)].decode("utf-8") for e, a in zip(encoded, starts, strict=True)]


def shuffled_passes(base: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """`n` lines: passes over `base`, each in a new random order with its digits re-drawn
    (`redraw_digits`), all from one generator seeded with `seed` (a replay of a log)."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        order = rng.permutation(len(base))
        out += redraw_digits([base[i] for i in order], rng)
    return out[:n]


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


def list_log_files(pattern: str | Path) -> list[Path]:
    """The files of a folder (hidden ones left out) or of a glob (`**` recurses), sorted."""
    root = Path(pattern)
    if root.is_dir():
        found = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    else:
        found = [Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file()]
    if not found:
        raise FileNotFoundError(f"No log files in the folder or glob. Received: {pattern}")
    return sorted(found)


def _lines(raw: Iterable[bytes]) -> Iterator[str]:
    """Records as `read_plain` keeps them: decoded with replacement, blank ones dropped."""
    for b in raw:
        line = b.decode("utf-8", "replace").rstrip("\r\n")
        if line.strip():
            yield line


def _file_sample(path: Path, limit: int) -> list[str]:
    """At most `limit` lines of one file, read in `SAMPLE_WINDOWS` evenly spaced windows
    so that a large file is sampled through its whole length, not only its head.

    A gzip file cannot be entered in the middle: its first `limit` lines are taken.
    """
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as g:
            return list(itertools.islice(_lines(g), limit))
    size, windows = path.stat().st_size, max(1, min(limit, SAMPLE_WINDOWS))
    out: list[str] = []
    with path.open("rb") as f:
        for w in range(windows):
            start = size * w // windows
            if start:
                f.seek(start - 1)
                if f.read(1) != b"\n":
                    f.readline()  # the rest of the line the window starts inside
            end, target = size * (w + 1) // windows, limit * (w + 1) // windows
            while len(out) < target and f.tell() < end:
                raw = f.readline()
                if not raw:
                    break
                out.extend(_lines([raw]))
    return out


def sample_lines(paths: Sequence[Path], limit: int) -> list[str]:
    """A bounded sample of the files' lines: at most `limit` lines read, spread over the
    files (equal shares) and over each file's length, whatever the files' size."""
    if limit < 1:
        raise ValueError(f"limit must be positive. Received: limit={limit}")
    out: list[str] = []
    n = len(paths)
    for i, path in enumerate(paths):
        # Equal shares; with more files than lines, one line from every (n / limit)-th file.
        share = limit * (i + 1) // n - limit * i // n
        if share:
            out += _file_sample(path, share)
    logger.info("sampled %d lines from %d files", len(out), len(paths))
    return out
