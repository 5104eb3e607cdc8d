"""Client-side tables built from the sidecar's responses."""

from __future__ import annotations

import pyarrow as pa

from logclust.client.tables import cluster_descriptions, clusters_to_table
from logclust.proto import logclust_pb2 as pb


def _response() -> pb.ClustersResponse:
    return pb.ClustersResponse(
        clusters=[
            pb.ClusterInfo(
                source="web",
                cluster_id=3,
                size=10,
                first_seen_unix_ms=1_700_000_000_000,
                last_seen_unix_ms=0,
                template="currency_code=<*>",
                active=True,
                exemplars=["currency_code=<*>", "currency_code=EUR"],
            )
        ]
    )


def test_clusters_to_table_types_and_unknown_times() -> None:
    t = clusters_to_table(_response())
    assert t.schema.field("first_seen").type == pa.timestamp("ms", tz="UTC")
    row = t.to_pylist()[0]
    assert row["cluster_id"] == 3 and row["size"] == 10 and row["active"]
    assert row["last_seen"] is None  # 0 on the wire means never
    assert row["exemplars"] == ["currency_code=<*>", "currency_code=EUR"]


def test_descriptions_show_an_exemplar_unlike_the_template() -> None:
    desc = cluster_descriptions(clusters_to_table(_response()))
    assert desc == {("web", 3): "currency_code=<*>  e.g. currency_code=EUR"}
