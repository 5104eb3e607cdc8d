"""Settings of per-source online clustering (`logclust.cluster.stream`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamClusterConfig:
    """Settings of per-source online clustering (see `logclust.cluster.stream`)."""

    # Rows per source before the first fit; earlier rows get id -1.
    warmup_rows: int = 256
    # Rows kept (uniform reservoir sample) for fits.
    reservoir_size: int = 4096
    # Rows between two scheduled refits.
    refit_every_rows: int = 50_000
    # Flagged (-1) rows that trigger an early refit; 0 disables.
    refit_outlier_rows: int = 500
    # Range searched for k.
    k_min: int = 2
    k_max: int = 16
    # Distinct texts used by the k search (bounds its cost).
    max_fit_points: int = 1000
    # A row beyond outlier_factor * max(radius, min_radius) gets -1.
    outlier_factor: float = 3.0
    min_radius: float = 0.1
    # Largest centroid move (Euclidean, unit-norm space) that keeps a cluster's id.
    match_distance: float = 0.5
    # Distinct masked members kept per cluster for its template; exemplars shown.
    template_members: int = 16
    max_exemplars: int = 3
    # Masked texts whose embeddings are cached across batches.
    cache_size: int = 65_536
    seed: int = 0
    # Refit on a background thread so batches are not held up by the k search.
    background_refit: bool = True
    # Largest share of the time spent fitting: after a fit that took t seconds the next
    # refit waits t * (1 - share) / share. A k search costs a third of a second to
    # seconds of a core, and at line rate `refit_every_rows` passes in under a second.
    refit_max_share: float = 0.1
    # Refits search k within this distance of the current k (the first fit searches all
    # of [k_min, k_max]); repeated refits can still walk k anywhere in the range.
    refit_k_window: int = 2
    # A refit that changes no cluster (same ids, none new, none retired) doubles the rows
    # to the next scheduled refit, up to this multiple of refit_every_rows; a refit that
    # changes anything sets it back to refit_every_rows. A steady stream stops paying
    # for refits that find what it already has; flagged rows still trigger one early.
    refit_backoff_max: int = 16

    def __post_init__(self) -> None:
        positive = {
            "warmup_rows": self.warmup_rows,
            "reservoir_size": self.reservoir_size,
            "refit_every_rows": self.refit_every_rows,
            "refit_backoff_max": self.refit_backoff_max,
            "max_fit_points": self.max_fit_points,
            "template_members": self.template_members,
            "cache_size": self.cache_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={value}")
        if not 1 <= self.k_min <= self.k_max:
            raise ValueError(
                f"Need 1 <= k_min <= k_max. Received: k_min={self.k_min}, k_max={self.k_max}"
            )
        if self.warmup_rows > self.reservoir_size:
            raise ValueError(
                "warmup_rows cannot exceed reservoir_size. Received: "
                f"warmup_rows={self.warmup_rows}, reservoir_size={self.reservoir_size}"
            )
        if self.refit_k_window < 0:
            raise ValueError(f"refit_k_window must be >= 0. Received: {self.refit_k_window}")
        if not 0.0 < self.refit_max_share <= 1.0:
            raise ValueError(f"refit_max_share must be in (0, 1]. Received: {self.refit_max_share}")
        if self.outlier_factor <= 0 or self.min_radius < 0 or self.match_distance <= 0:
            raise ValueError(
                "outlier_factor and match_distance must be positive, min_radius >= 0. "
                f"Received: outlier_factor={self.outlier_factor}, "
                f"min_radius={self.min_radius}, match_distance={self.match_distance}"
            )
