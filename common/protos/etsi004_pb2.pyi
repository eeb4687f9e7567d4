from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QoS(_message.Message):
    __slots__ = ("key_chunk_size", "max_bps", "min_bps", "jitter", "priority", "timeout", "ttl", "metadata_mimetype")
    KEY_CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BPS_FIELD_NUMBER: _ClassVar[int]
    MIN_BPS_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    METADATA_MIMETYPE_FIELD_NUMBER: _ClassVar[int]
    key_chunk_size: int
    max_bps: int
    min_bps: int
    jitter: int
    priority: int
    timeout: int
    ttl: int
    metadata_mimetype: str
    def __init__(self, key_chunk_size: _Optional[int] = ..., max_bps: _Optional[int] = ..., min_bps: _Optional[int] = ..., jitter: _Optional[int] = ..., priority: _Optional[int] = ..., timeout: _Optional[int] = ..., ttl: _Optional[int] = ..., metadata_mimetype: _Optional[str] = ...) -> None: ...

class OpenConnectRequest(_message.Message):
    __slots__ = ("source", "destination", "qos", "key_stream_id")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    qos: QoS
    key_stream_id: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ..., qos: _Optional[_Union[QoS, _Mapping]] = ..., key_stream_id: _Optional[str] = ...) -> None: ...

class OpenConnectResponse(_message.Message):
    __slots__ = ("status", "key_stream_id", "qos")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    status: int
    key_stream_id: str
    qos: QoS
    def __init__(self, status: _Optional[int] = ..., key_stream_id: _Optional[str] = ..., qos: _Optional[_Union[QoS, _Mapping]] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("key_stream_id", "index", "metadata_size")
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    METADATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    key_stream_id: str
    index: int
    metadata_size: int
    def __init__(self, key_stream_id: _Optional[str] = ..., index: _Optional[int] = ..., metadata_size: _Optional[int] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ("status", "key_buffer", "index", "metadata")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KEY_BUFFER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    status: int
    key_buffer: bytes
    index: int
    metadata: bytes
    def __init__(self, status: _Optional[int] = ..., key_buffer: _Optional[bytes] = ..., index: _Optional[int] = ..., metadata: _Optional[bytes] = ...) -> None: ...

class GetKeyBatchRequest(_message.Message):
    __slots__ = ("key_stream_id", "indices")
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    key_stream_id: str
    indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key_stream_id: _Optional[str] = ..., indices: _Optional[_Iterable[int]] = ...) -> None: ...

class BatchKey(_message.Message):
    __slots__ = ("status", "index", "key_buffer", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KEY_BUFFER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: int
    index: int
    key_buffer: bytes
    message: str
    def __init__(self, status: _Optional[int] = ..., index: _Optional[int] = ..., key_buffer: _Optional[bytes] = ..., message: _Optional[str] = ...) -> None: ...

class GetKeyBatchResponse(_message.Message):
    __slots__ = ("status", "keys")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    status: int
    keys: _containers.RepeatedCompositeFieldContainer[BatchKey]
    def __init__(self, status: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[BatchKey, _Mapping]]] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("key_stream_id",)
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    key_stream_id: str
    def __init__(self, key_stream_id: _Optional[str] = ...) -> None: ...

class CloseResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: int
    def __init__(self, status: _Optional[int] = ...) -> None: ...
