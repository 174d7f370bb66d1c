import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OnSuccess(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ON_SUCCESS_UNSPECIFIED: _ClassVar[OnSuccess]
    ON_SUCCESS_KEEP: _ClassVar[OnSuccess]
    ON_SUCCESS_MOVE: _ClassVar[OnSuccess]
    ON_SUCCESS_DELETE: _ClassVar[OnSuccess]
ON_SUCCESS_UNSPECIFIED: OnSuccess
ON_SUCCESS_KEEP: OnSuccess
ON_SUCCESS_MOVE: OnSuccess
ON_SUCCESS_DELETE: OnSuccess

class Watch(_message.Message):
    __slots__ = ("name", "inbox", "outbox", "project", "model", "pattern", "recursive", "on_success", "quiet_seconds", "require_sentinel", "confidence", "state", "done", "failed", "queued", "running", "last_error", "create_time", "from_config", "recipe", "remove_preprocessed")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Watch.State]
        ACTIVE: _ClassVar[Watch.State]
        PAUSED: _ClassVar[Watch.State]
    STATE_UNSPECIFIED: Watch.State
    ACTIVE: Watch.State
    PAUSED: Watch.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    INBOX_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    ON_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    QUIET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_SENTINEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_PREPROCESSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    inbox: str
    outbox: str
    project: str
    model: str
    pattern: str
    recursive: bool
    on_success: OnSuccess
    quiet_seconds: float
    require_sentinel: bool
    confidence: bool
    state: Watch.State
    done: int
    failed: int
    queued: int
    running: int
    last_error: str
    create_time: _timestamp_pb2.Timestamp
    from_config: bool
    recipe: str
    remove_preprocessed: bool
    def __init__(self, name: _Optional[str] = ..., inbox: _Optional[str] = ..., outbox: _Optional[str] = ..., project: _Optional[str] = ..., model: _Optional[str] = ..., pattern: _Optional[str] = ..., recursive: _Optional[bool] = ..., on_success: _Optional[_Union[OnSuccess, str]] = ..., quiet_seconds: _Optional[float] = ..., require_sentinel: _Optional[bool] = ..., confidence: _Optional[bool] = ..., state: _Optional[_Union[Watch.State, str]] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., last_error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_config: _Optional[bool] = ..., recipe: _Optional[str] = ..., remove_preprocessed: _Optional[bool] = ...) -> None: ...

class CreateWatchRequest(_message.Message):
    __slots__ = ("watch_id", "watch")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    watch_id: str
    watch: Watch
    def __init__(self, watch_id: _Optional[str] = ..., watch: _Optional[_Union[Watch, _Mapping]] = ...) -> None: ...

class GetWatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListWatchesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWatchesResponse(_message.Message):
    __slots__ = ("watches", "next_page_token")
    WATCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    watches: _containers.RepeatedCompositeFieldContainer[Watch]
    next_page_token: str
    def __init__(self, watches: _Optional[_Iterable[_Union[Watch, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseWatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeWatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteWatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
