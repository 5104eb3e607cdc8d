"""Encoder length buckets: powers of two against steps of 8 tokens, and the token cap.

The distinct masked texts of a loghub replay (what `logclust label` and a cold sidecar
encode) run through the bundle's encoder, one thread, with each bucket set and cap in
turn, rounds interleaved; prints lines/s per round and the largest difference of the
embeddings from the first setting (padding is masked, so it should be float noise).

    python -m bench.encoder_buckets [--rows 200000] [--rounds 3] [--variant f32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

import logclust.embed.encoder as encoder_module
from bench.workloads import replay
from logclust.cluster.labeler import Labeler

SETTINGS: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("16/32/64/128, 128 a call", (16, 32, 64, 128), 128),
    ("steps of 8, 128 a call", tuple(range(8, 129, 8)), 128),
    ("steps of 8, 256 a call", tuple(range(8, 129, 8)), 256),
    ("steps of 16, 128 a call", tuple(range(16, 129, 16)), 128),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=200_000, help="replay rows; their distinct texts")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variant", default=None)
    args = p.parse_args()
    lab = Labeler.load(None, variant=args.variant)
    masked = lab.masker.mask(pa.array(replay(args.rows, seed=0), pa.string()))
    texts = masked.unique().to_pylist()
    rows = lab.tokenizer.encode(texts, lab.bundle.max_len)
    lengths = np.array([min(len(r), lab.bundle.max_len) for r in rows])
    print(
        f"{len(rows)} distinct masked texts, tokens mean {lengths.mean():.1f}, "
        f"p10/p50/p90 {np.percentile(lengths, [10, 50, 90]).tolist()}"
    )
    enc = lab.encoder
    rates: dict[str, list[float]] = {name: [] for name, _, _ in SETTINGS}
    diffs: dict[str, float] = {}
    first: np.ndarray | None = None
    saved = (encoder_module.BUCKETS, enc.max_tokens)
    try:
        for _ in range(args.rounds):
            for name, buckets, cap in SETTINGS:
                encoder_module.BUCKETS, enc.max_tokens = buckets, cap
                t0 = time.perf_counter()
                out = enc.encode(rows, lab.bundle.max_len)
                rates[name].append(len(rows) / (time.perf_counter() - t0))
                if first is None:
                    first = out
                diffs[name] = max(diffs.get(name, 0.0), float(np.abs(out - first).max()))
    finally:
        encoder_module.BUCKETS, enc.max_tokens = saved
    print("| buckets, tokens a call | lines/s by round | best | max abs diff |")
    print("| --- | --- | --- | --- |")
    for name, _, _ in SETTINGS:
        r = rates[name]
        print(
            f"| {name} | {' / '.join(f'{x:.0f}' for x in r)} | {max(r):.0f} | {diffs[name]:.1e} |"
        )


if __name__ == "__main__":
    main()
