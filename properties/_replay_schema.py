"""The replay file's schema: what :func:`check_replay` accepts, with a typed error that
names the offending field.

A replay file is a JSON object. Version 2 names its version in ``version``; version 1
(the files written before, such as ``reports/sample/``) named it ``format`` and holds
the same fields, so both are read alike. Within a version fields are only added: a
reader ignores top-level keys it does not know. Every decision is ``[name, args]``,
where ``name`` is a step of :class:`~streamcheck.properties._simulation.Simulation`
(a ``_do_<name>`` method) and ``args`` holds exactly that method's parameters, each of
the annotated type. A ``replica`` is an index below ``replicas``, a ``depth`` at least
1, a ``dt`` (seconds) a non-negative number; other integers pick an item modulo a
count (``which: -1`` is the latest session), so any integer is one.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

from streamcheck.impl import validate_stream_id
from streamcheck.properties._hostile import ABORT_REACTIONS, FORGERIES
from streamcheck.properties._run_limits import MAX_REPLICAS, MIN_REPLICAS, SimBackend
from streamcheck.properties._simulation import REDIS_ONLY_DECISIONS, Decision, Simulation

#: The version this streamcheck writes.
REPLAY_VERSION: Final = 2
#: Version 1 held the fields of version 2, with the version under ``format``.
FORMAT_VERSION: Final = 1
#: Arguments whose value is one of a few words (any other would silently mean the last).
_CHOICES: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("reconnect", "mode"): ("resume", "subscribe"),
    ("forge", "form"): FORGERIES,
    ("abort_reaction", "how"): ABORT_REACTIONS,
}
#: Integer arguments with a least value (a PCT scheduler's depth; see the docstring
#: for ``replica``).
_AT_LEAST: Final[Mapping[str, int]] = {"depth": 1}


class ReplayFileError(ValueError):
    """A replay file that cannot be replayed as it is.

    ``field`` is the path of the offending field (``decisions[3].args.replica``; a
    decision ``[name, args]`` has ``.name`` and ``.args``; ``(file)`` is the file as a
    whole) and ``problem`` what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_replay(data: object) -> tuple[int, list[Decision], list[str], int]:
    """Validate decoded JSON as a replay file; return ``(version, decisions, canary
    names, replicas)``. Canary names are checked as strings only: which names exist
    is the canary registry's business. Raises :class:`ReplayFileError`."""
    if not isinstance(data, dict):
        raise ReplayFileError("(file)", f"must be a JSON object, not {_json_kind(data)}")
    version = _version(data)
    replicas = _integer(data, "replicas", low=MIN_REPLICAS, high=MAX_REPLICAS)
    canaries = _list(data, "canaries")
    for index, name in enumerate(canaries):
        if not isinstance(name, str):
            raise ReplayFileError(f"canaries[{index}]", _wanted("a string", name))
    decisions = [
        _decision(entry, f"decisions[{index}]", replicas)
        for index, entry in enumerate(_list(data, "decisions"))
    ]
    if replay_backend(data) is SimBackend.MEMORY:
        for index, decision in enumerate(decisions):
            if decision.name in REDIS_ONLY_DECISIONS:
                raise ReplayFileError(
                    f"decisions[{index}].name",
                    f"{decision.name!r} needs the simulated Redis, and this run was on "
                    "the memory backend",
                )
    if "history" in data:
        for index, record in enumerate(_list(data, "history")):
            if not isinstance(record, dict):
                raise ReplayFileError(f"history[{index}]", _wanted("an object", record))
    for name in ("name", "crashed", "hypothesis_seed"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ReplayFileError(name, _wanted("a string or null", data[name]))
    for name in ("report", "minimized"):
        if name in data and not isinstance(data[name], dict):
            raise ReplayFileError(name, _wanted("an object", data[name]))
    return version, decisions, canaries, replicas


def replay_backend(data: dict[str, Any]) -> SimBackend:
    """What the run's replicas shared (``backend``; files without one ran on the
    simulated Redis). Raises :class:`ReplayFileError`."""
    name = data.get("backend", SimBackend.REDIS.value)
    try:
        return SimBackend(name)
    except ValueError:
        known = ", ".join(repr(b.value) for b in SimBackend)
        raise ReplayFileError("backend", f"must be one of {known}, not {name!r}") from None


def _version(data: dict[str, Any]) -> int:
    if "version" in data:
        field, readable = "version", REPLAY_VERSION
    elif "format" in data:
        field, readable = "format", FORMAT_VERSION
    else:
        raise ReplayFileError("version", "missing (is this a streamcheck replay file?)")
    version = data[field]
    if type(version) is not int or version != readable:
        raise ReplayFileError(
            field,
            f'unsupported version {version!r}: this streamcheck reads "version": '
            f'{REPLAY_VERSION} (and "format": {FORMAT_VERSION} from before)',
        )
    return version


def _decision(entry: object, where: str, replicas: int) -> Decision:
    if not (isinstance(entry, list) and len(entry) == 2):
        raise ReplayFileError(where, _wanted("a [name, args] pair", entry))
    name, args = entry
    steps = decision_parameters()
    if name not in steps:
        raise ReplayFileError(
            f"{where}.name", f"unknown decision {name!r}; known: {', '.join(sorted(steps))}"
        )
    if not isinstance(args, dict):
        raise ReplayFileError(f"{where}.args", _wanted("an object", args))
    parameters = steps[name]
    for arg in args:
        if arg not in parameters:
            takes = ", ".join(parameters) or "no arguments"
            raise ReplayFileError(
                f"{where}.args.{arg}", f"not an argument of {name!r} (it takes {takes})"
            )
    for arg, kind in parameters.items():
        path = f"{where}.args.{arg}"
        if arg not in args:
            raise ReplayFileError(path, f"missing ({name!r} takes {', '.join(parameters)})")
        low, high = (0, replicas - 1) if arg == "replica" else (_AT_LEAST.get(arg), None)
        choices = _CHOICES.get((name, arg))
        _check_argument(args[arg], kind, path, low=low, high=high, choices=choices)
    return Decision(name, dict(args))


def _check_argument(
    value: object,
    kind: type,
    path: str,
    *,
    low: int | None,
    high: int | None,
    choices: tuple[str, ...] | None,
) -> None:
    # bool is an int to Python but not to a replay file: true is no replica index.
    if kind is bool:
        if type(value) is not bool:
            raise ReplayFileError(path, _wanted("true or false", value))
    elif kind is int:
        if type(value) is not int:
            raise ReplayFileError(path, _wanted("an integer", value))
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low} to {high}" if high is not None else f"at least {low}"
            raise ReplayFileError(path, f"must be {bounds}, not {value}")
    elif kind is float:
        if type(value) not in (int, float) or not math.isfinite(typing.cast(float, value)):
            raise ReplayFileError(path, _wanted("a number", value))
        if typing.cast(float, value) < 0:
            raise ReplayFileError(path, f"must be at least 0, not {value}")
    elif kind is str:
        if not isinstance(value, str):
            raise ReplayFileError(path, _wanted("a string", value))
        if choices is not None:
            if value not in choices:
                raise ReplayFileError(path, f"must be one of {', '.join(choices)}, not {value!r}")
            return
        try:  # every other string argument names a stream
            validate_stream_id(value)
        except ValueError as exc:
            raise ReplayFileError(path, str(exc).removeprefix("stream id ")) from None
    else:  # a new step with an argument type this schema does not know yet
        raise TypeError(f"{path}: no replay-file check for arguments of type {kind}")


