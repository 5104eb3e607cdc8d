"""The sidecar's own page (`serve --http-listen`): clusters per source, their latency and
rows/s, new kinds; plain HTML, a small script and inline SVG, every file in the package."""

from logclust.web.data import PageData
from logclust.web.server import PageServer

__all__ = ["PageData", "PageServer"]
