"""Defaults the parser shows, in a module that imports nothing: the parser is built at
every start, also of the commands that never load a model."""

# Rows per encoder call in the sidecar. Misses arrive a few at a time, and on one core
# small batches were both faster and far lighter than 64 (BENCHMARKS.md: about 310 vs
# 250-270 lines/s, and 110 MB less peak RSS, on loghub and cold lines).
SERVE_ENCODER_BATCH = 8
