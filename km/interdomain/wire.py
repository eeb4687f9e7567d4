"""ETSI GS QKD 020 (draft) data formats, at the JSON wire only: hand-off, ack, void, versions.

Values are checked here (key_IDs canonical UUIDs, values base64, acks one of the draft's
statuses); a violation is answered 400 naming the field. `repr` of a hand-off never shows a value.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_IGNORE_EXTRA = ConfigDict(extra="ignore")

API_BASE = "/kmapi/v1"
VERSION = "v1"


class AckStatus(enum.StrEnum):
    RELAYED = "relayed"
    VOIDED = "voided"
    FAILED = "failed"
    KEY_NOT_PRESENT = "key not present"


class ExtKey(BaseModel):
    model_config = _IGNORE_EXTRA
    key_id: str = Field(description="the key's UUID (lower case, 8-4-4-4-12)")
    value: str = Field(description="the key material, base64", repr=False)
    extension: dict[str, Any] | None = None


class ExtKeys(BaseModel):
    """`POST /kmapi/v1/ext_keys`: keys one KMS hands to another at a trusted node."""

    model_config = _IGNORE_EXTRA
    keys: list[ExtKey] = Field(min_length=1)
    initiator_sae_id: str = Field(min_length=1, description="the master SAE")
    target_sae_ids: list[str] = Field(min_length=1, description="the slave SAEs")
    ack_callback_url: str = Field(description="where the receiver POSTs the ack (https)")
    extension_mandatory: list[dict[str, Any]] | None = None
    extension_optional: list[dict[str, Any]] | None = Field(
        default=None, description='qkdsdn adds {"expires_at": unix seconds} when keys expire'
    )


class Ack(BaseModel):
    """`POST <ack_callback_url>`: what became of handed-off keys."""

    model_config = _IGNORE_EXTRA
    key_ids: list[str] = Field(min_length=1)
    ack_status: AckStatus
    initiator_sae_id: str
    target_sae_id: str
    message: str | None = None


class VoidRequest(BaseModel):
    """`POST /kmapi/v1/ext_keys/void`: invalidate keys handed off before."""

    model_config = _IGNORE_EXTRA
    key_ids: list[str] = Field(min_length=1)
    initiator_sae_id: str | None = None
    target_sae_ids: list[str] | None = None


class AckResult(BaseModel):
    """The answer to an ack or a void: which key_IDs it applied to, which were unknown."""

    key_ids: list[str] = Field(description="the key_IDs acknowledged (or voided)")
    ack_status: AckStatus
    not_present: list[str] = Field(
        default_factory=list, description="key_IDs this KMS does not hold ('key not present')"
    )
    failed: list[str] = Field(
        default_factory=list,
        description="a void's key_IDs that a slave SAE had claimed already: not voided"
        " (ack status 'failed' for them)",
    )


class ExtKeysResult(BaseModel):
    """The answer to ext_keys: the keys are journaled; the ack comes to the callback."""

    key_ids: list[str]
    duplicates: list[str] = Field(
        default_factory=list, description="key_IDs received before with the same value"
    )


class Versions(BaseModel):
    versions: list[str]


class Error(BaseModel):
    message: str
    details: list[dict[str, Any]] | None = None
