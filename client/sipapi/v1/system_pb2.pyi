import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sipapi.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("state", "pid", "current_job", "restarts")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[WorkerStatus.State]
        STARTING: _ClassVar[WorkerStatus.State]
        IDLE: _ClassVar[WorkerStatus.State]
        BUSY: _ClassVar[WorkerStatus.State]
        DOWN: _ClassVar[WorkerStatus.State]
    STATE_UNSPECIFIED: WorkerStatus.State
    STARTING: WorkerStatus.State
    IDLE: WorkerStatus.State
    BUSY: WorkerStatus.State
    DOWN: WorkerStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_JOB_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    state: WorkerStatus.State
    pid: int
    current_job: str
    restarts: int
    def __init__(self, state: _Optional[_Union[WorkerStatus.State, str]] = ..., pid: _Optional[int] = ..., current_job: _Optional[str] = ..., restarts: _Optional[int] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("version", "device", "queue_length", "worker", "uptime_seconds", "data_dir", "listen", "metrics_listen", "allowed_roots", "start_time", "active_watches", "studio_listen")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    METRICS_LISTEN_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ROOTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_WATCHES_FIELD_NUMBER: _ClassVar[int]
    STUDIO_LISTEN_FIELD_NUMBER: _ClassVar[int]
    version: str
    device: str
    queue_length: int
    worker: WorkerStatus
    uptime_seconds: float
    data_dir: str
    listen: str
    metrics_listen: str
    allowed_roots: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    active_watches: int
    studio_listen: str
    def __init__(self, version: _Optional[str] = ..., device: _Optional[str] = ..., queue_length: _Optional[int] = ..., worker: _Optional[_Union[WorkerStatus, _Mapping]] = ..., uptime_seconds: _Optional[float] = ..., data_dir: _Optional[str] = ..., listen: _Optional[str] = ..., metrics_listen: _Optional[str] = ..., allowed_roots: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_watches: _Optional[int] = ..., studio_listen: _Optional[str] = ...) -> None: ...

class RunDiagnosticsRequest(_message.Message):
    __slots__ = ("seconds", "matrix_size")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    MATRIX_SIZE_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    matrix_size: int
    def __init__(self, seconds: _Optional[float] = ..., matrix_size: _Optional[int] = ...) -> None: ...
