"""Cisco SKIP (draft-cisco-skip / draft-singh-skip) key delivery beside ETSI 014, from the same key store."""
