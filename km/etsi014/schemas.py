"""ETSI GS QKD 014 v1.1.1 data formats, at the JSON wire only.

Unknown fields are ignored (clients in the field add some, e.g. `master_SAE_ID` inside a
key_ID entry); types and UUIDs are checked, and a violation is answered with 400.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

_IGNORE_EXTRA = ConfigDict(extra="ignore")


class Status(BaseModel):
    """Status of the key supply from the caller (master) towards one slave SAE."""

    model_config = _IGNORE_EXTRA
    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int = Field(description="default key size in bits")
    stored_key_count: int = Field(description="keys available at once for this pair")
    max_key_count: int = Field(description="most keys that can be stored for this pair")
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int = Field(description="most additional_slave_SAE_IDs in one request")
    status_extension: dict[str, Any] | None = None


class KeyRequest(BaseModel):
    model_config = _IGNORE_EXTRA
    number: int = Field(default=1, description="number of keys (default 1)")
    size: int | None = Field(default=None, description="bits per key (default key_size)")
    additional_slave_SAE_IDs: list[str] = Field(default_factory=list)
    extension_mandatory: list[dict[str, Any]] = Field(default_factory=list)
    extension_optional: list[dict[str, Any]] = Field(default_factory=list)


class Key(BaseModel):
    model_config = _IGNORE_EXTRA
    key_ID: UUID
    key_ID_extension: dict[str, Any] | None = None
    key: str = Field(description="key material, base64")
    key_extension: dict[str, Any] | None = None


class KeyContainer(BaseModel):
    model_config = _IGNORE_EXTRA
    keys: list[Key]
    key_container_extension: dict[str, Any] | None = None


class KeyIdEntry(BaseModel):
    model_config = _IGNORE_EXTRA
    key_ID: UUID
    key_ID_extension: dict[str, Any] | None = None


class KeyIds(BaseModel):
    model_config = _IGNORE_EXTRA
    key_IDs: list[KeyIdEntry] = Field(min_length=1)
    key_IDs_extension: dict[str, Any] | None = None


class Error(BaseModel):
    model_config = _IGNORE_EXTRA
    message: str
    details: list[dict[str, Any]] | None = None
