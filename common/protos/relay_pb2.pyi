from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RelayHop(_message.Message):
    __slots__ = ("virt_link_id", "hop", "sender", "receiver", "mode", "link_key_indices", "sealed", "key_ids", "size_bits", "master", "slaves", "expires_at")
    VIRT_LINK_ID_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LINK_KEY_INDICES_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    SLAVES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    virt_link_id: str
    hop: int
    sender: str
    receiver: str
    mode: str
    link_key_indices: _containers.RepeatedScalarFieldContainer[int]
    sealed: bytes
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    size_bits: int
    master: str
    slaves: _containers.RepeatedScalarFieldContainer[str]
    expires_at: float
    def __init__(self, virt_link_id: _Optional[str] = ..., hop: _Optional[int] = ..., sender: _Optional[str] = ..., receiver: _Optional[str] = ..., mode: _Optional[str] = ..., link_key_indices: _Optional[_Iterable[int]] = ..., sealed: _Optional[bytes] = ..., key_ids: _Optional[_Iterable[str]] = ..., size_bits: _Optional[int] = ..., master: _Optional[str] = ..., slaves: _Optional[_Iterable[str]] = ..., expires_at: _Optional[float] = ...) -> None: ...

class RelayAck(_message.Message):
    __slots__ = ("stored_at", "hops")
    STORED_AT_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    stored_at: str
    hops: int
    def __init__(self, stored_at: _Optional[str] = ..., hops: _Optional[int] = ...) -> None: ...

class RelayVoid(_message.Message):
    __slots__ = ("virt_link_id", "hop", "sender", "receiver", "key_ids", "master", "slaves")
    VIRT_LINK_ID_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    SLAVES_FIELD_NUMBER: _ClassVar[int]
    virt_link_id: str
    hop: int
    sender: str
    receiver: str
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    master: str
    slaves: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, virt_link_id: _Optional[str] = ..., hop: _Optional[int] = ..., sender: _Optional[str] = ..., receiver: _Optional[str] = ..., key_ids: _Optional[_Iterable[str]] = ..., master: _Optional[str] = ..., slaves: _Optional[_Iterable[str]] = ...) -> None: ...

class RelayVoidAck(_message.Message):
    __slots__ = ("answered_at", "voided", "delivered", "not_present")
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    VOIDED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    NOT_PRESENT_FIELD_NUMBER: _ClassVar[int]
    answered_at: str
    voided: _containers.RepeatedScalarFieldContainer[str]
    delivered: _containers.RepeatedScalarFieldContainer[str]
    not_present: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, answered_at: _Optional[str] = ..., voided: _Optional[_Iterable[str]] = ..., delivered: _Optional[_Iterable[str]] = ..., not_present: _Optional[_Iterable[str]] = ...) -> None: ...

class LinkPosition(_message.Message):
    __slots__ = ("qkdl_id", "sender", "next_even", "next_odd", "intact_even", "intact_odd")
    QKDL_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    NEXT_EVEN_FIELD_NUMBER: _ClassVar[int]
    NEXT_ODD_FIELD_NUMBER: _ClassVar[int]
    INTACT_EVEN_FIELD_NUMBER: _ClassVar[int]
    INTACT_ODD_FIELD_NUMBER: _ClassVar[int]
    qkdl_id: str
    sender: str
    next_even: int
    next_odd: int
    intact_even: int
    intact_odd: int
    def __init__(self, qkdl_id: _Optional[str] = ..., sender: _Optional[str] = ..., next_even: _Optional[int] = ..., next_odd: _Optional[int] = ..., intact_even: _Optional[int] = ..., intact_odd: _Optional[int] = ...) -> None: ...
