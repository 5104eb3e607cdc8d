"""Serves the fleet's catalog file and loads it again when it changes (a ConfigMap update).

The file is checked every `poll_s`: its size and modification time first (a stat), then,
when either changed, its bytes (the digest of a catalog: `Catalog.digest`). A changed
catalog is swapped in between two batches (`StreamClusters.use_catalog`), so no row is
lost and none is labelled half by each. A file that cannot be used (truncated, corrupted,
of another bundle) keeps the old catalog serving: logged, and counted in
`logclust_catalog_errors_total`; the next change of the file is tried again.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from logclust.cluster.catalog import Catalog, CatalogError, read_catalog
from logclust.cluster.router import StreamClusters
from logclust.sidecar.metrics import Metrics

logger = logging.getLogger(__name__)


class CatalogWatcher:
    """The catalog `path` served by `stream`, loaded again when the file changes.

    Args:
        path: the catalog file.
        stream: the clustering that serves it.
        bundle: `bundle_id` of the served model; a catalog of another is refused. None:
            not checked (a test embedder without a bundle).
        poll_s: seconds between checks of the file.
    """

    def __init__(
        self, path: str | Path, stream: StreamClusters, bundle: str | None, poll_s: float = 5.0
    ) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s must be positive. Received: poll_s={poll_s}")
        self.path = Path(path)
        self.stream = stream
        self.bundle = bundle
        self.poll_s = poll_s
        self.reloads = 0  # catalogs swapped in after the first
        self.errors = 0  # changed files that could not be used
        self.digest = ""
        self._seen: tuple[int, int] | None = None  # (size, mtime_ns) last read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logclust-catalog", daemon=True)

    def load(self) -> Catalog:
        """Reads and serves the catalog (at start: a bad file is an error).

        Raises:
            CatalogError: the file cannot be used.
        """
        self._seen = self._stat()
        catalog = self._read()
        self._serve(catalog)
        return catalog

    def watch_metrics(self, metrics: Metrics) -> None:
        """Exports the reloads and the refused files."""
        metrics.watch_counter(
            "logclust_catalog_reloads",
            "Catalogs loaded again after the file changed.",
            lambda: self.reloads,
        )
        metrics.watch_counter(
            "logclust_catalog_errors",
            "Changed catalog files refused (the old catalog kept serving).",
            lambda: self.errors,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check_now()

    def check_now(self) -> bool:
        """Loads the file again if it changed; True when another catalog now serves."""
        seen = self._stat()
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            catalog = self._read()
            if catalog.digest == self.digest:
                return False
            self._serve(catalog)
        except (CatalogError, ValueError) as e:
            self.errors += 1
            logger.error("catalog not reloaded, the old one keeps serving: %s", e)
            return False
        self.reloads += 1
        return True

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def _read(self) -> Catalog:
        catalog = read_catalog(self.path)
        if self.bundle is not None:
            catalog.check_bundle(self.bundle, str(self.path))
        return catalog

    def _serve(self, catalog: Catalog) -> None:
        again = self.stream.use_catalog(catalog)
        self.digest = catalog.digest
        logger.info(
            "serving catalog %s (digest %s): %d clusters in %d sources; %d sources started "
            "again from it",
            self.path,
            catalog.digest[:12],
            catalog.clusters,
            len(catalog.states),
            len(again),
        )
