"""Archive labelling on Spark next to the single-process `logclust label`, and training
steps/s with one and two workers.

    python -m bench.spark_label [--rows 1000000] [--skip-training] [--steps]

Labelling: a Parquet file of loghub replay lines (fields re-drawn, `bench.workloads`) with
a row number `n`, labelled end to end by `logclust label` (one process) and by
`logclust label --engine spark --master local[2]` (JVM start, Parquet read and write
included in both), the shipped bundle's centroids; the ids must be identical.
`--steps` also times the Spark job cut short after each of its steps, each in a fresh
process (JVM start included), with the CPU the whole machine spent meanwhile (from
/proc/stat; run it on an otherwise idle machine): Parquet copied as it is, plus a
`mapInArrow` that passes batches through, plus masking, plus the shuffle by masked text,
and the whole labelling.
Training: one epoch of a tiny model (d_model 64, 2 blocks) on loghub-2k, `python -m
training --steps train`, with one worker and with two local workers (127.0.0.1).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.harness import cli
from bench.harness.ports import free_ports
from bench.harness.report import Output, fmt
from bench.workloads import replay

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONF = """
[model]
d_model = 64
n_heads = 2
n_blocks = 2
d_ff = 64
max_len = 64
[train]
epochs = 1
batch_size = 32
distill_weight = 0.0
corpus_lines = 0
train_max_len = 48
[tokenizer]
vocab_size = 400
"""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def has_spark() -> bool:
    """pyspark installed and a Java runtime on the PATH."""
    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


def bench_label(out: Output, rows: int, tmp: Path, smoke: bool, spark: bool) -> dict[str, float]:
    """`logclust label` in one process and, when `spark`, on Spark; the ids compared."""
    src = tmp / "archive.parquet"
    lines = replay(rows, seed=0, smoke=smoke)
    pq.write_table(pa.table({"n": np.arange(rows), "body": lines}), src, row_group_size=100_000)
    logclust = str(Path(sys.executable).parent / "logclust")
    single = _run([logclust, "label", "--input", str(src), "--output", str(tmp / "one.parquet")])
    out.line(f"single process: {rows / single:,.0f} rows/s ({single:.1f} s)")
    if not spark:
        out.line("spark local[2]: skipped (--smoke: a JVM start alone takes seconds)")
        return {"rows": rows, "single_s": single}
    on_spark = _run(
        [logclust, "label", "--engine", "spark", "--master", "local[2]"]
        + ["--input", str(src), "--output", str(tmp / "spark")]
    )
    a = pq.read_table(tmp / "one.parquet").column("cluster_id").to_numpy()
    b = pq.read_table(tmp / "spark").sort_by("n").column("cluster_id").to_numpy()
    same = bool(np.array_equal(a, b))
    out.line(
        f"spark local[2]: {rows / on_spark:,.0f} rows/s ({on_spark:.1f} s), ids identical: {same}"
    )
    return {"rows": rows, "single_s": single, "spark_s": on_spark, "identical": same}


STEPS = ("copy", "pass", "mask", "shuffle", "label")


def _busy_jiffies() -> int:
    """Busy time of all CPUs since boot, in clock ticks (user, nice, system, irq, softirq,
    steal)."""
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return sum(cpu[:3]) + sum(cpu[5:8])


def run_step(step: str, src: str, out: str) -> None:
    """One Spark job, cut short after `step` (of `STEPS`), written to `out` (Parquet)."""
    from logclust.archive import spark as S
    from logclust.archive.tasks import MASKED, TaskSpec, mask_batches

    session = S.session("local[2]")
    df = session.read.parquet(src)
    spec = TaskSpec(None, None, "body")
    res = df
    if step == "pass":
        res = df.mapInArrow(lambda it: it, df.schema)
    elif step in ("mask", "shuffle"):
        res = df.mapInArrow(lambda it: mask_batches(it, spec), S.masked_struct(df))
        if step == "shuffle":
            res = res.repartition(S.shuffle_partitions(df), MASKED)
    elif step == "label":
        res = S.label_dataframe(df)
    res.write.parquet(out)
    session.stop()


def bench_steps(out: Output, tmp: Path) -> dict[str, float]:
    src = tmp / "archive.parquet"
    ticks = os.sysconf("SC_CLK_TCK")
    res: dict[str, float] = {}
    table = out.table(["Spark job up to", "wall s", "machine CPU s"])
    for step in STEPS:
        cmd = [sys.executable, "-m", "bench.spark_label", "--run-step", step, "--input", str(src)]
        busy = _busy_jiffies()
        wall = _run([*cmd, "--output", str(tmp / f"step-{step}")])
        cpu = (_busy_jiffies() - busy) / ticks
        res[f"step_{step}_s"], res[f"step_{step}_cpu_s"] = wall, cpu
        table.add(step, fmt(wall, ".1f"), fmt(cpu, ".1f"))
    # After the jobs: Spark's progress bars share the terminal while they run.
    out.show(table)
    return res


def bench_train(out: Output, tmp: Path) -> dict[str, float]:
    # Imported here: the training pipeline loads TensorFlow (2 s), which the labelling
    # steps, each timed in a fresh process, must not pay.
    from training.config import TrainConfig
    from training.data import default_data_dir
    from training.pipeline import PipelineConfig, prepare

    data = default_data_dir()
    conf = tmp / "tiny.toml"
    conf.write_text(TRAIN_CONF)
    bundle = tmp / "bundle"
    base = [sys.executable, "-m", "training", "--data", str(data), "--out", str(bundle)]
    base += ["--config", str(conf)]
    _run([*base, "--work", str(tmp / "w0"), "--steps", "tokenizer"])
    n_train = len(
        prepare(PipelineConfig(data, bundle, tmp / "w0", train=TrainConfig(corpus_lines=0))).train
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    res: dict[str, float] = {}
    for n in (1, 2):
        work = tmp / f"w{n}"
        cmd = [*base, "--work", str(work), "--steps", "train"]
        if n == 1:
            _run(cmd, env)
        else:
            workers = ",".join(f"127.0.0.1:{p}" for p in free_ports(n))
            procs = [
                subprocess.Popen(
                    [*cmd, "--workers", workers, "--worker-index", str(i)],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                )
                for i in range(n)
            ]
            assert all(p.wait() == 0 for p in procs)
        epoch = json.loads((work / "history.json").read_text())["epochs"][0]
        # Steps per worker (training.train.shard), global batch n x 32; the epoch's
        # seconds include the validation pass, the same on one or two workers.
        steps = max(1, n_train // 32 // n)
        res[f"epoch_s_{n}"], res[f"steps_per_s_{n}"] = epoch["seconds"], steps / epoch["seconds"]
        out.line(
            f"{n} worker(s): {steps} steps of {n} x 32 lines in {epoch['seconds']:.1f} s "
            f"({steps / epoch['seconds']:.2f} steps/s, {steps * n * 32 / epoch['seconds']:.0f} "
            f"lines/s), val acc {epoch['val_acc']:.3f}"
        )
    return res


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__, "spark_label")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--skip-label", action="store_true")
    p.add_argument("--steps", action="store_true", help="also time the Spark job step by step")
    p.add_argument("--run-step", choices=STEPS, help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.spark = True
    # The single-process labelling of a few rows; the Spark job (a JVM start) and training
    # (TensorFlow, an epoch on two workers) are left to tests/archive and tests/training.
    cli.smoke(args, rows=400, skip_training=True, steps=False, spark=False)
    if args.steps and not has_spark():
        p.error("--steps needs pyspark and a Java runtime. Received: none found")
    if args.run_step:
        run_step(args.run_step, args.input, args.output)
        return
    with tempfile.TemporaryDirectory() as d, cli.output(args, "spark_label") as out:
        tmp = Path(d)
        res: dict[str, object] = {}
        if not args.skip_label:
            res.update(bench_label(out, args.rows, tmp, args.smoke, args.spark))
            if args.steps:
                res.update(bench_steps(out, tmp))
        if not args.skip_training:
            res.update(bench_train(out, tmp))
        table = out.table(["figure", "value"])
        for key, value in res.items():
            table.add(key, fmt(value, ".4g") if isinstance(value, float) else str(value))
        out.line()
        out.show(table)
        print(json.dumps(res))


if __name__ == "__main__":
    main()
