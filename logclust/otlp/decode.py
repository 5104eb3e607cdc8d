"""OTLP/HTTP bodies to requests: content encodings and OTLP/JSON, each refusal named.

| body | answer |
|---|---|
| `Content-Encoding` other than identity or gzip (zstd, br, deflate) | 415 |
| gzip that does not inflate (a gzip header, then garbage; cut short) | 400 |
| gzip inflating past `max_request_bytes` | 413 (inflated a slice at a time) |
| JSON nested deeper than Python can parse | 400 |

Inflating grows the request's admission ticket (`logclust.rpc.admission`) a slice at a
time: 20 parallel bombs hold the budget, not 20 times the cap.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from logclust.rpc.admission import Ticket
from logclust.rpc.errors import TooLargeError, UnsupportedMediaError
from logclust.wire.contract import ContractError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = ("identity", "gzip")
# Bytes inflated at a time (the ticket grows by as much): the most a request inflates
# past its cap before it is refused.
INFLATE_SLICE = 256 * 1024
# Compressed bytes fed to zlib at a time.
INPUT_PIECE = 64 * 1024


def check_encoding(encoding: str) -> str:
    """The body's content coding, lower case.

    Raises:
        UnsupportedMediaError: not identity or gzip (a zstd body is refused, not read as
            protobuf).
    """
    coding = encoding.strip().lower() or "identity"
    if coding not in ENCODINGS:
        raise UnsupportedMediaError(
            f"Content-Encoding must be one of {list(ENCODINGS)}. Received: {encoding!r}"
        )
    return coding


def check_content_type(ctype: str) -> str:
    """`ctype` when protobuf or JSON.

    Raises:
        UnsupportedMediaError: another type (415).
    """
    if ctype not in (PROTOBUF, JSON):
        raise UnsupportedMediaError(
            f"Content-Type must be {PROTOBUF} or {JSON}. Received: {ctype!r}"
        )
    return ctype


def gunzip(data: bytes, limit: int, ticket: Ticket | None = None) -> bytes:
    """Inflates gzip `data`, refusing more than `limit` bytes of output.

    Raises:
        ContractError: not gzip, or cut short.
        TooLargeError: more than `limit` bytes inflated.
        RetryLaterError: the admission budget has no room for the inflated bytes.
    """
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    try:
        _inflate(d, data, limit, ticket, parts)
        if not d.eof:
            raise ContractError(f"Body is gzip cut short. Received: {len(data)} bytes")
        return b"".join(parts)
    except zlib.error as e:
        raise ContractError(f"Body is not valid gzip: {e}. Received: {len(data)} bytes") from e
    finally:
        # A refusal's traceback keeps this frame (and an answer's cycle may keep the
        # traceback until a collection): the inflated slices go now, not with it.
        parts.clear()
        del d


def _inflate(d: Any, data: bytes, limit: int, ticket: Ticket | None, parts: list[bytes]) -> None:
    """Inflates `data` into `parts`, a slice at a time, refused as soon as past `limit`
    or the admission budget (the slice that crossed it is dropped at once)."""
    total = 0
    view = memoryview(data)
    # Fed in small pieces: the input left over after each slice is copied by zlib
    # (`unconsumed_tail`), a piece's worth, not the whole body's, per slice.
    for start in range(0, len(data), INPUT_PIECE):
        pending = bytes(view[start : start + INPUT_PIECE])
        while pending:
            out = d.decompress(pending, INFLATE_SLICE)
            pending = d.unconsumed_tail
            total += len(out)
            if total > limit:
                raise TooLargeError(
                    f"Request over {limit} bytes after gunzip. Received: more than {limit}"
                )
            if ticket is not None and out:
                ticket.grow(len(out), "inflated body")
            parts.append(out)
            if d.eof:
                return
    rest = d.flush()
    if total + len(rest) > limit:
        raise TooLargeError(f"Request over {limit} bytes after gunzip. Received: more than {limit}")
    parts.append(rest)


def _hex_ids_to_base64(doc: Any) -> None:
    # OTLP/JSON writes trace and span ids as hex; protobuf JSON expects base64 bytes.
    for rl in doc.get("resourceLogs", []) if isinstance(doc, dict) else []:
        for sl in rl.get("scopeLogs", []):
            for rec in sl.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    value = rec.get(key)
                    if isinstance(value, str) and value:
                        try:
                            rec[key] = base64.b64encode(bytes.fromhex(value)).decode()
                        except ValueError as e:
                            raise ContractError(f"{key} must be hex. Received: {value!r}") from e


def parse_json(data: bytes) -> ExportLogsServiceRequest:
    """Decodes an OTLP/JSON `ExportLogsServiceRequest`.

    Raises:
        ContractError: not JSON, nested too deep, or not an ExportLogsServiceRequest.
    """
    try:
        doc = json.loads(data)
        _hex_ids_to_base64(doc)
        return json_format.ParseDict(doc, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    except RecursionError as e:
        raise ContractError(f"OTLP/JSON nested too deep. Received: {len(data)} bytes") from e
    except (ValueError, json_format.ParseError, AttributeError, TypeError) as e:
        raise ContractError(f"Not an OTLP/JSON ExportLogsServiceRequest: {e}") from e
