"""The `logclust.v1.LogClust` servicer: wire types in, domain calls, wire types out."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pyarrow as pa

from logclust import arrow_io
from logclust.metrics import Metrics
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server import errors
from logclust.server.sidecar import Sidecar


class LogClustService(pb_grpc.LogClustServicer):
    """Converts requests to `Sidecar` calls; errors become statuses in `errors.py`.

    A bad request inside a Label stream ends that stream with its status; the batches
    answered before it were fully processed and stay recorded.
    """

    def __init__(self, sidecar: Sidecar, metrics: Metrics | None = None) -> None:
        self.sidecar = sidecar
        self.metrics = metrics

    def on_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.on_error(kind)

    @errors.streaming
    def Label(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[pb.LabelRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.LabelResponse]:
        for request in request_iterator:
            data, rows = self.sidecar.label_ipc(request.arrow_ipc)
            yield pb.LabelResponse(batch_id=request.batch_id, arrow_ipc=data, num_rows=rows)

    @errors.unary
    def Latency(  # noqa: N802 - gRPC method name
        self, request: pb.LatencyRequest, context: grpc.ServicerContext
    ) -> pb.LatencyResponse:
        table = self.sidecar.latency(
            quantiles=list(request.quantiles),
            start_ms=request.start_unix_ms or None,
            end_ms=request.end_unix_ms or None,
            window_ms=request.window_ms or None,
            source=request.source or None,
        )
        return pb.LatencyResponse(arrow_ipc=arrow_io.encode_ipc(table))

    @errors.unary
    def Clusters(  # noqa: N802 - gRPC method name
        self, request: pb.ClustersRequest, context: grpc.ServicerContext
    ) -> pb.ClustersResponse:
        infos = [
            pb.ClusterInfo(
                source=source,
                cluster_id=st.cluster_id,
                size=st.size,
                first_seen_unix_ms=st.first_seen_ms or 0,
                last_seen_unix_ms=st.last_seen_ms or 0,
                template=st.template,
                active=st.active,
                exemplars=st.members[: self.sidecar.config.clusters.max_exemplars],
            )
            for source, st in self.sidecar.describe(request.source or None)
        ]
        return pb.ClustersResponse(clusters=infos)


def clusters_to_table(response: pb.ClustersResponse) -> pa.Table:
    """The Clusters response as an Arrow table (used by the client)."""
    cs = list(response.clusters)
    ts = pa.timestamp("ms", tz="UTC")
    return pa.table(
        {
            "source": pa.array([c.source for c in cs], pa.string()),
            "cluster_id": pa.array([c.cluster_id for c in cs], pa.int32()),
            "size": pa.array([c.size for c in cs], pa.int64()),
            "first_seen": pa.array([c.first_seen_unix_ms or None for c in cs], pa.int64()).cast(ts),
            "last_seen": pa.array([c.last_seen_unix_ms or None for c in cs], pa.int64()).cast(ts),
            "template": pa.array([c.template for c in cs], pa.string()),
            "exemplars": pa.array([list(c.exemplars) for c in cs], pa.list_(pa.string())),
            "active": pa.array([c.active for c in cs], pa.bool_()),
        }
    )
