"""Defaults of the flags that set no config field, in a module that imports nothing: the
parser is built at every start, also of the commands that never load a model. A flag
that sets a field of a config dataclass takes the field's default instead
(`logclust.cli.settings`), from modules kept as light (`tests/test_imports.py`)."""

# Rows per encoder call in the sidecar. Misses arrive a few at a time, and on one core
# small batches are both faster and far lighter than 64: LiteRT keeps the arena of its
# largest input (`logclust.embed.encoder`; `python -m bench.novelty --encoder-batch N`).
SERVE_ENCODER_BATCH = 8

# Output formats of the query commands (`logclust clusters`, `logclust latency`). Here,
# not in `cli.io`: importing that loads pyarrow's Parquet and CSV modules, resident
# memory in a `serve` process that never reads a file.
FORMATS = ("table", "json", "csv")
