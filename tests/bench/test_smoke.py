"""Every benchmark runs: `python -m bench.X --smoke --json PATH` exits 0 and prints its
table, in seconds (tiny inputs; parts needing data or packages absent here skipped).

The scripts run as child processes, as a user runs them: nothing here imports `bench`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in ("__init__", "workloads")
)
# A smoke run takes seconds; this bounds a hang, not the time.
TIMEOUT_S = 240


def test_every_script_is_listed() -> None:
    assert "sidecar" in SCRIPTS and "hot_path" in SCRIPTS and len(SCRIPTS) >= 15


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{script}", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # A Markdown table: a head row and its rule.
    assert re.search(r"^\| .* \|\n\| (--- \| )*--- \|$", proc.stdout, re.M), proc.stdout[-2000:]
    doc = json.loads(out.read_text())
    assert doc["script"] == f"bench.{script}"
    tables = [i["table"] for i in doc["items"] if "table" in i]
    assert tables and all(len(r) == len(t["columns"]) for t in tables for r in t["rows"])
    assert any(t["rows"] for t in tables)


def test_nothing_outside_bench_imports_it() -> None:
    """The benchmarks sit on top: the package, training and the tests never import them."""
    pattern = re.compile(r"^\s*(from bench[ .]|import bench\b)", re.M)
    found = [
        str(p.relative_to(ROOT))
        for folder in ("logclust", "training", "tests")
        for p in (ROOT / folder).rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert found == []
