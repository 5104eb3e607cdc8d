"""The logclust sidecar: gRPC service `logclust.v1.LogClust` plus health and metrics."""

from logclust.server.app import SidecarServer, create_server, serve
from logclust.server.config import ServerConfig

__all__ = ["ServerConfig", "SidecarServer", "create_server", "serve"]
