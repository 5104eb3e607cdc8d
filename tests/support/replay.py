"""The loghub replay the benchmarks send (`bench.workloads.replay`), for tests: passes over
the train systems' lines, shuffled, digits re-drawn each pass."""

from __future__ import annotations

from training.data import TRAIN_SYSTEMS, default_data_dir, read_loghub_system, shuffled_passes


def has_loghub() -> bool:
    return (default_data_dir() / "HDFS").is_dir()


def loghub_replay(n: int, seed: int = 0) -> list[str]:
    """`n` replay lines (needs loghub-2k: `has_loghub()`)."""
    root = default_data_dir()
    base = [ln for s in TRAIN_SYSTEMS for ln in read_loghub_system(root, s).raw]
    return shuffled_passes(base, n, seed)
