"""The viewer's connection pool and its cached filter options (issue 12).

- each viewer has a pool (psycopg_pool), opened on the first request, closed by
  ``app.close(app)`` or the process's exit; its connections are made read-only with the
  statement timeout once, when opened, and reused across requests;
- a request that fails mid-transaction, or changes its session (a setting, the role, a
  cursor that outlives the transaction), never hands that to the next request;
- every route leaves the pooled session as it found it, hostile parameters included;
- psycopg's prepared statements are kept across the requests of a pooled connection;
- the filter options are read once per ``options_cache_seconds`` (an injectable clock: no
  sleeping), and a value newer than them is accepted at once;
- pool sizes and the cache lifetime are checked settings.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

import psycopg
import pytest
from viewer_data import SECRET_KEY, USERS, app_config, role_sessions, sign_in

from audit_capture import record_action, set_context
from audit_capture.viewer import create_app, db, make_blueprint
from audit_capture.viewer.app import close
from audit_capture.viewer.config import ConfigError, ViewerSettings
from audit_capture.viewer.options import OptionsCache

# the fixtures (seeded, reader_url) are in conftest.py


def role_of(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["user"]


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def viewer_db_of(app) -> db.ViewerDatabase:
    return app.extensions["audit_viewer"]["audit_viewer"]


@pytest.fixture
def one_connection(seeded, reader_url):
    """The standalone viewer with a pool of exactly one connection, signed in; so every
    request is served by the same session unless the viewer closes it."""
    app = create_app(app_config(reader_url, POOL_MIN_SIZE=1, POOL_MAX_SIZE=1))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    assert sign_in(client).status_code == 302
    yield app, client
    close(app)


def only_session(conn, reader_url) -> int:
    (found,) = role_sessions(conn, role_of(reader_url))
    pid, state = found
    assert state == "idle"  # in the pool, its transaction ended
    return pid


# -- the pool --------------------------------------------------------------------------


def test_the_pool_opens_on_the_first_request_and_closes_with_the_app(conn, seeded, reader_url):
    app = create_app(app_config(reader_url))
    assert role_sessions(conn, role_of(reader_url)) == []  # nothing at import or create_app
    client = app.test_client()
    sign_in(client)
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 200
    opened = role_sessions(conn, role_of(reader_url))
    assert 1 <= len(opened) <= 4 and all(state == "idle" for _pid, state in opened)
    close(app)
    # the server ends a session once it has read the client's goodbye
    wait_for(lambda: role_sessions(conn, role_of(reader_url)) == [], "the pool's sessions to end")
    # a closed viewer says the database is unavailable rather than reopening
    assert client.get("/").status_code == 503


def test_a_connection_is_configured_once_and_serves_every_request(
    one_connection, conn, reader_url, seeded, monkeypatch
):
    app, client = one_connection
    configured = []
    real = db.configure_session
    monkeypatch.setattr(
        db, "configure_session", lambda c, ms: (configured.append(c.info.backend_pid), real(c, ms))
    )
    for path in ("/", "/?source=web", f"/actions/{seeded['bulk']}", "/?_format=csv", "/"):
        response = client.get(path)
        assert response.status_code == 200, path
        response.close()
    pid = only_session(conn, reader_url)
    assert configured == [pid]  # opened by the first request (signing in needs none)
    with viewer_db_of(app).pool().connection() as pooled:
        assert pooled.info.backend_pid == pid
        assert pooled.execute("show default_transaction_read_only").fetchone()[0] == "on"
        assert pooled.execute("show statement_timeout").fetchone()[0] == "5s"


def test_a_request_that_failed_mid_transaction_does_not_poison_the_next(
    one_connection, conn, reader_url, monkeypatch
):
    from audit_capture.viewer import views

    app, client = one_connection
    assert client.get("/").status_code == 200
    pid = only_session(conn, reader_url)
    real = views.list_page

    def fails_mid_transaction(c, *args, **kwargs):
        c.execute("select 1")
        c.execute("select 1 / 0")  # the transaction is now aborted

    monkeypatch.setattr(views, "list_page", fails_mid_transaction)
    assert client.get("/").status_code == 500
    monkeypatch.setattr(views, "list_page", real)
    assert client.get("/").status_code == 200
    assert only_session(conn, reader_url) == pid  # the same session, rolled back, reused


# a change left in the request's transaction, or committed by it
HOSTILE_CHANGES = {
    "a setting, uncommitted": "select set_config('statement_timeout', '0', false)",
    "the role, uncommitted": "set role audit_reader",
    "read-write, uncommitted": "set transaction read write",
    "a setting": "select set_config('statement_timeout', '0', false); commit",
    "read-only off": "select set_config('default_transaction_read_only', 'off', false); commit",
    "search_path": "set search_path = public; commit",
    "the role": "set role audit_reader; commit",
    "a held cursor": "declare leftover cursor with hold for select 1; commit",
}


@pytest.mark.parametrize("change", HOSTILE_CHANGES.values(), ids=HOSTILE_CHANGES.keys())
def test_a_session_a_request_changed_never_serves_the_next(
    one_connection, conn, reader_url, monkeypatch, caplog, change
):
    from audit_capture.viewer import views

    app, client = one_connection
    assert client.get("/").status_code == 200
    pid = only_session(conn, reader_url)
    real = views.list_page

    def changes_the_session(c, *args, **kwargs):
        c.execute(change)
        return real(c, *args, **kwargs)

    monkeypatch.setattr(views, "list_page", changes_the_session)
    assert client.get("/").status_code == 200
    monkeypatch.setattr(views, "list_page", real)
    assert "a connection's session changed, closed" in caplog.text
    # the changed session was closed; the next request has a fresh, read-only one
    seen = {}

    def looks(c, *args, **kwargs):
        seen["state"] = c.execute(
            "select current_setting('statement_timeout'),"
            " current_setting('default_transaction_read_only'),"
            " current_setting('search_path'), current_user = session_user,"
            " (select count(*) from pg_cursors)"
        ).fetchone()
        return real(c, *args, **kwargs)

    monkeypatch.setattr(views, "list_page", looks)
    assert client.get("/").status_code == 200
    assert seen["state"][:2] == ("5s", "on") and seen["state"][3:] == (True, 0)
    assert seen["state"][2] != "public"
    assert only_session(conn, reader_url) != pid


ROUTES = [
    "/",
    "/?source=web&resource=client",
    "/?q=lead",
    "/?actor=id:7&action_type=create",
    "/?_size=10&_dir=next",
    "/?_format=csv",
    "/?_format=json&source=api",
    # hostile: a setting's name or SQL in every parameter, none reaches the session
    "/?statement_timeout=0&default_transaction_read_only=off",
    "/?q=" + quote("'; set statement_timeout = 0; --"),
    "/?actor=" + quote("id:7'; reset all; --"),
    "/?resource=" + quote("client; set role audit_reader"),
    "/?_cursor=" + quote("x'; set role postgres"),
    "/?_format=" + quote("csv; set statement_timeout = 0"),
    "/?date_from=2026-01-01%27%3B%20reset%20all",
    "/actions/1%3B%20set%20role%20postgres",
    "/actions/999999999",
]


def test_every_route_leaves_the_pooled_session_as_it_found_it(
    one_connection, conn, reader_url, seeded, caplog
):
    app, client = one_connection
    assert client.get("/").status_code == 200
    pid = only_session(conn, reader_url)
    routes = [*ROUTES, f"/actions/{seeded['bulk']}", f"/actions/{seeded['bulk']}?items_after=50"]
    for path in routes:
        response = client.get(path)
        assert response.status_code in (200, 400, 404), (path, response.status_code)
        response.close()
        # one session, idle, the one configured at first: never closed for a change
        assert only_session(conn, reader_url) == pid, path
    assert "session changed" not in caplog.text
    with viewer_db_of(app).pool().connection() as pooled:
        state = db.session_state(pooled)
    assert dict(eval_pairs(state[0])) == {
        "default_transaction_read_only": "on",
        "jit": "off",
        "statement_timeout": "5000",
    }
    assert state[1] == state[2] == role_of(reader_url) and state[3] == 0


def eval_pairs(text: str) -> list[tuple[str, str]]:
    """The ``{{name,setting},...}`` array of SESSION_STATE as pairs."""
    inner = text.strip("{}")
    return [tuple(pair.split(",")) for pair in inner.split("},{")] if inner else []


def test_a_killed_pooled_connection_is_replaced(one_connection, conn, reader_url):
    app, client = one_connection
    assert client.get("/").status_code == 200
    pid = only_session(conn, reader_url)
    conn.execute("select pg_terminate_backend(%s)", (pid,))
    conn.commit()
    assert client.get("/").status_code == 200  # the pool's check found it gone
    assert only_session(conn, reader_url) != pid


def test_every_connection_in_use_is_a_503_busy_page(one_connection, monkeypatch):
    app, client = one_connection
    monkeypatch.setattr(db, "POOL_WAIT_SECONDS", 0.3)
    held = viewer_db_of(app).getconn()  # e.g. a long export
    try:
        response = client.get("/")
        assert response.status_code == 503
        assert "The viewer is busy" in response.text
    finally:
        db.give_back(viewer_db_of(app), held)
    assert client.get("/").status_code == 200


def test_database_down_then_up_is_served_at_once(seeded, reader_url, conn, monkeypatch):
    """The database unreachable: the 503 page at once (not after the pool's wait); back:
    the next request is served, whatever the pool's reconnection schedule."""
    app = create_app(app_config(reader_url))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    sign_in(client)
    monkeypatch.setattr(db, "POOL_WAIT_SECONDS", 60.0)  # a 503 before it: not the wait
    real = db.open_connection
    down = {"now": True}

    def maybe_down(settings):
        if down["now"]:
            raise db.DatabaseUnavailable("cannot connect to 127.0.0.1:1: connection refused")
        return real(settings)

    monkeypatch.setattr(db, "open_connection", maybe_down)
    response = client.get("/")
    assert response.status_code == 503
    assert "cannot reach the audit database" in response.text
    down["now"] = False
    assert client.get("/").status_code == 200
    close(app)


def test_prepared_statements_are_kept_across_requests(one_connection, seeded):
    app, client = one_connection
    for _ in range(7):  # psycopg prepares a statement at its 5th run on a connection
        assert client.get(f"/actions/{seeded['bulk']}").status_code == 200
    with viewer_db_of(app).pool().connection() as pooled:
        prepared = [r[0] for r in pooled.execute("select statement from pg_prepared_statements")]
    assert any("action_log" in statement for statement in prepared), prepared


# -- the cached filter options -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def offers_the_newcomer(page_text: str) -> bool:
    """Whether the resource control offers the resource type the newcomer logged."""
    return 'value="fax_line"' in page_text


def new_actor_acts(conn: psycopg.Connection, resource_type: str = "fax_line") -> None:
    conn.rollback()
    with conn.transaction():
        set_context(
            conn, actor_id="new-1", actor_name="Newcomer Nadia", actor_type="admin", source="web"
        )
        record_action(conn, "login", "Portal login", resource_type=resource_type)
    conn.commit()


def test_filter_options_are_cached_for_their_lifetime(seeded, reader_url, conn, monkeypatch):
    from audit_capture.viewer import options

    app = create_app(app_config(reader_url, OPTIONS_CACHE_SECONDS=60))
    clock = Clock()
    viewer_db_of(app).options_cache.clock = clock
    reads = []
    real = options.load_options
    monkeypatch.setattr(db, "load_options", lambda c: (reads.append(1), real(c))[1])
    client = app.test_client()
    sign_in(client)

    assert not offers_the_newcomer(client.get("/").text)
    new_actor_acts(conn)
    clock.now += 59
    assert not offers_the_newcomer(client.get("/").text)  # still the cached options
    assert client.get("/?source=web").status_code == 200
    assert len(reads) == 1
    clock.now += 1  # 60 s after the first read: read again, away from the page
    client.get("/")
    for _ in range(500):
        if len(reads) == 2 and not viewer_db_of(app).options_cache._refreshing:
            break
        time.sleep(0.01)
    assert len(reads) == 2
    assert offers_the_newcomer(client.get("/").text)  # the next page has them
    close(app)


def test_a_value_newer_than_the_cached_options_is_accepted_at_once(seeded, reader_url, conn):
    app = create_app(app_config(reader_url))
    viewer_db_of(app).options_cache.clock = Clock()  # never expires by itself
    client = app.test_client()
    sign_in(client)
    assert client.get("/").status_code == 200
    new_actor_acts(conn)
    page = client.get("/?resource=fax_line")
    assert page.status_code == 200
    assert "Portal login" in page.text
    # and a value the log does not hold is still refused, naming it
    refused = client.get("/?resource=no_such_thing")
    assert refused.status_code == 400 and "no_such_thing" in refused.text
    close(app)


def test_options_cache_reads_under_its_lock_and_keeps_no_failure():
    clock = Clock()
    cache = OptionsCache(60, clock=clock)
    held = []

    def read():
        held.append(cache._lock.locked())  # one thread reads, the others wait for it
        return f"options {len(held)}"

    assert cache.get(read) == "options 1"
    assert cache.get(read) == "options 1"
    clock.now += 60
    assert cache.get(read) == "options 2"
    assert cache.get(read, refresh=True) == "options 3"
    assert held == [True, True, True]

    def fails():
        raise RuntimeError("database gone")

    clock.now += 60
    with pytest.raises(RuntimeError):
        cache.get(fails)
    assert cache.get(read) == "options 4"  # the failure was not kept

    zero = OptionsCache(0, clock=clock)
    assert zero.get(read) == "options 5" and zero.get(read) == "options 6"


def test_options_cache_is_shared_by_threads():
    cache = OptionsCache(60)
    reads = []
    results = []
    start = threading.Barrier(8)

    def read():
        reads.append(1)
        return "options"

    def worker():
        start.wait()
        results.append(cache.get(read))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["options"] * 8 and reads == [1]


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, error",
    [
        ({"POOL_MAX_SIZE": 0}, "pool_max_size is 0; expected 1 to 100 connections"),
        ({"POOL_MAX_SIZE": 101}, "pool_max_size is 101; expected 1 to 100"),
        ({"POOL_MAX_SIZE": "four"}, "pool_max_size 'four' is not a whole number"),
        ({"POOL_MAX_SIZE": True}, "pool_max_size True is not a whole number"),
        ({"POOL_MAX_SIZE": 2.5}, "pool_max_size 2.5 is not a whole number"),
        ({"POOL_MIN_SIZE": 5}, "pool_min_size is 5; expected 0 to pool_max_size (4)"),
        ({"POOL_MIN_SIZE": -1}, "pool_min_size is -1"),
        ({"OPTIONS_CACHE_SECONDS": -1}, "options_cache_seconds is -1; expected 0 to 3600"),
        ({"OPTIONS_CACHE_SECONDS": "soon"}, "options_cache_seconds 'soon' is not a whole"),
    ],
)
def test_bad_pool_and_cache_settings_are_one_line(values, error):
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        create_app(app_config("postgresql://viewer@127.0.0.1/crm", **values))


