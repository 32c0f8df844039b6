"""Fixtures: a real, throwaway PostgreSQL server for the whole session.

- ``pg_server``          the running server (``audit_capture.embedded.EmbeddedPostgresql``)
- ``pg_superuser_url``   ``postgresql://postgres@127.0.0.1:<port>/postgres``
- ``template_db_url``    ``audit_template``: migrated to head, sample CRM installed and tracked
- ``db_url``             a fresh copy of ``audit_template`` per test, dropped afterwards (or
                         of a template a module's ``DB_TEMPLATES`` builds once)
- ``empty_db_url``       a fresh empty database per test (for migration tests)
- ``conn``               ``psycopg.connect(db_url)``, autocommit off, closed afterwards
- ``make_role``          ``make_role(*grants)``: a LOGIN role for one test, its URL
- ``owning_app``         a connection as a role that owns the tracked table owned_notes
- ``seeded``, ``reader_url``, ``app``, ``client``, ``user``: the viewer over a seeded log
  (viewer_data.py), a reader role, the Flask app, its test client, signed in as alice
- ``primary_server``, ``subscriber_server``: two more servers, started for the module
  that uses them (replication_servers.py: the primary with wal_level = logical)

When pytest runs as root, the server runs as ``nobody`` (PostgreSQL refuses root). The
servers' data and the temporary files are in memory when the machine has room
(scratch_dir.py).
"""

from __future__ import annotations

import copy
import itertools
import os
import subprocess
import sys
import tempfile

import psycopg
import pytest
import running_test
from audited_crm import install_audited_crm
from pg_binaries import ENVVAR as PGBIN_ENVVAR
from pg_binaries import bin_dir
from psycopg import sql
from psycopg.conninfo import make_conninfo
from replication_servers import primary_server, subscriber_server  # noqa: F401 - fixtures
from scratch_dir import use_for_this_session

from audit_capture.embedded import EmbeddedPostgresql

TEMPLATE_DB = "audit_template"
_database_numbers = itertools.count(1)


def pytest_configure(config):
    bin_dir()  # a wrong AUDIT_CAPTURE_TEST_PGBIN stops the run here, saying so
    use_for_this_session()  # in memory when there is room (scratch_dir.py)


def pytest_runtest_setup(item):
    # browser.chromium_page() opens only in a test marked browser
    running_test.marked_browser = item.get_closest_marker("browser") is not None


