"""The forwarding queue: labelled OTLP requests to the next hop, at least once.

A receiver *reserves* room for a request's records before labelling anything
(`reserve`); a full queue raises `QueueFullError`, which the servers turn into
RESOURCE_EXHAUSTED with RetryInfo (gRPC) or 429 with Retry-After (HTTP), so the sender
retries and nothing is labelled twice. After labelling, the request is `put` in the
reserved room, serialized: a parsed request holds several times its bytes on the wire
(more once labelled), and the bytes are what the next hop gets anyway. One
thread sends queued requests, merged up to `forward_batch_records`, and frees their
room only once the next hop accepted them. Retryable failures
(UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED, CANCELLED) are retried
with exponential backoff (the next hop's RetryInfo delay when it names a longer one);
any other status drops the batch, logged and counted. The next hop is dialled in
plaintext unless the config asks for TLS (`OtlpConfig.forward_tls`): then a next hop
whose certificate does not chain to the forward CA is UNAVAILABLE, retried and logged
with gRPC's handshake message like any outage. With a `spill` file (`serve --store`),
the queue is on disk while the next hop is down (from its first failed Export until one
goes through: every request is written before it is acked), what is still queued when
the queue closes is written there rather than dropped, and the file's requests are
queued again first at the next start, after a stop or a kill -9 (`logclust.otlp.spill`).
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from prometheus_client import CollectorRegistry, Counter, Gauge

from logclust.otlp.config import OtlpConfig
from logclust.otlp.spill import SpillJournal, write_spill
from logclust.rpc.errors import RetryLaterError
from logclust.rpc.tls import channel_credentials

logger = logging.getLogger(__name__)

EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


class QueueFullError(RetryLaterError):
    """The forwarding queue has no room for a request: retry after `retry_after_s`."""


@dataclass
class _Item:
    request: bytes  # a serialized ExportLogsServiceRequest
    records: int
    nbytes: int
    on_disk: int | None = None  # its end offset in the spill file; None: not written


class ForwardQueue:
    """Bounded queue of labelled requests and the thread that exports them downstream.

    Args:
        config: `forward` (the next hop), queue bounds, batch size, timeouts, backoff.
        registry: Prometheus registry for the queue metrics; None records none.
        spill: the spill file: the queue while the next hop is down, what `close` could
            not deliver, and where requests left by the previous run are queued from
            first; None: the queue is in memory only.
    """

    def __init__(
        self,
        config: OtlpConfig,
        registry: CollectorRegistry | None = None,
        spill: Path | None = None,
    ) -> None:
        assert config.forward is not None
        self.config = config
        self.spill = spill
        self.records = 0  # reserved or queued, not yet delivered
        self.nbytes = 0
        self._items: collections.deque[_Item] = collections.deque()
        self._journal = None if spill is None else SpillJournal(spill)
        for (request, records, nbytes), end in (
            [] if self._journal is None else self._journal.load()
        ):
            self._items.append(_Item(request, records, nbytes, end))  # acked: over the caps
            self.records += records
            self.nbytes += nbytes
        # The next hop is taken for down (requests written to the spill file) from a
        # failed Export until one goes through, and at a start with requests left.
        self._down = bool(self._items)
        if self._items:
            logger.info("queued %d records spilled by the last run (%s)", self.records, spill)
        self._cond = threading.Condition()
        self._closing = False  # no more puts; drain what is queued
        self._abandon = threading.Event()  # stop now, even with records queued
        self._channel = _dial(config)
        # Requests go out as bytes: serialized requests concatenated are one merged request
        # (its only field is repeated), cheaper than copying messages into a new one.
        self._export = self._channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportLogsServiceResponse.FromString,
        )
        self._outcomes = Counter(
            "logclust_otlp_forwarded_records",
            "Records sent to the next hop by outcome (sent, dropped).",
            ["outcome"],
            registry=registry,
        )
        self._retries = Counter(
            "logclust_otlp_forward_retries", "Downstream Export retries.", registry=registry
        )
        queued = Gauge(
            "logclust_otlp_queue_records", "Records waiting for the next hop.", registry=registry
        )
        queued.set_function(lambda: self.records)
        self._thread = threading.Thread(target=self._run, name="logclust-forward", daemon=True)
        self._thread.start()

    # -- receiver side ---------------------------------------------------------------------

    def reserve(self, records: int, nbytes: int) -> None:
        """Takes room for a request before it is labelled.

        Raises:
            QueueFullError: not enough room (or shutting down); nothing was taken.
        """
        cfg = self.config
        with self._cond:
            full = (
                self.records + records > cfg.queue_records or self.nbytes + nbytes > cfg.queue_bytes
            )
            # An empty queue takes any request the size caps let in, so one large
            # request cannot be refused forever.
            if self._closing or (full and self.records > 0):
                raise QueueFullError(
                    f"Forwarding queue full ({self.records}/{cfg.queue_records} records, "
                    f"{self.nbytes}/{cfg.queue_bytes} bytes), retry later. "
                    f"Received: {records} records, {nbytes} bytes",
                    cfg.retry_after_s,
                )
            self.records += records
            self.nbytes += nbytes

    def release(self, records: int, nbytes: int) -> None:
        """Gives back room taken by `reserve` that will not be `put`."""
        with self._cond:
            self.records -= records
            self.nbytes -= nbytes
            self._cond.notify_all()

    def put(self, request: ExportLogsServiceRequest, records: int, nbytes: int) -> None:
        """Queues a labelled request in the room reserved for it (`records`, `nbytes`)."""
        item = _Item(request.SerializeToString(), records, nbytes)
        with self._cond:
            if self._down and self._journal is not None and self._journal.open:
                try:
                    item.on_disk = self._journal.append((item.request, records, nbytes))
                except OSError as e:  # a full disk: queued in memory only, as without a store
                    logger.error("cannot write the forwarding queue to %s: %s", self.spill, e)
            self._items.append(item)
            self._cond.notify_all()

    # -- sender side -----------------------------------------------------------------------

    def _take(self) -> list[_Item] | None:
        """Items for the next Export (up to the batch size); None when done."""
        with self._cond:
            while not self._items:
                if self._abandon.is_set() or (self._closing and self.records == 0):
                    return None
                self._cond.wait(0.5)
            batch = [self._items.popleft()]
            total = batch[0].records
            cap = self.config.forward_batch_records
            while self._items and total + self._items[0].records <= cap:
                total += self._items[0].records
                batch.append(self._items.popleft())
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            request = b"".join(item.request for item in batch)
            records = sum(i.records for i in batch)
            outcome = self._send(request, records, batch)  # "sent", "dropped", "abandoned"
            if outcome == "abandoned" and self.spill is not None:
                with self._cond:  # back in front: `close` spills it
                    self._items.extendleft(reversed(batch))
                return
            if outcome == "abandoned":
                logger.error("shutdown: %d queued records not forwarded", self.records)
                outcome = "dropped"
            self._outcomes.labels(outcome=outcome).inc(records)
            self._delivered(batch, up=outcome == "sent")
            self.release(records, sum(i.nbytes for i in batch))

    def _went_down(self, batch: list[_Item]) -> None:
        """The next hop failed: from now on the queue is on disk (the spill file holds
        `batch`, in flight, and everything queued, then every request queued)."""
        with self._cond:
            if self._down or self._journal is None:
                return
            self._down = True
            items = [*batch, *self._items]
            try:
                ends = self._journal.rewrite([(i.request, i.records, i.nbytes) for i in items])
            except OSError as e:  # a full disk: the queue stays in memory only
                logger.error("cannot write the forwarding queue to %s: %s", self.spill, e)
                return
            for item, end in zip(items, ends, strict=True):
                item.on_disk = end if self._journal.open else None
        logger.info("next hop down: the forwarding queue is written to %s", self.spill)

    def _delivered(self, batch: list[_Item], up: bool) -> None:
        """`batch` is done with (sent, or refused for good): out of the spill file; `up`:
        the next hop took it, new requests stay in memory."""
        ends = [i.on_disk for i in batch if i.on_disk is not None]
        with self._cond:
            if up:
                self._down = False
            if ends and self._journal is not None:
                self._journal.delivered(max(ends))

    def _send(self, request: bytes, records: int, batch: list[_Item]) -> str:
        """Exports until accepted, refused for good, or abandoned; returns the outcome.
        A retryable failure puts the queue on disk (`_went_down`)."""
        delay = self.config.retry_initial_s
        while True:
            try:
                response = self._export(request, timeout=self.config.forward_timeout_s)
            except grpc.RpcError as e:
                code = e.code()  # type: ignore[attr-defined]
                if code not in RETRYABLE:
                    logger.error("next hop refused %d records (%s): dropped", records, code)
                    return "dropped"
                wait = max(delay, _retry_delay(e) or 0.0) * random.uniform(0.8, 1.2)
                logger.info(
                    "next hop %s (%s: %s): retrying in %.2f s",
                    self.config.forward,
                    code,
                    e.details(),  # type: ignore[attr-defined]
                    wait,
                )
                self._retries.inc()
                self._went_down(batch)
                if self._abandon.wait(wait):
                    return "abandoned"
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            rejected = response.partial_success.rejected_log_records
            if rejected:
                logger.warning(
                    "next hop refused %d of %d records: %s",
                    rejected,
                    records,
                    response.partial_success.error_message,
                )
            return "sent"

    def close(self, timeout: float) -> bool:
        """Stops taking requests, sends what is queued for up to `timeout` seconds, then
        spills the rest to `spill` (or drops it, logged). Returns True when everything
        was delivered."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        # Judged by what is left, not by the thread: with nothing queued it may still be
        # waking up to see `_closing` (a `timeout` of 0 gives it no time to).
        with self._cond:
            drained = self.records == 0
        if self._thread.is_alive():
            self._abandon.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join()
        self._channel.close()
        if self._journal is not None and self._items:
            self._journal.close()  # replaced below
        elif self._journal is not None:
            self._journal.discard()
        if self.spill is not None and self._items:
            items = [(i.request, i.records, i.nbytes) for i in self._items]
            records = write_spill(self.spill, items)
            logger.warning(
                "next hop down: %d queued records spilled to %s, sent after the next start",
                records,
                self.spill,
            )
        return drained


def _dial(config: OtlpConfig) -> grpc.Channel:
    """The channel to `config.forward`: TLS when `config.forward_tls()` (the forward CA,
    client certificate and key), else plaintext.

    Raises:
        OSError: a PEM file cannot be read.
    """
    options = [
        # Reconnect as soon as our own backoff asks, not after gRPC's (up to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", int(config.retry_max_s * 1000)),
        ("grpc.max_send_message_length", -1),
    ]
    target = config.forward_target()
    assert target is not None  # a ForwardQueue is made only with a forward
    if not config.forward_tls():
        return grpc.insecure_channel(target, options=options)
    credentials = channel_credentials(
        config.forward_ca_file, config.forward_cert_file, config.forward_key_file
    )
    return grpc.secure_channel(target, credentials, options=options)


def _retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay of a failed call, if the next hop sent one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    return None
