"""The README cannot rot: its commands run here.

- the two first commands are the ones .ci/run and the demo use;
- every `audit-capture` command it shows exists, and the DBA's and the viewer's
  shell blocks run against a real server, in order;
- the Roles section's GRANTs give each role what it says, in the install and removal
  order it says, and the wrong orders stop with the messages it shows;
- its SQL blocks run on the sample CRM; its Python blocks compile and their imports
  resolve (the code itself is exercised by the integration tests).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from audit_capture.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def block_with(language: str, text: str) -> str:
    (found,) = [b for b in blocks(language) if text in b]
    return found


def test_the_first_lines_are_the_two_commands():
    first = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[0] for line in first] == ["scripts/demo", "scripts/test"]
    assert "exec scripts/test" in (ROOT / ".ci/run").read_text()
    assert "audit-capture demo" in (ROOT / "scripts/demo").read_text()


def test_every_audit_capture_command_shown_exists():
    shown = set(re.findall(r"audit-capture((?: (?:--database-url \S+ )?[a-z][a-z-]+)+)", README))
    assert shown
    for words in shown:
        command = cli
        for word in [w for w in words.split() if not w.startswith("--") and "://" not in w]:
            if not hasattr(command, "get_command"):
                break  # an argument (a table name): the command was found
            sub = command.get_command(None, word)
            assert sub is not None, f"README shows `audit-capture{words}`: no command {word!r}"
            command = sub


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(url: str) -> dict[str, str]:
    parts = conninfo_to_dict(url)
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "AUDIT_CAPTURE_DATABASE_URL": url,
        "PGHOST": parts["host"],
        "PGPORT": str(parts["port"]),
        "PGUSER": parts["user"],
        "PGDATABASE": parts["dbname"],
    }


def run_lines(script: str, url: str, cwd: Path, stdin: str = "") -> str:
    """Run a README shell block with bash, the example database replaced by ``url``."""
    script = re.sub(r"postgresql://dba@db\.example\.com:5432/crm", url, script)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env_for(url),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"README block failed:\n{script}\n{result.stderr}"
    return result.stdout


def test_dba_blocks_run_in_order(empty_db_url, tmp_path):
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "create table clients (id bigint primary key, name text, status text, ssn text)"
        )
    out = run_lines(block_with("sh", "audit-capture migrate upgrade "), empty_db_url, tmp_path)
    assert "(head)" in out
    assert "create table if not exists audit.action_log" in (tmp_path / "install.sql").read_text()
    run_lines(block_with("sh", "audit-capture track clients"), empty_db_url, tmp_path)
    status = subprocess.run(
        ["audit-capture", "status"], env=env_for(empty_db_url), capture_output=True, text=True
    )
    assert status.returncode == 0 and "status: ok" in status.stdout
    assert block_with("sh", "audit-capture status").strip() == "audit-capture status"
    run_lines(block_with("sh", "audit-capture migrate downgrade base"), empty_db_url, tmp_path)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select to_regclass('audit.action_log')").fetchone()[0] is None


def test_the_viewer_block_runs_and_serves(db_url, tmp_path, conn):
    script = block_with("sh", "audit-capture viewer hash-password")
    setup, serve = script.split("# 5. serve it")
    setup = setup.replace("password '...'", "password 'readme-secret'")
    # the step the reader does by hand: paste the key that new-secret printed
    setup = setup.replace(
        "<paste the output of audit-capture viewer new-secret>",
        "$(audit-capture viewer new-secret)",
    ).replace("<<'TOML'", "<<TOML")
    out = run_lines(setup, db_url, tmp_path, stdin="pw-from-readme\npw-from-readme\n")
    assert re.search(r"scrypt:\S+", out)
    try:
        port = free_port()
        viewer_url = re.sub(
            r"/[^/]+$",
            "/" + conninfo_to_dict(db_url)["dbname"],
            db_url.replace("postgres@", "audit_viewer:readme-secret@"),
        )
        command = " ".join(serve.replace("\\\n", " ").split("\n", 1)[1].split())
        command = command.replace("postgresql://audit_viewer@db/crm", viewer_url).replace(
            "8080", str(port)
        )
        server = subprocess.Popen(
            shlex.split(command),
            env=env_for(db_url),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/sign-in") as response:
                        assert response.status == 200
                        break
                except OSError:
                    assert server.poll() is None, server.stderr.read()
                    assert time.monotonic() < deadline, "the viewer did not start"
                    time.sleep(0.3)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=15)
    finally:
        conn.rollback()
        with conn.transaction():
            conn.execute("drop owned by audit_viewer; drop role audit_viewer")


@pytest.mark.parametrize("sql", blocks("sql"), ids=lambda s: s.strip().splitlines()[0][:40])
def test_sql_blocks_run_on_the_sample_crm(conn, sql):
    with conn.transaction(force_rollback=True):
        conn.execute(sql)


@pytest.mark.parametrize("code", blocks("python"), ids=lambda s: s.strip().splitlines()[0][:40])
def test_python_blocks_compile_and_their_imports_resolve(code):
    compile(code, "README.md", "exec")
    imports = "\n".join(
        line for line in code.splitlines() if re.match(r"(from \S+ )?import ", line)
    )
    exec(compile(imports, "README.md", "exec"), {})


def readme_messages() -> list[str]:
    """The error messages the README's plain block shows, each on one line."""
    block = block_with("", "AuditNotInstalled")
    messages: list[str] = []
    for line in block.splitlines():
        if line.startswith("  "):
            messages[-1] = (messages[-1] + " " + line.strip()).strip()
        else:
            messages.append("")
    return messages


