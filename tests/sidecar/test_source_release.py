"""A forgotten or evicted source leaves nothing behind: clusters, latency windows (also
those dated ahead of its last batch) and metric series."""

from __future__ import annotations

import gc
import weakref

import pyarrow as pa

from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.sidecar.store import MemoryStore
from logclust.sidecar.stream_labeler import StreamLabeler, StreamLabelerConfig, now_ms
from tests.fakes import FakeLabeler


def _batch(source: str, time_ms: int) -> pa.Table:
    return pa.table(
        {
            "body": ["GET /cart user=1", "POST /checkout id=2"],
            "source": [source] * 2,
            "latency_ms": [3.0, 40.0],
            "time": pa.array([time_ms] * 2, pa.timestamp("ms", tz="UTC")),
        }
    )


def _held(sidecar: Sidecar, metrics: Metrics, source: str) -> dict[str, bool]:
    scrape = "\n".join(
        f"{s.name}{s.labels}" for fam in metrics.registry.collect() for s in fam.samples
    )
    return {
        "clusters": source in sidecar.labeler.stream.sources,
        "latency": source in sidecar.latency().column("source").to_pylist(),
        "metrics": f"'source': '{source}'" in scrape,
    }


def test_forget_and_eviction_release_every_part_of_a_source() -> None:
    config = StreamLabelerConfig(max_sources=3, retention_s=3600)
    metrics = Metrics()
    sidecar = Sidecar(StreamLabeler(FakeLabeler(), config), MemoryStore(), metrics)
    now = now_ms()
    for source in ("a", "b", "c"):
        sidecar.label(_batch(source, now))
    # b's last rows are dated a little ahead (within the skew): windows past its last batch.
    sidecar.label(_batch("b", now + 120_000))
    for source in ("a", "b"):
        assert _held(sidecar, metrics, source) == dict.fromkeys(
            ("clusters", "latency", "metrics"), True
        )
    refs = {s: weakref.ref(sidecar.labeler.stream.sources[s]) for s in ("a", "b")}

    assert sidecar.forget("a")
    # b goes idle past the retention, but its future-dated window has not expired yet.
    sidecar.labeler.stream.sources["b"].last_batch_ms -= 2 * 3600_000
    sidecar.flush()
    gc.collect()
    for source in ("a", "b"):
        assert _held(sidecar, metrics, source) == dict.fromkeys(
            ("clusters", "latency", "metrics"), False
        )
        assert refs[source]() is None
    assert _held(sidecar, metrics, "c")["latency"]
