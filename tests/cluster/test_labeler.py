"""`Labeler.fit` without k: the sidecar's distance rule, offline; `label` per distinct text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from logclust.cluster.config import FALLBACK_THRESHOLD
from logclust.cluster.labeler import Labeler
from tests.conftest import synthetic_lines


def test_fit_without_k_uses_the_threshold(tiny_bundle: Path) -> None:
    lab = Labeler.load(tiny_bundle)
    lines = [t for t, _ in synthetic_lines(400, seed=5)]
    assert lab.threshold is None  # a bundle made without `calibrate`
    distinct = len(set(lab.masker.mask_texts(lines)))
    fine = lab.fit(lines, threshold=1e-3).k
    default = lab.fit(lines).k  # FALLBACK_THRESHOLD
    coarse = lab.fit(lines, threshold=2.0).k
    assert fine == distinct and coarse == 1
    assert coarse <= default <= fine
    # Every text lies within the threshold of its centroid, as in the stream.
    model = lab.fit(lines)
    _, dist = model.assign(lab.embed(lines))
    assert (dist <= FALLBACK_THRESHOLD + 1e-5).all()
    ids = lab.label(lines)
    same = np.asarray(lab.masker.mask_texts(lines))
    for text in set(same.tolist()):
        assert len(set(ids[same == text].tolist())) == 1
    with pytest.raises(ValueError, match="at least one text"):
        lab.fit([])


def test_label_embeds_each_distinct_masked_text_once(tiny_bundle: Path) -> None:
    lab = Labeler.load(tiny_bundle)
    lines = [t for t, _ in synthetic_lines(300, seed=6)] * 3
    lab.fit(lines)
    seen: list[int] = []
    embed_masked = lab.embed_masked

    def spy(masked: object) -> np.ndarray:
        out = embed_masked(masked)  # type: ignore[arg-type]
        seen.append(len(out))
        return out

    lab.embed_masked = spy  # type: ignore[method-assign]
    ids = lab.label(lines)
    assert seen == [len(set(lab.masker.mask_texts(lines)))]
    # The same ids as every row embedded and assigned on its own.
    assert lab.clusters is not None
    per_row, _ = lab.clusters.assign(embed_masked(lab.masker.mask_texts(lines)))
    assert ids.dtype == np.int32 and np.array_equal(ids, per_row)
    # `embed` masks through the shape cache too: the same rows as masking row by row.
    np.testing.assert_allclose(lab.embed(lines), embed_masked(lab.masker.mask_texts(lines)))
    assert lab.label([]).shape == (0,)
