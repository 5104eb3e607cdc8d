"""The prose evaluation's nearest-true-centre measure (`training.evaluate.prose_vectors`)."""

from __future__ import annotations

import numpy as np

from training.evaluate.prose_vectors import nearest_centre


def test_nearest_centre_is_one_for_apart_topics_and_low_for_one_blob() -> None:
    rng = np.random.default_rng(0)
    axes = np.eye(8, dtype=np.float32)
    apart = np.concatenate([axes[0] + 0.1 * rng.standard_normal((50, 8)),
                            axes[1] + 0.1 * rng.standard_normal((50, 8))])  # fmt: skip
    topics = ["a"] * 50 + ["b"] * 50
    assert nearest_centre(apart, topics) == 1.0
    blob = rng.standard_normal((100, 8)).astype(np.float32)
    assert nearest_centre(blob, topics) < 0.2  # labels that say nothing of the points
