"""RESP2 and RESP3 on the wire: requests in, replies and pushes out.

The front reads what ioredis, node-redis and coredis send (arrays of bulk strings, and
inline commands, which ``redis-cli`` and some health checks use) and writes the
simulated Redis's replies in the protocol each connection chose with ``HELLO``.

The engine (fakeredis) hands replies over as Python values in RESP3 shapes: ``bytes``,
``int``, ``float``, ``None``, ``list``, ``dict``, ``set`` and redis-py's
``ResponseError`` for an error reply (fakeredis strips a leading ``ERR`` and the
``NOSCRIPT`` code into the exception class; :func:`error_line` puts them back, since
clients decide on the code: ioredis falls back from EVALSHA to EVAL on ``NOSCRIPT``).
"""

from __future__ import annotations

from typing import Final

from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

__all__ = [
    "RequestParser",
    "RespProtocolError",
    "encode",
    "error_line",
    "push",
    "simple",
]

#: Top-level status words a client expects as a simple string (``+OK``), not a bulk.
_STATUS: Final = frozenset({b"OK", b"PONG", b"QUEUED"})
#: The longest request the front accepts (Redis's proto-max-bulk-len is 512 MB; a
#: script or an event is kilobytes).
MAX_BULK: Final = 64 * 1024 * 1024


class RespProtocolError(ValueError):
    """A client sent bytes that are not a RESP request."""


class RequestParser:
    """Incremental: feed bytes, take whole commands (lists of bulk strings)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[bytes]]:
        self._buffer += data
        commands: list[list[bytes]] = []
        while True:
            command = self._one()
            if command is None:
                return commands
            if command:
                commands.append(command)

    def _one(self) -> list[bytes] | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end < 0:
            return None
        if buffer[:1] != b"*":
            # An inline command: words separated by spaces, ending at CRLF.
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            return line.split()
        count = _length(buffer[1:end])
        position = end + 2
        fields: list[bytes] = []
        for _ in range(count):
            end = buffer.find(b"\r\n", position)
            if end < 0:
                return None
            if buffer[position : position + 1] != b"$":
                raise RespProtocolError(
                    f"expected a bulk string, got {bytes(buffer[position:end])!r}"
                )
            length = _length(buffer[position + 1 : end])
            start = end + 2
            if len(buffer) < start + length + 2:
                return None
            fields.append(bytes(buffer[start : start + length]))
            position = start + length + 2
        del buffer[:position]
        return fields


def _length(digits: bytearray) -> int:
    try:
        length = int(digits)
    except ValueError:
        raise RespProtocolError(f"bad length {bytes(digits)!r}") from None
    if not 0 <= length <= MAX_BULK:
        raise RespProtocolError(f"length {length} out of range")
    return length


def simple(text: str) -> bytes:
    return b"+" + text.encode() + b"\r\n"


def error_line(error: ResponseError | str) -> bytes:
    """``-CODE message``: the code fakeredis folded into the exception class restored."""
    if isinstance(error, str):
        text = error
    elif isinstance(error, NoScriptError):
        text = f"NOSCRIPT {error}"
    elif isinstance(error, ReadOnlyError):
        text = f"READONLY {error}"
    else:
        text = str(error)
        first = text.split(" ", 1)[0]
        if not (first.isupper() and first.isalpha()):
            text = f"ERR {text}"
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


def encode(value: object, protocol: int, *, top: bool = True) -> bytes:
    """One reply in RESP2 (``protocol`` 2) or RESP3 (3)."""
    if isinstance(value, bytes):
        if top and value in _STATUS:
            return b"+" + value + b"\r\n"
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, str):
        return encode(value.encode(), protocol, top=False)
    if isinstance(value, bool):
        if protocol == 3:
            return b"#t\r\n" if value else b"#f\r\n"
        return b":1\r\n" if value else b":0\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, float):
        text = repr(value).encode()
        return b"," + text + b"\r\n" if protocol == 3 else b"$%d\r\n%s\r\n" % (len(text), text)
    if value is None:
        return b"_\r\n" if protocol == 3 else b"$-1\r\n"
    if isinstance(value, ResponseError):
        return error_line(value)
    if isinstance(value, dict):
        if protocol == 3:
            parts = [b"%%%d\r\n" % len(value)]
            for key, item in value.items():
                parts += [encode(key, protocol, top=False), encode(item, protocol, top=False)]
            return b"".join(parts)
        flat = [part for pair in value.items() for part in pair]
        return encode(flat, protocol, top=False)
    if isinstance(value, set | frozenset):
        head = b"~" if protocol == 3 else b"*"
        return (
            head
            + b"%d\r\n" % len(value)
            + b"".join(encode(item, protocol, top=False) for item in sorted(value, key=repr))
        )
    if isinstance(value, list | tuple):
        return b"*%d\r\n" % len(value) + b"".join(
            encode(item, protocol, top=False) for item in value
        )
    raise TypeError(f"no RESP encoding for {type(value).__name__}: {value!r}")


def push(parts: list[object], protocol: int) -> bytes:
    """A pub/sub frame (subscribe acknowledgement, message): a RESP3 push (``>``), a
    plain array in RESP2."""
    head = b">" if protocol == 3 else b"*"
    return (
        head
        + b"%d\r\n" % len(parts)
        + b"".join(encode(part, protocol, top=False) for part in parts)
    )
