"""`Bundle.prose_vectors`: the shipped table, a bundle without one, a damaged one."""

import json
import shutil
from pathlib import Path

import pytest

from logclust.embed.bundle import Bundle, BundleError, write_manifest
from logclust.text.prose_vectors import FILE


def _copy_small_bundle(dst: Path) -> Path:
    """The shipped bundle's manifest and small files (the encoders are not needed)."""
    src = Bundle.load(verify=False)
    dst.mkdir()
    manifest = json.loads((src.path / "manifest.json").read_text())
    keep = {n: m for n, m in manifest["files"].items() if not n.endswith(".tflite")}
    for name in keep:
        shutil.copyfile(src.path / name, dst / name)
    write_manifest(dst, dict(manifest, files=keep))
    return dst


def test_shipped_bundle_has_a_table() -> None:
    b = Bundle.load()
    pv = b.prose_vectors
    assert pv is not None and pv.dim == b.manifest["prose_words"]["dim"]
    assert b.prose_vectors is pv  # read once


def test_bundle_without_table_still_loads(tmp_path: Path) -> None:
    p = _copy_small_bundle(tmp_path / "b")
    (p / FILE).unlink()
    manifest = json.loads((p / "manifest.json").read_text())
    del manifest["files"][FILE], manifest["prose_words"]
    write_manifest(p, manifest)
    b = Bundle.load(p)
    assert b.prose_vectors is None and b.centroids() is not None


def test_damaged_table_is_named(tmp_path: Path) -> None:
    p = _copy_small_bundle(tmp_path / "b")
    data = (p / FILE).read_bytes()
    (p / FILE).write_bytes(data[: len(data) // 3])
    with pytest.raises(BundleError, match=FILE):
        Bundle.load(p)  # the hash check
    with pytest.raises(BundleError, match=FILE):
        _ = Bundle.load(p, verify=False).prose_vectors
