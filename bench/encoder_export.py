"""Encoder export against encoder export: lines/s of two bundles' encoders, same shapes.

Times a baseline bundle's `encoder_{f32,int8}.tflite` against a candidate's through the
same `ai_edge_litert` interpreter, one thread, the same id matrices (batch 32 at 16 and
40 tokens, batch 8 at 128), interleaved (baseline, candidate, baseline, ...) and best of
`--rounds`, so that a load change on a shared machine hits both alike. Also reports
LiteRT's own float32 GEMM ceiling (`bench.encoder.runtime_gemm_peak`), each encoder's
FLOP rate as a share of it, and each graph's op count.

The baseline is a bundle folder (default `models/default`) or, with `--baseline-rev`,
`models/default`'s encoders at a git commit; the candidate is a bundle folder, e.g. a lean
re-export (`training/export_lean.py`) of the baseline:

    python -m training.export_lean --bundle models/default --out /tmp/lean
    python -m bench.encoder_export --candidate /tmp/lean [--quality]

Needs TensorFlow (`logclust[train]`) for the GEMM ceiling and the op counts.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from bench.encoder import encoder_flops, runtime_gemm_peak
from bench.harness import cli
from bench.harness.report import Output, fmt

SHAPES = ((32, 16), (32, 40), (8, 128))  # (batch, tokens)
ROOT = Path(__file__).resolve().parents[1]


def from_git(rev: str, dest: Path) -> Path:
    """`models/default`'s encoders at commit `rev`, written into `dest`."""
    for variant in ("f32", "int8"):
        blob = subprocess.run(
            ["git", "show", f"{rev}:models/default/encoder_{variant}.tflite"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        (dest / f"encoder_{variant}.tflite").write_bytes(blob)
    return dest


def op_counts(path: Path) -> collections.Counter[str]:
    """Ops of a `.tflite` graph by kind (from TensorFlow's analyzer)."""
    import tensorflow as tf

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
    return collections.Counter(re.findall(r"^\s*Op#\d+ (\w+)\(", buf.getvalue(), re.M))


class Runner:
    """One interpreter resized once per shape, timed on fixed ids."""

    def __init__(self, path: Path) -> None:
        self.interp = Interpreter(model_path=str(path), num_threads=1)
        self.runner = self.interp.get_signature_runner("encode")

    def best(self, ids: np.ndarray, seconds: float) -> float:
        """Lines/s of the fastest call within `seconds` (after one warm-up call)."""
        self.runner(ids=ids)
        best, end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            self.runner(ids=ids)
            best = min(best, time.perf_counter() - t)
        return ids.shape[0] / best


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


QUALITY_SYSTEMS = ("Android", "BGL", "HDFS", "Hadoop", "Linux", "Spark")


def parity_and_quality(
    out: Output, baseline: Path, candidate: Path, systems: list[str], n_lines: int = 2000
) -> None:
    """Min cosine of the candidate's encoders against the baseline's float32 on `n_lines`
    distinct masked loghub lines (all systems, Android first), and the ARI of KMeans with
    k given (mean over 5 seeds) on Android and on the other `systems` (train systems)."""
    from logclust.cluster.labeler import Labeler
    from logclust.cluster.quality import ari
    from logclust.embed.bundle import Bundle
    from logclust.embed.encoder import Encoder
    from training.data import default_data_dir, load_loghub
    from training.evaluate.baselines import kmeans_ids

    bundle = Bundle.load(candidate, verify=False)
    lab = Labeler(bundle, "f32")
    sets = load_loghub(default_data_dir())
    order = ["Android", *sorted(n for n in sets if n != "Android")]
    masked = {n: lab.masker.mask_texts(sets[n].content) for n in order}
    distinct = list(dict.fromkeys(t for n in order for t in masked[n]))[:n_lines]
    encs = {
        f"{who} {v}": Encoder(d / f"encoder_{v}.tflite")
        for who, d in (("baseline", baseline), ("candidate", candidate))
        for v in ("f32", "int8")
    }

    def embed(name: str, texts: list[str]) -> np.ndarray:
        return _unit(encs[name].encode(lab.tokenizer.encode(texts, bundle.max_len), bundle.max_len))

    ref = {name: embed(name, distinct) for name in ("baseline f32", "candidate f32")}
    out.line(f"\nparity on {len(distinct):,} distinct masked lines (min / mean cosine):")
    for name, against in (
        ("candidate f32", "baseline f32"),
        ("candidate int8", "candidate f32"),
        ("baseline int8", "baseline f32"),
    ):
        cos = (ref.get(name, embed(name, distinct)) * ref[against]).sum(1)
        out.line(f"- {name} vs {against}: {cos.min():.6f} / {cos.mean():.6f}")
    out.line(f"\nKMeans, k given, 5 seeds; train systems: {', '.join(systems[1:])}\n")
    table = out.table(["encoder", "Android ARI", "train systems mean ARI"], live=True)
    for name in encs:
        scores = {}
        for n in systems:
            truth = sets[n].templates
            assert truth is not None
            k = min(len(set(truth)), len(set(masked[n])))
            x = embed(name, masked[n])
            scores[n] = float(np.mean([ari(truth, list(kmeans_ids(x, k, s))) for s in range(5)]))
        train = float(np.mean([v for n, v in scores.items() if n != "Android"]))
        table.add(name, fmt(scores["Android"], ".4f"), fmt(train, ".4f"))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__, "encoder_export")
    p.add_argument("--baseline", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--baseline-rev", default=None, help="models/default at this git commit")
    p.add_argument("--candidate", type=Path, default=None, help="bundle folder (required)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per shape")
    p.add_argument("--seconds", type=float, default=0.4, help="per encoder per round")
    p.add_argument("--quality", action="store_true", help="parity and ARI instead of speed")
    p.add_argument("--systems", nargs="+", default=list(QUALITY_SYSTEMS), help="Android first")
    args = p.parse_args(argv)
    args.shapes = SHAPES
    # The baseline against itself, one small shape, once.
    cli.smoke(
        args, candidate=args.candidate or args.baseline, rounds=1, seconds=0.02, shapes=((8, 16),)
    )
    if args.candidate is None:
        p.error("--candidate is required (a bundle folder). Received: none")
    if args.smoke and args.quality:
        p.error("--quality needs loghub and minutes; it has no --smoke mode")
    return args


def has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    # Without TensorFlow a smoke run skips the op counts and the GEMM ceiling.
    with_tf = has_tensorflow() or not args.smoke
    cfg = json.loads((args.candidate / "manifest.json").read_text())["model_config"]
    with tempfile.TemporaryDirectory() as tmp, cli.output(args, "encoder_export") as out:
        rev = args.baseline_rev
        base_dir = from_git(rev, Path(tmp)) if rev else args.baseline
        base_name = f"models/default at git {rev}" if rev else str(args.baseline)
        out.line(
            f"{os.cpu_count()} cores, one thread; OPENBLAS_CORETYPE="
            f"{os.environ.get('OPENBLAS_CORETYPE', '-')}; baseline: {base_name}; "
            f"candidate: {args.candidate}"
        )
        paths = {
            (who, v): d / f"encoder_{v}.tflite"
            for who, d in (("baseline", base_dir), ("candidate", args.candidate))
            for v in ("f32", "int8")
        }
        for (who, v), path in paths.items() if with_tf else ():
            ops = op_counts(path)
            shape_ops = sum(
                ops[k] for k in ("SHAPE", "GATHER", "REDUCE_PROD", "STRIDED_SLICE", "PACK")
            )
            out.line(f"{who} {v}: {sum(ops.values())} ops ({shape_ops} shape/gather/slice/pack)")
        if args.quality:  # timing apart: the machine's load differs between the two
            parity_and_quality(out, base_dir, args.candidate, args.systems)
            return
        runners = {k: Runner(path) for k, path in paths.items()}
        rng = np.random.default_rng(0)
        rates: dict[tuple[str, str, int], float] = {}
        ceiling = 0.0 if with_tf else float("nan")
        for batch, tokens in args.shapes:
            ids = rng.integers(4, cfg["vocab_size"], (batch, tokens), dtype=np.int32)
            ids[:, 0] = 2
            for _ in range(args.rounds):
                # The ceiling is timed inside every round too: the load moves on a shared box.
                if with_tf:
                    ceiling = max(ceiling, runtime_gemm_peak(args.seconds) or float("nan"))
                for (who, v), r in runners.items():
                    key = (who, v, tokens)
                    rates[key] = max(rates.get(key, 0.0), r.best(ids, args.seconds))
        report(out, args, cfg, rates, ceiling)


def report(
    out: Output,
    args: argparse.Namespace,
    cfg: dict[str, int],
    rates: dict[tuple[str, str, int], float],
    ceiling: float,
) -> None:
    out.line(f"\nLiteRT float32 GEMM ceiling (1024^3 products, best): {ceiling:.1f} GFLOP/s")
    table = out.table(
        [
            "tokens",
            "batch",
            "f32 baseline",
            "f32 candidate",
            "f32 x",
            "f32 candidate share of ceiling",
            "int8 baseline",
            "int8 candidate",
            "int8 x",
            "int8 candidate / f32 baseline",
        ]
    )
    for batch, tokens in args.shapes:
        fb, fc = rates[("baseline", "f32", tokens)], rates[("candidate", "f32", tokens)]
        ib, ic = rates[("baseline", "int8", tokens)], rates[("candidate", "int8", tokens)]
        share = fc * encoder_flops(cfg, tokens) / 1e9 / ceiling
        table.add(
            tokens,
            batch,
            fmt(fb, ",.0f"),
            fmt(fc, ",.0f"),
            fmt(fc / fb, ".2f", "x"),
            fmt(share, ".0%"),
            fmt(ib, ",.0f"),
            fmt(ic, ",.0f"),
            fmt(ic / ib, ".2f", "x"),
            fmt(ic / fb, ".2f", "x"),
        )
    out.line()
    out.show(table)


if __name__ == "__main__":
    main()
