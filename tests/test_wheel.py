"""The built wheel works on its own: installed outside the source tree, it installs
the audit schema from the SQL and migrations it carries inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]


def uv_command() -> list[str]:
    """How to call uv: ``$UV`` (set by ``uv run``), a uv on PATH, or ``python3 -m uv``."""
    if os.environ.get("UV") and Path(os.environ["UV"]).exists():
        return [os.environ["UV"]]
    found = shutil.which("uv")
    if found:
        return [found]
    return ["python3", "-m", "uv"]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    completed = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert completed.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({completed.returncode}):\n"
        f"{completed.stdout}\n{completed.stderr}"
    )
    return completed


def test_installed_wheel_migrates_a_database_from_outside_the_source_tree(tmp_path, empty_db_url):
    dist = tmp_path / "dist"
    run([*uv_command(), "build", "--wheel", "-o", str(dist)], cwd=REPO_ROOT)
    wheels = list(dist.glob("audit_capture-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    run([base_python, "-m", "venv", "--without-pip", str(venv)])
    # uv installs into the plain venv from its cache: much faster than pip, same result
    run([*uv_command(), "pip", "install", "--python", str(venv / "bin" / "python"), str(wheels[0])])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("AUDIT_CAPTURE_DATABASE_URL", None)

    where = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from audit_capture import resources; print(resources.migrations_dir())",
        ],
        cwd=elsewhere,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(venv)), f"migrations found outside the installed package: {where}"

    completed = run(
        [str(venv / "bin" / "audit-capture"), "--database-url", empty_db_url, "migrate", "upgrade"],
        cwd=elsewhere,
        env=env,
    )
    assert "audit schema upgraded" in completed.stdout

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select to_regclass('audit.action_log') is not null").fetchone()[0]
