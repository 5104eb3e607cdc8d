"""OTLP forwarding under a storage budget (`OtlpConfig.forward_sampled`): the records the
sidecar did not keep are dropped from the request, and each kept one gets the attribute
`logclust.sample_weight` (double: the records it stands for), so that a query engine
downstream rebuilds counts and percentiles from the sample (docs/sampling.md)."""

from __future__ import annotations

import numpy as np
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

SAMPLE_WEIGHT_ATTRIBUTE = "logclust.sample_weight"


def _drop_weight(rec: LogRecord) -> None:
    """Removes the weight an earlier logclust hop added (it is replaced)."""
    attrs = rec.attributes
    for i in reversed(range(len(attrs))):
        if attrs[i].key == SAMPLE_WEIGHT_ATTRIBUTE:
            del attrs[i]


def thin(
    request: ExportLogsServiceRequest,
    keep: np.ndarray,
    weight: np.ndarray,
    replace: bool = True,
) -> int:
    """Keeps the records of `request` that `keep` marks, each with its weight; in place.

    Args:
        request: the request whose records, in order, are the rows of `keep` (refused
            records already removed).
        keep: `(n,)` bool per record.
        weight: `(n,)` float64 per record (what a kept record stands for).
        replace: remove a weight an earlier hop set first (False when the request is
            known to have none).

    Returns:
        The records left.

    Raises:
        ValueError: `keep` does not have one value per record.
    """
    encoded: dict[float, bytes] = {}  # one serialized attribute per distinct weight
    row = 0
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            records = sl.log_records
            n = len(records)
            if row + n > keep.size:
                break
            kept = np.flatnonzero(keep[row : row + n]).tolist()
            for j in kept:
                w = float(weight[row + j])
                extra = encoded.get(w)
                if extra is None:
                    attr = KeyValue(key=SAMPLE_WEIGHT_ATTRIBUTE, value=AnyValue(double_value=w))
                    extra = encoded[w] = LogRecord(attributes=[attr]).SerializeToString()
                if replace:
                    _drop_weight(records[j])
                records[j].MergeFromString(extra)
            if len(kept) < n:  # rebuilt from the kept ones: cost in the kept, not the dropped
                data = [records[j].SerializeToString() for j in kept]
                del records[:]
                for b in data:
                    records.add().MergeFromString(b)
            row += n
    total = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    if row != keep.size or total != int(keep.sum()):
        raise ValueError(
            f"thin needs one keep value per record. Received: {keep.size} values, "
            f"{row} records read"
        )
    return total
