"""Reply shapes (coredis with ``decode_responses=True``) and the trace's descriptions of
commands, messages and replies for the simulated Redis (see
:mod:`streamcheck.properties.sim._redis`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.exceptions import ResponseError

from streamcheck.properties.sim._items import RedisCommandError, _Delivery

_ARG_CHARS: Final = 48
_DESCRIPTION_CHARS: Final = 240


# -- reply shapes (coredis with decode_responses=True) --------------------------------


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {_decode(k): _decode(v) for k, v in value.items()}
    if isinstance(value, ResponseError):
        return RedisCommandError(str(value))
    return value


def _int(value: Any) -> int:
    return int(value)


def _positive(value: Any) -> bool:
    return int(value) > 0


def _string_set(value: Any) -> set[str]:
    return {v.decode() for v in value}


def _entries(value: Any) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for entry_id, flat in value:
        it = iter(flat)
        out.append(
            (entry_id.decode(), {f.decode(): v.decode() for f, v in zip(it, it, strict=True)})
        )
    return out


# -- descriptions ---------------------------------------------------------------------------


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _describe(head: str, parts: Sequence[str]) -> str:
    shown = [_short(p, _ARG_CHARS) if p else "''" for p in parts]
    return _short(" ".join([head, *shown]), _DESCRIPTION_CHARS)


def _message_description(delivery: _Delivery) -> str:
    if delivery.ack is not None:
        return f"ack subscribe {delivery.channel}"
    return f"message {delivery.channel} {_short(delivery.data, 120)}"


def _summary(value: Any) -> str:
    if value is None or isinstance(value, int | bool):
        return repr(value)
    if isinstance(value, str):
        return repr(_short(value, _ARG_CHARS))
    if isinstance(value, list):
        if len(value) <= 4 and all(v is None or isinstance(v, int | str) for v in value):
            return "[" + ", ".join(_summary(v) for v in value) + "]"
        return f"<{len(value)} entries>"
    if isinstance(value, dict):
        return f"<hash of {len(value)} fields>"
    if isinstance(value, set):
        return f"<set of {len(value)}>"
    return type(value).__name__
