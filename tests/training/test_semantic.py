"""The semantic channel: pooling, distillation from a teacher, the pipeline step."""

from pathlib import Path

import numpy as np
import pytest

from logclust.cluster.labeler import Labeler
from logclust.embed.bundle import Bundle
from logclust.text.tokenizer import BOS_ID, PAD_ID, Tokenizer
from tests.conftest import fake_teacher, synthetic_lines
from training import semantic
from training.config import SemanticConfig


def test_pool_matrix_is_the_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(10, 4))
    weights = rng.uniform(0.1, 1.0, 10).astype(np.float32)
    weights[PAD_ID] = 0.0
    rows = [[BOS_ID, 5, 5, 7], [4], [PAD_ID]]
    got = semantic.pooled(rows, table, weights)
    for r, g in zip(rows, got, strict=True):
        w = weights[r].astype(np.float64)
        want = (w @ table[r]) / w.sum() if w.sum() else np.zeros(4)
        np.testing.assert_allclose(g, want, atol=1e-12)


def test_sif_weights_silence_special_ids(tiny_bundle: Path) -> None:
    tok = Tokenizer.load(tiny_bundle / "tokenizer.model")
    w = semantic.sif_weights(tok, 1e-3)
    assert w.shape == (tok.vocab_size,) and np.all(w[:4] == 0)
    assert np.all((w[4:] > 0) & (w[4:] <= 1))


def test_channel_learns_the_teacher(tiny_bundle: Path) -> None:
    """On held-out lines the channel points where the teacher does, and tuning the table
    brings it closer than the closed-form start."""
    tok = Tokenizer.load(tiny_bundle / "tokenizer.model")
    texts = [t for t, _ in synthetic_lines(400, seed=21)]
    ch = semantic.build(tok, texts, fake_teacher, SemanticConfig(dim=24, tune_epochs=5), 64)
    assert ch.table.shape == (tok.vocab_size, 24) and ch.table.dtype == np.float32
    assert ch.stats["val_cosine_to_teacher"] > 0.8, ch.stats
    assert ch.stats["val_cosine_to_teacher"] >= ch.stats["val_cosine_ridge"]
    with pytest.raises(ValueError, match="at least 20 lines"):
        semantic.build(tok, texts[:5], fake_teacher, SemanticConfig(), 64)


def test_channel_round_trips(tmp_path: Path) -> None:
    ch = semantic.SemanticTable(
        np.ones((6, 3), np.float32), np.arange(6, dtype=np.float32), {"a": 1.5}
    )
    ch.save(tmp_path / "c.npz")
    back = semantic.SemanticTable.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.table, ch.table)
    np.testing.assert_array_equal(back.weights, ch.weights)
    assert back.stats == {"a": 1.5}


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="weight in"):
        SemanticConfig(weight=1.5)
    with pytest.raises(ValueError, match="ridge_grid"):
        SemanticConfig(ridge_grid=(0.0,))


def test_bundle_embedding_carries_both_parts(tiny_bundle: Path) -> None:
    """The decoder part and the channel part each have the configured share."""
    b = Bundle.load(tiny_bundle)
    d = b.manifest["model_config"]["d_model"]
    weight = b.manifest["semantic"]["weight"]
    emb = Labeler(b, variant="f32").embed([t for t, _ in synthetic_lines(20, seed=4)])
    np.testing.assert_allclose(np.linalg.norm(emb[:, d:], axis=1), weight, atol=1e-4)
    np.testing.assert_allclose(
        np.linalg.norm(emb[:, :d], axis=1), np.sqrt(1 - weight**2), atol=1e-4
    )


def test_step_without_teacher_leaves_channel_out(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import teacher
    from training.pipeline import PipelineConfig, Prepared, step_semantic

    work = tmp_path / "work"
    work.mkdir()
    (work / semantic.FILE).write_bytes(b"stale")
    monkeypatch.setattr(teacher, "available", lambda: False)
    cfg = PipelineConfig(tmp_path, tiny_bundle, work)
    step_semantic(cfg, Prepared([], [], [], []), None)
    assert not (work / semantic.FILE).exists()


def test_teacher_text_drops_placeholders_and_splits_identifiers() -> None:
    got = semantic.teacher_text("BLOCK* NameSystem.addStoredBlock: <IP>:<NUM> is_added <ID>")
    assert got == "BLOCK* Name System add Stored Block: : is added"


def test_message_targets_replace_only_lines_with_a_message() -> None:
    texts = ["<TS> INFO a: Failed login", "plain corpus line"]
    base = np.ones((2, 3), np.float32)

    def embed(t: list[str]) -> np.ndarray:
        assert t == ["Failed login"]  # the message, as the teacher reads it
        return np.full((len(t), 3), 7.0, np.float32)

    got = semantic.message_targets(texts, {texts[0]: "Failed login <NUM>"}, base, embed)
    np.testing.assert_array_equal(got, [[7, 7, 7], [1, 1, 1]])
    assert base[0, 0] == 1  # the input is left alone


def test_tuned_piece_weights_stay_positive_and_silence_special_ids(tiny_bundle: Path) -> None:
    tok = Tokenizer.load(tiny_bundle / "tokenizer.model")
    texts = [t for t, _ in synthetic_lines(200, seed=5)]
    cfg = SemanticConfig(dim=16, tune_epochs=3, tune_weights=True)
    ch = semantic.build(tok, texts, fake_teacher, cfg, 64)
    sif = semantic.sif_weights(tok, cfg.sif_a)
    assert np.all(ch.weights[:4] == 0) and np.all(ch.weights[4:] > 0)
    ratio = ch.weights[4:] / sif[4:]
    assert np.all(ratio <= np.exp(cfg.weight_range) * 1.001), ratio.max()
    assert ch.stats["val_cosine_to_teacher"] >= ch.stats["val_cosine_ridge"]
    with pytest.raises(ValueError, match="targets"):
        SemanticConfig(targets="header")
