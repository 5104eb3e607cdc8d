"""Domain errors to gRPC status codes, in one place.

| error                                   | status             |
|-----------------------------------------|--------------------|
| `forward.QueueFullError`                | RESOURCE_EXHAUSTED |
|                                         | + RetryInfo        |
| `contract.LimitExceededError`           | RESOURCE_EXHAUSTED |
| `contract.ContractError`, `ValueError`, |                    |
| `TypeError` (bad query arguments)       | INVALID_ARGUMENT   |
| anything else                           | INTERNAL (logged)  |
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc

from logclust.server.forward import QueueFullError, retry_info_status
from logclust.wire.contract import ContractError, LimitExceededError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def status_for(error: BaseException) -> grpc.StatusCode:
    """The status code a domain error maps to."""
    if isinstance(error, LimitExceededError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(error, ContractError | ValueError | TypeError):
        return grpc.StatusCode.INVALID_ARGUMENT
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
    if isinstance(error, QueueFullError):
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
