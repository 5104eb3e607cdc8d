"""`Labeler.fit` without k: the sidecar's distance rule, offline; `label` per distinct text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from logclust.cluster.labeler import Labeler
from tests.conftest import synthetic_lines


def test_fit_without_k_uses_the_streams_rules(tiny_bundle: Path) -> None:
    lab = Labeler.load(tiny_bundle)
    pairs = synthetic_lines(400, seed=5)
    lines, kinds = [t for t, _ in pairs], [k for _, k in pairs]
    assert lab.threshold is None  # a bundle made without `calibrate`
    distinct = len(set(lab.masker.mask_texts(lines)))
    fine = lab.fit(lines, threshold=1e-3).k
    default = lab.fit(lines).k  # FALLBACK_THRESHOLD
    coarse = lab.fit(lines, threshold=2.0).k
    assert coarse <= default <= fine <= distinct
    # Log lines go by their word templates whatever the threshold: one cluster a kind.
    model = lab.fit(lines, threshold=1e-3)
    assert model.templates is not None and len(model.templates) == 4
    ids = lab.label(lines)
    for kind in ("open", "conn", "user", "gc"):
        assert len({int(i) for i, k in zip(ids, kinds, strict=True) if k == kind}) == 1
    # The form bodies go by their fields and distance.
    carts = [t for t, k in pairs if k == "cart"]
    assert len(set(lab.label(carts).tolist())) == 1
    same = np.asarray(lab.masker.mask_texts(lines))
    ids = lab.label(lines)
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
    masked = lab.masker.mask_texts(lines)
    assert lab.clusters is not None
    by_template = lab.clusters.template_ids(masked)
    # Lines that fit a template are not embedded; the others once per distinct text.
    assert seen == [len(set(np.asarray(masked)[by_template < 0].tolist()))]
    assert 0 < seen[0] < len(set(masked))
    # The same ids as every row placed on its own: its template, else its centroid.
    per_row, _ = lab.clusters.assign(embed_masked(masked))
    per_row = np.where(by_template >= 0, by_template, per_row)
    assert ids.dtype == np.int32 and np.array_equal(ids, per_row)
    # `embed` masks through the shape cache too: the same rows as masking row by row.
    np.testing.assert_allclose(lab.embed(lines), embed_masked(lab.masker.mask_texts(lines)))
    assert lab.label([]).shape == (0,)


def test_the_encoder_reads_each_lines_message(tiny_bundle: Path) -> None:
    """Headers say which system wrote a line, not what it means: the same message under
    two loggers' headers gets one embedding, and a line without a header its own."""
    lab = Labeler.load(tiny_bundle)
    lines = [
        "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure for user root",
        "2023-01-01 10:00:00,123 - auth.service - WARN - authentication failure for user root",
        "authentication failure for user root",
        "connection refused by upstream host",
    ]
    emb = lab.embed(lines)
    cos = emb @ emb.T
    np.testing.assert_allclose(cos[0, 1:3], 1.0, atol=1e-5)
    assert cos[0, 3] < 0.999
    # The masker itself keeps the whole line; the mask cache cuts it (templates,
    # descriptions and cache keys are of the message).
    assert lab.masker.mask_texts(lines[:1])[0].startswith("Jun <NUM> <TS> combo sshd")
    distinct, _ = lab.mask_distinct(lines[:3])
    assert distinct.to_pylist() == ["authentication failure for user root"]
