"""Python client of the sidecar: Arrow tables in, Arrow tables out.

```python
with Client("127.0.0.1:50051") as client:
    labelled = client.label(table)            # + cluster_id, cluster_distance
    p99 = client.latency(quantiles=[0.99], since_s=900, window_s=60)
    clusters = client.clusters()
```

Server errors surface as `grpc.RpcError` with the status code and message.

TLS: `Client(addr, tls=ClientTls(ca_file="ca.pem"))`, plus `cert_file`/`key_file` when
the server asks for client certificates (mTLS). `addr` may be `unix:///path/to/sock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
import pyarrow as pa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from logclust.client.tables import clusters_to_table
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.rpc.tls import channel_credentials
from logclust.wire import ipc
from logclust.wire.contract import DEFAULT_QUANTILES

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Where `logclust serve` listens unless told otherwise (the server's `DEFAULT_LISTEN`;
# the client does not import server code).
DEFAULT_ADDR = "127.0.0.1:50051"


@dataclass(frozen=True)
class ClientTls:
    """TLS of the connection: the CA to trust, and a client certificate for mTLS."""

    # PEM CA bundle the server's certificate must chain to; None: the system's roots.
    ca_file: str | None = None
    # PEM client certificate chain and key (both or neither).
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "A client certificate needs both cert_file and key_file. Received: "
                f"cert_file={self.cert_file!r}, key_file={self.key_file!r}"
            )

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials (reads the PEM files)."""
        return channel_credentials(self.ca_file, self.cert_file, self.key_file)


class Client:
    """Connection to one sidecar.

    Args:
        addr: `host:port` of the sidecar, or `unix:///path/to/sock`.
        timeout_s: deadline of unary calls (Label streams have none).
        max_message_bytes: largest response accepted.
        tls: TLS settings; None: plaintext.
    """

    def __init__(
        self,
        addr: str,
        timeout_s: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: ClientTls | None = None,
    ) -> None:
        self.addr = addr
        self.timeout_s = timeout_s
        self.tls = tls
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._channel = (
            grpc.insecure_channel(addr, options=options)
            if tls is None
            else grpc.secure_channel(addr, tls.credentials(), options=options)
        )
        self._stub = pb_grpc.LogClustStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Blocks until the channel connects (raises `grpc.FutureTimeoutError`)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def health(self, service: str = "") -> str:
        """Health status name (`SERVING`, `NOT_SERVING`, ...)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    def label_stream(self, batches: Iterable[pa.Table | pa.RecordBatch]) -> Iterator[pa.Table]:
        """Streams batches over one Label call; yields labelled tables in order.

        Raises:
            grpc.RpcError: the server refused a batch (the stream ends there).
            RuntimeError: a response answers an unexpected batch id.
        """
        sent: list[str] = []

        def requests() -> Iterator[pb.LabelRequest]:
            for i, batch in enumerate(batches):
                sent.append(str(i))
                yield pb.LabelRequest(batch_id=str(i), arrow_ipc=ipc.encode_ipc(batch))

        for n, response in enumerate(self._stub.Label(requests())):
            if response.batch_id != str(n):
                raise RuntimeError(
                    f"Responses out of order: expected batch {n}. Received: {response.batch_id}"
                )
            yield ipc.decode_trusted_ipc(response.arrow_ipc)

    def label(
        self,
        table: pa.Table,
        batch_size: int = 10_000,
        progress: Callable[[int], None] | None = None,
    ) -> pa.Table:
        """Labels a whole table in batches of `batch_size` rows over one stream.

        Args:
            table: rows with at least `body` (see `logclust.wire.contract`).
            batch_size: rows per request.
            progress: called with the number of rows labelled so far after each batch.

        Returns:
            The rows in order with the caller's columns plus `cluster_id` and
            `cluster_distance`.
        """
        out, done = [], 0
        for labelled in self.label_stream(ipc.iter_slices(table, batch_size)):
            out.append(labelled)
            done += labelled.num_rows
            if progress is not None:
                progress(done)
        if not out:
            raise ValueError(f"Nothing to label. Received: {table.num_rows} rows")
        return pa.concat_tables(out)

    def latency(
        self,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        since_s: float | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        window_s: float | None = None,
        source: str | None = None,
        sketches: bool = False,
        by: str = "cluster",
    ) -> pa.Table:
        """Per-cluster counts and latency quantiles (see `LatencyBook.query`).

        Args:
            quantiles: in [0, 1].
            since_s: range starts this many seconds ago (overrides `start_ms`).
            start_ms: range start, Unix ms; None is unbounded.
            end_ms: range end (exclusive), Unix ms; None is unbounded.
            window_s: bucket width in seconds; None gives one row per cluster.
            source: only this source.
            sketches: also each row's `sketch` (bytes) and `local` (the sidecar's own id,
                not the fleet catalog's): what `logclust.cli.fleet_query` merges.
            by: "cluster", or "group": a row per group (clusters that mean the same,
                their sketches merged exactly; the group id in `cluster_id`).
        """
        if since_s is not None:
            start_ms = int(time.time() * 1000 - since_s * 1000)
        request = pb.LatencyRequest(
            quantiles=list(quantiles),
            start_unix_ms=start_ms or 0,
            end_unix_ms=end_ms or 0,
            window_ms=int(round(window_s * 1000)) if window_s else 0,
            source=source or "",
            sketches=sketches,
            by=by,
        )
        response = self._stub.Latency(request, timeout=self.timeout_s)
        table = ipc.decode_trusted_ipc(response.arrow_ipc)
        if by == "group":  # the ids are groups'
            names = ["group_id" if n == "cluster_id" else n for n in table.column_names]
            table = table.rename_columns(names)
        return table

    def forget(self, source: str) -> bool:
        """Drops `source` on the sidecar (clusters, latency, store); False when unknown."""
        response = self._stub.Forget(pb.ForgetRequest(source=source), timeout=self.timeout_s)
        return bool(response.found)

    def clusters(self, source: str | None = None) -> pa.Table:
        """Every cluster: source, id, size, first/last seen, template, exemplars, active,
        merged_into (the id standing for a merged cluster's rows; null otherwise),
        rows_per_s and rows_per_s_before (the last rate window and the one before),
        group_id (the cluster's group: clusters that mean the same share one)."""
        response = self._stub.Clusters(
            pb.ClustersRequest(source=source or ""), timeout=self.timeout_s
        )
        return clusters_to_table(response)
