"""The layout keeps its promises: serving imports no training stack, the client no server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logclust.cli.main import main

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "sklearn", "scipy", "matplotlib", "training")


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=REPO)


def test_server_client_and_cli_import_no_training_stack() -> None:
    _run(
        "import contextlib, io, sys\n"
        "import logclust.server, logclust.client, logclust.cli.main\n"
        "from logclust.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "assert 'serve' in out.getvalue() and 'demo' in out.getvalue(), out.getvalue()\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "assert not bad, bad\n"
    )


def test_the_serve_path_loads_no_file_readers() -> None:
    # pyarrow's Parquet and CSV modules are 4.4 MB of RSS a sidecar never uses.
    _run(
        "import sys\n"
        "import logclust.cli.main, logclust.cli.service, logclust.server\n"
        "bad = sorted(m for m in ('pyarrow.parquet', 'pyarrow.csv') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )


def test_client_imports_no_server_code() -> None:
    _run(
        "import sys\n"
        "from logclust.client import Client\n"
        "inner = ('server', 'sidecar', 'cluster', 'embed', 'text', 'latency')\n"
        "bad = sorted(m for m in sys.modules if m.startswith('logclust.')\n"
        "             and m.split('.')[1] in inner)\n"
        "assert not bad, bad\n"
    )


def test_console_script_help() -> None:
    exe = Path(sys.executable).parent / "logclust"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "logclust.cli.main"]
    out = subprocess.run(cmd + ["--help"], check=True, timeout=120, capture_output=True, text=True)
    assert "latency" in out.stdout


def test_logclust_train_points_to_the_checkout_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert "python -m training" in err and len(err.strip().splitlines()) == 1


def test_otlp_and_the_shared_rpc_code_import_no_server_code() -> None:
    # The arrow points one way: the server wires the OTLP listeners, never the reverse.
    _run(
        "import pkgutil, sys, importlib\n"
        "import logclust.otlp, logclust.rpc\n"
        "for pkg in (logclust.otlp, logclust.rpc):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "assert 'logclust.otlp.endpoints' in sys.modules\n"
        "bad = sorted(m for m in sys.modules if m.startswith('logclust.server'))\n"
        "assert not bad, bad\n"
    )


def test_the_config_dataclasses_are_light() -> None:
    # The parser reads its defaults from them at every start, also of the client commands.
    _run(
        "import sys\n"
        "import logclust.server.config, logclust.sidecar.config, logclust.cli.settings\n"
        "heavy = ('logclust.server.app', 'logclust.sidecar.core', 'logclust.cluster.router',\n"
        "         'logclust.embed', 'ai_edge_litert', 'sentencepiece', 'prometheus_client')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "assert not bad, bad\n"
    )
