from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class KemOffer(_message.Message):
    __slots__ = ("kem", "encapsulation_key", "initiator", "responder", "master", "slaves", "mode", "origin", "size_bits", "key_ids", "expires_at")
    KEM_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_KEY_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    RESPONDER_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    SLAVES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    kem: str
    encapsulation_key: bytes
    initiator: str
    responder: str
    master: str
    slaves: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    origin: str
    size_bits: int
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    expires_at: float
    def __init__(self, kem: _Optional[str] = ..., encapsulation_key: _Optional[bytes] = ..., initiator: _Optional[str] = ..., responder: _Optional[str] = ..., master: _Optional[str] = ..., slaves: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ..., origin: _Optional[str] = ..., size_bits: _Optional[int] = ..., key_ids: _Optional[_Iterable[str]] = ..., expires_at: _Optional[float] = ...) -> None: ...

class KemAnswer(_message.Message):
    __slots__ = ("ciphertext", "confirmation", "stored_at")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    STORED_AT_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    confirmation: bytes
    stored_at: str
    def __init__(self, ciphertext: _Optional[bytes] = ..., confirmation: _Optional[bytes] = ..., stored_at: _Optional[str] = ...) -> None: ...
