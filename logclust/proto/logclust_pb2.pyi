from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ForgetRequest(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    def __init__(self, source: _Optional[str] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class LabelRequest(_message.Message):
    __slots__ = ("batch_id", "arrow_ipc")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    arrow_ipc: bytes
    def __init__(self, batch_id: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ...) -> None: ...

class LabelResponse(_message.Message):
    __slots__ = ("batch_id", "arrow_ipc", "num_rows")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    arrow_ipc: bytes
    num_rows: int
    def __init__(self, batch_id: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ..., num_rows: _Optional[int] = ...) -> None: ...

class LatencyRequest(_message.Message):
    __slots__ = ("quantiles", "start_unix_ms", "end_unix_ms", "window_ms", "source", "by", "sketches")
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    END_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    SKETCHES_FIELD_NUMBER: _ClassVar[int]
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    start_unix_ms: int
    end_unix_ms: int
    window_ms: int
    source: str
    by: str
    sketches: bool
    def __init__(self, quantiles: _Optional[_Iterable[float]] = ..., start_unix_ms: _Optional[int] = ..., end_unix_ms: _Optional[int] = ..., window_ms: _Optional[int] = ..., source: _Optional[str] = ..., by: _Optional[str] = ..., sketches: _Optional[bool] = ...) -> None: ...

class LatencyResponse(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...

class ClustersRequest(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    def __init__(self, source: _Optional[str] = ...) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("source", "cluster_id", "size", "first_seen_unix_ms", "last_seen_unix_ms", "template", "exemplars", "active", "merged_into", "rows_per_s", "rows_per_s_before", "group_id", "local")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    MERGED_INTO_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_S_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_S_BEFORE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    source: str
    cluster_id: int
    size: int
    first_seen_unix_ms: int
    last_seen_unix_ms: int
    template: str
    exemplars: _containers.RepeatedScalarFieldContainer[str]
    active: bool
    merged_into: int
    rows_per_s: float
    rows_per_s_before: float
    group_id: int
    local: bool
    def __init__(self, source: _Optional[str] = ..., cluster_id: _Optional[int] = ..., size: _Optional[int] = ..., first_seen_unix_ms: _Optional[int] = ..., last_seen_unix_ms: _Optional[int] = ..., template: _Optional[str] = ..., exemplars: _Optional[_Iterable[str]] = ..., active: _Optional[bool] = ..., merged_into: _Optional[int] = ..., rows_per_s: _Optional[float] = ..., rows_per_s_before: _Optional[float] = ..., group_id: _Optional[int] = ..., local: _Optional[bool] = ...) -> None: ...

class ClustersResponse(_message.Message):
    __slots__ = ("clusters",)
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterInfo]
    def __init__(self, clusters: _Optional[_Iterable[_Union[ClusterInfo, _Mapping]]] = ...) -> None: ...
