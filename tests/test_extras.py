"""The core package needs none of the extras: with flask, werkzeug, waitress and
testing.postgresql made unimportable, every core module imports and the CLI's core
commands answer; the commands that need an extra say which one to install.

Each check runs in a fresh interpreter whose imports of those modules fail (a meta path
finder placed first), as in an environment installed without extras. test_wheel.py
proves the same with the built wheel installed without extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import audit_capture

#: What the extras bring (and the core dependencies do not): [viewer] flask and waitress
#: (with flask's own werkzeug, jinja2, itsdangerous, blinker), [demo] testing.postgresql
#: (with its testing.common).
EXTRA_MODULES = (
    "flask",
    "werkzeug",
    "jinja2",
    "itsdangerous",
    "blinker",
    "waitress",
    "testing.postgresql",
    "testing.common",
)

#: The modules that need an extra; everything else in the package is core (the viewer and
#: demo packages are left out whole: they are the extras' code).
NEEDS_AN_EXTRA = (
    "audit_capture.viewer",
    "audit_capture.demo",
    "audit_capture.embedded",
    "audit_capture.integrations.flask",
)

BLOCKER = f"""
import sys
from importlib.abc import MetaPathFinder

def from_an_extra(name):
    return any(name == m or name.startswith(m + ".") for m in {EXTRA_MODULES!r})

class WithoutExtras(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if from_an_extra(name):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

# testing.common's namespace .pth files load it at start-up: forget it
for name in [m for m in sys.modules if from_an_extra(m)]:
    del sys.modules[name]
sys.meta_path.insert(0, WithoutExtras())
"""


def without_extras(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def package_modules() -> list[str]:
    """Every module of the installed audit_capture package, by its file."""
    root = Path(audit_capture.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def is_core(module: str) -> bool:
    return not any(module == m or module.startswith(m + ".") for m in NEEDS_AN_EXTRA)


def test_every_core_module_imports_without_the_extras():
    core = [m for m in package_modules() if is_core(m)]
    assert {"audit_capture", "audit_capture.context", "audit_capture.cli"} <= set(core)
    assert "audit_capture.integrations.sqlalchemy" in core
    assert "audit_capture.integrations.pool" in core
    completed = without_extras(
        """
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print("loaded:", sorted(m for m in sys.modules if from_an_extra(m)))
""",
        *core,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "loaded: []"


@pytest.mark.parametrize(
    "module",
    [
        "audit_capture.viewer.app",
        "audit_capture.demo.runner",
        "audit_capture.embedded",
        "audit_capture.integrations.flask",
    ],
)
def test_the_blocker_does_block_what_needs_an_extra(module):
    """The hostile side of the check above: the blocked modules really are missing."""
    completed = without_extras(f"import {module}")
    assert completed.returncode != 0
    assert "ModuleNotFoundError" in completed.stderr


def test_core_commands_answer_without_the_extras():
    completed = without_extras(
        "from audit_capture.cli import main\nmain(sys.argv[1:])", "migrate", "upgrade", "--sql"
    )
    assert completed.returncode == 0, completed.stderr
    assert "create schema" in completed.stdout.lower()


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (["viewer", "--config", "viewer.toml"], "viewer"),
        (["viewer", "hash-password", "--password", "long enough"], "viewer"),
        (["demo"], "demo"),
        (["--database-url", "postgresql://nobody@127.0.0.1:1/none", "demo"], "demo"),
    ],
)
def test_a_command_that_needs_an_extra_says_which(command, extra):
    completed = without_extras("from audit_capture.cli import main\nmain(sys.argv[1:])", *command)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith(f"Error: audit-capture {extra} needs the {extra} extra (")
    assert line.endswith(f"pip install 'audit-capture[{extra}]'")
