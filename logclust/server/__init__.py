"""The logclust sidecar: gRPC service `logclust.v1.LogClust` plus health and metrics.

The names below are imported on first use: `logclust.server.config` stays light to
import (the CLI parser reads its defaults at every start) without loading the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logclust.server.app import SidecarServer, create_server, serve
    from logclust.server.config import ServerConfig

__all__ = ["ServerConfig", "SidecarServer", "create_server", "serve"]

_HOMES = {
    "ServerConfig": "config",
    "SidecarServer": "app",
    "create_server": "app",
    "serve": "app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
