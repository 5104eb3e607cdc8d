"""Encoder alone: lines/s by token length, batch and threads, float32 vs int8.

Also measures this machine's single-core float32 matrix-multiply peak with numpy, and
reports the encoder's achieved FLOP rate as a share of it; and the most LiteRT's own
kernels reach on plain matrix products (a probe model of nothing else), the ceiling for
any encoder run through it.

    python -m bench.encoder [--bundle DIR] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import cli
from bench.harness.report import fmt

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


def runtime_gemm_peak(seconds: float = 1.0, n: int = 1024, depth: int = 8) -> float | None:
    """Best float32 GFLOP/s of LiteRT itself (XNNPACK, one thread) on a chain of `depth`
    n x n matrix products: the most the runtime's kernels give on this machine, whatever
    the model. Needs TensorFlow to write the probe model (`logclust[train]`); None without."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    import tempfile

    from ai_edge_litert.interpreter import Interpreter

    w = tf.constant(np.random.default_rng(2).standard_normal((n, n)).astype(np.float32) / n)

    def chain(x: tf.Tensor) -> tf.Tensor:
        for _ in range(depth):
            x = tf.matmul(x, w)
        return x

    fn = tf.function(chain, input_signature=[tf.TensorSpec([n, n], tf.float32)])
    flat = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()]).convert()
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(flat)
        f.flush()
        it = Interpreter(model_path=f.name, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ones((n, n), np.float32))
    it.invoke()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        it.invoke()
        best = max(best, depth * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def encoder_flops(cfg: dict[str, int], length: int) -> float:
    """Multiply-adds x2 of one line of `length` tokens through every block."""
    d, ff, t = cfg["d_model"], cfg["d_ff"], length
    per_block = 2 * t * (3 * d * d + d * d + 2 * d * ff) + 4 * t * t * d
    return float(cfg["n_blocks"] * per_block)


def lines_per_s(enc: Any, batch: int, length: int, vocab: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    ids = rng.integers(4, vocab, (batch, length), dtype=np.int32)
    ids[:, 0] = 2
    run = enc.run
    run(ids)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run(ids)
        n += batch
    return n / (time.perf_counter() - t0)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, "encoder")
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--threads", type=int, nargs="*", default=[1, os.cpu_count() or 1])
    args = p.parse_args(argv)
    args.lengths, args.batches, args.ceiling = LENGTHS, BATCHES, True
    # The LiteRT ceiling (TensorFlow's converter) is left to `bench.encoder_export --smoke`.
    cli.smoke(args, seconds=0.05, threads=[1], lengths=(16, 32), batches=(1, 8), ceiling=False)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from logclust.embed.bundle import Bundle
    from logclust.embed.encoder import Encoder

    bundle = Bundle.load(args.bundle)
    cfg = bundle.manifest["model_config"]
    with cli.output(args, "encoder") as out:
        peak = matmul_peak(args.seconds)
        out.fact(
            "machine",
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}",
        )
        out.fact("numpy float32 matmul peak, one thread", f"{peak:.1f} GFLOP/s")
        rt = runtime_gemm_peak(args.seconds) if args.ceiling else None
        if rt is None:
            why = "needs logclust[train]" if args.ceiling else "--smoke"
            out.fact("LiteRT float32 matmul ceiling", f"not measured ({why})")
        else:
            out.fact(
                "LiteRT float32 matmul ceiling, one thread (1024^3 products, nothing else)",
                f"{rt:.1f} GFLOP/s = {rt / peak:.0%} of numpy's",
            )
        table = out.table(
            [
                "variant",
                "threads",
                "length",
                "best batch",
                "lines/s",
                "GFLOP/s",
                "share of peak",
                "share of LiteRT ceiling x threads",
            ],
            live=True,
        )
        best: dict[tuple[str, int, int], float] = {}
        for variant in ("f32", "int8"):
            for threads in args.threads:
                enc = Encoder(bundle.encoder_path(variant), num_threads=threads)
                for length in args.lengths:
                    rates = {
                        b: lines_per_s(enc, b, length, cfg["vocab_size"], args.seconds)
                        for b in args.batches
                    }
                    b = max(rates, key=rates.__getitem__)
                    gflops = rates[b] * encoder_flops(cfg, length) / 1e9
                    best[(variant, threads, length)] = rates[b]
                    table.add(
                        variant,
                        threads,
                        length,
                        b,
                        fmt(rates[b], ",.0f"),
                        fmt(gflops, ".1f"),
                        fmt(gflops / peak, ".0%"),
                        "-" if rt is None else fmt(gflops / (rt * threads), ".0%"),
                    )
        out.line()
        for length in args.lengths:
            f, i = best[("f32", 1, length)], best[("int8", 1, length)]
            out.line(f"int8 / float32 at {length} tokens, one thread: {i / f:.2f}x")


if __name__ == "__main__":
    main()
