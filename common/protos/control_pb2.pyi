from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetLinkRequest(_message.Message):
    __slots__ = ("qkdl_id", "up")
    QKDL_ID_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    qkdl_id: str
    up: bool
    def __init__(self, qkdl_id: _Optional[str] = ..., up: _Optional[bool] = ...) -> None: ...

class SetEavesdropperRequest(_message.Message):
    __slots__ = ("qkdl_id", "fraction")
    QKDL_ID_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    qkdl_id: str
    fraction: float
    def __init__(self, qkdl_id: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class StopNodeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkState(_message.Message):
    __slots__ = ("qkdl_id", "peer_node", "peer_qkdn_id", "status", "skr_bps", "qber", "available_keys", "consumed_keys", "enabled", "fibre_up", "eve_fraction", "aborted")
    QKDL_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_NODE_FIELD_NUMBER: _ClassVar[int]
    PEER_QKDN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SKR_BPS_FIELD_NUMBER: _ClassVar[int]
    QBER_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_KEYS_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_KEYS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FIBRE_UP_FIELD_NUMBER: _ClassVar[int]
    EVE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    qkdl_id: str
    peer_node: str
    peer_qkdn_id: str
    status: str
    skr_bps: float
    qber: float
    available_keys: int
    consumed_keys: int
    enabled: bool
    fibre_up: bool
    eve_fraction: float
    aborted: bool
    def __init__(self, qkdl_id: _Optional[str] = ..., peer_node: _Optional[str] = ..., peer_qkdn_id: _Optional[str] = ..., status: _Optional[str] = ..., skr_bps: _Optional[float] = ..., qber: _Optional[float] = ..., available_keys: _Optional[int] = ..., consumed_keys: _Optional[int] = ..., enabled: _Optional[bool] = ..., fibre_up: _Optional[bool] = ..., eve_fraction: _Optional[float] = ..., aborted: _Optional[bool] = ...) -> None: ...

class LinkReply(_message.Message):
    __slots__ = ("link", "message")
    LINK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    link: LinkState
    message: str
    def __init__(self, link: _Optional[_Union[LinkState, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class StopNodeReply(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("name", "qkdn_id", "status", "links")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QKDN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    qkdn_id: str
    status: str
    links: _containers.RepeatedCompositeFieldContainer[LinkState]
    def __init__(self, name: _Optional[str] = ..., qkdn_id: _Optional[str] = ..., status: _Optional[str] = ..., links: _Optional[_Iterable[_Union[LinkState, _Mapping]]] = ...) -> None: ...
