"""The tiny bundle end to end: export parity, bundle checks, Labeler, no TensorFlow."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.labeler import Labeler
from logclust.embed.bundle import Bundle, BundleError
from logclust.text.header import message
from tests.conftest import synthetic_lines


def test_parity_keras_vs_tflite(tiny_bundle: Path, tiny_work: Path) -> None:
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from logclust.text.tokenizer import pad
    from training.export import keras_encoder

    b = Bundle.load(tiny_bundle)
    assert b.manifest["semantic"]["dim"] == 16
    assert b.dim == b.manifest["model_config"]["d_model"] + 16
    encode = keras_encoder(b.manifest, tiny_work / "best.weights.h5", tiny_work)
    texts = [t for t, _ in synthetic_lines(50, seed=3)]
    for variant, floor in (("f32", 0.999), ("int8", 0.99)):
        lab = Labeler(b, variant=variant)
        # the encoder reads each line's message (`logclust.text.header`)
        messages = [message(t) for t in lab.masker.mask_texts(texts)]
        ids, _ = pad(lab.tokenizer.encode(messages, b.max_len))
        ref = encode(tf.constant(ids)).numpy()
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        cos = np.sum(ref * lab.embed(texts), axis=1)
        assert cos.min() >= floor, (variant, cos.min())


def test_padding_does_not_change_embedding(tiny_bundle: Path) -> None:
    lab = Labeler.load(tiny_bundle, variant="f32")
    rows = lab.tokenizer.encode(["INFO fs: opened file <PATH> size <NUM> bytes"], 64)
    n = len(rows[0])
    short = lab.encoder.run(np.array([rows[0]], np.int32))
    padded = lab.encoder.run(np.array([rows[0] + [0] * (40 - n)], np.int32))
    np.testing.assert_allclose(short, padded, atol=1e-5)


def test_labeler_api(tiny_bundle: Path) -> None:
    lab = Labeler.load(tiny_bundle)
    pairs = synthetic_lines(100, seed=5)
    texts = [t for t, _ in pairs]
    emb = lab.embed(texts)
    assert emb.shape == (100, lab.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(lab.embed(pa.array(texts)), emb, atol=1e-6)
    assert lab.embed([]).shape == (0, lab.dim)
    lab.fit(texts, k=5)
    ids = lab.label(texts)
    assert ids.dtype == np.int32 and set(ids) <= set(range(5))
    with pytest.raises(TypeError, match="not one str"):
        lab.embed("one string")
    with pytest.raises(ValueError, match="null"):
        lab.embed(pa.array(["a", None]))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_bundle_checks_name_the_problem(tiny_bundle: Path, tmp_path: Path) -> None:
    b = _copy(tiny_bundle, tmp_path / "b1")
    (b / "encoder_int8.tflite").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="encoder_int8.tflite is damaged"):
        Bundle.load(b)
    b = _copy(tiny_bundle, tmp_path / "b2")
    (b / "tokenizer.model").unlink()
    with pytest.raises(BundleError, match="tokenizer.model is missing"):
        Bundle.load(b)
    b = _copy(tiny_bundle, tmp_path / "b3")
    m = json.loads((b / "manifest.json").read_text())
    m["format_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="version=99"):
        Bundle.load(b)
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.load(tmp_path)
    b = _copy(tiny_bundle, tmp_path / "b4")
    m = json.loads((b / "manifest.json").read_text())
    m["embedding_dim"] = 7
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="Encoder output width 48"):
        Labeler.load(b)


def test_serving_imports_no_tensorflow(tiny_bundle: Path) -> None:
    code = (
        "import sys\n"
        "from logclust import Labeler\n"
        f"lab = Labeler.load({str(tiny_bundle)!r})\n"
        "lab.embed(['INFO fs: opened file /a/b size 3 bytes'])\n"
        "lab.label(['x 1'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
