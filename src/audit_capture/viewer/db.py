"""The viewer's database connections: a pool per viewer, read-only, with a statement timeout.

Each viewer blueprint (the standalone app's, or one a host mounts) has a ``ViewerDatabase``:
a ``psycopg_pool.ConnectionPool`` opened on the first request (not at import or at
``make_blueprint``), closed by its ``close()`` (``app.close(app)``, the end of
``audit-capture viewer``) or at the process's exit. ``get_conn()`` takes a connection for
the request and keeps it on ``flask.g``; ``close_conn`` (a teardown hook) gives it back. A
streamed export outlives the request: it takes one of its own and gives it back through
``releaser()`` when the stream ends or the client goes away (``views.export``).

Every connection is made read-only once, when the pool opens it (``configure``:
``default_transaction_read_only=on`` and the ``statement_timeout``, session-level): even a
role that could write cannot write through the viewer. When a connection comes back
(``give_back``), its session is checked to be the one ``configure`` left (every setting
set in the session, the role, no held cursor, a read-only transaction) before its
transaction ends: one that differs is closed, never handed to the next request. This is
done before the pool takes it back, not in the pool's ``reset`` (which a worker thread
runs later: a request coming meanwhile would find no connection ready and grow the
pool). ``check`` (at every hand-out) replaces a connection the server closed (a restart).
A query longer than the statement timeout is cancelled (the query layer turns that into
``TooBroad``).

Statements that run the same text on one connection are prepared by psycopg after
``prepare_threshold`` (5) runs; a pooled connection keeps them across requests as long
as its transactions end with a commit (psycopg forgets them all at a rollback, which is
why ``give_back`` commits the read-only transaction of a request that went well). The
page reads pass ``prepare=False`` on purpose (``rows.py``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from flask import g
from psycopg_pool import ConnectionPool, PoolTimeout

from audit_capture import database
from audit_capture.database import DatabaseUnavailable
from audit_capture.viewer.config import ViewerSettings
from audit_capture.viewer.options import FilterOptions, OptionsCache, load_options

T = TypeVar("T")

logger = logging.getLogger(__name__)

APPLICATION_NAME = "audit-capture viewer"
#: how long a request waits for a free connection (all are serving other requests or
#: exports) before it answers 503 "busy"
POOL_WAIT_SECONDS = 10.0
#: while waiting, how often it looks whether the pool has just failed to connect
POOL_WAIT_SLICE = 0.1

# the session as configure left it: every setting set in the session (the read-only
# default, the timeout), the roles, and no WITH HOLD cursor (one outlives its
# transaction). transaction_isolation and its kind are left out: SET TRANSACTION (an export's
# repeatable read) marks them set in the session, but every transaction starts from the
# default_transaction_* settings, which are in. Read at the end of a request's transaction,
# before it is committed: so it also says the transaction is still read-only
SESSION_STATE = """
select array(select array[name, setting] from pg_catalog.pg_settings
             where source = 'session' and name not like 'transaction\\_%'
             order by name)::text,
       current_user::text, session_user::text,
       (select count(*) from pg_catalog.pg_cursors where is_holdable),
       current_setting('transaction_read_only')
