"""The README and docs/ cannot rot: their commands and examples run here.

- the two first commands are the ones .ci/run and the demo use;
- every `audit-capture` command they show exists, and the DBA's and the viewer's
  shell blocks run against a real server, in order;
- the Roles section's GRANTs give each role what it says, in the install and removal
  order it says, and the wrong orders stop with the messages docs/reference.md shows;
- their SQL blocks run on the sample CRM;
- their Python blocks run against the test database (its URL in place of the example's)
  and what each claims happened is in audit.action_log; a block that cannot run alone is
  marked `<!-- not run: why -->` before its fence and is only compiled;
- every relative link (and its #anchor) points to a file (and a heading) that exists.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from audit_capture.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "reference.md").read_text()
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# `<!-- not run: why -->` on the line before a fence: the block is only compiled
NOT_RUN = re.compile(r"<!-- not run: ([^>]+?) -->\n*$")


def documents() -> list[Path]:
    """The Markdown a reader follows: README, CHANGELOG, docs/, migrations/README.md."""
    found = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    return found + [p for p in [ROOT / "migrations" / "README.md"] if p.exists()]


def blocks(language: str, text: str = README) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def block_with(language: str, text: str, document: str = README) -> str:
    (found,) = [b for b in blocks(language, document) if text in b]
    return found


def python_blocks() -> list[tuple[str, str, str | None]]:
    """Every Python block of the documents: (where, code, why it is not run or None)."""
    found = []
    for path in documents():
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == "python":
                marked = NOT_RUN.search(text[: match.start()])
                line = text.count("\n", 0, match.start()) + 1
                where = f"{path.relative_to(ROOT)}:{line}"
                found.append((where, match.group(2), marked.group(1) if marked else None))
    return found


def test_the_first_lines_are_the_two_commands():
    first = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[0] for line in first] == ["scripts/demo", "scripts/test"]
    assert "exec scripts/test" in (ROOT / ".ci/run").read_text()
    assert "audit-capture demo" in (ROOT / "scripts/demo").read_text()


def test_every_audit_capture_command_shown_exists():
    text = "\n".join(path.read_text() for path in documents())
    shown = set(re.findall(r"audit-capture((?: (?:--database-url \S+ )?[a-z][a-z-]+)+)", text))
    assert shown
    for words in shown:
        command = cli
        for word in [w for w in words.split() if not w.startswith("--") and "://" not in w]:
            if not hasattr(command, "get_command"):
                break  # an argument (a table name): the command was found
            sub = command.get_command(None, word)
            assert sub is not None, f"the docs show `audit-capture{words}`: no command {word!r}"
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


ALL_SQL = [b for path in documents() for b in blocks("sql", path.read_text())]


@pytest.mark.parametrize("sql", ALL_SQL, ids=lambda s: s.strip().splitlines()[0][:40])
def test_sql_blocks_run_on_the_sample_crm(conn, sql):
    with conn.transaction(force_rollback=True):
        conn.execute(sql)


@pytest.mark.parametrize("where,code,why", python_blocks(), ids=lambda v: str(v)[:40])
def test_python_blocks_compile_and_their_imports_resolve(where, code, why):
    """Every block compiles; its imports resolve (a block marked not run may import the
    reader's own application: only its audit_capture imports must resolve)."""
    compile(code, where, "exec")
    ours = r"from audit_capture\S* import |import audit_capture" if why else r"(from \S+ )?import "
    imports = "\n".join(line for line in code.splitlines() if re.match(ours, line))
    exec(compile(imports, where, "exec"), {})


def readme_messages() -> list[str]:
    """The error messages docs/reference.md shows for the wrong orders, each on one line."""
    block = block_with("", "AuditNotInstalled", REFERENCE)
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


# --- the Python blocks run -----------------------------------------------------------

EXAMPLE_URL = re.compile(r"postgresql(\+psycopg)?://[a-z_]+@db(\.example\.com:5432)?/crm")


def exec_block(code: str, where: str, url: str) -> dict:
    """Run a documented block as a reader would, against ``url`` instead of the example
    database (the SQLAlchemy URLs keep their driver); its names, for the checks. The block
    runs as a module of its own (SQLAlchemy resolves a model's annotations through it)."""
    code = EXAMPLE_URL.sub(lambda m: url.replace("postgresql", f"postgresql{m[1] or ''}", 1), code)
    assert "@db.example.com" not in code and "@db/" not in code, f"{where}: a URL left as is"
    module = types.ModuleType("readme_block")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, where, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def read(conn, query: str, *args) -> list[tuple]:
    """Rows read in a transaction of their own, ended at once (no snapshot kept)."""
    conn.rollback()
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.rollback()


def actions_after(conn, before: int) -> list[tuple]:
    return read(
        conn,
        "select action, action_type, actor_name, actor_type, source, row_count, resource_id"
        " from audit.action_log where id > %s order by id",
        before,
    )


def last_id(conn) -> int:
    return read(conn, "select coalesce(max(id), 0) from audit.action_log")[0][0]


def seed_clients(conn, rows: list[tuple[int, str, str]]) -> None:
    conn.rollback()
    with conn.transaction():
        conn.cursor().executemany(
            "insert into clients (id, name, status) values (%s, %s, %s)", rows
        )


def check_alembic_revision(code, where, db_url, conn, tmp_path):
    """The revision of the DBA guide, as a file of a host chain: it creates and tracks
    widgets (state a status column, secret redacted), and its downgrade removes both."""
    from alembic import command
    from test_migrations import make_host_chain

    chain = make_host_chain(tmp_path, db_url)
    versions = tmp_path / "host_migrations" / "versions"
    (versions / "h001_widgets.py").unlink()
    (versions / "w001_widgets.py").write_text(code)
    command.upgrade(chain, "head")
    before = last_id(conn)
    with conn.transaction():
        conn.execute("insert into widgets (id, name, state, secret) values (1, 'Cog', 'a', 'pw')")
        conn.execute("update widgets set state = 'b' where id = 1")
        conn.execute("update widgets set secret = 'pw2' where id = 1")
    assert [row[:2] for row in actions_after(conn, before)] == [
        ("Widget created", "create"),
        ("Widget status change", "status_change"),
        ("Widget updated", "update"),
    ]
    logged = conn.execute(
        "select changes::text from audit.action_log where id > %s order by id", (before,)
    ).fetchall()
    assert all("pw" not in text for (text,) in logged) and "[redacted]" in logged[2][0]
    command.downgrade(chain, "base")
    conn.rollback()
    assert conn.execute("select to_regclass('widgets')").fetchone()[0] is None
    assert (
        conn.execute(
            "select count(*) from audit.tracked_table where relation::text = 'widgets'"
        ).fetchone()[0]
        == 0
    )


def check_psycopg(code, where, db_url, conn, tmp_path):
    """Alice's update, the AI agent's inside context(), Alice back for a batch of three
    deletions, an import of two, and a login event: each with the actor it claims."""
    seed_clients(conn, [(i, f"Client {i}", "new") for i in (12, 13, 20, 21, 22)])
    before = last_id(conn)
    exec_block(code, where, db_url)
    alice = ("Alice Admin", "admin", "web")
    assert actions_after(conn, before) == [
        ("Client updated", "update", *alice, 1, "12"),
        ("Client status change", "status_change", "Intake agent", "system", "ai", 1, "13"),
        ("Batch client deletion", "delete", *alice, 3, None),
        ("Clients imported (2)", "import", *alice, 2, None),
        ("LawRuler login", "login", *alice, 0, "3"),
    ]


def check_sqlalchemy(code, where, db_url, conn, tmp_path):
    """An ORM create, a batch deleting the closed clients (and only them), an import of
    two and an export event, all by Alice through the instrumented engine."""
    seed_clients(conn, [(30, "Closed one", "closed"), (31, "Closed two", "closed")])
    seed_clients(conn, [(32, "Still open", "new")])
    before = last_id(conn)
    namespace = exec_block(code, where, db_url)
    namespace["engine"].dispose()
    alice = ("Alice Admin", "admin", "web")
    rows = actions_after(conn, before)
    assert [row[:6] for row in rows] == [
        ("Client created", "create", *alice, 1),
        ("Batch client deletion", "delete", *alice, 2),
        ("Clients imported (2)", "import", *alice, 2),
        ("Call export to file", "export", *alice, 12),
    ]
    assert conn.execute("select count(*) from clients where id = 32").fetchone()[0] == 1


def check_flask(code, where, db_url, conn, tmp_path):
    """The signed-in user (loaded into g by a hook registered after AuditContext, as the
    README says any order works) acts through the API with the request's id; signed out,
    the system acts, and an untrusted X-Audit-Source header changes nothing."""
    seed_clients(conn, [(12, "Jane Roe", "new")])
    namespace = exec_block(code, where, db_url)
    app, engine = namespace["app"], namespace["engine"]
    signed_in: dict = {}

    @app.before_request
    def load_user():  # the application's own sign-in
        if signed_in:
            namespace["g"].user = types.SimpleNamespace(**signed_in)

    try:
        client = app.test_client()
        before = last_id(conn)
        signed_in.update(id=7, name="Alice Admin", is_staff=True)
        response = client.post(
            "/api/clients/12/status", json={"status": "retained"}, headers={"X-Request-ID": "r-42"}
        )
        assert response.status_code == 200 and response.headers["X-Request-ID"] == "r-42"
        signed_in.clear()
        response = client.post(
            "/api/clients/12/status", json={"status": "closed"}, headers={"X-Audit-Source": "ai"}
        )
        assert response.status_code == 200
        rows = conn.execute(
            "select action, actor_id, actor_name, actor_type, source, request_id"
            " from audit.action_log where id > %s order by id",
            (before,),
        ).fetchall()
        assert rows[0] == ("Client status change", "7", "Alice Admin", "admin", "api", "r-42")
        assert rows[1][0] == "Client status change" and rows[1][1:2] == (None,)
        assert rows[1][3:5] == ("system", "api")
    finally:
        engine.dispose()


def check_blueprint(code, where, db_url, conn, tmp_path):
    """The viewer mounted under the host's own rule: an admin of the host sees the log,
    anyone else gets the 403 page."""
    with conn.transaction():
        conn.execute("select audit.log_action('export', 'Call export to file')")
    app = exec_block(code, where, db_url)["app"]
    app.secret_key = "test-only"
    client = app.test_client()
    assert client.get("/admin/audit/").status_code == 403
    with client.session_transaction() as session:
        session["role"] = "client"
    assert client.get("/admin/audit/").status_code == 403
    with client.session_transaction() as session:
        session["role"] = "admin"
    page = client.get("/admin/audit/")
    assert page.status_code == 200 and "Call export to file" in page.get_data(as_text=True)


def check_pool(code, where, db_url, conn, tmp_path):
    """A background job through psycopg_pool: the system, named, from the AI source."""
    seed_clients(conn, [(40, "New one", "new"), (41, "New two", "new")])
    before = last_id(conn)
    namespace = exec_block(code, where, db_url)
    namespace["pool"].close()
    assert actions_after(conn, before) == [
        ("Bulk client status update", "status_change", "Nightly import", "system", "ai", 2, None)
    ]


# Each runnable block, found by a text only it holds, and the check that runs it.
CHECKS: dict[str, Callable] = {
    'revision, down_revision = "w001"': check_alembic_revision,
    "set_context(conn, actor_id=7": check_psycopg,
    "instrument(engine)  # every transaction": check_sqlalchemy,
    "AuditContext(app, current_actor=current_actor": check_flask,
    "make_blueprint(may_see_audit_log": check_blueprint,
    "with audited_connection(pool) as conn": check_pool,
}


def check_for(code: str) -> Callable | None:
    found = [check for text, check in CHECKS.items() if text in code]
    assert len(found) <= 1
    return found[0] if found else None


def test_every_python_block_runs_or_says_why_not():
    for where, code, why in python_blocks():
        if why is None:
            assert check_for(code), (
                f"{where}: a Python block no test runs; add a check to CHECKS in"
                " tests/test_readme.py, or mark it <!-- not run: why --> before its fence"
            )
        else:
            assert check_for(code) is None, f"{where} is marked not run, yet a check runs it"
    assert all(any(text in code for _, code, _ in python_blocks()) for text in CHECKS), (
        "a check whose block is gone"
    )


@pytest.mark.parametrize(
    "where,code",
    [(w, c) for w, c, why in python_blocks() if why is None and check_for(c)],
    ids=lambda v: str(v).splitlines()[0][:40],
)
def test_python_block_runs_and_does_what_it_says(where, code, db_url, conn, tmp_path):
    check_for(code)(code, where, db_url, conn, tmp_path)


# --- links ---------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_what_exists(document):
    broken = []
    for target in LINK.findall(FENCE.sub("", document.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https://, mailto:
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{document.relative_to(ROOT)}: " + "; ".join(broken)
