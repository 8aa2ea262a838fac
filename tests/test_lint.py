"""The habits of a maintained project: ruff's lint and format, and mypy over the public API.

Configured in pyproject.toml ([tool.ruff], [tool.mypy]); each runs as the command a developer
types, from the repository root, and its own output is the failure message.
"""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(*args, timeout=600) -> subprocess.CompletedProcess:
    """`python -m TOOL ARGS` in the repository root, with this interpreter's packages."""
    try:
        __import__(args[0])
    except ImportError:
        pytest.fail(f"{args[0]} is missing: pip install -e '.[lint]' (scripts/setup.sh test)")
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_ruff_check():
    p = tool("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert p.returncode == 0, p.stdout + p.stderr


def test_ruff_format():
    p = tool("ruff", "format", "--no-cache", "--check", ".")
    assert p.returncode == 0, p.stdout + p.stderr + "\n(fix: ruff format)"


def test_mypy():
    p = tool("mypy")  # the modules and settings of [tool.mypy]; cache in .mypy_cache
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_covers_the_public_api():
    """Every module behind a name of `from quicknets import ...` is type-checked."""
    tree = ast.parse((ROOT / "src" / "quicknets" / "__init__.py").read_text())
    exports = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_EXPORTS"
    )
    modules = set(ast.literal_eval(exports).values()) | {"quicknets"}
    checked = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["modules"]
    assert modules <= set(checked), sorted(modules - set(checked))
