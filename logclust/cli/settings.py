"""Flags bound to the fields of the config dataclasses: a bound flag takes its default,
and without a help of its own its help, from the field, so that each setting and its
default are stated once, in its dataclass (`logclust.cli.settings_table` lists them).

A field's doc is the comment block above it in the class body (a field right below
another with no comment of its own shares that one's).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import linecache
import re
from dataclasses import dataclass
from typing import Any

_FIELD_LINE = re.compile(r"    (\w+)\s*:")
_COMMENT_LINE = re.compile(r"    #\s?(.*)")
_SENTENCE_END = re.compile(r"(?<=[.;:])\s+(?=[A-Z(])")


@dataclass(frozen=True)
class Setting:
    """The config field a flag sets: `config.<name>` of a `config` instance."""

    config: type
    name: str


def default_of(config: type, name: str) -> Any:
    """The default of the dataclass field `config.<name>` (a `default_factory` called).

    Raises:
        ValueError: the field has no default (or `config` has no such field).
    """
    field = _field(config, name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"{config.__name__}.{name} has no default. Received: {name!r}")


def has_default(config: type, name: str) -> bool:
    """Whether the field `config.<name>` has a default."""
    field = _field(config, name)
    return not (
        field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    )


@functools.cache
def field_docs(config: type) -> dict[str, str]:
    """The doc of every field of the dataclass `config`: its comment lines, joined."""
    names = {f.name for f in dataclasses.fields(config)}
    lines = linecache.getlines(inspect.getfile(config))
    heads = (i for i, line in enumerate(lines) if re.match(rf"class {config.__name__}\b", line))
    start = next(heads, None)
    docs: dict[str, str] = {}
    if start is None:  # no source at hand: no docs
        return docs
    comment: list[str] = []
    previous: str | None = None  # doc of the field on the line above
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith(" "):
            break  # the end of the class body
        if m := _COMMENT_LINE.match(line):
            comment.append(m.group(1).strip())
            continue
        m = _FIELD_LINE.match(line)
        if m is not None and m.group(1) in names:
            doc = " ".join(comment) if comment else previous
            docs[m.group(1)] = doc or ""
            previous = docs[m.group(1)]
        elif not line.startswith("     "):  # not a continuation line of a field
            previous = None
        comment = []
    return docs


def flag_help(doc: str) -> str:
    """The help of a flag from its field's doc: the first sentence (or clause before a
    `;` or `:`), lower case first as the other helps."""
    text = _SENTENCE_END.split(doc, maxsplit=1)[0].rstrip(".;:").replace("%", "%%")
    first = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if first[1:] == first[1:].lower() else text


def flag(
    parser: argparse._ActionsContainer,
    name: str,
    setting: Setting,
    *,
    help: str | None = None,  # noqa: A002 - argparse's own name
    **kwargs: Any,
) -> argparse.Action:
    """Adds the flag `name` that sets `setting`.

    Args:
        parser: the parser or argument group.
        name: the flag, e.g. `--max-sources`.
        setting: the field it sets; its default is the flag's unless `default` is given
            (a flag whose "not given" means something else, e.g. "the budget's").
        help: the help text; None: the field doc's first sentence (see `bind`).
        **kwargs: the rest of `add_argument`'s arguments.
    """
    if "default" not in kwargs:
        kwargs["default"] = default_of(setting.config, setting.name)
    action = parser.add_argument(name, help=help, **kwargs)
    bind(action, setting)
    return action


class FieldFlags:
    """Adds flags that set fields of one config class to a parser or group:
    `FieldFlags(group, ServerConfig)("--max-sources", "max_sources", type=int)`."""

    def __init__(self, parser: argparse._ActionsContainer, config: type) -> None:
        self.parser = parser
        self.config = config

    def __call__(self, name: str, field: str, **kwargs: Any) -> argparse.Action:
        """`flag(parser, name, Setting(config, field), **kwargs)`."""
        return flag(self.parser, name, Setting(self.config, field), **kwargs)


def bind(action: argparse.Action, setting: Setting) -> None:
    """Records that `action` sets `setting` (read by `bound_setting`); a help left None
    becomes the field doc's first sentence, and the default is shown unless the help
    shows it or there is none (None, an empty list)."""
    action.setting = setting  # type: ignore[attr-defined]
    if action.help is None:
        action.help = flag_help(_doc(setting))
    if action.default not in (None, []) and "%(default)" not in action.help:
        action.help += " (default: %(default)s)"


def bound_setting(action: argparse.Action) -> Setting | None:
    """The setting a flag sets (see `flag`, `bind_prefixed`), None for other flags."""
    setting = getattr(action, "setting", None)
    return setting if isinstance(setting, Setting) else None


def bind_prefixed(group: argparse._ArgumentGroup, config: type, prefix: str) -> None:
    """Binds every flag of `group` whose destination is `prefix` + a field of `config`
    to that field: the field's default becomes the flag's, its doc the help of a flag
    without one."""
    for action in group._group_actions:
        name = action.dest.removeprefix(prefix)
        if action.dest == name or name not in {f.name for f in dataclasses.fields(config)}:
            continue
        if has_default(config, name):
            action.default = default_of(config, name)
        bind(action, Setting(config, name))


def _doc(setting: Setting) -> str:
    return field_docs(setting.config).get(setting.name, "")


def _field(config: type, name: str) -> dataclasses.Field[Any]:
    fields = {f.name: f for f in dataclasses.fields(config)}
    if name not in fields:
        raise ValueError(f"{config.__name__} has no field {name!r}. Received: {name!r}")
    return fields[name]
