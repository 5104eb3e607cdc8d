"""A real `logclust serve` with the default memory budget stays under it with 64 sources
whose caches, reservoirs, clusters and latency windows are all full (issue 11).

The server (subprocess, temporary store, free port) first labels a few long lines, so the
encoder has run at every token width (its largest arenas are part of the base), then
receives from 8 client threads 64 sources at once. What fills what, with the sizes the
default budget derives (`sizes_for_budget`):

- the shared embedding cache: a pool of `cache_size` distinct texts, from which every
  source draws its texts (the model embeds each once; every source places, samples and
  remembers them as its own);
- the shared mask cache: each row ends in a number of 1 to `widths` digits, so each text
  comes in several shapes that mask alike: more shapes than `mask_cache_size`;
- each source's placement memo: `memo_size` distinct texts a source, plus a few texts of
  its own that no other source sends;
- each reservoir: twice `reservoir_size` rows a source (repeats included);
- the clusters: texts are two random words, far apart for the model, so every new text
  opens a cluster until the shared bound `max_clusters_total` is reached;
- the latency book: every row has a latency and a time anywhere in the retention, so
  nearly every row opens a (source, cluster, window) sketch: far more than the bound.

Distinct texts per source are the memo's size, not more, and most come from the shared
pool: a text costs one embedding however many sources send it, so the run embeds about
6,000 texts (about a minute on the 2-core test machine) where 64 sources of their own
would need 27,000 (several minutes). Shared texts share their strings too, so memos and
members hold fewer bytes than the worst-case `ItemCost`s count; every other part is filled
as distinct texts would fill it.

Peak RSS over the server's whole life (`ru_maxrss` once it stopped: its last
consolidations and flush included) must stay under the budget. `python -m
tests.reliability.test_memory_budget PATH` runs the same traffic against the checkout at
PATH (its own server defaults; BENCHMARKS.md, "Memory budget").
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.client import Client
from logclust.embed.bundle import Bundle
from logclust.server.config import DEFAULT_MEMORY_BUDGET_MB
from logclust.server.memory import MemorySizes, sizes_for_budget

REPO = Path(__file__).resolve().parents[2]
SOURCES = 64
THREADS = 8
BATCH_ROWS = 256
# Texts of a source that no other source sends (so sources do not only share strings).
OWN_TEXTS = 16
RETENTION_MS = 6 * 3600_000
# A few minutes on a busy 2-core machine: more than pytest's default timeout.
TIMEOUT_S = 900


@dataclass
class Run:
    """What one run measured (MiB and seconds)."""

    warm_rss_mib: float  # after the long lines, before the sources
    peak_rss_mib: float  # ru_maxrss once stopped (its whole life)
    end_rss_mib: float  # after the traffic, before the stop
    seconds: float  # sending the sources' rows
    rows: int
    embedded_texts: int
    clusters: int
    sources: int
    evicted_sketches: float


def _status(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _words(rng: np.random.Generator, n: int, per_text: int) -> list[str]:
    """`n` distinct texts of `per_text` random lowercase words (no digits: masking keeps
    them as they are)."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    out: set[str] = set()
    while len(out) < n:
        lengths = rng.integers(4, 8, per_text)
        out.add(" ".join("".join(rng.choice(letters, k)) for k in lengths))
    return sorted(out)


