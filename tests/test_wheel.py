"""The built wheel works on its own: installed outside the source tree, it installs
the audit schema from the SQL and migrations it carries inside the package. Without
extras it brings no web or test server, and still migrates, tracks, reports status and
sets the context; the commands that need an extra say which; with [viewer] it serves."""

from __future__ import annotations

import html
import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import pytest
from processes import first_line

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run([*uv_command(), "build", "--wheel", "-o", str(dist)], cwd=REPO_ROOT)
    wheels = list(dist.glob("audit_capture-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def make_venv(where: Path, requirement: str) -> Path:
    """A fresh venv holding ``requirement`` (the wheel, with or without extras); its bin."""
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    run([base_python, "-m", "venv", "--without-pip", str(where)])
    # uv installs into the plain venv from its cache: much faster than pip, same result
    run([*uv_command(), "pip", "install", "--python", str(where / "bin" / "python"), requirement])
    return where / "bin"


@pytest.fixture(scope="module")
def core_bin(wheel, tmp_path_factory) -> Path:
    """The wheel installed without extras."""
    return make_venv(tmp_path_factory.mktemp("core") / "venv", str(wheel))


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working folder outside the source tree."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def outside_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("AUDIT_CAPTURE_DATABASE_URL", None)
    return env


def test_installed_wheel_migrates_a_database_from_outside_the_source_tree(
    core_bin, elsewhere, empty_db_url
):
    env = outside_env()
    where = run(
        [
            str(core_bin / "python"),
            "-c",
            "from audit_capture import resources; print(resources.migrations_dir())",
        ],
        cwd=elsewhere,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(core_bin.parent)), (
        f"migrations found outside the installed package: {where}"
    )

    completed = run(
        [str(core_bin / "audit-capture"), "--database-url", empty_db_url, "migrate", "upgrade"],
        cwd=elsewhere,
        env=env,
    )
    assert "audit schema upgraded" in completed.stdout

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select to_regclass('audit.action_log') is not null").fetchone()[0]


def test_the_wheel_carries_every_file_of_the_migration_chain(wheel):
    # manifest.json lists every file a revision runs (state files, upgrade, downgrade and
    # the *_concurrently files that run outside a transaction): a file left out of the
    # wheel would be skipped or fail on the DBA's machine only
    import zipfile

    from audit_capture.revisions import Chain

    chain = Chain.packaged()
    listed = {
        f"audit_capture/_migrations/{name}"
        for entry in chain.manifest()["revisions"].values()
        for name in entry["files"]
    }
    assert "audit_capture/_migrations/upgrade_concurrently/0002.sql" in listed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert listed <= names, sorted(listed - names)


def test_the_wheel_without_extras_installs_no_web_or_test_server(core_bin):
    listed = run([*uv_command(), "pip", "list", "--python", str(core_bin / "python")]).stdout
    installed = {line.split()[0].lower() for line in listed.splitlines()[2:] if line.strip()}
    assert "audit-capture" in installed and "psycopg" in installed
    assert not installed & {"flask", "werkzeug", "waitress", "testing-postgresql"}, installed


CONTEXT_SCRIPT = """
import sys

import psycopg

import audit_capture
from audit_capture.context import CONTEXT_VARIABLES, read_variables

with psycopg.connect(sys.argv[1]) as conn:
    with conn.transaction():
        audit_capture.set_context(
            conn, actor_id=7, actor_name="Alice", actor_type="admin", source="api"
        )
        print(read_variables(conn, CONTEXT_VARIABLES)["audit.actor_name"])
        conn.execute("insert into leads (name) values ('Ann')")
"""


def test_the_wheel_without_extras_tracks_and_states_who_acts(core_bin, elsewhere, empty_db_url):
    """What an application that only wants the log needs: the schema, tracking, status and
    the context helpers, from the wheel installed without extras."""
    env = outside_env()
    cli = [str(core_bin / "audit-capture"), "--database-url", empty_db_url]
    run([*cli, "migrate", "upgrade"], cwd=elsewhere, env=env)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("create table leads (id serial primary key, name text)")
    tracked = run([*cli, "track", "leads", "--resource", "lead", "--label-column", "name"], env=env)
    assert tracked.stdout.strip() == "tracking leads as lead"
    status = run([*cli, "status"], cwd=elsewhere, env=env).stdout
    assert "leads" in status

    said = run([str(core_bin / "python"), "-c", CONTEXT_SCRIPT, empty_db_url], env=env)
    assert said.stdout.strip() == "Alice"
    with psycopg.connect(empty_db_url) as conn:
        logged = conn.execute(
            "select action, actor_id, actor_name, actor_type, source, resource_label"
            " from audit.action_log"
        ).fetchall()
    assert logged == [("Lead created", "7", "Alice", "admin", "api", "Ann")]

    # the log as a stream, as JSON lines and as OCSF events (no extra needed)
    line = run([*cli, "tail"], cwd=elsewhere, env=env).stdout
    assert json.loads(line)["actor_name"] == "Alice"
    event = run([*cli, "tail", "--format", "ocsf"], cwd=elsewhere, env=env).stdout
    assert json.loads(event)["actor"]["user"]["name"] == "Alice"

    # restore from the installed wheel: a deleted lead comes back as one action
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("delete from leads")
        (deleted,) = conn.execute(
            "select id from audit.action_log where action = 'Lead deleted'"
        ).fetchone()
    restored = run([*cli, "restore", str(deleted)], cwd=elsewhere, env=env)
    assert restored.stdout.strip(), restored.stderr
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select name from leads").fetchall() == [("Ann",)]
        (context,) = conn.execute(
            "select context from audit.action_log where action = 'Lead restored'"
        ).fetchone()
    assert context["restores"] == deleted

    # a row's history from the installed wheel's schema: every action on the lead,
    # newest first
    with psycopg.connect(empty_db_url) as conn:
        (lead,) = conn.execute("select id::text from leads").fetchone()
        history = conn.execute(
            "select action from audit.history('leads'::regclass, %s)", (lead,)
        ).fetchall()
    assert history == [("Lead restored",), ("Lead deleted",), ("Lead created",)]

    # tamper evidence from the installed wheel (its SQL came from the wheel's revisions)
    heads = elsewhere / "heads.txt"
    sealed = run([*cli, "seal", "--head-file", str(heads)], cwd=elsewhere, env=env).stdout
    assert "sealed" in sealed and f"head: {heads.read_text().split()[0]}" in sealed
    verified = run([*cli, "verify", "--expect", str(heads)], cwd=elsewhere, env=env).stdout
    assert verified.startswith("intact: ") and "1 saved head(s) found" in verified
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("alter table audit.action_log disable trigger user")
        conn.execute("update audit.action_log set actor_name = 'Mallory'")
    tampered = subprocess.run(
        [*cli, "verify", "--expect", str(heads)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("TAMPERED: action ")


@pytest.mark.parametrize(
    ("command", "extra"),
    [(["viewer", "--config", "viewer.toml"], "viewer"), (["demo"], "demo")],
)
def test_the_wheel_without_extras_says_which_extra_a_command_needs(
    core_bin, elsewhere, command, extra
):
    completed = subprocess.run(
        [str(core_bin / "audit-capture"), *command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
        env=outside_env(),
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith(f"Error: audit-capture {extra} needs the {extra} extra (")
    assert line.endswith(f"pip install 'audit-capture[{extra}]'")


def test_the_wheel_with_the_viewer_extra_serves(wheel, tmp_path, elsewhere, conn, db_url, seeded):
    """Served from the installed wheel's templates and static files: the sign-in page,
    then signed in (a browser's cookie and CSRF token), the list and a row's history."""
    from viewer_data import PASSWORD, SECRET_KEY, app_config, drop_role, make_reader

    viewer_bin = make_venv(tmp_path / "venv", f"audit-capture[viewer] @ {wheel.as_uri()}")
    settings = elsewhere / "viewer.toml"
    settings.write_text(
        f'secret_key = "{SECRET_KEY}"\n[users]\nalice = "{app_config("")["USERS"]["alice"]}"\n'
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reader, url = make_reader(conn, db_url)
    viewer = subprocess.Popen(
        [str(viewer_bin / "audit-capture"), "viewer", "--database-url", url]
        + ["--config", str(settings), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=elsewhere,
        env=outside_env(),
        stdin=subprocess.DEVNULL,
    )
    try:
        # printed once it listens (after checking its settings and the database)
        assert first_line(viewer).startswith("audit-capture viewer: serving"), viewer.stderr.read()
        base = f"http://127.0.0.1:{port}"
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        with browser.open(f"{base}/sign-in") as page:
            assert page.status == 200
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
        assert token is not None
        form = urllib.parse.urlencode(
            {"csrf_token": html.unescape(token.group(1)), "username": "alice"}
            | {"password": PASSWORD, "next": "/"}
        )
        with browser.open(f"{base}/sign-in", data=form.encode()) as page:
            assert page.url == f"{base}/" and "<h1>Single actions</h1>" in page.read().decode()
        client = seeded["client_id"]
        with browser.open(f"{base}/history/client?id={client}") as page:
            text = page.read().decode()
        assert f"History of Client Jane Roe #{client}" in text
        assert f'href="/actions/{seeded["client_created"]}"' in text
    finally:
        viewer.terminate()
        viewer.communicate(timeout=30)
        drop_role(conn, reader)
