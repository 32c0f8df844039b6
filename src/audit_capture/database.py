"""Database URLs and connections.

Users give a libpq URL (``postgresql://user@host:5432/db``) or a libpq key/value
string (``host=... dbname=...``). psycopg takes either as is; SQLAlchemy (used by
Alembic) wants ``postgresql+psycopg://``. Connecting goes through ``connect()`` here
so that every failure to reach the database becomes one readable line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict

if TYPE_CHECKING:  # types only: an older psycopg has no QueryNoTemplate
    from psycopg.abc import Params, QueryNoTemplate

SQLALCHEMY_DRIVER = "postgresql+psycopg"
LIBPQ_SCHEMES = ("postgresql://", "postgres://")
SQLALCHEMY_SCHEMES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql+asyncpg://")


class DatabaseUnavailable(Exception):
    """The database could not be reached: bad URL, server down, or login refused.

    ``str(exc)`` is one line meant for a human, e.g.
    ``cannot connect to 127.0.0.1:5999: connection refused``.
    """


def libpq_url(url: str) -> str:
    """``url`` as psycopg/libpq accepts it (drops a SQLAlchemy ``+driver`` suffix)."""
    url = url.strip()
    if not url:
        raise DatabaseUnavailable("the database URL is empty")
    for scheme in SQLALCHEMY_SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme) :]
    return url


def sqlalchemy_url(url: str) -> str:
    """``url`` with the ``postgresql+psycopg://`` scheme SQLAlchemy needs.

    Only URL forms can be converted; for key/value strings use ``create_engine``
    below, which hands the original string to psycopg.
    """
    url = libpq_url(url)
    for scheme in LIBPQ_SCHEMES:
        if url.startswith(scheme):
            return f"{SQLALCHEMY_DRIVER}://" + url[len(scheme) :]
    raise DatabaseUnavailable(
        f"invalid database URL {describe_url(url)!r}: expected postgresql://user@host:port/dbname"
    )


def parse(url: str) -> dict[str, Any]:
    """The libpq connection parameters in ``url``; a malformed URL raises DatabaseUnavailable."""
    url = libpq_url(url)
    if "://" in url and not url.startswith(LIBPQ_SCHEMES):
        raise DatabaseUnavailable(
            f"invalid database URL {describe_url(url)!r}: expected postgresql://user@host:port/dbname"
        )
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnavailable(
            f"invalid database URL {describe_url(url)!r}: {_first_line(str(exc))}"
        ) from None


def describe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe for messages and logs."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)


def target(url: str) -> str:
    """``host:port`` (or the socket folder) that ``url`` points at, for messages."""
    params = parse(url)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}"


def connect(url: str, **kwargs: Any) -> psycopg.Connection:
    """Open a psycopg connection (autocommit off unless given).

    Raises DatabaseUnavailable with one line naming the server and the reason when
    the URL is malformed, the server cannot be reached, or the login is refused.
    """
    url = libpq_url(url)
    parse(url)  # validates the URL form first
    kwargs.setdefault("connect_timeout", 10)
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {target(url)}: {_reason(exc)}") from None
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnavailable(
            f"invalid database URL {describe_url(url)!r}: {_first_line(str(exc))}"
        ) from None


def create_engine(url: str, **kwargs: Any):
    """A SQLAlchemy engine whose connections come from ``connect(url)``.

    Handing libpq the user's string unchanged keeps every libpq option working
    (sslmode, socket folders, key/value form) and keeps error messages one line.
    """
    import sqlalchemy

    connect(url).close()  # fail early, with a readable message
    kwargs.setdefault("poolclass", sqlalchemy.pool.NullPool)
    return sqlalchemy.create_engine(
        f"{SQLALCHEMY_DRIVER}://", creator=lambda: connect(url), **kwargs
    )


def one_row(
    conn: psycopg.Connection, query: QueryNoTemplate, params: Params | None = None
) -> tuple:
    """The row of a query that always returns one (``select count(*) ...``, ``select
    exists (...)``); no row at all raises LookupError naming the query."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError(f"expected one row, got none from: {query!r}")
    return row


def one_value(
    conn: psycopg.Connection, query: QueryNoTemplate, params: Params | None = None
) -> Any:
    """The first column of ``one_row(conn, query, params)``."""
    return one_row(conn, query, params)[0]


class FunctionAccess(NamedTuple):
    """Whether a function of the audit schema is there for the current role."""

    installed: bool  # the function exists (the schema is at a revision that has it)
    allowed: bool  # the current role may EXECUTE it
    role: str  # the current role, as it reads
    quoted_role: str  # the same, quoted for a GRANT the message suggests


def function_access(conn: psycopg.Connection, signature: str) -> FunctionAccess:
    """``signature`` (``audit.seal(integer)``): installed, may the current role run it,
    and that role, plain and quoted; what the commands that need a role check first."""
    return FunctionAccess(
        *one_row(
            conn,
            "select p.oid is not null,"
            " coalesce(has_function_privilege(p.oid, 'execute'), false),"
            " current_user, quote_ident(current_user)"
            " from (select to_regprocedure(%s) as oid) p",
            (signature,),
        )
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else text


_SERVER_PREFIX = re.compile(
    r"^(connection failed:\s*)?(connection is bad:\s*)?"
    r"(connection to server (at|on) .*?(, port \d+)? failed:\s*)?(FATAL:\s*)?",
    re.IGNORECASE,
)


def _reason(exc: psycopg.Error) -> str:
    """The cause of a connection failure without libpq's multi-line decoration."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = ""
    for line in lines:
        candidate = _SERVER_PREFIX.sub("", line).strip()
        if candidate and not candidate.lower().startswith("is the server running"):
            reason = candidate
            break
    if not reason:
        reason = lines[0] if lines else type(exc).__name__
    reason = reason.rstrip(".")
    return reason[:1].lower() + reason[1:]
