"""The parser of `logclust catalog` (its handlers in `logclust.cli.catalog`, imported
when a command runs)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_catalog_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    handler: Callable[[str, str], Callable[[argparse.Namespace], int]],
) -> None:
    """Registers `catalog build` and `catalog show` (`handler(module, name)` imports
    the command's module when it runs)."""
    p = sub.add_parser("catalog", help="build or show a fleet catalog of known kinds")
    verbs = p.add_subparsers(dest="verb", required=True)
    b = verbs.add_parser("build", help="fit a catalog from sample traffic or sidecar stores")
    b.add_argument(
        "--input",
        action="append",
        default=[],
        help="text (one record per line), Parquet, Arrow or CSV with body and an optional "
        "source column (repeatable)",
    )
    b.add_argument(
        "--store",
        action="append",
        default=[],
        help="a sidecar's store folder to fold in (repeatable)",
    )
    b.add_argument("--out", required=True, help="catalog file to write")
    b.add_argument(
        "--base",
        default=None,
        metavar="CATALOG",
        help="the catalog served now: its kinds keep their ids, new kinds get ids above",
    )
    b.add_argument("--bundle", default=None, help="model bundle (default: the built-in one)")
    b.add_argument("--threshold", type=float, default=None, help="as `serve --threshold`")
    b.add_argument("--log-format", default=None, metavar="FORMAT", help="as for `label`")
    b.add_argument(
        "--keep-headers",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="as `serve --keep-headers` (the sidecars and stores it serves must agree; "
        "default: %(default)s)",
    )
    b.set_defaults(func=handler("catalog", "cmd_catalog_build"))
    s = verbs.add_parser("show", help="check a catalog and list its sources")
    s.add_argument("catalog")
    s.set_defaults(func=handler("catalog", "cmd_catalog_show"))
