"""streamcheck installs as one namespace: the wheel and the sdist, and what they put on a path.

The wheel is built from the sdist (as ``python -m build`` does), so a file the sdist leaves
out fails here too. It is installed without dependencies into a fresh virtual environment,
so nothing of this checkout or of the test environment can be imported by accident.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import streamcheck
from streamcheck.properties import cli

REPOSITORY = Path(__file__).resolve().parent.parent
BUILD_SECONDS = 300


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    python: Path


def _run(command: list[str | Path], cwd: Path) -> str:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=BUILD_SECONDS, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("package")
    dist = work / "dist"
    # --no-isolation: the build backend is the test environment's own setuptools (no download).
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, REPOSITORY], work)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    environment = work / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / "bin" / "python"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python]
    _run([*pip, "install", "--quiet", "--no-deps", "--no-index", wheel], work)
    return Built(wheel=wheel, sdist=sdist, python=python)


def _python(built: Built, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [built.python, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_wheel_installs_one_namespace_and_no_bare_package(built: Built, tmp_path: Path) -> None:
    done = _python(
        built,
        "import importlib.util, streamcheck, streamcheck.model\n"
        "bare = [n for n in ('model', 'impl', 'properties') if importlib.util.find_spec(n)]\n"
        "print(streamcheck.__version__, bare)",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [streamcheck.__version__, "[]"]


def test_a_consumer_with_its_own_model_package_imports_both(built: Built, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "__init__.py").write_text("JSONValue = 'the consumer s own'\n")
    done = _python(
        built,
        "from model import JSONValue\n"
        "from streamcheck.model import JSONValue as Ours, Chunk\n"
        "print(JSONValue == 'the consumer s own', Chunk.__module__)",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "streamcheck.model._events"]


def test_the_wheel_and_the_sdist_carry_every_module_and_the_type_marker(built: Built) -> None:
    tree = {
        f"streamcheck/{path.relative_to(REPOSITORY).as_posix()}"
        for top in ("model", "impl", "properties")
        for pattern in ("*.py", "*.css")  # the timeline's style sheet is package data
        for path in (REPOSITORY / top).rglob(pattern)
    }
    assert "streamcheck/properties/report/timeline.css" in tree
    with zipfile.ZipFile(built.wheel) as wheel:
        in_wheel = set(wheel.namelist())
    with tarfile.open(built.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert tree <= in_wheel, sorted(tree - in_wheel)
    assert tree <= in_sdist, sorted(tree - in_sdist)
    assert {"streamcheck/__init__.py", "streamcheck/py.typed"} <= in_wheel
    assert not any(name.split("/")[0] in {"model", "impl", "properties"} for name in in_wheel)


def test_the_command_line_without_the_harness_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A None entry in sys.modules is how Python marks a module as not importable.
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(SystemExit) as exited:
        cli.run()
    assert exited.value.code == cli.EXIT_USAGE
    message = capsys.readouterr().err
    assert "pip install 'streamcheck[harness]'" in message
    assert "hypothesis" in message
    assert len(message.strip().splitlines()) == 1