def test_pool_settings_from_the_file_and_the_environment(tmp_path):
    from audit_capture.viewer import config

    path = tmp_path / "viewer.toml"
    path.write_text("pool_min_size = 0\npool_max_size = 8\noptions_cache_seconds = 0\n")
    settings = config.load(path=path, environ={}, config={"SECRET_KEY": SECRET_KEY, "USERS": USERS})
    assert (settings["POOL_MIN_SIZE"], settings["POOL_MAX_SIZE"]) == (0, 8)
    assert settings["OPTIONS_CACHE_SECONDS"] == 0


def test_pool_settings_of_the_environment_are_named_when_wrong():
    from audit_capture.viewer import config

    with pytest.raises(ConfigError, match="AUDIT_CAPTURE_VIEWER_POOL_MAX_SIZE is not valid: 'x'"):
        config.read_env({"AUDIT_CAPTURE_VIEWER_POOL_MAX_SIZE": "x"})
    assert config.read_env(
        {
            "AUDIT_CAPTURE_VIEWER_POOL_MIN_SIZE": "2",
            "AUDIT_CAPTURE_VIEWER_OPTIONS_CACHE_SECONDS": "5",
        }
    ) == {"POOL_MIN_SIZE": 2, "OPTIONS_CACHE_SECONDS": 5}


