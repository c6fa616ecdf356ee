"""Argument types of the ``streamcheck`` command line: each parses one argument's text
or raises ``argparse.ArgumentTypeError`` saying what is wrong with it, so argparse
reports bad input before any command starts (no heavy imports here)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")

#: Schemes the coredis adapter connects with: TCP, TLS, a Unix socket.
REDIS_SCHEMES = ("redis", "rediss", "unix")


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer from ``low`` to ``high`` (no upper bound when ``None``)."""
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {bounds}, not {value}")
        return value

    return parse


def k_of_n(text: str) -> tuple[int, int]:
    """``K/N``: at least K of N, with 1 <= K <= N <= 20."""
    k_text, slash, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be K/N such as 2/3, not {text!r}") from None
    if not slash or not 1 <= k <= n <= 20:
        raise argparse.ArgumentTypeError(f"must be K/N with 1 <= K <= N <= 20, not {text!r}")
    return k, n


def seconds(text: str) -> float:
    """A finite, positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be positive seconds, not {text}")
    return value


def directory(text: str) -> Path:
    """A directory that exists or can be made (not a file)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory")
    return path


def redis_url(text: str) -> str:
    """One Redis URL: ``redis://`` or ``rediss://`` with a host (optional port, user,
    password and database number), or ``unix://`` with a socket path.

    The database number is checked for form only: how many a server has is its
    ``databases`` setting (16 unless configured), so the server judges the number when
    the command connects, and a refusal is reported then.
    """
    problem = f"{text!r} is not a Redis URL"
    if "," in text:
        raise argparse.ArgumentTypeError(f"{problem}: name one server, not a list")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:  # a port that is not a number from 0 to 65535
        raise argparse.ArgumentTypeError(f"{problem}: {exc}") from None
    if parts.scheme not in REDIS_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        got = f"not {parts.scheme}://" if parts.scheme else "and it has no scheme"
        raise argparse.ArgumentTypeError(f"{problem}: it must start with {schemes} {got}")
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix":
        if not parts.path:
            raise argparse.ArgumentTypeError(f"{problem}: give the socket path, unix:///path")
        database = query.get("db")
    else:
        if not parts.hostname:
            raise argparse.ArgumentTypeError(f"{problem}: it names no host")
        if port == 0:
            raise argparse.ArgumentTypeError(f"{problem}: port 0 is no server's port")
        database = parts.path.removeprefix("/") or query.get("db")
    if database is not None and not (database.isascii() and database.isdigit()):
        raise argparse.ArgumentTypeError(
            f"{problem}: the database must be a number (0 to 15 on a default server), "
            f"not {database!r}"
        )
    return text


def patterns(text: str) -> tuple[str, ...]:
    """Comma-separated fnmatch patterns, at least one."""
    found = tuple(part.strip() for part in text.split(",") if part.strip())
    if not found:
        raise argparse.ArgumentTypeError("name at least one pattern")
    return found


def names(parse: Callable[[str], T]) -> Callable[[str], T]:
    """A comma-separated list checked by ``parse``, whose ``ValueError`` (naming the
    unknown name) becomes the argument's error."""

    def checked(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return checked
