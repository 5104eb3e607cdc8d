"""Arrow tables from the sidecar's responses (client side: no server code)."""

from __future__ import annotations

import pyarrow as pa

from logclust.proto import logclust_pb2 as pb


def clusters_to_table(response: pb.ClustersResponse) -> pa.Table:
    """The Clusters response as an Arrow table."""
    cs = list(response.clusters)
    ts = pa.timestamp("ms", tz="UTC")
    return pa.table(
        {
            "source": pa.array([c.source for c in cs], pa.string()),
            "cluster_id": pa.array([c.cluster_id for c in cs], pa.int32()),
            "group_id": pa.array([c.group_id for c in cs], pa.int64()),
            "size": pa.array([c.size for c in cs], pa.int64()),
            "first_seen": pa.array([c.first_seen_unix_ms or None for c in cs], pa.int64()).cast(ts),
            "last_seen": pa.array([c.last_seen_unix_ms or None for c in cs], pa.int64()).cast(ts),
            "template": pa.array([c.template for c in cs], pa.string()),
            "exemplars": pa.array([list(c.exemplars) for c in cs], pa.list_(pa.string())),
            "active": pa.array([c.active for c in cs], pa.bool_()),
            "merged_into": pa.array(
                [None if c.merged_into < 0 else c.merged_into for c in cs], pa.int32()
            ),
            "rows_per_s": pa.array([c.rows_per_s for c in cs], pa.float64()),
            "rows_per_s_before": pa.array([c.rows_per_s_before for c in cs], pa.float64()),
        }
    )


def cluster_descriptions(clusters: pa.Table) -> dict[tuple[str, int], str]:
    """`(source, cluster id)` -> template and one exemplar unlike it, from `Client.clusters()`."""
    out = {}
    for r in clusters.to_pylist():
        ex = next((e for e in r["exemplars"] if e != r["template"]), "")
        out[(r["source"], r["cluster_id"])] = r["template"] + (f"  e.g. {ex}" if ex else "")
    return out