def test_the_blueprint_checks_its_pool_settings():
    with pytest.raises(ConfigError, match="pool_max_size is 0"):
        make_blueprint(lambda: True, database_url="postgresql://x@127.0.0.1/db", pool_max_size=0)
    with pytest.raises(ConfigError, match="options_cache_seconds is 7200"):
        make_blueprint(
            lambda: True, database_url="postgresql://x@127.0.0.1/db", options_cache_seconds=7200
        )
    settings = ViewerSettings("postgresql://x@127.0.0.1/db")
    assert (settings.pool_min_size, settings.pool_max_size) == (1, 4)


def test_a_host_s_connection_factory_feeds_the_pool_read_only(db_url, seeded):
    """A host's ``connect`` gives the pool its connections, made read-only all the same:
    here a superuser's, which could write."""
    from flask import Flask

    host = Flask("host")
    host.register_blueprint(
        make_blueprint(lambda: True, connect=lambda: psycopg.connect(db_url), pool_max_size=1),
        url_prefix="/audit",
    )
    client = host.test_client()
    assert client.get("/audit/").status_code == 200
    assert client.get(f"/audit/actions/{seeded['bulk']}").status_code == 200
    viewer_db = host.extensions["audit_viewer"]["audit_viewer"]
    with viewer_db.pool().connection() as pooled:
        assert pooled.execute("show default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            pooled.execute("update clients set notes = 'via the viewer'")
        pooled.rollback()
    viewer_db.close()


def test_old_options_are_read_again_away_from_the_page():
    """Past their lifetime, with a background reader, the page gets the old options at
    once and one thread reads the new ones; a failed background read keeps the old."""
    clock = Clock()
    cache = OptionsCache(60, clock=clock)
    started, release = threading.Event(), threading.Event()
    background_reads = []

    def background():
        background_reads.append(threading.current_thread().name)
        started.set()
        assert release.wait(10)
        return "options 2"

    def read():
        raise AssertionError("the page must not read")

    assert cache.get(lambda: "options 1", background=background) == "options 1"
    clock.now += 60
    assert cache.get(read, background=background) == "options 1"  # at once, the old ones
    assert started.wait(10)
    assert cache.get(read, background=background) == "options 1"  # one reader at a time
    release.set()
    for _ in range(200):
        if cache.get(read, background=background) == "options 2":
            break
        time.sleep(0.01)
    assert cache.get(read, background=background) == "options 2"
    assert background_reads == ["audit-viewer-options"]

    def fails():
        raise RuntimeError("database gone")

    clock.now += 60
    assert cache.get(read, background=fails) == "options 2"
    for _ in range(200):
        if not cache._refreshing:
            break
        time.sleep(0.01)
    assert cache.get(read, background=lambda: "options 3") == "options 2"  # tried again
    # asked for the log's own, or with no lifetime: read by the page itself
    assert cache.get(lambda: "options 4", refresh=True, background=fails) == "options 4"
    zero = OptionsCache(0, clock=clock)
    assert zero.get(lambda: "a", background=fails) == "a"
    assert zero.get(lambda: "b", background=fails) == "b"


def test_an_old_actor_directory_is_read_again_away_from_the_search(conn):
    from audit_capture.viewer.actor_search import Directory, DirectoryCache

    clock = Clock()
    cache = DirectoryCache(ttl=60, clock=clock)
    first = cache.get(conn)
    newer = Directory(())
    done = threading.Event()

    def background():
        done.set()
        return newer

    clock.now += 60
    assert cache.get(conn, background=background) is first  # the search goes on at once
    assert done.wait(10)
    for _ in range(200):
        if cache.get(conn, background=background) is newer:
            break
        time.sleep(0.01)
    assert cache.get(conn, background=background) is newer
