"""Validation of caller-supplied identifiers.

Stream and user ids become parts of Redis keys such as ``stream:{<id>}:job``. A ``{``
or ``}`` would break the Cluster hash tag and a control character would break logs
and key listings, so both are rejected before any I/O happens.
"""

from __future__ import annotations

#: LibreChat conversation ids are UUIDs; 256 leaves room for any sane scheme.
MAX_ID_LENGTH = 256


def validate_id(value: object, *, kind: str) -> str:
    """Return ``value`` if it is a valid stream or user id, else raise ``ValueError``.

    The message names the rule that was broken so the caller can fix the input.
    """
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{kind} must be at most {MAX_ID_LENGTH} characters, got {len(value)}")
    if "{" in value or "}" in value:
        raise ValueError(f"{kind} must not contain '{{' or '}}' (they delimit the Redis hash tag)")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{kind} must not contain control characters")
    return value


def validate_stream_id(value: object) -> str:
    return validate_id(value, kind="stream id")


def validate_user_id(value: object) -> str:
    return validate_id(value, kind="user id")