@functools.cache
def decision_parameters() -> dict[str, dict[str, type]]:
    """Each step a decision can name, with its parameters and their types, read from
    the ``_do_<name>`` methods of :class:`Simulation`."""
    steps: dict[str, dict[str, type]] = {}
    for attribute, method in inspect.getmembers(Simulation, inspect.isfunction):
        if attribute.startswith("_do_"):
            hints = typing.get_type_hints(typing.cast(Callable[..., Any], method))
            hints.pop("return", None)
            steps[attribute.removeprefix("_do_")] = hints
    return steps


def _list(data: dict[str, Any], field: str) -> list[Any]:
    if field not in data:
        raise ReplayFileError(field, "missing")
    value = data[field]
    if not isinstance(value, list):
        raise ReplayFileError(field, _wanted("a list", value))
    return value


def _integer(data: dict[str, Any], field: str, *, low: int, high: int) -> int:
    if field not in data:
        raise ReplayFileError(field, "missing")
    value = data[field]
    if type(value) is not int:
        raise ReplayFileError(field, _wanted("an integer", value))
    if not low <= value <= high:
        raise ReplayFileError(field, f"must be {low} to {high}, not {value}")
    return value


def _wanted(what: str, value: object) -> str:
    return f"must be {what}, not {_json_kind(value)} {_short(value)}"


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
