"""The `logclust.v1.LogClust` servicer: wire types in, domain calls, wire types out."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server import errors
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.wire import ipc


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
        return pb.LatencyResponse(arrow_ipc=ipc.encode_ipc(table))

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
                merged_into=-1 if st.merged_into is None else st.merged_into,
                exemplars=st.members[: self.sidecar.config.clusters.max_exemplars],
            )
            for source, st in self.sidecar.describe(request.source or None)
        ]
        return pb.ClustersResponse(clusters=infos)
