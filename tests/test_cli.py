"""The command line fails cleanly: bad input and environment problems are one line on
stderr with exit code 2, an unexpected error is one line naming a log file with the
traceback (exit 3), and exit code 1 is left to "anomaly found"."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcheck.properties.cli import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    build_parser,
    main,
)
from tests.redis_support import RedisServer, find_free_port, have_redis_binaries, key_ttls

needs_binaries = pytest.mark.skipif(
    not have_redis_binaries(), reason="redis-server/redis-cli are not on PATH"
)

HOSTILE = [
    pytest.param(["demo", "--redis-url", "notaurl"], "'notaurl' is not a Redis URL", id="notaurl"),
    pytest.param(
        ["demo", "--redis-url", "http://127.0.0.1:6379"],
        "must start with redis://, rediss://, unix:// not http://",
        id="http",
    ),
    pytest.param(
        ["demo", "--redis-url", "redis://127.0.0.1:6379/zero"],
        "the database must be a number",
        id="db-name",
    ),
    pytest.param(
        ["demo", "--redis-url", "redis://127.0.0.1:65536"], "Port out of range", id="port"
    ),
    pytest.param(["demo", "--redis-url", "redis://:6379"], "it names no host", id="no-host"),
    pytest.param(["demo", "--redis-url", "unix://"], "give the socket path", id="unix-no-path"),
    pytest.param(
        ["demo", "--backend", "memory", "--redis-url", "redis://127.0.0.1:6379"],
        "--redis-url applies to --backend redis",
        id="memory-with-url",
    ),
    pytest.param(["demo", "--backend", "sqlite"], "invalid choice: 'sqlite'", id="backend"),
    pytest.param(["run", "--examples", "x"], "--examples: must be an integer", id="examples"),
    pytest.param(["run", "--budget", "inf"], "--budget: must be positive seconds", id="inf"),
    pytest.param(["run", "--budget", "nan"], "--budget: must be positive seconds", id="nan"),
    pytest.param(["run", "--seed", "1.5"], "--seed: invalid int value", id="seed"),
    pytest.param(["run", "--canary", "nope"], "unknown canary 'nope'", id="canary"),
    pytest.param(["run", "--profile", "nope"], "invalid choice: 'nope'", id="profile"),
    pytest.param(["run", "--reports", __file__], "is a file, not a directory", id="reports"),
    pytest.param(["run", "--soak"], "--soak, --faults and --plan apply to", id="soak"),
    pytest.param(
        ["run", "--backend", "memory", "--soak"], "--soak, --faults and --plan", id="memory-soak"
    ),
    pytest.param(
        ["run", "--backend", "memory", "--impl", "python"],
        "--impl applies to --backend sim|redis|cluster",
        id="memory-impl",
    ),
    pytest.param(["mutants", "--modules", ","], "name at least one pattern", id="no-modules"),
    pytest.param(
        ["run", "--backend", "memory", "--coverage"],
        "--coverage judges the branch classes of the Redis backend",
        id="memory-coverage",
    ),
    pytest.param(
        ["run", "--backend", "redis", "--canary", "per-process-counters"],
        "canaries run in the simulation only",
        id="real-canary",
    ),
    pytest.param(["run", "--backend", "redis", "--faults", "meteor"], "unknown fault", id="fault"),
    pytest.param(["run", "--reproduce", "3/2"], "--reproduce: must be K/N with", id="k-over-n"),
    pytest.param(["run", "--reproduce", "2"], "--reproduce: must be K/N", id="no-n"),
    pytest.param(["run", "--reproduce", "a/b"], "--reproduce: must be K/N such", id="k-of-n-word"),
    pytest.param(
        ["run", "--reproduce", "2/3"],
        "--reproduce applies to --backend sim --impl",
        id="k-of-n-in-process",
    ),
    pytest.param(["replay"], "the following arguments are required: file", id="no-file"),
    pytest.param(["replay", "/nonexistent/run.json"], "No such file or directory", id="missing"),
    pytest.param(["replay", "/"], "Is a directory", id="directory"),
    pytest.param(["canaries", "--examples", "0"], "--examples: must be an integer", id="zero"),
    pytest.param(["canaries", "--only", "nope"], "unknown canary 'nope'", id="only"),
    pytest.param(["canaries", "--reports", __file__], "not a directory", id="canary-reports"),
    pytest.param(["bench", "--only", "warp"], "unknown benchmark 'warp'", id="bench-only"),
    pytest.param(["bench", "--redis-url", "redis://a:1,redis://b:2"], "name one server", id="list"),
    pytest.param(["bench", "--reports", __file__], "not a directory", id="bench-reports"),
    pytest.param(["frobnicate"], "invalid choice: 'frobnicate'", id="command"),
    pytest.param([], "the following arguments are required: command", id="nothing"),
]


@pytest.mark.parametrize(("argv", "message"), HOSTILE)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("streamcheck")
    assert "Traceback" not in err


def test_an_unreachable_redis_is_an_environment_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://127.0.0.1:{find_free_port()}"
    assert main(["demo", "--redis-url", url]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"streamcheck: cannot reach Redis at {url}") and err.count("\n") == 1


@needs_binaries
def test_a_database_the_server_does_not_have_is_an_environment_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The server judges the number (its `databases` setting, 16 by default).
    with RedisServer() as server:
        assert main(["demo", "--redis-url", f"{server.url}/99"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "the server refused the connection" in err and "DB index is out of range" in err
    assert err.count("\n") == 1


@needs_binaries
def test_demo_with_a_redis_url_runs_on_that_redis_and_leaves_no_key_without_a_ttl(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with RedisServer() as server:
        assert main(["demo", "--redis-url", server.url]) == EXIT_OK
        assert "on the redis backend" in capsys.readouterr().out
        ttls = key_ttls(server.port)
    assert ttls, "the demo wrote nothing to the Redis it was given"
    assert all(ttl > 0 for ttl in ttls.values()), ttls


def test_an_unexpected_error_is_one_line_naming_the_log_with_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("the flux capacitor")

    monkeypatch.setattr("streamcheck.properties.demo.run_demo", broken)
    assert main(["demo"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("streamcheck: internal error: RuntimeError: the flux capacitor")
    assert err.count("\n") == 1 and "Traceback" not in err
    log = Path(err.rsplit("traceback in ", 1)[1].split(" ", 1)[0])
    try:
        text = log.read_text()
        assert text.startswith("streamcheck demo\n")
        assert "Traceback" in text and "raise RuntimeError" in text
    finally:
        log.unlink()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ExceptionGroup("nursery", [ConnectionResetError("reset by peer")]), EXIT_USAGE),
        (ExceptionGroup("nursery", [ConnectionResetError("reset"), KeyError("k")]), EXIT_INTERNAL),
    ],
    ids=["only-environment", "with-a-bug"],
)
def test_an_environment_problem_inside_a_nursery_is_still_exit_2(
    error: Exception, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(**_: object) -> None:
        raise error

    monkeypatch.setattr("streamcheck.properties.demo.run_demo", failing)
    assert main(["demo"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    if code == EXIT_USAGE:
        assert err == "streamcheck: reset by peer\n"
    else:
        Path(err.rsplit("traceback in ", 1)[1].split(" ", 1)[0]).unlink()


def test_ctrl_c_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(**_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("streamcheck.properties.demo.run_demo", interrupted)
    assert main(["demo"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "streamcheck: interrupted\n"


def _subcommands() -> list[str]:
    parser = build_parser()
    [action] = [a for a in parser._actions if a.dest == "command"]
    assert action.choices is not None
    return list(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_documents_its_exit_codes(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == EXIT_OK
    text = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0" in text
    assert "2 usage or environment error" in text
    assert "3 internal error" in text and "130 interrupted" in text
