"""What labelling a loghub replay costs, part by part: masking, and the encoder's buckets.

1. Masking `--rows` replay lines row by row (`Masker.mask`) against through the digit-shape
   cache (`MaskCache`, as `Labeler` and the sidecar mask), with the outputs compared.
2. The distinct masked texts (what `logclust label` and a cold sidecar encode) through the
   bundle's encoder, one thread, with each length-bucket set and token cap in turn, rounds
   interleaved; lines/s per round and the largest difference of the embeddings from the
   first setting (padding is masked, so it should be float noise).

    python -m bench.label_costs [--rows 1000000] [--rounds 3] [--variant f32]
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import logclust.embed.encoder as encoder_module
from bench.harness import cli
from bench.harness.report import fmt
from bench.workloads import replay
from logclust.cluster.labeler import Labeler
from logclust.text.mask_cache import MaskCache

SETTINGS: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("16/32/64/128, 128 a call", (16, 32, 64, 128), 128),
    ("steps of 8, 128 a call", tuple(range(8, 129, 8)), 128),
    ("steps of 8, 256 a call", tuple(range(8, 129, 8)), 256),
    ("steps of 16, 128 a call", tuple(range(16, 129, 16)), 128),
)


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__, "label_costs")
    p.add_argument("--rows", type=int, default=1_000_000, help="replay rows")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variant", default=None)
    args = p.parse_args(argv)
    cli.smoke(args, rows=500, rounds=1)
    lab = Labeler.load(None, variant=args.variant)
    lines = pa.array(replay(args.rows, seed=0, smoke=args.smoke), pa.string())
    with cli.output(args, "label_costs") as out:
        t0 = time.perf_counter()
        enc = pc.dictionary_encode(lab.masker.mask(lines))
        by_row = time.perf_counter() - t0
        cache = MaskCache(lab.masker)
        t0 = time.perf_counter()
        distinct, rows_of = cache.mask_distinct(lines)
        by_shape = time.perf_counter() - t0
        same = distinct.equals(enc.dictionary) and np.array_equal(rows_of, enc.indices.to_numpy())
        out.line(
            f"masking {len(lines):,} lines: row by row {by_row:.2f} s, through the shape cache "
            f"{by_shape:.2f} s ({cache.misses:,} shapes, {cache.direct_rows} rows one by one), "
            f"same output: {same}"
        )
        texts = distinct.to_pylist()
        rows = lab.tokenizer.encode(texts, lab.bundle.max_len)
        lengths = np.array([min(len(r), lab.bundle.max_len) for r in rows])
        out.line(
            f"{len(rows)} distinct masked texts, tokens mean {lengths.mean():.1f}, "
            f"p10/p50/p90 {np.percentile(lengths, [10, 50, 90]).tolist()}"
        )
        rates, diffs = encode_rounds(lab, rows, args.rounds)
        table = out.table(["buckets, tokens a call", "lines/s by round", "best", "max abs diff"])
        for name, _, _ in SETTINGS:
            r = rates[name]
            table.add(
                name,
                " / ".join(f"{x:.0f}" for x in r),
                fmt(max(r), ".0f"),
                fmt(diffs[name], ".1e"),
            )
        out.show(table)


def encode_rounds(
    lab: Labeler, rows: list[list[int]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Lines/s of every setting per round (interleaved), and the largest difference of
    its embeddings from the first setting's."""
    enc = lab.encoder
    rates: dict[str, list[float]] = {name: [] for name, _, _ in SETTINGS}
    diffs: dict[str, float] = {}
    first: np.ndarray | None = None
    saved = (encoder_module.BUCKETS, enc.max_tokens)
    try:
        for _ in range(rounds):
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
    return rates, diffs


if __name__ == "__main__":
    main()
