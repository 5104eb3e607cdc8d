"""logclust: semantic cluster ids for log lines and request bodies.

`Labeler` embeds and labels text with a model bundle; `StreamLabeler` clusters streams
in-process with stable ids and latency per cluster; `Client` talks to a sidecar. They are
imported lazily so that `import logclust` stays light (the client needs no model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "Labeler", "StreamLabeler", "__version__"]

if TYPE_CHECKING:
    from logclust.client import Client
    from logclust.cluster.labeler import Labeler
    from logclust.sidecar.stream_labeler import StreamLabeler


def __getattr__(name: str) -> Any:
    if name == "Labeler":
        from logclust.cluster.labeler import Labeler

        return Labeler
    if name == "StreamLabeler":
        from logclust.sidecar.stream_labeler import StreamLabeler

        return StreamLabeler
    if name == "Client":
        from logclust.client import Client

        return Client
    raise AttributeError(f"module 'logclust' has no attribute {name!r}")
