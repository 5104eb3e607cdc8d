"""logclust: semantic cluster ids for log lines and request bodies.

`Labeler` embeds and labels text with a model bundle; `Client` talks to a sidecar.
Both are imported lazily so that `import logclust` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "Labeler", "__version__"]

if TYPE_CHECKING:
    from logclust.client import Client
    from logclust.labeler import Labeler


def __getattr__(name: str) -> Any:
    if name == "Labeler":
        from logclust.labeler import Labeler

        return Labeler
    if name == "Client":
        from logclust.client import Client

        return Client
    raise AttributeError(f"module 'logclust' has no attribute {name!r}")
