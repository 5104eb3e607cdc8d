from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogsColumns(_message.Message):
    __slots__ = ("resource_logs",)
    RESOURCE_LOGS_FIELD_NUMBER: _ClassVar[int]
    resource_logs: _containers.RepeatedCompositeFieldContainer[ResourceColumns]
    def __init__(self, resource_logs: _Optional[_Iterable[_Union[ResourceColumns, _Mapping]]] = ...) -> None: ...

class ResourceColumns(_message.Message):
    __slots__ = ("scope_logs",)
    SCOPE_LOGS_FIELD_NUMBER: _ClassVar[int]
    scope_logs: _containers.RepeatedCompositeFieldContainer[ScopeColumns]
    def __init__(self, scope_logs: _Optional[_Iterable[_Union[ScopeColumns, _Mapping]]] = ...) -> None: ...

class ScopeColumns(_message.Message):
    __slots__ = ("log_records",)
    LOG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    log_records: RecordColumns
    def __init__(self, log_records: _Optional[_Union[RecordColumns, _Mapping]] = ...) -> None: ...

class RecordColumns(_message.Message):
    __slots__ = ("time_unix_nano", "body", "attributes", "observed_time_unix_nano")
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    body: ValueColumns
    attributes: AttributeColumns
    observed_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, time_unix_nano: _Optional[_Iterable[int]] = ..., body: _Optional[_Union[ValueColumns, _Mapping]] = ..., attributes: _Optional[_Union[AttributeColumns, _Mapping]] = ..., observed_time_unix_nano: _Optional[_Iterable[int]] = ...) -> None: ...

class ValueColumns(_message.Message):
    __slots__ = ("string_value", "bool_value", "int_value", "double_value", "array_value", "kvlist_value", "bytes_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    ARRAY_VALUE_FIELD_NUMBER: _ClassVar[int]
    KVLIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: _containers.RepeatedScalarFieldContainer[str]
    bool_value: _containers.RepeatedScalarFieldContainer[bool]
    int_value: _containers.RepeatedScalarFieldContainer[int]
    double_value: _containers.RepeatedScalarFieldContainer[float]
    array_value: _containers.RepeatedScalarFieldContainer[bytes]
    kvlist_value: _containers.RepeatedScalarFieldContainer[bytes]
    bytes_value: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, string_value: _Optional[_Iterable[str]] = ..., bool_value: _Optional[_Iterable[bool]] = ..., int_value: _Optional[_Iterable[int]] = ..., double_value: _Optional[_Iterable[float]] = ..., array_value: _Optional[_Iterable[bytes]] = ..., kvlist_value: _Optional[_Iterable[bytes]] = ..., bytes_value: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AttributeColumns(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: _containers.RepeatedScalarFieldContainer[str]
    value: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[_Iterable[str]] = ..., value: _Optional[_Iterable[bytes]] = ...) -> None: ...
