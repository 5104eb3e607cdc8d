"""Per-cluster latency quantiles: the DDSketch and the per-window book."""
