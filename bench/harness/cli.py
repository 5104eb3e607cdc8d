"""The flags every benchmark has: `--smoke` (seconds-long, tiny inputs) and `--json PATH`."""

from __future__ import annotations

import argparse
from typing import Any

from bench.harness.report import Output


def parser(doc: str | None, module: str = "") -> argparse.ArgumentParser:
    """An argument parser with the common flags; `doc` is the module docstring."""
    p = argparse.ArgumentParser(
        prog=f"python -m bench.{module}" if module else None,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    return p


def add_common(p: argparse.ArgumentParser) -> None:
    """Adds `--smoke` and `--json PATH`."""
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a check that runs in seconds: tiny inputs, one repetition, parts that need\n"
        "data or packages absent here skipped (figures meaningless)",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the tables as JSON")


def smoke(args: argparse.Namespace, **values: Any) -> None:
    """With `--smoke`, sets each of `values` on `args` (the tiny inputs)."""
    if args.smoke:
        for key, value in values.items():
            if not hasattr(args, key):
                raise AttributeError(f"no such flag to shrink. Received: {key}")
            setattr(args, key, value)


def output(args: argparse.Namespace, script: str) -> Output:
    """The script's `Output` (JSON to `--json` when given)."""
    return Output(script, args.json)