def pytest_report_header(config):
    folder = bin_dir()
    if folder is None:
        return "postgresql: server binaries not found (install postgresql)"
    version = subprocess.run(
        [str(folder / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    runs_as = "nobody (pytest runs as root)" if os.geteuid() == 0 else "the current user"
    chosen = f" ({PGBIN_ENVVAR})" if os.environ.get(PGBIN_ENVVAR, "").strip() else ""
    return [
        f"postgresql: {version} from {folder}{chosen}, server runs as {runs_as}",
        f"temporary files and servers' data: {tempfile.gettempdir()}",
    ]


@pytest.fixture(scope="session")
def pg_server():
    server = EmbeddedPostgresql(bin_dir=bin_dir())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_superuser_url(pg_server) -> str:
    return pg_server.url("postgres")


def _admin(pg_server) -> psycopg.Connection:
    return psycopg.connect(pg_server.url("postgres"), autocommit=True)


def _create_database(pg_server, name: str, template: str) -> str:
    with _admin(pg_server) as admin:
        admin.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return pg_server.url(name)


def _drop_database(pg_server, name: str) -> None:
    with _admin(pg_server) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_db_url(pg_server) -> str:
    """``audit_template``: the audit schema at head plus the sample CRM, tracked."""
    url = _create_database(pg_server, TEMPLATE_DB, "template0")
    install_audited_crm(url)
    return url


# Capture runs in one of two modes (triggers/07_capture.sql): functions generated per
# table, kept in step by an ALTER TABLE event trigger (the default, installed by a
# superuser), or the generic function that writes its SQL out at every statement (where
# no event trigger could be installed). A test module that sets
# CAPTURE_MODES = ("generated", "generic") runs every test in both.
GENERIC_MODE_SQL = """
drop event trigger audit_capture_alter_table;
drop event trigger audit_capture_drop;
drop event trigger audit_capture_create_table;
drop event trigger audit_capture_triggers;
select audit.track(t.relation, t.resource_type, t.label_column, t.status_columns,
                   t.ignored_columns, t.redacted_columns, t.labels, t.label, t.label_plural)
from audit.tracked_table t;
"""


def pytest_collection_modifyitems(items):
    # A module's DB_TEMPLATES = {"fixture": build}: a test that uses the fixture gets a
    # copy of a template that build(conn) made once per worker from audit_template,
    # instead of running build in its own database (see db_url)
    for item in items:
        templates = getattr(item.module, "DB_TEMPLATES", {})
        chosen = [name for name in templates if name in item.fixturenames]
        if len(chosen) > 1:
            raise pytest.UsageError(f"{item.nodeid}: one of {chosen} per test (DB_TEMPLATES)")
        for name in chosen:
            item.add_marker(pytest.mark.db_template(name, templates[name]))


def _generic_mode(conn) -> None:
    conn.execute(GENERIC_MODE_SQL)


def pytest_generate_tests(metafunc):
    modes = getattr(metafunc.module, "CAPTURE_MODES", None)
    if modes and "capture_mode" in metafunc.fixturenames:
        metafunc.parametrize("capture_mode", modes)


@pytest.fixture
def capture_mode() -> str:
    return "generated"


_derived_templates: dict[str, object] = {}  # template -> what its build returned


def _derived_template(pg_server, name: str, build) -> str:
    """``template_<name>``: audit_template with ``build(conn)`` run on it, made once per
    worker (a fixture's state that takes a second to build, such as thirty months of
    partitions, copies in a few milliseconds)."""
    template = f"template_{name}"
    if template not in _derived_templates:
        url = _create_database(pg_server, template, TEMPLATE_DB)
        with psycopg.connect(url) as conn:
            _derived_templates[template] = build(conn)
            conn.commit()
    return template


def _seed_viewer_log(conn):
    from viewer_data import seed

    return seed(conn)


@pytest.fixture
def db_url(request, pg_server, template_db_url, capture_mode):
    """A fresh database copied from ``audit_template`` (or from a module's DB_TEMPLATES
    template, for a test that uses one of its fixtures); dropped after the test."""
    name = f"test_{next(_database_numbers)}"
    marker = request.node.get_closest_marker("db_template")
    if marker is not None:
        template = _derived_template(pg_server, *marker.args)
    elif capture_mode == "generic":  # re-tracking every table: once, not per test
        template = _derived_template(pg_server, "generic_capture", _generic_mode)
    elif "seeded" in request.fixturenames:  # the viewer tests' log: written once
        template = _derived_template(pg_server, "seeded", _seed_viewer_log)
    else:
        template = TEMPLATE_DB
    request.node.copied_template = template  # the seeded fixture reads it
    url = _create_database(pg_server, name, template)
    try:
        if capture_mode == "generic" and marker is not None:
            with psycopg.connect(url) as conn:
                _generic_mode(conn)
        yield url
    finally:
        _drop_database(pg_server, name)


@pytest.fixture
def empty_db_url(pg_server):
    """A fresh empty database (from template0); dropped after the test."""
    name = f"empty_{next(_database_numbers)}"
    url = _create_database(pg_server, name, "template0")
    try:
        yield url
    finally:
        _drop_database(pg_server, name)


@pytest.fixture
def conn(db_url):
    """A psycopg connection to ``db_url`` (autocommit off), closed after the test."""
    connection = psycopg.connect(db_url)
    try:
        yield connection
    finally:
        connection.close()


# -- roles (test_security, test_capture_integrity) ----------------------------------

_role_numbers = itertools.count(1)


@pytest.fixture
def make_role(conn, db_url):
    """Creates LOGIN roles for one test (roles are cluster-wide) and drops them after."""
    made = []

    def make(*grants: str) -> str:
        name = f"role_{next(_role_numbers)}_{conn.info.dbname}"
        with conn.transaction():
            conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
            for grant in grants:
                conn.execute(sql.SQL(grant).format(role=sql.Identifier(name)))
        made.append(name)
        return make_conninfo(db_url, user=name)

    yield make
    conn.rollback()
    for name in made:
        with conn.transaction():
            conn.execute(sql.SQL("drop owned by {0}; drop role {0}").format(sql.Identifier(name)))


@pytest.fixture
def owning_app(make_role, conn):
    """An application role that OWNS a tracked table (as migration tools make it), and
    its connection: tracked by the superuser, as a DBA would."""
    url = make_role("grant usage, create on schema public to {role}")
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("create table owned_notes (id int primary key, body text)")
    with conn.transaction():
        conn.execute("select audit.track('owned_notes', 'note')")
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection


# -- the viewer (test_viewer_app, test_viewer_session) ----------------------------------
# imported lazily: collecting the other tests needs no viewer extra


@pytest.fixture
def seeded(request, conn):
    """The viewer tests' log (viewer_data.seed): copied with the test's database from a
    template seeded once, or written here when the test's database came from another
    template (a module's DB_TEMPLATES)."""
    template = getattr(request.node, "copied_template", None)
    if template == "template_seeded":
        return copy.deepcopy(_derived_templates[template])
    from viewer_data import seed

    return seed(conn)


@pytest.fixture
def reader_url(conn, db_url):
    """A LOGIN role granted only audit_reader, as the viewer connects in production."""
    from viewer_data import drop_role, make_reader

    name, url = make_reader(conn, db_url)
    yield url
    drop_role(conn, name)


@pytest.fixture
def app(seeded, reader_url):
    """The standalone viewer's Flask app over the seeded log (test_security has its own
    ``app``: an application role's connection); its connection pool closed after."""
    from viewer_data import app_config

    from audit_capture.viewer import create_app
    from audit_capture.viewer.app import close

    viewer = create_app(app_config(reader_url))
    yield viewer
    close(viewer)


@pytest.fixture(autouse=True)
def _close_viewer_pools():
    """The connection pools of the viewers a test made are closed after it (a pool keeps
    its connections open, and a worker thread, until closed)."""

    yield
    viewer_db = sys.modules.get("audit_capture.viewer.db")
    if viewer_db is not None:
        viewer_db.close_all()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def user(client):
    """The test client, signed in as alice."""
    from viewer_data import sign_in

    response = sign_in(client)
    assert response.status_code == 302, response.text
    return client