"""


class ViewerBusy(Exception):
    """Every connection of the pool is in use and none came free in time."""

    MESSAGE = (
        "The viewer is serving as many requests and exports as it has database"
        " connections. Try again shortly."
    )


def configure_session(conn: psycopg.Connection, statement_timeout_ms: int) -> None:
    """Make ``conn`` read-only with the statement timeout, and without JIT, for the whole
    session. The viewer's reads are short (a page, a count capped at 1,001 rows), but a
    read of every month can be costed above ``jit_above_cost``: PostgreSQL then compiles
    its expressions before the first row, even for EXPLAIN (an estimate of two admins'
    updates at 10M: 14-36 ms with JIT, 5 without). An export's rows come page by page
    too."""
    conn.execute(
        "select set_config('default_transaction_read_only', 'on', false),"
        " set_config('statement_timeout', %s, false), set_config('jit', 'off', false)",
        (str(int(statement_timeout_ms)),),
    )
    conn.commit()


def session_state(conn: psycopg.Connection) -> tuple:
    """What a request could change in ``conn``'s session (SESSION_STATE), read in its
    current transaction (or a new one, left open)."""
    return database.one_row(conn, SESSION_STATE)


def open_connection(settings: ViewerSettings) -> psycopg.Connection:
    """A new connection for ``settings``, not yet read-only; DatabaseUnavailable when it
    fails."""
    if settings.connect is not None:
        return settings.connect()  # the host's connection: made read-only all the same
    if not settings.database_url:
        raise DatabaseUnavailable("the viewer has no database URL configured")
    return database.connect(settings.database_url, application_name=APPLICATION_NAME)


def connect(settings: ViewerSettings) -> psycopg.Connection:
    """A new read-only connection for ``settings``, outside any pool (the diagnosis of a
    role that cannot read the log); DatabaseUnavailable when it fails."""
    conn = open_connection(settings)
    try:
        configure_session(conn, settings.statement_timeout_ms)
    except BaseException:
        conn.close()
        raise
    return conn


class ViewerDatabase:
    """One viewer's pool of read-only connections and its cached filter options.

    ``degraded`` is True from a failure of the pool to connect until it connects again:
    meanwhile a request that finds no connection ready opens one of its own (closed after
    it), so the database being down answers at once (503) and its coming back serves the
    next request, whatever the pool's reconnection schedule.
    """

    def __init__(
        self, settings: ViewerSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.options_cache = OptionsCache(settings.options_cache_seconds, clock=clock)
        self.degraded = False
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._closed = False
        # the session each connection had once configured (reset compares)
        self._configured: weakref.WeakKeyDictionary[psycopg.Connection, tuple] = (
            weakref.WeakKeyDictionary()
        )
        _OPEN.add(self)

    # -- the pool's callbacks

    def _pool_connect(self) -> psycopg.Connection:
        try:
            conn = open_connection(self.settings)
        except Exception:
            self.degraded = True
            raise
        self.degraded = False
        return conn

    def _configure(self, conn: psycopg.Connection) -> None:
        configure_session(conn, self.settings.statement_timeout_ms)
        self._configured[conn] = session_state(conn)
        conn.commit()

    def session_unchanged(self, conn: psycopg.Connection) -> bool:
        """Whether ``conn``'s session is the one ``configure`` left (read in its current
        transaction, which it leaves open)."""
        state = session_state(conn)
        if state == self._configured.get(conn):
            return True
        logger.warning("audit viewer: a connection's session changed, closed: %r", state)
        return False

    def pool(self) -> ConnectionPool:
        """The pool, opened on first use."""
        with self._lock:
            if self._closed:
                raise DatabaseUnavailable("the viewer's connection pool is closed")
            if self._pool is None:
                viewer = self

                class Connection(psycopg.Connection):
                    @classmethod
                    def connect(cls, conninfo: Any = "", **kwargs: Any) -> Any:
                        return viewer._pool_connect()

                self._pool = ConnectionPool(
                    connection_class=Connection,
                    min_size=self.settings.pool_min_size,
                    max_size=self.settings.pool_max_size,
                    configure=self._configure,
                    check=ConnectionPool.check_connection,
                    name=APPLICATION_NAME,
                    open=False,
                )
                self._pool.open(wait=False)
            return self._pool

    def getconn(self) -> psycopg.Connection:
        """A connection for a request. DatabaseUnavailable when the database cannot be
        reached (at once, not after the wait); ViewerBusy when every connection is in use
        and none came free within POOL_WAIT_SECONDS."""
        pool = self.pool()
        deadline = time.monotonic() + POOL_WAIT_SECONDS
        while True:
            try:
                return pool.getconn(timeout=POOL_WAIT_SLICE)
            except PoolTimeout:
                if self.degraded:
                    return self._own_connection()
                if time.monotonic() >= deadline:
                    raise ViewerBusy() from None

    def _own_connection(self) -> psycopg.Connection:
        """A connection outside the pool (closed when given back)."""
        conn = open_connection(self.settings)
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def putconn(self, conn: psycopg.Connection) -> None:
        """Give back a connection of ``getconn()``: to its pool, which ends its
        transaction and checks its session (or closes it); one of its own is closed."""
        owner = getattr(conn, "_pool", None)
        if owner is None:
            conn.close()
        else:
            owner.putconn(conn)

    def close(self) -> None:
        """Close the pool (connections in use are closed when given back)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        _OPEN.discard(self)

    def filter_options(self, conn: psycopg.Connection, *, refresh: bool = False) -> FilterOptions:
        """The filter controls' choices, read with ``conn`` when the cached ones are older
        than ``options_cache_seconds`` (or ``refresh``)."""
        return self.options_cache.get(
            lambda: load_options(conn),
            refresh=refresh,
            background=lambda: self.read_apart(load_options),
        )

    def read_apart(self, read: Callable[[psycopg.Connection], T]) -> T:
        """``read`` on a connection of the pool's own, given back after: what a cache
        refreshes in a thread, away from the pages (``kept.Kept``)."""
        conn = self.getconn()
        try:
            return read(conn)
        finally:
            self.putconn(conn)


