"""Labelling with one BLAS thread against numpy's default (`logclust/cli/_threads.py`).

A loghub replay (`--rows` lines, fields re-drawn each pass) labelled in process by a
`StreamLabeler` in 1,000-row batches, in a child process per run so that each starts
its BLAS afresh: `OPENBLAS_NUM_THREADS=1` (what the `logclust` command sets) and unset
(OpenBLAS's default: a thread a core), alternating `--rounds` times. Rows per second of
the clock and per second of the process's CPU; medians per setting.

    python -m bench.blas_threads [--rows 60000] [--rounds 3]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from bench.harness import cli
from bench.harness.report import fmt

_CHILD = """
import json, sys, time
from bench.workloads import replay
from logclust.sidecar.stream_labeler import StreamLabeler
rows, smoke = int(sys.argv[1]), sys.argv[2] == "1"
lines = replay(rows, seed=0, smoke=smoke)
lab = StreamLabeler.load(None)
lab.label(lines[:1000], source="warm")
t0, c0 = time.perf_counter(), time.process_time()
for i in range(0, len(lines), 1000):
    lab.label(lines[i : i + 1000], source="a")
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps([len(lines) / wall, len(lines) / cpu]))
"""
SETTINGS = (("one BLAS thread", "1"), ("numpy's default", None))


def run(rows: int, threads: str | None, smoke: bool) -> tuple[float, float]:
    """`(rows/s, rows per CPU second)` of one child process."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(rows), "1" if smoke else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return float(wall), float(cpu)


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__, "blas_threads")
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    cli.smoke(args, rows=2000, rounds=1)
    with cli.output(args, "blas_threads") as out:
        out.header(
            cores=str(os.cpu_count()), load_average=" ".join(f"{x:.2f}" for x in os.getloadavg())
        )
        got: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in SETTINGS}
        for _ in range(args.rounds):
            for name, threads in SETTINGS:
                got[name].append(run(args.rows, threads, args.smoke))
        t = out.table(
            [
                "BLAS threads",
                "rows/s (median)",
                "rows per CPU s (median)",
                "each run: rows/s, rows per CPU s",
            ]
        )
        for name, runs in got.items():
            t.add(
                name,
                fmt(statistics.median(r[0] for r in runs), ",.0f"),
                fmt(statistics.median(r[1] for r in runs), ",.0f"),
                "; ".join(f"{w:,.0f}, {c:,.0f}" for w, c in runs),
            )
        out.show(t)


if __name__ == "__main__":
    main()
