"""Writes `docs/settings.md`: every setting of the sidecar (`ServerConfig` and the configs
inside it), its `logclust serve` flag, its default and its meaning, all read from the
dataclasses and the parser. `tests/cli/test_settings_table.py` checks the committed file
is current.

    python -m logclust.cli.settings_table            # rewrite docs/settings.md
    python -m logclust.cli.settings_table --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

from logclust.cli.main import build_parser
from logclust.cli.settings import Setting, bound_setting, default_of, field_docs, has_default
from logclust.cluster.config import StreamClusterConfig
from logclust.server.config import ServerConfig
from logclust.server.memory import SIZED_FIELDS
from logclust.sidecar.config import StreamLabelerConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
COMMAND = "python -m logclust.cli.settings_table"
_MIB = 1 << 20
# What the memory budget sets unless given (`ServerConfig.sized`).
BUDGET_SIZED = {Setting(StreamClusterConfig, name) for name in SIZED_FIELDS} | {
    Setting(StreamLabelerConfig, "latency_max_bytes")
}

HEADER = f"""# Settings

Generated from the config dataclasses and the `logclust serve` parser by
`{COMMAND}`: do not edit by hand.

A program sets these as fields of `ServerConfig` (`logclust.server.config`), whose
`labeler` is a `StreamLabelerConfig` (`logclust.sidecar.config`) holding the
`StreamClusterConfig` `clusters` (`logclust.cluster.config`); `logclust serve` sets them
with the flags shown (`logclust serve --help`), a setting without a flag only from
Python. With the memory budget on (the default), the sizes marked "budget" are derived
from it unless set (`ServerConfig.sized`).
"""


def serve_parser() -> argparse.ArgumentParser:
    """The parser of `logclust serve`."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = commands.choices["serve"]
    return serve


def sections(config: type = ServerConfig, path: str = "") -> list[tuple[str, type]]:
    """`(path, config class)` of `config` and of every dataclass nested in it, depth
    first: `("", ServerConfig), ("labeler.", StreamLabelerConfig), ...`."""
    out = [(path, config)]
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        inner = _dataclass_of(hints[f.name])
        if inner is not None:
            out += sections(inner, f"{path}{f.name}.")
    return out


def render() -> str:
    """The text of `docs/settings.md`."""
    parser = serve_parser()
    flags: dict[Setting, list[str]] = {}
    unbound: list[argparse.Action] = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        setting = bound_setting(action)
        if setting is None:
            unbound.append(action)
        else:
            flags.setdefault(setting, []).append(action.option_strings[0])
    parts = [HEADER]
    for path, config in sections():
        parts.append(_section(path, config, flags))
    if unbound:
        parts.append(_unbound(unbound))
    return "\n".join(parts)


def _section(path: str, config: type, flags: dict[Setting, list[str]]) -> str:
    docs = field_docs(config)
    title = f"`{path.rstrip('.')}`: " if path else ""
    lines = [
        f"## {title}`{config.__name__}`",
        "",
        "| Setting | Flag | Default | Meaning |",
        "|---|---|---|---|",
    ]
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        docs_text = docs.get(f.name, "")
        if _dataclass_of(hints[f.name]) is not None:
            docs_text += f" (see `{path}{f.name}` below)"
        setting = Setting(config, f.name)
        flag = ", ".join(f"`{name}`" for name in flags.get(setting, [])) or "-"
        default = _format_default(config, f.name)
        if setting in BUDGET_SIZED:
            default += ", budget"
        lines.append(f"| `{path}{f.name}` | {flag} | {default} | {_cell(docs_text)} |")
    return "\n".join(lines) + "\n"


def _unbound(actions: list[argparse.Action]) -> str:
    lines = [
        "## `serve` flags outside the config",
        "",
        "| Flag | Default | Meaning |",
        "|---|---|---|",
    ]
    for action in actions:
        default = "-" if action.default is None else f"`{action.default}`"
        text = (action.help or "").replace("%(default)s", str(action.default))
        lines.append(f"| `{action.option_strings[0]}` | {default} | {_cell(text)} |")
    return "\n".join(lines) + "\n"


def _format_default(config: type, name: str) -> str:
    if not has_default(config, name):
        return "required"
    value = default_of(config, name)
    if dataclasses.is_dataclass(value):
        return "defaults"
    if value is None:
        return "None"
    if isinstance(value, int) and not isinstance(value, bool) and name.endswith("_bytes"):
        return f"`{value}` ({value // _MIB} MiB)" if value % _MIB == 0 else f"`{value}`"
    if isinstance(value, frozenset | dict):
        return "empty" if not value else f"`{sorted(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass of a field's type (`X` or `X | None`), None for other types."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = inner[0] if len(inner) == 1 else None
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOC, help="file to write")
    parser.add_argument("--check", action="store_true", help="only check it is current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.is_file() and args.out.read_text() == text
        if not current:
            print(f"{args.out} is out of date: run `{COMMAND}`", file=sys.stderr)
        return 0 if current else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
