from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppRegistration(_message.Message):
    __slots__ = ("server_app_id", "client_app_id", "remote_qkdn_id", "app_type", "app_priority", "min_bandwidth", "max_bandwidth", "jitter", "ttl", "key_mode")
    SERVER_APP_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_APP_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_QKDN_ID_FIELD_NUMBER: _ClassVar[int]
    APP_TYPE_FIELD_NUMBER: _ClassVar[int]
    APP_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MIN_BANDWIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_BANDWIDTH_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    KEY_MODE_FIELD_NUMBER: _ClassVar[int]
    server_app_id: str
    client_app_id: _containers.RepeatedScalarFieldContainer[str]
    remote_qkdn_id: str
    app_type: str
    app_priority: int
    min_bandwidth: int
    max_bandwidth: int
    jitter: int
    ttl: int
    key_mode: str
    def __init__(self, server_app_id: _Optional[str] = ..., client_app_id: _Optional[_Iterable[str]] = ..., remote_qkdn_id: _Optional[str] = ..., app_type: _Optional[str] = ..., app_priority: _Optional[int] = ..., min_bandwidth: _Optional[int] = ..., max_bandwidth: _Optional[int] = ..., jitter: _Optional[int] = ..., ttl: _Optional[int] = ..., key_mode: _Optional[str] = ...) -> None: ...

class AppRegistrationReply(_message.Message):
    __slots__ = ("accepted", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("km_id",)
    KM_ID_FIELD_NUMBER: _ClassVar[int]
    km_id: str
    def __init__(self, km_id: _Optional[str] = ...) -> None: ...

class NodeConfig(_message.Message):
    __slots__ = ("revision", "qkd_node_json")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    QKD_NODE_JSON_FIELD_NUMBER: _ClassVar[int]
    revision: int
    qkd_node_json: str
    def __init__(self, revision: _Optional[int] = ..., qkd_node_json: _Optional[str] = ...) -> None: ...

class PairConsumption(_message.Message):
    __slots__ = ("server_app_id", "client_app_id", "delivered_keys", "delivered_bits")
    SERVER_APP_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_APP_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_KEYS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_BITS_FIELD_NUMBER: _ClassVar[int]
    server_app_id: str
    client_app_id: str
    delivered_keys: int
    delivered_bits: int
    def __init__(self, server_app_id: _Optional[str] = ..., client_app_id: _Optional[str] = ..., delivered_keys: _Optional[int] = ..., delivered_bits: _Optional[int] = ...) -> None: ...

class ConsumptionReport(_message.Message):
    __slots__ = ("km_id", "km_run", "pairs")
    KM_ID_FIELD_NUMBER: _ClassVar[int]
    KM_RUN_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    km_id: str
    km_run: str
    pairs: _containers.RepeatedCompositeFieldContainer[PairConsumption]
    def __init__(self, km_id: _Optional[str] = ..., km_run: _Optional[str] = ..., pairs: _Optional[_Iterable[_Union[PairConsumption, _Mapping]]] = ...) -> None: ...

class ConsumptionReply(_message.Message):
    __slots__ = ("accepted", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...
