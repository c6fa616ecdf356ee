"""The import contract: outside impl/, nobody imports impl's private modules.

impl/ is what a port writer reads, and the harness is its first user: whatever the
harness needs from impl/ must be public (``streamcheck.impl``, its public subpackages
``transport``, ``redis`` and ``jobstore``, and ``streamcheck.impl.seams`` for the classes
a harness subclasses). This test parses every Python file of model/, properties/,
ports/ and streamcheck/ with :mod:`ast` and names ``file:line`` for each import of a
module of ``streamcheck.impl`` with an underscore in its path (``impl._reorder``,
``impl.transport._actor``), or of an underscore name from a public module of impl.

tests/ is exempt on purpose: its unit tests of impl's internals (the reorder core,
the silence core, the actor's shell) import the private modules they test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Where each checked top-level directory is importable from.
CHECKED = {
    "model": "streamcheck.model",
    "properties": "streamcheck.properties",
    "ports": None,  # not a package: only absolute imports mean anything
    "streamcheck": "streamcheck",
}
IMPL = "streamcheck.impl"


def _python_files() -> Iterator[tuple[Path, str | None]]:
    """Each checked file and the package its relative imports start from."""
    for directory, package in CHECKED.items():
        base = ROOT / directory
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(base)
            if directory == "streamcheck" and relative.parts[0] in ("impl", "model", "properties"):
                continue  # links to the top-level directories, checked there
            # A module's package and an __init__'s are both the directory holding it.
            yield path, None if package is None else ".".join([package, *relative.parent.parts])


def _resolve(node: ast.ImportFrom, current_package: str | None) -> str | None:
    """The absolute module an ``import from`` names (``None`` if it cannot be told)."""
    if node.level == 0:
        return node.module
    if current_package is None:
        return None
    parts = current_package.split(".")
    if node.level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_private_impl_module(module: str) -> bool:
    if module != IMPL and not module.startswith(IMPL + "."):
        return False
    return any(part.startswith("_") for part in module.split("."))


def private_impl_imports(source: str, current_package: str | None) -> list[tuple[int, str]]:
    """``(line, what)`` for every import of impl's private parts in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(
                (node.lineno, f"import {alias.name}")
                for alias in node.names
                if _is_private_impl_module(alias.name)
            )
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, current_package)
            if module is None or not (module == IMPL or module.startswith(IMPL + ".")):
                continue
            if _is_private_impl_module(module):
                found.append((node.lineno, f"from {module} import ..."))
                continue
            for alias in node.names:
                if _is_private_impl_module(f"{module}.{alias.name}"):
                    found.append((node.lineno, f"from {module} import {alias.name}"))
    return found


def test_nothing_outside_impl_imports_its_private_modules() -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path, package in _python_files()
        for line, what in private_impl_imports(path.read_text(encoding="utf-8"), package)
    ]
    assert not violations, "private impl imports outside impl/:\n" + "\n".join(violations)


def test_the_checked_tree_is_not_empty() -> None:
    files = [path for path, _ in _python_files()]
    assert any(path.parts[-2] == "canaries" for path in files)
    assert ROOT / "properties" / "cli.py" in files


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        (
            "from streamcheck.impl._reorder import Step",
            None,
            [(1, "from streamcheck.impl._reorder import ...")],
        ),
        (
            "import streamcheck.impl.transport._actor",
            None,
            [(1, "import streamcheck.impl.transport._actor")],
        ),
        (
            "from streamcheck.impl.transport import _actor",
            None,
            [(1, "from streamcheck.impl.transport import _actor")],
        ),
        (
            "\nfrom ...impl._log import LostWrites",
            "streamcheck.properties.canaries",
            [(2, "from streamcheck.impl._log import ...")],
        ),
        ("from streamcheck.impl.seams import StreamActor", None, []),
        ("from streamcheck.impl import content_text", None, []),
        ("from streamcheck.model._events import Chunk", None, []),
        ("from ._build import Bug", "streamcheck.properties.canaries", []),
    ],
)
def test_private_imports_are_recognised(
    source: str, package: str | None, expected: list[tuple[int, str]]
) -> None:
    assert private_impl_imports(source, package) == expected
