"""The `--code DIR` A/B: the same benchmark against the `logclust` package of another
checkout (`git archive <commit> | tar -x -C /tmp/base`, then `--code /tmp/base`).

A child process (a sidecar, `logclust send`) gets the other package through PYTHONPATH
and the console script; this process, through `use_code` before it imports `logclust`.
The workloads and the benchmark itself stay this checkout's, so both sides see the same
lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

CODE_HELP = (
    "run the package under test from another checkout, e.g. the code before a change:\n"
    "git archive <commit> | tar -x -C /tmp/base; --code /tmp/base"
)


def add_code_arg(p: argparse.ArgumentParser, flag: str = "--code", help: str = CODE_HELP) -> None:
    """Adds the A/B flag (a directory holding another `logclust` package)."""
    p.add_argument(flag, default=None, metavar="DIR", help=help)


def code_env(code: str | None, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child that imports `logclust` from `code` (this checkout's
    when None: the console script of a shared virtualenv would otherwise import the
    package it was installed from, another checkout's)."""
    out = dict(os.environ if env is None else env)
    first = code or str(Path(__file__).resolve().parents[2])
    out["PYTHONPATH"] = os.pathsep.join([first, out.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return out


def logclust_command(code: str | None = None) -> list[str]:
    """The `logclust` console script next to this Python (`python -m` when there is none
    and no `code`: run from the repository root, it puts this checkout first on sys.path,
    ahead of PYTHONPATH)."""
    exe = shutil.which("logclust", path=str(Path(sys.executable).parent))
    if exe is None and code:
        raise SystemExit("--code needs the logclust console script installed next to python")
    return [exe] if exe else [sys.executable, "-m", "logclust.cli.main"]


def use_code(code: str | None) -> str:
    """Makes this process import `logclust` from `code` (nothing else of that checkout);
    returns the package's directory. Must run before anything imports `logclust`."""
    if not code:
        return str(Path(__file__).resolve().parents[2] / "logclust")
    if "logclust" in sys.modules:
        raise RuntimeError(
            f"use_code must run before logclust is imported. Received: logclust from "
            f"{sys.modules['logclust'].__file__}"
        )
    package = Path(code).resolve() / "logclust"
    if not package.is_dir():
        raise SystemExit(f"no logclust package in --code. Received: {code}")
    links = Path(tempfile.mkdtemp(prefix="logclust-code-"))
    (links / "logclust").symlink_to(package)
    sys.path.insert(0, str(links))
    return str(package)