def test_the_roles_block_and_the_install_order(empty_db_url, tmp_path):
    """The Roles section's GRANTs, run as shown: the migration role runs the application's
    chain and tracks, the runtime role writes with a context and cannot touch the log,
    the viewer's role reads it and writes nothing; the wrong orders say what the README
    says."""
    from alembic import command
    from test_migrations import make_host_chain

    from audit_capture import migrate, record_action, set_context
    from audit_capture.alembic_ops import AuditNotInstalled, NotAuditAdmin

    roles = ("app_migrator", "app_runtime", "audit_viewer")
    as_role = {role: empty_db_url.replace("postgres@", f"{role}@", 1) for role in roles}
    superuser = psycopg.connect(empty_db_url, autocommit=True)
    try:
        migrate.upgrade(empty_db_url, "head")  # creates audit_owner, audit_admin, audit_reader
        superuser.execute(block_with("sql", "create role app_migrator"))
        chain = make_host_chain(tmp_path, as_role["app_migrator"])
        shown = readme_messages()

        migrate.downgrade(empty_db_url, "base")  # not installed (the roles stay)
        with pytest.raises(AuditNotInstalled) as raised:  # the application's chain first
            command.upgrade(chain, "head")
        assert f"audit_capture.alembic_ops.AuditNotInstalled: {raised.value}" == shown[0]
        migrate.upgrade(empty_db_url, "head")
        superuser.execute("revoke audit_admin from app_migrator")
        with pytest.raises(NotAuditAdmin) as raised:
            command.upgrade(chain, "head")
        assert f"audit_capture.alembic_ops.NotAuditAdmin: {raised.value}" == shown[1]
        superuser.execute("grant audit_admin to app_migrator")
        command.upgrade(chain, "head")  # the right order, as the migration role

        with psycopg.connect(as_role["app_runtime"]) as app:
            with app.transaction():
                set_context(
                    app, actor_id=7, actor_name="Alice Admin", actor_type="admin", source="web"
                )
                app.execute("insert into widgets (id, name) values (1, 'Sprocket')")
                app.execute("update widgets set name = 'Sprocket 2' where id = 1")
                record_action(app, "export", "Widget export", resource_type="widget")
            for forbidden in (
                "select * from audit.action_log",
                "select audit.track('widgets', 'widget')",
                "select audit.untrack('widgets')",
                "delete from audit.action_log",
                "alter table widgets disable trigger all",
                "drop table widgets",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege), app.transaction():
                    app.execute(forbidden)

        with psycopg.connect(as_role["audit_viewer"]) as viewer:
            rows = viewer.execute(
                "select action, actor_name, db_user from audit.action_log order by id"
            ).fetchall()
            assert rows == [
                ("Widget created", "Alice Admin", "app_runtime"),
                ("Widget updated", "Alice Admin", "app_runtime"),
                ("Widget export", "Alice Admin", "app_runtime"),
            ]
            assert viewer.execute("show default_transaction_read_only").fetchone()[0] == "on"
            for forbidden in (
                "select * from widgets",
                "insert into widgets (id) values (2)",
                "select audit.log_action('export', 'Forged export')",
                "select audit.untrack('widgets')",
            ):
                viewer.rollback()
                with pytest.raises(psycopg.Error) as refused:
                    viewer.execute(forbidden)
                assert isinstance(
                    refused.value,
                    (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction),
                ), forbidden

        with psycopg.connect(as_role["app_migrator"]) as migrator:  # audit_admin reads the log too
            assert migrator.execute("select count(*) from audit.action_log").fetchone()[0] == 3

        command.downgrade(chain, "base")  # to remove: the application's chain first
        migrate.downgrade(empty_db_url, "base")
        assert superuser.execute(
            "select to_regclass('widgets'), to_regclass('audit.action_log')"
        ).fetchone() == (None, None)
    finally:
        for (role,) in superuser.execute(
            "select rolname from pg_roles where rolname = any(%s)", (list(roles),)
        ).fetchall():
            superuser.execute(
                sql.SQL("drop owned by {0}; drop role {0}").format(sql.Identifier(role))
            )
        superuser.close()