_OPEN: weakref.WeakSet[ViewerDatabase] = weakref.WeakSet()


@atexit.register
def close_all() -> None:
    """Close every viewer's pool (at exit: the sessions end cleanly)."""
    for viewer_db in list(_OPEN):
        viewer_db.close()


def log_access_problem(conn: psycopg.Connection) -> str | None:
    """Why the connection's role cannot read the log, in one line; None when it can."""
    try:
        conn.execute("select 1 from audit.action_log limit 1")
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return (
            "the audit schema is not installed in this database (run audit-capture migrate upgrade)"
        )
    except psycopg.errors.InsufficientPrivilege:
        user = conn.info.user
        return f"role {user!r} cannot read audit.action_log: grant audit_reader to {user}"
    finally:
        conn.rollback()
    return None


def current_settings() -> ViewerSettings:
    """The settings of the viewer blueprint handling this request (set by its before_request)."""
    return g.audit_viewer_settings


def current_db() -> ViewerDatabase:
    """The ViewerDatabase of the viewer blueprint handling this request."""
    return g.audit_viewer_db


def get_conn() -> psycopg.Connection:
    """This request's connection (taken from the pool on first use)."""
    if "audit_viewer_conn" not in g:
        g.audit_viewer_conn = current_db().getconn()
    return g.audit_viewer_conn


def close_conn(exc: BaseException | None = None) -> None:
    """Teardown hook: end this request's transaction and give its connection back."""
    conn = g.pop("audit_viewer_conn", None)
    if conn is not None:
        give_back(current_db(), conn)


def filter_options(conn: psycopg.Connection, *, refresh: bool = False) -> FilterOptions:
    """This viewer's filter options (cached; ``refresh``: read from the log now)."""
    return current_db().filter_options(conn, refresh=refresh)


def give_back(viewer_db: ViewerDatabase, conn: psycopg.Connection) -> None:
    """Check ``conn``'s session is the one configured, end its transaction, and return it:
    a broken connection, or one whose session changed, is closed (the pool replaces it).

    A read-only transaction that went well is committed, not rolled back: it wrote nothing
    either way, and psycopg drops every prepared statement of a connection at a rollback
    (one might have been prepared in the transaction), which would leave none to reuse."""
    try:
        if not conn.closed:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                conn.rollback()
            if viewer_db.session_unchanged(conn):
                conn.commit()  # read-only (SESSION_STATE says so): nothing to write
            else:
                conn.rollback()
                conn.close()
    except psycopg.Error:
        conn.close()
    viewer_db.putconn(conn)


def releaser(viewer_db: ViewerDatabase, conn: psycopg.Connection) -> Callable[[], None]:
    """A function giving ``conn`` back the first time it is called, doing nothing after (an
    export's stream and its response's close both call it, whichever comes first)."""
    lock = threading.Lock()
    done = False

    def release() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        give_back(viewer_db, conn)

    return release