def traffic(sizes: MemorySizes, seed: int = 0) -> tuple[list[pa.Table], list[pa.Table], int]:
    """`(long lines, batches, distinct texts)`: the batches are grouped per client thread
    (every `THREADS`-th batch goes to one thread), each mixing that thread's sources."""
    rng = np.random.default_rng(seed)
    pool = _words(rng, sizes.cache_size + OWN_TEXTS * SOURCES, 2)
    shared, own = pool[: sizes.cache_size], pool[sizes.cache_size :]
    per_source = max(sizes.memo_size, sizes.max_clusters_total // SOURCES + 1)
    # Shapes per text (numbers of other widths mask alike): the mask cache fills up.
    widths = -(-sizes.mask_cache_size // sizes.cache_size) + 1
    rows_per_source = max(2 * sizes.reservoir_size, per_source)
    now = int(time.time() * 1000)
    groups: list[list[pa.Table]] = [[] for _ in range(THREADS)]
    for t in range(THREADS):
        bodies, names = [], []
        for s in range(t, SOURCES, THREADS):
            texts = [shared[i] for i in rng.choice(len(shared), per_source - OWN_TEXTS, False)]
            texts += own[s * OWN_TEXTS : (s + 1) * OWN_TEXTS]
            rows = texts + [texts[i] for i in rng.integers(0, len(texts), rows_per_source)]
            digits = rng.integers(1, widths + 1, rows_per_source)
            bodies += [f"{r} {7 * 10 ** (d - 1)}" for r, d in zip(rows, digits, strict=False)]
            names += [f"service-{s:02d}"] * rows_per_source
        order = rng.permutation(len(bodies))
        n = len(order)
        table = pa.table(
            {
                "body": pa.array([bodies[i] for i in order], pa.string()),
                "source": pa.array([names[i] for i in order], pa.string()),
                "latency_ms": rng.lognormal(np.log(20.0), 1.0, n),
                "time": pa.array(
                    now - rng.integers(60_000, RETENTION_MS - 60_000, n),
                    pa.timestamp("ms", tz="UTC"),
                ),
            }
        )
        groups[t] = [table.slice(lo, BATCH_ROWS) for lo in range(0, n, BATCH_ROWS)]
    batches = [b for i in range(max(map(len, groups))) for g in groups for b in g[i : i + 1]]
    long_lines = [
        pa.table({"body": _words(rng, 8, words), "source": ["warm-up"] * 8})
        for words in (6, 16, 36, 80)
    ]
    return long_lines, batches, len(pool)


def fill_sources(repo: Path, serve_args: list[str], sizes: MemorySizes) -> Run:
    """Starts `logclust serve` from the checkout `repo`, sends the traffic, measures."""
    long_lines, batches, distinct = traffic(sizes)
    metrics_port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        cmd = [sys.executable, "-m", "logclust.cli.main", "serve", "--listen", "127.0.0.1:0"]
        cmd += ["--store", str(Path(tmp) / "store"), "--metrics-port", str(metrics_port)]
        with open(log, "wb") as f:
            env = {**os.environ, "PYTHONPATH": str(repo)}
            proc = subprocess.Popen(
                cmd + serve_args, cwd=repo, stdout=f, stderr=subprocess.STDOUT, env=env
            )
        try:
            port = _wait_listening(proc, log)
            addr = f"127.0.0.1:{port}"
            with Client(addr, timeout_s=120) as client:
                for table in long_lines:
                    client.label(table)
                client.forget("warm-up")  # its slot back: 64 sources follow
            warm = _status(proc.pid)["VmRSS"]
            start = time.monotonic()

            def send(thread: int) -> int:
                with Client(addr, timeout_s=300) as client:
                    mine = batches[thread::THREADS]
                    return sum(client.label(b).num_rows for b in mine)

            with ThreadPoolExecutor(THREADS) as pool:
                rows = sum(pool.map(send, range(THREADS)))
            seconds = time.monotonic() - start
            with Client(addr) as client:
                clusters = client.clusters()
            end = _status(proc.pid)
            scrape = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
            evicted = re.search(rb"^logclust_latency_sketches_evicted_total (\S+)$", scrape, re.M)
            return Run(
                warm_rss_mib=warm,
                peak_rss_mib=_stop_for_peak_rss(proc),
                end_rss_mib=end["VmRSS"],
                seconds=seconds,
                rows=rows,
                embedded_texts=distinct + sum(t.num_rows for t in long_lines),
                clusters=int(np.sum(clusters.column("active").to_numpy(zero_copy_only=False))),
                sources=len(set(clusters.column("source").to_pylist())),
                evicted_sketches=float(evicted.group(1)) if evicted else float("nan"),
            )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def _stop_for_peak_rss(proc: subprocess.Popen[bytes]) -> float:
    """Stops the server with SIGTERM and returns the peak RSS of its life (MiB): the
    process's own high-water mark (`VmHWM`), read until it exits.

    The server's shutdown waits for its consolidations and flushes a last time, so the
    peak counts them without a sleep guessing when they are over. Not `ru_maxrss` from
    `wait4`: Linux carries the parent's high-water mark at `exec` into it, so a child of a
    large test process would report the test process's size.
    """
    peak = _status(proc.pid)["VmHWM"]
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            peak = max(peak, _status(proc.pid).get("VmHWM", 0.0))
        except OSError:  # gone between two reads
            pass
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            assert proc.returncode == 0, f"the server exited with {proc.returncode}"
            return peak
        time.sleep(0.05)  # polls for the exit; the deadline only catches a hang
    raise AssertionError("the server did not stop within 300 s of SIGTERM")


def _wait_listening(proc: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"listening on [\d.]+:(\d+)", log.read_text())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"server did not start: {log.read_text()}")


def default_sizes() -> MemorySizes:
    return sizes_for_budget(DEFAULT_MEMORY_BUDGET_MB, SOURCES, Bundle.load(None).dim)


@pytest.mark.timeout(TIMEOUT_S)
def test_64_full_sources_stay_under_the_default_budget() -> None:
    sizes = default_sizes()
    run = fill_sources(REPO, [], sizes)
    print(json.dumps({"sizes": asdict(sizes), **asdict(run)}))
    assert run.sources == SOURCES
    # Every cluster the bound allows is held (the first sources borrow beyond their
    # reserve, the last fill theirs), and the latency book had to let windows go.
    assert sizes.max_clusters_total * 0.99 <= run.clusters <= sizes.max_clusters_total
    assert run.evicted_sketches > 0
    assert run.peak_rss_mib < DEFAULT_MEMORY_BUDGET_MB


if __name__ == "__main__":
    # python -m tests.reliability.test_memory_budget [CHECKOUT] [serve flags...]
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO
    result = fill_sources(where, sys.argv[2:], default_sizes())
    print(json.dumps(asdict(result), indent=1))
