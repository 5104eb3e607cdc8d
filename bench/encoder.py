"""Encoder alone: lines/s by token length, batch and threads, float32 vs int8.

Also measures this machine's single-core float32 matrix-multiply peak with numpy, and
reports the encoder's achieved FLOP rate as a share of it.

    python -m bench.encoder [--bundle DIR] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

LENGTHS = (16, 32, 64, 128)
BATCHES = (1, 8, 32, 64, 128)


def matmul_peak(seconds: float = 1.0, n: int = 1024) -> float:
    """Best float32 GFLOP/s of numpy's matmul on one thread (threadpoolctl-free:
    the caller sets OPENBLAS/OMP thread variables before numpy starts)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def encoder_flops(cfg: dict[str, int], length: int) -> float:
    """Multiply-adds x2 of one line of `length` tokens through every block."""
    d, ff, t = cfg["d_model"], cfg["d_ff"], length
    per_block = 2 * t * (3 * d * d + d * d + 2 * d * ff) + 4 * t * t * d
    return float(cfg["n_blocks"] * per_block)


def lines_per_s(enc: object, batch: int, length: int, vocab: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    ids = rng.integers(4, vocab, (batch, length), dtype=np.int32)
    ids[:, 0] = 2
    run = enc.run  # type: ignore[attr-defined]
    run(ids)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run(ids)
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--threads", type=int, nargs="*", default=[1, os.cpu_count() or 1])
    args = p.parse_args()

    from logclust.bundle import Bundle
    from logclust.embedder import Encoder

    bundle = Bundle.load(args.bundle)
    cfg = bundle.manifest["model_config"]
    peak = matmul_peak(args.seconds)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}"
    )
    print(f"numpy float32 matmul peak, one thread: {peak:.1f} GFLOP/s\n")
    print("| variant | threads | length | best batch | lines/s | GFLOP/s | share of peak |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    best: dict[tuple[str, int], float] = {}
    for variant in ("f32", "int8"):
        for threads in args.threads:
            enc = Encoder(bundle.encoder_path(variant), num_threads=threads)
            for length in LENGTHS:
                rates = {
                    b: lines_per_s(enc, b, length, cfg["vocab_size"], args.seconds) for b in BATCHES
                }
                b = max(rates, key=rates.__getitem__)
                gflops = rates[b] * encoder_flops(cfg, length) / 1e9
                best[(variant, threads, length)] = rates[b]  # type: ignore[index]
                print(
                    f"| {variant} | {threads} | {length} | {b} | {rates[b]:,.0f} | "
                    f"{gflops:.1f} | {gflops / peak:.0%} |",
                    flush=True,
                )
    print()
    for length in LENGTHS:
        f, i = best[("f32", 1, length)], best[("int8", 1, length)]  # type: ignore[index]
        print(f"int8 / float32 at {length} tokens, one thread: {i / f:.2f}x")


if __name__ == "__main__":
    main()
