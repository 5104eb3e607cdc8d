"""Splitting raw log lines into header fields and content, in the spirit of logparser.

A format such as `'<Date> <Time> <Pid> <Level> <Component>: <Content>'` names fields in
angle brackets; the text between them is matched literally, and a run of spaces matches
any run of whitespace. The format compiles to one RE2 pattern with named groups, so
`LogFormat.split` is one vectorised `pyarrow.compute.extract_regex` pass.

The formats of the logparser/loghub benchmark are written with regex escapes (`\\[`,
`\\|`) and optional parts (`(\\[<PID>\\])?`). They are read here as they are: a backslash
makes the next character literal, and `( ... )?` is an optional part. Any other
character, parentheses that are not followed by `?` included, is literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

CONTENT = "Content"

# The formats of the loghub benchmark (logparser's `benchmark_settings`), by system.
PRESETS: dict[str, str] = {
    "HDFS": "<Date> <Time> <Pid> <Level> <Component>: <Content>",
    "Hadoop": r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    "Spark": "<Date> <Time> <Level> <Component>: <Content>",
    "Zookeeper": r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    "BGL": "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> "
    "<Level> <Content>",
    "HPC": "<LogId> <Node> <Component> <State> <Time> <Flag> <Content>",
    "Thunderbird": r"<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> "
    r"<Component>(\[<PID>\])?: <Content>",
    "Windows": "<Date> <Time>, <Level>                  <Component>    <Content>",
    "Linux": r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
    "Android": "<Date> <Time>  <Pid>  <Tid> <Level> <Component>: <Content>",
    "HealthApp": r"<Time>\|<Component>\|<Pid>\|<Content>",
    "Apache": r"\[<Time>\] \[<Level>\] <Content>",
    "Proxifier": r"\[<Time>\] <Program> - <Content>",
    "OpenSSH": r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
    "OpenStack": r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
    "Mac": r"<Month>  <Date> <Time> <User> <Component>\[<PID>\]( \(<Address>\))?: <Content>",
    # Generic: BSD syslog (`Jun 14 15:16:01 host sshd[123]: ...`), the pid optional.
    "syslog": r"<Month> <Day> <Time> <Host> <Component>(\[<Pid>\])?: <Content>",
    # Generic: the common application log (`2024-01-02 10:00:00,123 INFO message`).
    "level": "<Date> <Time> <Level> <Content>",
}
_PRESET_KEYS = {name.lower(): name for name in PRESETS}

_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# A field, an escaped character, `(`, `)?`, `)`, a run of spaces.
_TOKEN = re.compile(r"<([^<>]*)>|\\(.)|(\()|(\)\?)|(\))|( +)", re.DOTALL)
# Characters RE2 reads as syntax; everything else stands for itself.
_RE2_SPECIAL = frozenset("\\.^$|?*+()[]{}")


@dataclass(frozen=True)
class LogFormat:
    """A compiled log format.

    Attributes:
        fmt: the format as given.
        fields: the field names in order, as written in the format.
        pattern: the RE2 pattern; group names are the lowercased field names.
    """

    fmt: str
    fields: tuple[str, ...]
    pattern: str

    @classmethod
    def parse(cls, fmt: str) -> LogFormat:
        """Compiles a format such as `'<Date> <Time> <Level> <Content>'`.

        Raises:
            ValueError: no `<Content>` field, a duplicate or badly named field, or an
                unbalanced optional part.
        """
        if not isinstance(fmt, str):
            raise TypeError(f"A log format is a string. Received: fmt={fmt!r}")
        fields = [m.group(1) for m in _TOKEN.finditer(fmt) if m.group(1) is not None]
        bad = [f for f in fields if not _FIELD_NAME.fullmatch(f)]
        if bad:
            raise ValueError(
                "Field names are a letter then letters, digits or _ "
                f"(bad: {bad}). Received: fmt={fmt!r}"
            )
        lower = [f.lower() for f in fields]
        dups = sorted({f for f in lower if lower.count(f) > 1})
        if dups:
            raise ValueError(f"Duplicate fields {dups}. Received: fmt={fmt!r}")
        if CONTENT.lower() not in lower:
            raise ValueError(f"A log format needs a <Content> field. Received: fmt={fmt!r}")
        return cls(fmt, tuple(fields), _compile(fmt, last=fields[-1]))

    @classmethod
    def resolve(cls, name_or_fmt: str) -> LogFormat:
        """A preset by name (any case, e.g. `"hdfs"`), else `name_or_fmt` parsed as a format.

        Raises:
            ValueError: neither a preset name nor a valid format.
        """
        key = _PRESET_KEYS.get(name_or_fmt.strip().lower())
        if key is not None:
            return cls.parse(PRESETS[key])
        if "<" not in name_or_fmt:
            raise ValueError(
                f"Not a preset ({sorted(PRESETS)}) nor a format with <Fields>. "
                f"Received: name_or_fmt={name_or_fmt!r}"
            )
        return cls.parse(name_or_fmt)

    @property
    def columns(self) -> list[str]:
        """The output column names: the lowercased fields, `content` among them."""
        return [f.lower() for f in self.fields]

    def split(self, texts: pa.Array | pa.ChunkedArray) -> pa.Table:
        """Splits lines into one string column per field.

        Lines are trimmed of surrounding whitespace first, as logparser does. A line that
        does not match keeps its order: null header fields, and the whole (trimmed) line
        as `content`. A null line gives nulls throughout.

        Args:
            texts: a pyarrow `string` or `large_string` array (chunked or not).

        Returns:
            A table with the columns `self.columns`, one row per line.

        Raises:
            TypeError: `texts` is not a string array.
        """
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks() if texts.num_chunks else pa.array([], texts.type)
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise TypeError(f"split() takes a string array. Received: type={texts.type}")
        lines = pc.utf8_trim_whitespace(texts)
        parts = pc.extract_regex(lines, self.pattern)
        columns = []
        for name in self.columns:
            col = pc.struct_field(parts, name)
            # struct_field ignores the struct's own validity: unmatched rows are masked
            # here, and their content falls back to the line.
            col = pc.if_else(pc.is_valid(parts), col, pa.scalar(None, col.type))
            columns.append(pc.coalesce(col, lines) if name == "content" else col)
        return pa.table(columns, names=self.columns)


def _compile(fmt: str, last: str) -> str:
    """The RE2 pattern of `fmt`: header fields lazy, `Content` and the last field greedy."""
    tokens = list(_TOKEN.finditer(fmt))
    optional = _optional_parts(tokens)
    out: list[str] = []
    pos = 0
    for i, m in enumerate(tokens):
        out.append(_literal(fmt[pos : m.start()]))
        pos = m.end()
        name, escaped, opening, closing, plain_closing, _ = m.groups()
        if name is not None:
            greedy = name.lower() == CONTENT.lower() or name == last
            out.append(f"(?P<{name.lower()}>{'.*' if greedy else '.*?'})")
        elif escaped is not None:
            out.append(_literal(escaped))
        elif opening is not None or closing is not None or plain_closing is not None:
            text = m.group(0)
            out.append(("(?:" if opening else ")?") if i in optional else _literal(text))
        else:
            out.append(r"\s+")
    out.append(_literal(fmt[pos:]))
    # (?s): a line holding a newline still matches; content keeps it.
    return "(?s)^" + "".join(out) + "$"


def _optional_parts(tokens: list[re.Match[str]]) -> set[int]:
    """Indices of the `(` and `)?` tokens that pair up as optional parts.

    Parentheses pair like brackets; a pair whose `)` is not followed by `?` (or an
    unpaired one) is literal text, so `<Date> (<Thread>) <Content>` reads naturally.
    """
    optional: set[int] = set()
    opened: list[int] = []
    for i, m in enumerate(tokens):
        if m.group(3) is not None:
            opened.append(i)
        elif (m.group(4) is not None or m.group(5) is not None) and opened:
            start = opened.pop()
            if m.group(4) is not None:
                optional |= {start, i}
    return optional


def _literal(text: str) -> str:
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in text)


def apply_log_format(fmt: LogFormat, table: pa.Table, column: str = "body") -> pa.Table:
    """`table` with `column` replaced by the lines' content and the header fields added.

    Header fields become string columns named `log_<field>` (`log_level`,
    `log_component`, ...), placed after the table's own columns, so they pass through
    the sidecar like any other column; the content is what is masked and clustered.

    Raises:
        ValueError: `column` is missing, or a `log_<field>` column already exists.
    """
    if column not in table.column_names:
        raise ValueError(f"No {column!r} column to split. Received: columns={table.column_names}")
    parts = fmt.split(table.column(column))
    headers = [c for c in parts.column_names if c != "content"]
    taken = [f"log_{c}" for c in headers if f"log_{c}" in table.column_names]
    if taken:
        raise ValueError(
            f"Header columns would overwrite the input's own. Received: columns {taken}"
        )
    content = parts.column("content").cast(table.schema.field(column).type)
    out = table.set_column(table.schema.get_field_index(column), column, content)
    for c in headers:
        out = out.append_column(f"log_{c}", parts.column(c))
    return out
