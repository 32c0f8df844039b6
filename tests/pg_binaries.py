"""Which PostgreSQL the tests run against.

``AUDIT_CAPTURE_TEST_PGBIN`` names a folder holding ``initdb`` and ``postgres`` (and,
for the tests that dump and restore, ``psql`` and ``pg_dump``): the suite starts its
server from there. Unset, the suite takes what ``audit_capture.embedded`` finds
(pg_config's bindir, else Debian's newest ``/usr/lib/postgresql/*/bin``). pytest's
header names the server either way, so a failing run says which PostgreSQL it ran on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from audit_capture.embedded import server_bin_dir

ENVVAR = "AUDIT_CAPTURE_TEST_PGBIN"


def bin_dir() -> Path | None:
    """The folder the test server's binaries come from; a UsageError naming the variable
    when it is set to a folder without them."""
    chosen = os.environ.get(ENVVAR, "").strip()
    if not chosen:
        return server_bin_dir()
    folder = Path(chosen)
    missing = [name for name in ("initdb", "postgres") if not (folder / name).is_file()]
    if missing:
        raise pytest.UsageError(
            f"{ENVVAR}={chosen}: no {' or '.join(missing)} there; it names the bin folder "
            "of a PostgreSQL server (the one holding initdb and postgres)"
        )
    return folder


def tool(name: str) -> str:
    """A client program (psql, pg_dump) of the chosen server: from the folder of
    ``AUDIT_CAPTURE_TEST_PGBIN`` when set, else the PATH's, else the server's folder."""
    if os.environ.get(ENVVAR, "").strip():
        return str(bin_dir() / name)
    return shutil.which(name) or str(server_bin_dir() / name)


def chosen() -> bool:
    """Whether ``AUDIT_CAPTURE_TEST_PGBIN`` chose the server (the version legs do)."""
    return bool(os.environ.get(ENVVAR, "").strip())


def skip_without_extension(conn, name: str, needed_for: str) -> None:
    """A skip that says why, when the server ``AUDIT_CAPTURE_TEST_PGBIN`` chose has no
    extension ``name`` (the wheels of the version legs ship few or none of contrib's).
    On the default server, nothing: a missing extension fails the test that needs it."""
    available = conn.execute(
        "select exists (select from pg_available_extensions where name = %s)", (name,)
    ).fetchone()[0]
    conn.rollback()
    if available or not chosen():
        return
    version = conn.execute("show server_version").fetchone()[0]
    conn.rollback()
    pytest.skip(
        f"PostgreSQL {version} from {bin_dir()} has no {name} extension, which {needed_for}"
    )
