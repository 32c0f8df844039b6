"""The package's import layers hold (``[tool.importlinter]`` in pyproject.toml, checked by
lint-imports), and the check fails on a new import circle, naming its modules: run on
the real package, then on a copy with a circle planted in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports with ``root``'s pyproject.toml, on the audit_capture under ``root/src``
    (ahead of the installed one on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers_and_has_no_import_circle():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert "No import circle anywhere inside audit_capture KEPT" in result.stdout


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject.toml, to plant imports in."""
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        REPO_ROOT / "src" / "audit_capture",
        tmp_path / "src" / "audit_capture",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def plant(root: Path, module: str, code: str) -> None:
    path = root / "src" / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + "\n\n" + code + "\n")


@pytest.mark.parametrize(
    "module, code, package, other",
    [
        # in the core, whose modules may import each other (enums imports errors): only
        # the circle check sees it, and it sees an import inside a function as well
        (
            "audit_capture.errors",
            "def planted():\n    from audit_capture import enums  # noqa: F401",
            "audit_capture",
            "enums",
        ),
        # between two layers of the viewer (cursor imports errors)
        (
            "audit_capture.viewer.errors",
            "from audit_capture.viewer import cursor  # noqa: E402,F401",
            "audit_capture.viewer",
            "cursor",
        ),
    ],
)
def test_a_planted_import_circle_fails_the_check_and_names_its_modules(
    package_copy, module, code, package, other
):
    assert lint_imports(package_copy).returncode == 0  # the copy as it is: clean
    plant(package_copy, module, code)
    result = lint_imports(package_copy)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "No import circle anywhere inside audit_capture BROKEN" in output, output
    assert f"No cycles are allowed in {package}." in output, output
    # the import to remove to break it: one of the circle's two
    assert f"- .errors -> .{other}" in output or f"- .{other} -> .errors" in output, output


def test_a_viewer_module_below_the_web_layer_may_not_import_flask(package_copy):
    plant(package_copy, "audit_capture.viewer.filters", "import flask  # noqa: E402,F401")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "only the web layer" in result.stdout and "BROKEN" in result.stdout
    assert "audit_capture.viewer.filters -> flask" in result.stdout
