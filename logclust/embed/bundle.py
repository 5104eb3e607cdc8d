"""Model bundles: a folder with `manifest.json` next to the files serving needs.

Files: `tokenizer.model` (SentencePiece), `encoder_f32.tflite` and `encoder_int8.tflite`
(LiteRT encoders), `centroids.npy` and `radii.npy` (default clusters, fitted on the
training data; numpy format, loaded without pickle), and `prose_words.npz` (static word
vectors for free text, `logclust.text.prose_vectors`; bundles made before it lack it).
The manifest records the format version, the resolved configs, dimensions, a SHA-256
per file, the training data and headline metrics. `Bundle.load` checks all of it and
names what is wrong.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logclust.text.masking import MaskingConfig
from logclust.text.prose_vectors import FILE as PROSE_WORDS
from logclust.text.prose_vectors import ProseVectors

FORMAT = "logclust-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VARIANTS = ("f32", "int8")


class BundleError(ValueError):
    """A bundle is missing, damaged or of another format version."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_bundle_path() -> Path:
    """The shipped bundle: inside the installed package, else `models/default` of the repo."""
    here = Path(__file__).resolve().parents[1]  # the logclust package
    for cand in (here / "models" / "default", here.parent / "models" / "default"):
        if (cand / MANIFEST).is_file():
            return cand
    raise BundleError(
        "No default bundle found (looked in the package and in models/default). "
        f"Received: package dir={here}"
    )


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: dict[str, Any]
    masking: MaskingConfig = field(repr=False)

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def d_model(self) -> int:
        """Width of the decoder's part of the embedding (the rest is the semantic channel)."""
        return int(self.manifest["model_config"]["d_model"])

    @property
    def max_len(self) -> int:
        return int(self.manifest["model_config"]["max_len"])

    @property
    def threshold(self) -> float | None:
        """The clustering threshold calibrated by the training pipeline (`calibrate`
        step; Euclidean distance between unit embeddings), None when not calibrated."""
        value = (self.manifest.get("clustering") or {}).get("threshold")
        return None if value is None else float(value)

    @property
    def group_threshold(self) -> float | None:
        """The group threshold (`logclust.cluster.groups`) calibrated by the training
        pipeline (`calibrate` step, `training/evaluate/groups.py`), None when the manifest
        records none: the clusterer then uses `FALLBACK_GROUP_THRESHOLD`
        (`logclust.cluster.config`)."""
        value = (self.manifest.get("clustering") or {}).get("group_threshold")
        return None if value is None else float(value)

    @property
    def semantic_from(self) -> int:
        """Where the semantic channel starts in an embedding (its first `d_model` values
        are the decoder's part); 0 when the embedding has no channel."""
        return self.d_model if self.dim > self.d_model else 0

    def file(self, name: str) -> Path:
        return self.path / name

    def encoder_path(self, variant: str | None = None) -> Path:
        v = variant or self.manifest.get("default_variant", "int8")
        if v not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}. Received: variant={v!r}")
        return self.file(f"encoder_{v}.tflite")

    def centroids(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The default clusters as float32 `(centroids (k, dim), radii (k,))`, or None."""
        if "centroids.npy" not in self.manifest["files"]:
            return None
        c = np.load(self.file("centroids.npy"), allow_pickle=False)
        r = np.load(self.file("radii.npy"), allow_pickle=False)
        if c.ndim != 2 or c.shape[1] != self.dim:
            raise BundleError(f"centroids.npy must be (k, {self.dim}). Received: {c.shape}")
        return c.astype(np.float32), r.astype(np.float32)

    @functools.cached_property
    def prose_vectors(self) -> ProseVectors | None:
        """The static word vectors for prose (`prose_words.npz`, read once, on first
        use), or None when the bundle has none (made before the table existed)."""
        if PROSE_WORDS not in self.manifest["files"]:
            return None
        try:
            return ProseVectors.load(self.file(PROSE_WORDS))
        except ValueError as e:
            raise BundleError(str(e)) from e

    @classmethod
    def load(cls, path: str | Path | None = None, verify: bool = True) -> Bundle:
        """Reads and checks a bundle (the default one when `path` is None)."""
        p = default_bundle_path() if path is None else Path(path)
        mpath = p / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"Not a bundle: {MANIFEST} is missing. Received: path={p}")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{mpath} is not valid JSON ({e}). Received: path={p}") from e
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"Unsupported bundle format; this logclust reads {FORMAT} v{FORMAT_VERSION}. "
                f"Received: format={manifest.get('format')!r} "
                f"version={manifest.get('format_version')!r}"
            )
        for key in ("files", "embedding_dim", "model_config", "masking"):
            if key not in manifest:
                raise BundleError(f"{mpath} lacks the field {key!r}. Received: {sorted(manifest)}")
        if verify:
            _verify_files(p, manifest["files"])
        return cls(p, manifest, MaskingConfig.from_dict(manifest["masking"]))


def _verify_files(path: Path, files: dict[str, dict[str, Any]]) -> None:
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"Bundle file {name} is missing. Received: path={path}")
        digest = sha256(f)
        if digest != meta["sha256"]:
            raise BundleError(
                f"Bundle file {name} is damaged or was changed: its SHA-256 does not match "
                f"the manifest. Received: sha256={digest[:12]}…, expected {meta['sha256'][:12]}…"
            )


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Fills in format fields and file hashes, then writes `manifest.json`."""
    names = sorted(n for n in manifest.get("files", {}) or _bundle_files(path))
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    manifest["files"] = {
        n: {"sha256": sha256(path / n), "bytes": (path / n).stat().st_size} for n in names
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _bundle_files(path: Path) -> list[str]:
    keep = {".model", ".tflite", ".npy", ".npz"}
    return [f.name for f in path.iterdir() if f.suffix in keep]
