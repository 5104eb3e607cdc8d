"""The `logclust` command runs numpy's BLAS on one thread unless the user says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = (
    "import logclust.cli.main, threadpoolctl; "
    "print([p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'])"
)


def _blas_threads(**env: str) -> str:
    pytest.importorskip("threadpoolctl", reason="threadpoolctl reads the BLAS threads")
    clean = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=clean | env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_one_blas_thread_by_default() -> None:
    assert _blas_threads() == "[1]"


def test_the_users_setting_is_kept() -> None:
    assert _blas_threads(OPENBLAS_NUM_THREADS="2") == "[2]"
