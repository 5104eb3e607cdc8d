"""Resident bytes per item of what grows with use: the costs `logclust.server.memory` sizes with.

Each structure is filled with many items in a fresh process (glibc and Arrow set up as
`logclust serve` sets them, `lean_process_memory`), and the growth of VmRSS is divided by
the items: a cache entry (embedding cache and mask cache of one distinct text), a mask
cache entry alone (the mask cache holds more texts than the embedding cache), a reservoir
row, a placement-memo entry, a cluster holding `template_members` members, and a
latency sketch. Texts are random words of a given mean length; the embedder returns random
unit vectors of the shipped model's width (the model is not needed: only sizes count).
Strings are held by the measured structure alone (the worst case: in the server the caches
share them while both hold a text). Prints one markdown row per item and text length.

    python -m bench.memory_costs --chars 24 160
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import zlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.report import fmt
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.reservoir import Reservoir
from logclust.cluster.router import StreamClusters
from logclust.cluster.runner import ConsolidationRunner
from logclust.cluster.source import SourceClusterer
from logclust.latency.book import LatencyBook
from logclust.server.memory import lean_process_memory
from logclust.text.mask_cache import MaskCache
from logclust.text.masking import Masker

_CHILD = "bench.memory_costs"


def rss_bytes() -> int:
    """VmRSS of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS in /proc/self/status")


class RandomEmbedder:
    """`Embedder` of random unit vectors; texts starting `c<name> ` lie near a vector drawn
    from the name (well inside the threshold), so clusters get many distinct members.
    Nothing is kept between calls (the measurement counts the clusterer alone)."""

    def __init__(self, dim: int) -> None:
        self.masker = Masker()
        self.dim = dim
        self.threshold: float | None = 0.4
        self._rng = np.random.default_rng(0)

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        texts = masked.to_pylist()
        out = self._rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        for i, text in enumerate(texts):
            head = text.split(" ", 1)[0]
            if head.startswith("c"):
                seed = zlib.crc32(head.encode())
                base = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
                out[i] = base + 0.005 * out[i]
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def texts(n: int, chars: int, seed: int, prefix: str = "") -> list[str]:
    """`n` distinct texts of random lowercase words, `chars` characters on average (no
    digits: masking keeps them as they are)."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
    out = []
    for i in range(n):
        raw = letters[rng.integers(0, 26, max(chars, 8))].tobytes().decode()
        cut = sorted(rng.integers(1, len(raw), max(chars // 7, 1)).tolist())
        words = [raw[a:b] for a, b in zip([0, *cut], [*cut, len(raw)], strict=True) if b > a]
        out.append(prefix + " ".join(words) + f" {_alpha(i)}")
    return out


def _alpha(i: int) -> str:
    """`i` written in letters (a distinct word per text, no digits)."""
    s = ""
    while True:
        s += chr(97 + i % 26)
        i //= 26
        if not i:
            return s


def rows_of(vecs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The embedder callback of `Reservoir.offer` and `SourceClusterer.assign`."""
    return lambda idx: vecs[idx]


def fill(item: str, n: int, data: list[str], dim: int) -> object:
    """The structure of `item` holding `n` items made of `data`."""
    emb = RandomEmbedder(dim)
    if item == "cache_entry":
        stream = StreamClusters(emb, StreamClusterConfig(cache_size=n))
        for lo in range(0, len(data), 1000):
            keys, _ = stream.masks.distinct_keys(pa.array(data[lo : lo + 1000]))
            stream.cache.embed(keys)
        return stream
    if item == "mask_entry":
        masks = MaskCache(emb.masker, n)
        for lo in range(0, len(data), 1000):
            masks.distinct_keys(pa.array(data[lo : lo + 1000]))
        return masks
    if item == "reservoir_row":
        res = Reservoir(n, dim)
        for lo in range(0, len(data), 1000):
            chunk = data[lo : lo + 1000]
            vecs = emb.embed_masked(pa.array(chunk))
            res.offer(lo, chunk, rows_of(vecs), np.arange(len(chunk)))
        return res
    if item in ("memo_entry", "cluster"):
        config = StreamClusterConfig(
            max_clusters=n if item == "cluster" else 1,
            memo_size=n if item == "memo_entry" else 1,
            cache_size=n,
            reservoir_size=1,
            background_consolidation=False,
            consolidate_new_clusters=0,
        )
        clus = ConsolidationRunner(SourceClusterer("s", config, dim, 0.4))
        for lo in range(0, len(data), 1000):
            chunk = data[lo : lo + 1000]
            vecs = emb.embed_masked(pa.array(chunk))
            inv = np.arange(len(chunk))
            ids, _, uid = clus.place(chunk, rows_of(vecs), inv)
            clus.count(chunk, uid, ids, np.zeros(len(chunk), np.int64))
        assert item != "cluster" or clus.clusterer.k == n, clus.clusterer.k
        return clus
    book = LatencyBook(window_ms=10_000, retention_ms=10**12)
    rows = 64 * n
    cluster = np.arange(rows) % n
    # Typical request latencies: log-normal around 20 ms (about 200 buckets at 1%).
    lat = np.random.default_rng(2).lognormal(np.log(20.0), 1.0, rows)
    book.record(["s"], np.zeros(rows, np.int64), cluster, np.zeros(rows, np.int64), lat, 0)
    return book


def measure(item: str, n: int, chars: int, dim: int) -> float:
    """Resident bytes per item after filling `n` items (run in a fresh process, after a
    small fill that imports and warms up everything on the path)."""
    lean_process_memory()

    def data_of(count: int, seed: int) -> list[str]:
        if item == "sketch":
            return []
        if item == "cluster":
            members = StreamClusterConfig().template_members
            return [
                t
                for c in range(seed, seed + count)
                for t in texts(members, chars, c, prefix=f"c{_alpha(c)} ")
            ]
        return texts(count, chars, seed)

    warm = max(n // 16, 64)
    fill(item, warm, data_of(warm, 10**6), dim)
    gc.collect()
    before = rss_bytes()
    # The texts are made inside the measurement: what the structure keeps of them counts.
    data = data_of(n, 0)
    kept = fill(item, n, data, dim)
    del data
    gc.collect()
    grown = rss_bytes() - before
    assert kept is not None
    return grown / n


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.splitlines()[0], "memory_costs")
    p.add_argument("--chars", type=int, nargs="+", default=[24, 160])
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--n", type=int, default=16_384)
    p.add_argument("--child", nargs=3, metavar=("ITEM", "N", "CHARS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cli.smoke(args, chars=[24], n=512)
    if args.child:
        item, n, chars = args.child[0], int(args.child[1]), int(args.child[2])
        print(json.dumps(measure(item, n, chars, args.dim)))
        return 0
    plan = [("sketch", 0)] + [
        (item, c)
        for c in args.chars
        for item in ("cache_entry", "mask_entry", "reservoir_row", "memo_entry", "cluster")
    ]
    with cli.output(args, "memory_costs") as out:
        table = out.table(["item", "text chars", "bytes per item"], live=True)
        for item, chars in plan:
            n = args.n // 8 if item == "cluster" else args.n
            cmd = [sys.executable, "-m", _CHILD, "--dim", str(args.dim), "--child", item, str(n)]
            res = subprocess.run([*cmd, str(chars)], check=True, capture_output=True, text=True)
            table.add(item, chars or "-", fmt(json.loads(res.stdout), ",.0f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
