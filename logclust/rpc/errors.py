"""Domain errors to gRPC status codes and HTTP statuses, in one place.

| error                                   | gRPC status        | HTTP |
|-----------------------------------------|--------------------|------|
| `RetryLaterError` (the OTLP forwarding  | RESOURCE_EXHAUSTED | 429 + Retry-After |
| queue full, the admission budget full)  | + RetryInfo        |      |
| `turns.CallerGoneError` (the caller's   | DEADLINE_EXCEEDED  | 408  |
| deadline passed, or it went away)       | (nothing recorded) |      |
| `UnsupportedMediaError` (a content type | INVALID_ARGUMENT   | 415  |
| or encoding not served)                 |                    |      |
| `TooLargeError` (a body over its cap)   | RESOURCE_EXHAUSTED | 413  |
| `contract.LimitExceededError` (rows,    | RESOURCE_EXHAUSTED | 400  |
| sizes, sources, server overloaded)      |                    |      |
| `contract.ContractError` (bad input or  | INVALID_ARGUMENT   | 400  |
| query arguments)                        |                    |      |
| anything else, a bare `ValueError` or   | INTERNAL (logged   | 500  |
| `TypeError` of an internal bug included | with a traceback)  |      |

Caller mistakes are raised as `ContractError` (a `ValueError`) by the domain code; a
plain `ValueError` from deeper down is a bug of ours and is not blamed on the caller.
`unary`/`streaming` wrap the thread-pool servicers (OTLP), `aio_unary`/`aio_streaming`
the asyncio servicer of `LogClust`; `http_status_for` serves OTLP/HTTP.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from logclust.turns import CallerGoneError
from logclust.wire.contract import ContractError, LimitExceededError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RetryLaterError(LimitExceededError):
    """No room now: the sender should retry after `retry_after_s` (RetryInfo, Retry-After)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooLargeError(LimitExceededError):
    """A request body over its size cap (HTTP 413)."""


class UnsupportedMediaError(ContractError):
    """A body in a content type or encoding that is not served (HTTP 415)."""


def retry_info_status(code: grpc.StatusCode, message: str, delay_s: float) -> grpc.Status:
    """A rich status carrying a `google.rpc.RetryInfo` with `delay_s` (for `abort_with_status`)."""
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(delay_s * 1e9))
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    return rpc_status.to_status(status)


def http_status_for(error: BaseException) -> int:
    """The HTTP status a domain error maps to (the gRPC code's counterpart above)."""
    if isinstance(error, RetryLaterError):
        return 429
    if isinstance(error, TooLargeError):
        return 413
    if isinstance(error, UnsupportedMediaError):
        return 415
    if isinstance(error, CallerGoneError):
        return 408
    return 500 if status_for(error) is grpc.StatusCode.INTERNAL else 400


def status_for(error: BaseException) -> grpc.StatusCode:
    """The status code a domain error maps to."""
    if isinstance(error, LimitExceededError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(error, CallerGoneError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(error, ContractError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, CallerGoneError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.INTERNAL


class ErrorRecorder(Protocol):
    """A servicer that counts errors by kind (metrics)."""

    def on_error(self, kind: str) -> None: ...


def _abort(context: grpc.ServicerContext, error: Exception, owner: ErrorRecorder) -> None:
    if not context.is_active():
        return  # the caller cancelled or went away: nobody to tell
    code = status_for(error)
    owner.on_error(code.name.lower())
    if code is grpc.StatusCode.INTERNAL:
        logger.exception("internal error")
        context.abort(code, f"internal error: {type(error).__name__}")
    if isinstance(error, RetryLaterError):
        # OTLP back-pressure: RESOURCE_EXHAUSTED is retried only with a RetryInfo.
        context.abort_with_status(retry_info_status(code, str(error), error.retry_after_s))
    context.abort(code, str(error))


def unary(fn: Callable[..., T]) -> Callable[..., T]:
    """Wraps a unary servicer method: domain errors end the call with their status."""

    @functools.wraps(fn)
    def call(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return fn(self, request, context)
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            _abort(context, e, self)
            raise

    return call


def streaming(fn: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
    """Wraps a response-streaming method: the first domain error ends the stream.

    Responses already yielded stay delivered; the failing request did no work.
    """

    @functools.wraps(fn)
    def call(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[T]:
        try:
            yield from fn(self, request, context)
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            _abort(context, e, self)

    return call


async def _abort_aio(
    context: grpc.aio.ServicerContext[Any, Any], error: Exception, owner: ErrorRecorder
) -> None:
    if context.done() or context.cancelled():
        return  # the caller cancelled or went away: nobody to tell
    code = status_for(error)
    owner.on_error(code.name.lower())
    if code is grpc.StatusCode.INTERNAL:
        logger.error("internal error", exc_info=error)
        await context.abort(code, f"internal error: {type(error).__name__}")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        logger.info("refused: %s", error)
    if isinstance(error, RetryLaterError):
        # Back-pressure: RESOURCE_EXHAUSTED is retried (OTLP) only with a RetryInfo.
        status = retry_info_status(code, str(error), error.retry_after_s)
        await context.abort(code, str(error), status.trailing_metadata)
    await context.abort(code, str(error))


def aio_unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """`unary` for an asyncio servicer method."""

    @functools.wraps(fn)
    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise  # the method ended the call with its own status
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            await _abort_aio(context, e, self)
            raise

    return call


def aio_streaming(fn: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    """`streaming` for an asyncio servicer method (an async generator)."""

    @functools.wraps(fn)
    async def call(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[T]:
        try:
            async for item in fn(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            await _abort_aio(context, e, self)

    return call
