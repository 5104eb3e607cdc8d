"""What the benchmarks share: sidecar servers on free ports, process figures (CPU, RSS),
percentiles, the `--code DIR` A/B against another checkout, and tables written as
Markdown (stdout) and JSON (`--json PATH`).

One module per concern, imported by name (`from bench.harness.sidecar import Sidecar`):
`ports`, `stats` and `report` import nothing of `logclust`, so a script can switch to
another checkout's package (`code.use_code`) after importing them.
"""
