"""`training.export_lean`: the lean re-export computes what the Keras export computes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from logclust.cluster.labeler import Labeler  # noqa: E402
from logclust.embed.bundle import Bundle, write_manifest  # noqa: E402
from logclust.embed.encoder import Encoder  # noqa: E402
from tests.conftest import synthetic_lines  # noqa: E402
from training.config import ModelConfig  # noqa: E402
from training.export import export_tflite  # noqa: E402
from training.export_lean import main, read_weights  # noqa: E402
from training.model import build  # noqa: E402
from training.semantic import FILE, SemanticTable  # noqa: E402


@pytest.fixture(scope="module")
def keras_bundle(
    tiny_bundle: Path, tiny_work: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny bundle re-exported by `training/export.py` with random weights: its two
    training steps leave biases and norms at their (equal) initial values, which the
    converter merges into shared constants; trained weights are all distinct."""
    out = tmp_path_factory.mktemp("keras") / "bundle"
    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    model = build(ModelConfig(**manifest["model_config"]))
    rng = np.random.default_rng(0)
    model.set_weights(
        [
            (1.0 if "gamma" in w.path else 0.0) + 0.1 * rng.standard_normal(w.shape)
            for w in model.weights
        ]
    )
    channel = SemanticTable.load(tiny_work / FILE)
    export_tflite(model, out, channel, manifest["semantic"]["weight"])
    write_manifest(out, manifest)
    return out


@pytest.fixture(scope="module")
def lean_bundle(keras_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lean") / "bundle"
    main(["--bundle", str(keras_bundle), "--out", str(out)])
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embeddings(bundle: Path, variant: str, texts: list[str]) -> np.ndarray:
    b = Bundle.load(bundle)
    lab = Labeler(b, "f32")
    ids = lab.tokenizer.encode(lab.masker.mask_texts(texts), b.max_len)
    return unit(Encoder(b.encoder_path(variant)).encode(ids, b.max_len))


def test_lean_matches_the_keras_export(keras_bundle: Path, lean_bundle: Path) -> None:
    texts = [t for t, _ in synthetic_lines(200, seed=5)] + ["x", "a much longer line " * 8]
    ref = embeddings(keras_bundle, "f32", texts)
    lean = embeddings(lean_bundle, "f32", texts)
    assert (ref * lean).sum(1).min() >= 0.9999
    # int8 quantizes the channel's tables as whole tensors (both exports alike): the lean
    # int8 must lose no more against its float32 than the Keras export's int8 does.
    ref8 = embeddings(keras_bundle, "int8", texts)
    lean8 = embeddings(lean_bundle, "int8", texts)
    assert (lean8 * lean).sum(1).min() >= (ref8 * ref).sum(1).min() - 0.005
    assert (lean8 * lean).sum(1).mean() >= 0.99


def test_lean_bundle_is_complete_and_verified(keras_bundle: Path, lean_bundle: Path) -> None:
    b = Bundle.load(lean_bundle)  # hashes checked
    old = json.loads((keras_bundle / "manifest.json").read_text())
    assert {k for k in b.manifest if k not in ("files", "export")} == set(old) - {"files"}
    for name in old["files"]:
        if not name.startswith("encoder_"):
            assert (lean_bundle / name).read_bytes() == (keras_bundle / name).read_bytes()


def test_lean_graph_serves_any_shape_with_fewer_ops(keras_bundle: Path, lean_bundle: Path) -> None:
    for variant in ("f32", "int8"):
        interp = Interpreter(model_path=str(lean_bundle / f"encoder_{variant}.tflite"))
        runner = interp.get_signature_runner("encode")
        assert list(runner.get_input_details()) == ["ids"]
        for shape in ((1, 3), (5, 17)):
            ids = np.ones(shape, np.int32)
            out = next(iter(runner(ids=ids).values()))
            assert out.shape == (shape[0], Bundle.load(lean_bundle).dim)
    lean_ops = len(Interpreter(str(lean_bundle / "encoder_f32.tflite"))._get_ops_details())
    keras_ops = len(Interpreter(str(keras_bundle / "encoder_f32.tflite"))._get_ops_details())
    assert lean_ops < 0.6 * keras_ops


def test_read_weights_names_what_is_missing(lean_bundle: Path) -> None:
    # A lean file has no Keras names: re-exporting it needs the Keras export.
    with pytest.raises(ValueError, match="missing="):
        read_weights(lean_bundle / "encoder_f32.tflite", n_blocks=2)


def test_a_new_channel_goes_into_the_lean_export(keras_bundle: Path, tmp_path: Path) -> None:
    """`--channel` replaces the table and piece weights: the exported channel part is the
    new table's weighted mean; the decoder part is unchanged; a table for another
    vocabulary is refused."""
    from training.export_lean import lean_module
    from training.semantic import pooled

    manifest = json.loads((keras_bundle / "manifest.json").read_text())
    d, dim = manifest["model_config"]["d_model"], manifest["semantic"]["dim"]
    vocab = manifest["model_config"]["vocab_size"]
    rng = np.random.default_rng(3)
    new = SemanticTable(
        rng.standard_normal((vocab, dim)).astype(np.float32),
        np.r_[np.zeros(4), rng.uniform(0.1, 1, vocab - 4)].astype(np.float32),
        {"note": 1.0},
    )
    new.save(tmp_path / "c.npz")
    out = tmp_path / "b"
    main(["--bundle", str(keras_bundle), "--out", str(out), "--channel", str(tmp_path / "c.npz")])
    texts = [t for t, _ in synthetic_lines(12, seed=8)]
    lab = Labeler(Bundle.load(out), variant="f32")
    got = lab.embed(texts)
    rows = lab.tokenizer.encode(lab.masker.mask_texts(texts), lab.bundle.max_len)
    want = unit(pooled(rows, new.table, new.weights))
    np.testing.assert_allclose(unit(got[:, d:]), want, atol=1e-4)
    before = Labeler(Bundle.load(keras_bundle), variant="f32").embed(texts)
    np.testing.assert_allclose(unit(got[:, :d]), unit(before[:, :d]), atol=1e-4)
    assert json.loads((out / "manifest.json").read_text())["semantic"]["stats"] == {"note": 1.0}
    small = SemanticTable(new.table[:10], new.weights[:10])
    with pytest.raises(ValueError, match="row per token"):
        lean_module(keras_bundle, channel=small)
