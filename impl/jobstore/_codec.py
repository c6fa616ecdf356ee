"""The job hash ``stream:{id}:job`` in LibreChat's serialisation (docs/design.md).

Writing: ``None`` fields are omitted, booleans become ``"1"``/``"0"``, the user message
becomes JSON, everything else its decimal or string form. Reading: empty strings mean
absent, integers are parsed, ``syncSent`` is ``"1"``. ``generationId`` and ``startSeq``
are ours; a hash written by LibreChat has no ``startSeq`` and reads back with 0.

A hash that another writer corrupted must not crash a reader: an unparsable optional
field reads as absent, and a hash without the required fields or with an unknown
status reads as no job at all. Both are logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any, Final, Literal

from streamcheck.impl._status import JobStatus
from streamcheck.impl._types import JobUpdate, SerializableJobData, UserMessage

__all__ = ["decode_job", "encode_job", "encode_update"]

logger = logging.getLogger(__name__)

_Kind = Literal["str", "int", "bool", "message"]

#: Fields shared by ``SerializableJobData`` and ``JobUpdate``, with their hash names.
_OPTIONAL_FIELDS: Final[tuple[tuple[str, str, _Kind], ...]] = (
    ("completed_at", "completedAt", "int"),
    ("conversation_id", "conversationId", "str"),
    ("error", "error", "str"),
    ("user_message", "userMessage", "message"),
    ("response_message_id", "responseMessageId", "str"),
    ("sender", "sender", "str"),
    ("sync_sent", "syncSent", "bool"),
    ("final_event", "finalEvent", "str"),
    ("endpoint", "endpoint", "str"),
    ("icon_url", "iconURL", "str"),
    ("model", "model", "str"),
    ("prompt_tokens", "promptTokens", "int"),
    ("last_active_at", "lastActiveAt", "int"),
)


def _encode_message(message: UserMessage) -> str:
    # Same keys as LibreChat's JSON.stringify of its userMessage (undefined dropped).
    raw = {
        "messageId": message.message_id,
        "parentMessageId": message.parent_message_id,
        "conversationId": message.conversation_id,
        "text": message.text,
    }
    return json.dumps({k: v for k, v in raw.items() if v is not None}, separators=(",", ":"))


def _encode_value(kind: _Kind, value: object) -> str:
    if kind == "bool":
        return "1" if value else "0"
    if kind == "message":
        assert isinstance(value, UserMessage)
        return _encode_message(value)
    return str(value)


def _encode_fields(source: SerializableJobData | JobUpdate) -> dict[str, str]:
    fields: dict[str, str] = {}
    for attr, name, kind in _OPTIONAL_FIELDS:
        value = getattr(source, attr, None)  # JobUpdate has no conversation_id
        if value is not None:
            fields[name] = _encode_value(kind, value)
    if source.status is not None:
        fields["status"] = source.status.value
    return fields


def encode_job(job: SerializableJobData) -> dict[str, str]:
    """Every field of ``job`` except ``startSeq`` (the create script sets that one)."""
    fields = {
        "streamId": job.stream_id,
        "userId": job.user_id,
        "createdAt": str(job.created_at),
        "generationId": job.generation_id,
    }
    fields.update(_encode_fields(job))
    return fields


def encode_update(update: JobUpdate) -> dict[str, str]:
    """The fields ``update`` sets (``status`` included when given)."""
    return _encode_fields(update)


def _parse_int(stream_id: str, name: str, text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        logger.warning("job %r: field %s=%r is not an integer; ignoring it", stream_id, name, text)
        return None


def _parse_message(stream_id: str, text: str) -> UserMessage | None:
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    message_id = raw.get("messageId") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(message_id, str):
        logger.warning("job %r: userMessage is not a message object; ignoring it", stream_id)
        return None

    def text_field(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) and value else None

    return UserMessage(
        message_id=message_id,
        parent_message_id=text_field("parentMessageId"),
        conversation_id=text_field("conversationId"),
        text=text_field("text"),
    )


def decode_job(stream_id: str, raw: Mapping[str, str]) -> SerializableJobData | None:
    """The job in ``raw`` (an HGETALL reply), or ``None`` if it is absent or unusable."""
    if not raw:
        return None
    present = {name: value for name, value in raw.items() if value != ""}
    try:
        status = JobStatus(present.get("status", ""))
    except ValueError:
        logger.warning(
            "job %r: unknown status %r; treating it as absent", stream_id, raw.get("status")
        )
        return None
    user_id = present.get("userId")
    generation_id = present.get("generationId")
    created_text = present.get("createdAt")
    created_at = None if created_text is None else _parse_int(stream_id, "createdAt", created_text)
    if user_id is None or generation_id is None or created_at is None:
        logger.warning(
            "job %r lacks userId, generationId or a valid createdAt; treating it as absent",
            stream_id,
        )
        return None
    start_seq = 0
    if "startSeq" in present:
        start_seq = _parse_int(stream_id, "startSeq", present["startSeq"]) or 0
    # Any: each value's type follows from its field's kind in _OPTIONAL_FIELDS.
    optional: dict[str, Any] = {}
    for attr, name, kind in _OPTIONAL_FIELDS:
        text = present.get(name)
        if kind == "bool":
            optional[attr] = text == "1"
        elif text is None:
            continue
        elif kind == "int":
            optional[attr] = _parse_int(stream_id, name, text)
        elif kind == "message":
            optional[attr] = _parse_message(stream_id, text)
        else:
            optional[attr] = text
    job = SerializableJobData(
        stream_id=present.get("streamId", stream_id),
        user_id=user_id,
        status=status,
        created_at=created_at,
        generation_id=generation_id,
        start_seq=max(start_seq, 0),
    )
    return dataclasses.replace(job, **optional)
