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


def groups_table(clusters: pa.Table, max_exemplars: int = 3) -> pa.Table:
    """A row per group (source, group_id) of `Client.clusters()`: its active clusters,
    rows, their templates (largest cluster first) and up to `max_exemplars` exemplars,
    taken from its clusters in turn."""
    by: dict[tuple[str, int], list[dict[str, object]]] = {}
    for r in clusters.to_pylist():
        if r["active"]:
            by.setdefault((r["source"], r["group_id"]), []).append(r)
    rows = []
    for (source, gid), members in sorted(by.items()):
        members.sort(key=lambda r: -int(r["size"]))  # type: ignore[call-overload]
        pool = [list(r["exemplars"]) for r in members]  # type: ignore[call-overload]
        exemplars: list[str] = []
        while len(exemplars) < max_exemplars and any(pool):
            for ex in pool:
                if ex and len(exemplars) < max_exemplars:
                    exemplars.append(ex.pop(0))
        rows.append(
            {
                "source": source,
                "group_id": gid,
                "clusters": [r["cluster_id"] for r in members],
                "size": sum(int(r["size"]) for r in members),  # type: ignore[call-overload]
                "templates": list(dict.fromkeys(str(r["template"]) for r in members)),
                "exemplars": exemplars,
            }
        )
    schema = pa.schema(
        [
            ("source", pa.string()),
            ("group_id", pa.int64()),
            ("clusters", pa.list_(pa.int32())),
            ("size", pa.int64()),
            ("templates", pa.list_(pa.string())),
            ("exemplars", pa.list_(pa.string())),
        ]
    )
    return pa.Table.from_pylist(rows, schema)


def cluster_descriptions(clusters: pa.Table) -> dict[tuple[str, int], str]:
    """`(source, cluster id)` -> template and one exemplar unlike it, from `Client.clusters()`."""
    out = {}
    for r in clusters.to_pylist():
        ex = next((e for e in r["exemplars"] if e != r["template"]), "")
        out[(r["source"], r["cluster_id"])] = r["template"] + (f"  e.g. {ex}" if ex else "")
    return out
