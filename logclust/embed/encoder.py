"""Runs the TFLite encoder with LiteRT (no TensorFlow): batched, bucketed by length.

Rows are sorted by token length and run in batches padded only to the bucket's width (a
multiple of 8 tokens), instead of padding everything to the longest row. Buckets of 8
rather than powers of two (16, 32, 64, 128): each call is small (see below), so the
extra shapes cost less than the padding did (loghub's distinct masked texts, one thread:
`python -m bench.label_costs`, which times each bucket set and cap;
docs/benchmark-history.md).

A call holds at most `max_tokens` tokens (rows x width): LiteRT sizes its arena for the
largest input it has run and keeps it, and the attention scores grow with rows x
width**2. So the process grows with its largest call (arena and XNNPACK's packed
weights), and fewer rows a call at a given width take less memory at no cost in speed.
The cap of 128 tokens a call keeps the arena of a process that ran every width smaller
than wider caps at no cost in speed (the narrower blocks stay in cache). The caps are
timed by `python -m bench.label_costs`; docs/benchmark-history.md has the runs that
chose this one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from logclust.text.tokenizer import PAD_ID

logger = logging.getLogger(__name__)

BUCKETS: tuple[int, ...] = tuple(range(8, 129, 8))
_MADV_DONTNEED = 4
# Tokens (rows x width) in one interpreter call (see the module docstring).
MAX_TOKENS = 128


class Encoder:
    """One LiteRT interpreter over an encoder `.tflite` file.

    Args:
        path: the `.tflite` file.
        num_threads: LiteRT threads (1 keeps a sidecar on one core).
        batch_size: rows per interpreter call at most.
        max_tokens: rows x width per call at most (at least one row a call).
    """

    def __init__(
        self,
        path: str | Path,
        num_threads: int = 1,
        batch_size: int = 64,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        if batch_size < 1 or max_tokens < 1:
            raise ValueError(
                "batch_size and max_tokens must be positive. "
                f"Received: batch_size={batch_size}, max_tokens={max_tokens}"
            )
        self.path = Path(path)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._interp = Interpreter(model_path=str(self.path), num_threads=num_threads)
        sig = self._interp.get_signature_list()
        if "encode" not in sig:
            raise ValueError(f"{self.path} has no 'encode' signature. Received: {list(sig)}")
        self._runner = self._interp.get_signature_runner("encode")
        out = self._runner.get_output_details()
        self._out_name = next(iter(out))
        self.dim = int(out[self._out_name]["shape"][-1])
        self._pages_released = False

    def run(self, ids: np.ndarray) -> np.ndarray:
        """Embeddings `(B, dim)` of one padded id matrix `(B, T)`."""
        res = self._runner(ids=np.ascontiguousarray(ids, np.int32))
        emb = np.asarray(res[self._out_name], np.float32)
        if not self._pages_released:
            self._pages_released = True
            release_file_pages(self.path)
        return emb

    def encode(self, rows: Sequence[Sequence[int]], max_len: int) -> np.ndarray:
        """Embeddings of id rows (each cut to `max_len`), in input order."""
        n = len(rows)
        out = np.zeros((n, self.dim), np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((min(len(r), max_len) for r in rows), np.int64, count=n)
        order = np.argsort(lengths, kind="stable")
        buckets = [b for b in BUCKETS if b < max_len] + [max_len]
        start = 0
        while start < n:
            width = next(b for b in buckets if b >= lengths[order[start]])
            rows_max = min(self.batch_size, max(1, self.max_tokens // width))
            stop = start
            while stop < n and stop - start < rows_max and lengths[order[stop]] <= width:
                stop += 1
            idx = order[start:stop]
            block = np.full((len(idx), width), PAD_ID, np.int32)
            for j, i in enumerate(idx):
                r = rows[i][:width]
                block[j, : len(r)] = r
            out[idx] = self.run(block)
            start = stop
        return out


def release_file_pages(path: Path) -> int:
    """Drops this process's resident pages of the read-only mappings of `path`.

    LiteRT maps the model file and XNNPACK packs the weights into buffers of its own on
    the first run, after which most pages of the mapping are not read again but stay
    resident (most of the file). The mapping is read-only
    and file-backed: a page read later comes back from the page cache, so this only
    frees memory. Linux with glibc only; elsewhere nothing happens.

    Returns:
        The number of mappings released.
    """
    name = ctypes.util.find_library("c")
    madvise = getattr(ctypes.CDLL(name), "madvise", None) if name else None
    if madvise is None:
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    target = str(path.resolve())
    released = 0
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5] != target or "w" in fields[1]:
            continue
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        released += madvise(lo, hi - lo, _MADV_DONTNEED) == 0
    if released:
        logger.debug("released the resident pages of %s (%d mappings)", target, released)
    return released
