"""The `logclust.v1.LogClust` servicer: wire types in, domain calls, wire types out.

It runs on the asyncio gRPC server (`logclust.server.app`): an open stream costs a
coroutine, not a thread, so idle streams cannot starve health checks or queries. The
blocking domain calls run in `Executors`: Label batches in a pool shared fairly between
streams (`FairExecutor`: a light stream does not queue behind every heavy batch), queries
in a pool of their own so they never wait behind labelling.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import grpc

from logclust.cluster.local_ids import is_local_id
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.rpc import errors
from logclust.rpc.admission import Admission
from logclust.rpc.deadline import answer_margin
from logclust.server.config import LabelLimits
from logclust.server.fair import FairExecutor
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.wire import ipc
from logclust.wire.contract import ContractError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


@dataclass
class Executors:
    """Thread pools of the blocking work: labelling, and queries apart from it."""

    label: FairExecutor
    query: futures.ThreadPoolExecutor

    def shutdown(self) -> None:
        self.label.shutdown(wait=True)
        self.query.shutdown(wait=True)


class LogClustService(pb_grpc.LogClustServicer):
    """Converts requests to `Sidecar` calls; errors become statuses in `errors.py`.

    A bad request inside a Label stream ends that stream with its status; the batches
    answered before it were fully processed and stay recorded. More than
    `limits.max_inflight_batches` batches, or `limits.max_inflight_bytes` request bytes,
    in flight over all streams and listeners (`admission`, shared with OTLP): the new one
    is refused at once (RESOURCE_EXHAUSTED with a RetryInfo) instead of queued. (A request
    alone in flight is taken whatever its size, up to the message limit.) Batches in
    flight wait their stream's turn (`FairExecutor`).
    """

    def __init__(
        self,
        sidecar: Sidecar,
        metrics: Metrics | None,
        executors: Executors,
        limits: LabelLimits,
        admission: Admission | None = None,
    ) -> None:
        self.sidecar = sidecar
        self.metrics = metrics
        self.executors = executors
        self.limits = limits
        # Requests handed to the label pool and not answered yet, over every listener.
        self.admission = admission or Admission(
            limits.max_inflight_batches, limits.max_inflight_bytes
        )

    def on_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.on_error(kind)

    async def _run(self, pool: futures.Executor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def _next(self, requests: AsyncIterator[pb.LabelRequest], context: Context) -> Any:
        """The next request, None at the end; an idle stream is ended DEADLINE_EXCEEDED."""
        try:
            return await asyncio.wait_for(anext(requests), self.limits.stream_idle_timeout_s)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            logger.info(
                "Label stream from %s idle for %g s: ended",
                context.peer(),
                self.limits.stream_idle_timeout_s,
            )
            self.on_error("idle_timeout")
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"No request for {self.limits.stream_idle_timeout_s} s "
                "(stream_idle_timeout_s): stream ended",
            )

    @errors.aio_streaming
    async def Label(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.LabelRequest], context: Context
    ) -> AsyncIterator[pb.LabelResponse]:
        requests = aiter(request_iterator)
        stream = object()  # this stream's turn in the label pool (see `FairExecutor`)
        still_wanted = _caller_present(context)
        while (request := await self._next(requests, context)) is not None:
            with self.admission.admit(len(request.arrow_ipc), "Label batch"):
                data, rows = await asyncio.wrap_future(
                    self.executors.label.submit(
                        stream,
                        len(request.arrow_ipc),
                        self.sidecar.label_ipc,
                        request.arrow_ipc,
                        self.limits.max_response_bytes,
                        self.limits.max_decompressed_bytes,
                        still_wanted,
                    )
                )
            yield pb.LabelResponse(batch_id=request.batch_id, arrow_ipc=data, num_rows=rows)

    @errors.aio_unary
    async def Latency(  # noqa: N802 - gRPC method name
        self, request: pb.LatencyRequest, context: Context
    ) -> pb.LatencyResponse:
        def query() -> bytes:
            table = self.sidecar.latency(
                quantiles=list(request.quantiles),
                start_ms=request.start_unix_ms or None,
                end_ms=request.end_unix_ms or None,
                window_ms=request.window_ms or None,
                source=request.source or None,
                sketches=request.sketches,
                by=request.by or "cluster",
            )
            return ipc.encode_ipc(table)

        return pb.LatencyResponse(arrow_ipc=await self._run(self.executors.query, query))

    @errors.aio_unary
    async def Clusters(  # noqa: N802 - gRPC method name
        self, request: pb.ClustersRequest, context: Context
    ) -> pb.ClustersResponse:
        views = await self._run(
            self.executors.query, self.sidecar.cluster_views, request.source or None
        )
        infos = [
            pb.ClusterInfo(
                source=v.source,
                cluster_id=st.cluster_id,
                size=st.size,
                first_seen_unix_ms=st.first_seen_ms or 0,
                last_seen_unix_ms=st.last_seen_ms or 0,
                template=st.template,
                active=st.active,
                merged_into=-1 if st.merged_into is None else st.merged_into,
                exemplars=st.members[: self.sidecar.config.clusters.max_exemplars],
                rows_per_s=v.rows_per_s,
                rows_per_s_before=v.rows_per_s_before,
                local=is_local_id(st.cluster_id),
                group_id=st.cluster_id if st.group_id is None else st.group_id,
            )
            for v in views
            for st in (v.stats,)
        ]
        return pb.ClustersResponse(clusters=infos)

    @errors.aio_unary
    async def Forget(  # noqa: N802 - gRPC method name
        self, request: pb.ForgetRequest, context: Context
    ) -> pb.ForgetResponse:
        if not request.source:
            raise ContractError("Forget needs a source name. Received: an empty source")
        found = await self._run(self.executors.query, self.sidecar.forget, request.source)
        return pb.ForgetResponse(found=found)


def _caller_present(context: Context) -> Callable[[], bool]:
    """A check, safe from any thread, that the caller still waits for answers: False once
    its deadline, less the margin for answering (`rpc.deadline`), has passed or the call
    has ended (cancelled, or the stream broken). The label pool calls it when a batch's
    turn comes and at its checkpoints, and `Sidecar.label` last thing before recording."""
    ended = threading.Event()
    context.add_done_callback(lambda _ctx: ended.set())
    remaining = context.time_remaining()
    deadline = None
    if remaining is not None:
        deadline = time.monotonic() + remaining - answer_margin(remaining)

    def still_wanted() -> bool:
        return not ended.is_set() and (deadline is None or time.monotonic() < deadline)

    return still_wanted
