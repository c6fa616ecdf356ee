"""Public errors, typed by who is at fault.

* Caller misuse raises ``ValueError`` (invalid ids) or :class:`IllegalTransition`.
* Ownership violations raise :class:`StreamAccessDenied`, which reveals nothing about
  whether the stream exists.
* The backend being unreachable raises :class:`BackendUnavailable` naming the URL with
  its password redacted.
* Data loss is never an exception: it reaches subscribers as a ``streamcheck.model.Gap`` event.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class StreamcheckError(Exception):
    """Base class of every error this package raises on purpose."""


class StreamAccessDenied(StreamcheckError, PermissionError):
    """The caller may not see this stream.

    Raised identically whether the stream belongs to someone else or does not exist at
    all, so the error leaks nothing. Answer the client as you would for "not found".
    """

    def __init__(self) -> None:
        super().__init__("stream not found or not yours")


class IllegalTransition(StreamcheckError, ValueError):
    """A job status change that the lifecycle table forbids."""

    def __init__(self, *, stream_id: str, current: str, requested: str) -> None:
        self.stream_id = stream_id
        self.current = current
        self.requested = requested
        super().__init__(
            f"can't move stream {stream_id!r} from status {current!r} to {requested!r}"
        )


class BackendUnavailable(StreamcheckError, ConnectionError):
    """The configured Redis cannot be reached. Check that it runs and the URL is right."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"cannot reach Redis at {self.url}: {reason}")


class EventTooLarge(StreamcheckError, ValueError):
    """An event's encoded size exceeds the configured limit; it was not published."""

    def __init__(self, *, stream_id: str, size: int, limit: int) -> None:
        self.stream_id = stream_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"event for stream {stream_id!r} is {size} bytes, over the {limit}-byte limit; "
            "split it into smaller chunks"
        )


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``.

    A comma-separated list of cluster nodes is redacted node by node.
    """
    if "," in url:
        return ",".join(redact_url(part.strip()) for part in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class StreamActorStopped(StreamcheckError, RuntimeError):
    """The stream's actor has stopped (its replica shut down or crashed, or the stream
    was cleaned up): nothing more can be done with the stream on this replica."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"the actor of stream {stream_id!r} has stopped on this replica")
