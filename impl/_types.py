"""Value types shared by the job store, the transport and the manager.

They mirror LibreChat's ``SerializableJobData``, ``UsageMetadata``, ``AbortResult`` and
``ResumeState`` with Python names. All are frozen; build changed copies with
``dataclasses.replace``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streamcheck.impl._status import JobStatus
from streamcheck.model import JSONValue

__all__ = [
    "AbortOutcome",
    "AbortResult",
    "JobStatus",
    "JobUpdate",
    "ResumeState",
    "SerializableJobData",
    "UsageMetadata",
    "UserMessage",
    "read_usage",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class UserMessage:
    message_id: str
    parent_message_id: str | None = None
    conversation_id: str | None = None
    text: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SerializableJobData:
    """What every replica can know about a job (the Redis hash ``stream:{id}:job``)."""

    stream_id: str
    user_id: str
    status: JobStatus
    #: Wall-clock creation time in ms (injected clock).
    created_at: int
    #: Identity of this turn; a new turn on a reused stream id gets a new one.
    generation_id: str
    #: First seq this generation may use: the stream counter's value at creation.
    start_seq: int = 0
    completed_at: int | None = None
    conversation_id: str | None = None
    error: str | None = None
    user_message: UserMessage | None = None
    response_message_id: str | None = None
    sender: str | None = None
    sync_sent: bool = False
    #: The terminal ``done`` payload as JSON text, for late subscribers.
    final_event: str | None = None
    endpoint: str | None = None
    icon_url: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    last_active_at: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class JobUpdate:
    """A partial update; ``None`` means "leave as is"."""

    status: JobStatus | None = None
    completed_at: int | None = None
    error: str | None = None
    user_message: UserMessage | None = None
    response_message_id: str | None = None
    sender: str | None = None
    sync_sent: bool | None = None
    final_event: str | None = None
    endpoint: str | None = None
    icon_url: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    last_active_at: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageMetadata:
    """Token usage of one model call, normalised from either provider's format."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    model: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def read_usage(raw: Mapping[str, Any]) -> UsageMetadata:
    """Read usage in OpenAI or Anthropic form (or LangChain's normalised form).

    * OpenAI: ``prompt_tokens``, ``completion_tokens``,
      ``prompt_tokens_details.cached_tokens`` (cache reads are part of prompt tokens).
    * Anthropic: ``input_tokens``, ``output_tokens``, ``cache_read_input_tokens``,
      ``cache_creation_input_tokens`` (cache tokens are *not* part of input tokens).
    * LangChain: ``input_tokens``, ``output_tokens``,
      ``input_token_details.{cache_read,cache_creation}``.
    """
    model = raw.get("model") if isinstance(raw.get("model"), str) else None
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        details = raw.get("prompt_tokens_details")
        cached = _int(details, "cached_tokens") if isinstance(details, Mapping) else 0
        return UsageMetadata(
            input_tokens=_int(raw, "prompt_tokens"),
            output_tokens=_int(raw, "completion_tokens"),
            cache_read_tokens=cached,
            model=model,
        )
    details = raw.get("input_token_details")
    if isinstance(details, Mapping):
        return UsageMetadata(
            input_tokens=_int(raw, "input_tokens"),
            output_tokens=_int(raw, "output_tokens"),
            cache_read_tokens=_int(details, "cache_read"),
            cache_write_tokens=_int(details, "cache_creation"),
            model=model,
        )
    return UsageMetadata(
        input_tokens=_int(raw, "input_tokens"),
        output_tokens=_int(raw, "output_tokens"),
        cache_read_tokens=_int(raw, "cache_read_input_tokens"),
        cache_write_tokens=_int(raw, "cache_creation_input_tokens"),
        model=model,
    )


class AbortOutcome(enum.Enum):
    """What an abort request found; the caller always learns which."""

    ABORTED = "aborted"
    ALREADY_TERMINAL = "already_terminal"
    NO_SUCH_STREAM = "no_such_stream"


@dataclass(frozen=True, kw_only=True, slots=True)
class AbortResult:
    outcome: AbortOutcome
    job: SerializableJobData | None = None
    content: list[JSONValue] = field(default_factory=list)
    text: str = ""
    final_event: JSONValue = None
    #: Seq of the aborted final event this call published (``ABORTED`` only).
    terminal_seq: int | None = None
    collected_usage: list[UsageMetadata] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.outcome is AbortOutcome.ABORTED


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeState:
    """What a reconnecting client needs to rebuild the message so far.

    ``through_seq`` is the last seq folded into ``aggregated_content`` (``None`` if
    nothing was yet). Live delivery after a resume starts at ``through_seq + 1``, so
    the boundary has neither a gap nor a duplicate.
    """

    stream_id: str
    generation_id: str
    through_seq: int | None
    aggregated_content: list[JSONValue]
    run_steps: list[JSONValue]
    #: The seqs of the chunks folded into the snapshot, in order (for auditing).
    folded_seqs: tuple[int, ...] = ()
    user_message: UserMessage | None = None
    response_message_id: str | None = None
    conversation_id: str | None = None
    sender: str | None = None
