"""The tool gates of the test run: lint, format, types, import layers, package names.

Each tool runs from the same environment as pytest (the ``bin`` directory next to
``sys.executable``), with its configuration from pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
PACKAGES = ["records", "signaling", "media", "web"]


def run_tool(*argv: str, cwd: Path = ROOT) -> None:
    tool = BIN / argv[0]
    assert tool.exists(), f"{tool} is not installed; run `make venv`"
    proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(tool), *argv[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (
        f"`{' '.join(argv)}` exited with {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )


def test_ruff_check() -> None:
    run_tool("ruff", "check", ".")


def test_ruff_format() -> None:
    run_tool("ruff", "format", "--check", ".")


@pytest.mark.slow
def test_mypy_strict() -> None:
    run_tool("mypy")  # packages and strictness come from [tool.mypy]


def test_import_layers() -> None:
    run_tool("lint-imports")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_inside_repo(name: str) -> None:
    # PyPI has unrelated projects called records, signaling, media and web.
    spec = importlib.util.find_spec(name)
    assert spec is not None, name
    assert spec.origin is not None, f"{name} is a namespace package: __init__.py missing"
    origin = Path(spec.origin).resolve()
    assert origin == ROOT / name / "__init__.py", origin


@pytest.mark.parametrize("name", PACKAGES)
def test_installed_package_resolves_inside_repo(name: str, tmp_path: Path) -> None:
    try:
        importlib.metadata.distribution("teleconsult")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("teleconsult is not installed in this environment (make venv does it)")
    # From another directory, so that only the installed mapping can find the package.
    code = f"import importlib.util; print(importlib.util.find_spec({name!r}).origin)"
    proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == ROOT / name / "__init__.py", proc.stdout


def test_every_package_folder_is_listed_for_setuptools() -> None:
    # A subpackage missing from [tool.setuptools] packages is left out of a
    # regular (non-editable) install, which the editable test run would not see.
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for name in PACKAGES
        for init in (ROOT / name).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == listed
