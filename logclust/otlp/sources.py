"""Which new sources an OTLP request may open: a share of `max_sources` for OTLP.

The sidecar keeps at most `max_sources` sources (`StreamLabelerConfig`), and a request
that would open more is refused. OTLP senders name their source themselves
(`service.name`), often without authentication, so OTLP as a whole may open at most
`OtlpConfig.max_sources_share` of the slots (default: half): one sender inventing
service names cannot take the slots of `Label` clients (mTLS or not), who keep the rest.

A request is never refused whole for its sources: the records of the sources that do
not fit are refused alone and reported in `partial_success` (`rejected_log_records`,
with a message naming the limit), the others are labelled.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from logclust.wire.contract import DEFAULT_SOURCE


class SourceSlots(Protocol):
    """The sidecar's sources (`StreamClusters`): those present and the limit."""

    max_sources: int

    @property
    def sources(self) -> dict[str, Any]: ...


def source_of(resource_logs: Any, attribute: str) -> str:
    """The source a `ResourceLogs` maps to (as `mapping.RecordMapper` reads it)."""
    for kv in resource_logs.resource.attributes:
        if kv.key == attribute:
            return kv.value.string_value or DEFAULT_SOURCE
    return DEFAULT_SOURCE


class SourceQuota:
    """New sources OTLP may open: at most `share` present at once, within `max_sources`.

    Args:
        slots: the sidecar's sources.
        share: sources OTLP may have opened and still present.
        attribute: the resource attribute naming the source.
    """

    def __init__(self, slots: SourceSlots, share: int, attribute: str) -> None:
        self.slots = slots
        self.share = share
        self.attribute = attribute
        self._opened: set[str] = set()
        self._lock = threading.Lock()

    def refuse_over_quota(self, request: ExportLogsServiceRequest) -> tuple[int, str]:
        """Removes from `request` the `ResourceLogs` of new sources that do not fit.

        Returns:
            `(records removed, reason)`; `(0, "")` when every source fits.
        """
        names = [source_of(rl, self.attribute) for rl in request.resource_logs]
        present = set(self.slots.sources)
        new = list(dict.fromkeys(n for n in names if n not in present))
        if not new:
            return 0, ""
        with self._lock:
            self._opened &= present  # forgotten or evicted sources free their slot
            room = min(self.slots.max_sources - len(present), self.share - len(self._opened))
            taken = new[: max(room, 0)]
            self._opened.update(taken)
        refused = set(new[len(taken) :])
        if not refused:
            return 0, ""
        removed = 0
        for i in reversed(range(len(names))):
            if names[i] in refused:
                removed += sum(len(sl.log_records) for sl in request.resource_logs[i].scope_logs)
                del request.resource_logs[i]
        shown = sorted(refused)[:3]
        reason = (
            f"source limit reached (OTLP may open {self.share} of max_sources="
            f"{self.slots.max_sources}; {len(present)} present): records of {len(refused)} "
            f"new sources refused. Received: {shown}"
        )
        return removed, reason
