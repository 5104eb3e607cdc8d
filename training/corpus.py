"""A general corpus of log-like messages, built from the Python standard library.

Little log data teaches a model little language, and a held-out log format is full of
words the training systems never used. Every Python installation carries thousands of
human-written messages in its standard library: the texts of `raise SomeError("...")`,
`logger.info("...")` and `warnings.warn("...")`. They are read here with `ast` (nothing is
downloaded or executed), their format fields filled with numbers, and used as extra
training lines for the language model and for distillation.
"""

from __future__ import annotations

import ast
import logging
import random
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

_LOG_CALLS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
_FIELD = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdirfxXgeEcbou]|\{[^{}]*\}")
_WORDY = re.compile(r"[A-Za-z]{3,}")


def _text(node: ast.expr) -> str | None:
    """A message string with each format field written as `{}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                parts.append(v.value)
            else:
                parts.append("{}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _text(node.left)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "format":
            return _text(node.func.value)
    return None


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def messages_in(source: str) -> Iterator[str]:
    """Message strings of raise, logging and warnings calls in Python `source`."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        call = None
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            call = node.exc
        elif isinstance(node, ast.Call) and _call_name(node) in _LOG_CALLS | {"warn"}:
            call = node
        if call is None or not call.args:
            continue
        arg = call.args[1] if _call_name(call) == "log" and len(call.args) > 1 else call.args[0]
        text = _text(arg)
        if text:
            yield text


def _fill(text: str, rng: random.Random) -> str:
    return _FIELD.sub(
        lambda _: str(rng.choice([rng.randint(0, 99), rng.randint(100, 10**6)])), text
    )


# Packages that `logclust[train]` installs anyway; their messages join the standard library's.
CORPUS_PACKAGES: tuple[str, ...] = (
    "tensorflow",
    "keras",
    "numpy",
    "scipy",
    "sklearn",
    "pyarrow",
    "matplotlib",
    "grpc",
)


def corpus_roots() -> list[Path]:
    """The standard library and the installed `CORPUS_PACKAGES` folders."""
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    site = Path(sysconfig.get_paths()["purelib"])
    roots += [site / p for p in CORPUS_PACKAGES if (site / p).is_dir()]
    return roots


def python_messages(
    limit: int = 20000, seed: int = 0, roots: list[Path] | None = None
) -> list[str]:
    """Distinct, filled-in messages of Python sources under `roots`, in a fixed order."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    skip = {"test", "tests", "site-packages"}
    paths = sorted(
        p
        for base in (roots or corpus_roots())
        for p in base.rglob("*.py")
        if not skip & set(p.relative_to(base).parts)
    )
    for path in paths:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for msg in messages_in(source):
            msg = " ".join(msg.split())
            if 12 <= len(msg) <= 300 and len(_WORDY.findall(msg)) >= 2:
                seen.setdefault(_fill(msg, rng), None)
    out = list(seen)
    rng.shuffle(out)
    logger.info("Python message corpus: %d distinct messages", len(out))
    return out[:limit]
