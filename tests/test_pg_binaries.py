"""The suite runs against the PostgreSQL that AUDIT_CAPTURE_TEST_PGBIN names (the next
issues run it on several versions that way), and says which one it ran against."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pg_binaries

TESTS = Path(__file__).resolve().parent


def pytest_in_a_process(env_value: str | None) -> subprocess.CompletedProcess:
    """pytest collecting this file only, with the variable set (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != pg_binaries.ENVVAR}
    if env_value is not None:
        env[pg_binaries.ENVVAR] = env_value
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            str(TESTS / "test_pg_binaries.py"),
        ],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_header_names_the_server_the_variable_chose():
    chosen = pg_binaries.bin_dir()  # what the suite found: a real server's folder
    run = pytest_in_a_process(str(chosen))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"from {chosen} ({pg_binaries.ENVVAR})" in run.stdout


def test_a_variable_naming_no_server_stops_the_run_saying_so(tmp_path):
    (tmp_path / "postgres").touch()
    run = pytest_in_a_process(str(tmp_path))
    assert run.returncode != 0
    assert f"{pg_binaries.ENVVAR}={tmp_path}: no initdb there" in run.stdout + run.stderr


def test_unset_the_suite_finds_the_server_itself():
    run = pytest_in_a_process(None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"({pg_binaries.ENVVAR})" not in run.stdout
    assert "postgresql: postgres (PostgreSQL)" in run.stdout
