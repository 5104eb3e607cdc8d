"""Each setting stated once: flags take the dataclass defaults, and the settings table in
`docs/settings.md` is what the dataclasses and the parser say today."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from logclust.cli import settings_table
from logclust.cli.settings import (
    Setting,
    bound_setting,
    default_of,
    field_docs,
    flag,
    flag_help,
    has_default,
)
from logclust.server.config import ServerConfig, TlsConfig


def test_the_committed_settings_table_is_current() -> None:
    committed = settings_table.DOC.read_text()
    assert committed == settings_table.render(), (
        f"docs/settings.md is out of date: run `{settings_table.COMMAND}`"
    )
    assert settings_table.main(["--check"]) == 0


def test_check_fails_on_a_stale_table(tmp_path: Path) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text("# Settings\n")
    assert settings_table.main(["--check", "--out", str(stale)]) == 1
    assert settings_table.main(["--out", str(stale)]) == 0
    assert settings_table.main(["--check", "--out", str(stale)]) == 0


def test_serve_flags_take_the_dataclass_defaults() -> None:
    bound = 0
    for action in settings_table.serve_parser()._actions:
        setting = bound_setting(action)
        if setting is None or not has_default(setting.config, setting.name):
            continue
        bound += 1
        # None or [] mean "not given" (the budget's size, no override), anything else
        # must be the field's default.
        if action.default not in (None, []):
            assert action.default == default_of(setting.config, setting.name), action.dest
    assert bound >= 25


def test_every_setting_is_documented() -> None:
    for path, config in settings_table.sections():
        docs = field_docs(config)
        for f in dataclasses.fields(config):
            assert docs.get(f.name), f"{path}{f.name} has no comment"
    paths = [path for path, _ in settings_table.sections()]
    assert paths == ["", "tls.", "labeler.", "labeler.clusters.", "labeler.sampling.", "otlp."]


def test_flag_help_comes_from_the_field_doc() -> None:
    parser = argparse.ArgumentParser()
    action = flag(parser, "--grace", Setting(ServerConfig, "grace_s"), type=float)
    assert action.default == ServerConfig().grace_s
    assert action.help == (
        "on SIGTERM, in-flight calls get this long to finish (default: %(default)s)"
    )
    assert flag_help("OTLP/gRPC host:port; None: off") == "OTLP/gRPC host:port"
    with pytest.raises(ValueError, match="has no default"):
        default_of(TlsConfig, "cert_file")
    with pytest.raises(ValueError, match="no field"):
        default_of(ServerConfig, "window_s")  # in `labeler` now
