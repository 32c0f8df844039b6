"""scripts/test runs ruff format --check, ruff check, mypy and lint-imports before pytest,
in the locked environment: a finding stops the run with the tool's own output and pytest
never starts.

Run on a small copy of the project (its scripts, pyproject.toml and uv.lock, one module,
one test) so that each case holds exactly one finding, whatever the real tree holds. The
copy's import contract is one of its own (the real ones name modules it does not have)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

CLEAN_MODULE = '''"""A module every check accepts."""


def double(value: int) -> int:
    return 2 * value
'''


MINI_CONTRACT = """[tool.importlinter]
root_package = "audit_capture"
include_external_packages = true

[[tool.importlinter.contracts]]
name = "the copy imports no web framework"
type = "forbidden"
source_modules = ["audit_capture"]
forbidden_modules = ["flask"]
"""

IMPORTS_FLASK = '''"""A module that breaks the copy's import contract."""

from flask import Flask


def make() -> Flask:
    return Flask(__name__)
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO_ROOT / "scripts", root / "scripts")
    shutil.copy(REPO_ROOT / "uv.lock", root / "uv.lock")
    settings = (REPO_ROOT / "pyproject.toml").read_text()
    settings = settings[: settings.index("[tool.importlinter]")] + MINI_CONTRACT
    (root / "pyproject.toml").write_text(settings)
    (root / "README.md").write_text("# a copy for tests/test_checks.py\n")
    for folder in ("triggers", "migrations", "viewer"):  # the wheel's force-include
        (root / folder).mkdir()
        (root / folder / "README").write_text("placeholder\n")
    (root / "src" / "audit_capture").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "tests" / "test_one.py").write_text("def test_one():\n    assert True\n")
    return root


def scripts_test(project: Path, module: str) -> subprocess.CompletedProcess:
    (project / "src" / "audit_capture" / "__init__.py").write_text(module)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    # scripts/test runs `python3 -m uv`: the machine's python3, not this run's environment
    # (which has no uv), as a developer's shell would find it
    here = Path(sys.prefix, "bin").resolve()
    env["PATH"] = os.pathsep.join(
        folder for folder in env.get("PATH", "").split(os.pathsep) if Path(folder).resolve() != here
    )
    return subprocess.run(
        [str(project / "scripts" / "test"), "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_a_clean_tree_reaches_pytest(project):
    completed = scripts_test(project, CLEAN_MODULE)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "1 passed" in completed.stdout
    assert "Success: no issues found" in completed.stdout  # mypy ran
    assert "Contracts: 1 kept, 0 broken." in completed.stdout  # lint-imports ran


@pytest.mark.parametrize(
    ("module", "check", "said"),
    [
        (
            CLEAN_MODULE.replace("2 * value", "2*value"),
            "ruff format --check .",
            "would be reformatted",
        ),
        (
            CLEAN_MODULE.replace("    return", "    unused = 1\n    return"),
            "ruff check .",
            "F841",
        ),
        (CLEAN_MODULE.replace("2 * value", "str(2 * value)"), "mypy", "Incompatible return"),
        (IMPORTS_FLASK, "lint-imports --no-cache --no-logo", "audit_capture -> flask"),
    ],
    ids=["format", "lint", "types", "imports"],
)
def test_a_finding_stops_the_run_before_pytest(project, module, check, said):
    completed = scripts_test(project, module)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert said in output  # the tool's own words
    assert f"scripts/test: stopped before pytest: `{check}` failed" in completed.stderr
    assert "1 passed" not in completed.stdout and "test_one" not in output
