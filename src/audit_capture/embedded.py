"""A throwaway PostgreSQL server for the tests and for ``audit-capture demo``.

Built on ``testing.postgresql``: it runs ``initdb`` into a temporary directory, starts
``postgres`` on a free port, and removes everything on ``stop()``.

What this subclass adds:

* PostgreSQL refuses to run as root. When the current process is root, ``initdb``
  and ``postgres`` run as an unprivileged user (``nobody`` by default) through
  ``setpriv``, and the server's base directory is handed to that user. ``setpriv``
  execs the target program in place (same pid), so the SIGINT that stops the server
  reaches postgres itself; ``runuser``/``su`` would stay in between and swallow it.
* The server listens on 127.0.0.1 only, with its unix socket in the base directory
  (never /var/run/postgresql), and with durability turned off for speed.
* Readiness is probed with psycopg instead of pg8000.
* ``pg_ctl(...)`` runs pg_ctl on the data directory (as the server's user);
  ``stop_immediately()`` stops every server process at once, as a crash would leave the
  data directory, and ``restart()`` starts the server again on it (crash recovery first).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
import testing.postgresql

from audit_capture.database import one_value

UNPRIVILEGED_USER = "nobody"

SERVER_SETTINGS = (
    "-h 127.0.0.1 "
    "-F "  # no fsync: a throwaway server
    "-c logging_collector=off "
    "-c full_page_writes=off "
    "-c synchronous_commit=off "
    "-c max_connections=100"
)


def server_bin_dir() -> Path | None:
    """The folder with ``initdb``/``postgres``: pg_config's bindir or Debian's layout."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.CalledProcessError):
            pass
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    return None


def plpgsql_check_available(bin_dir: Path | None = None) -> bool:
    """True when the plpgsql_check extension is installed for this server."""
    bin_dir = bin_dir or server_bin_dir()
    if bin_dir is None:
        return False
    version = bin_dir.parent.name  # /usr/lib/postgresql/<version>/bin
    return Path(f"/usr/share/postgresql/{version}/extension/plpgsql_check.control").is_file()


class EmbeddedPostgresql(testing.postgresql.Postgresql):
    """A temporary PostgreSQL server that also works when started by root.

    Use as a context manager or call ``stop()``; ``url(database)`` gives a libpq URL
    for the superuser ``postgres`` (trust authentication, 127.0.0.1 only).
    """

    #: the postmaster (testing.postgresql starts it; None when stopped)
    child_process: subprocess.Popen[bytes] | None

    def __init__(self, run_as: str = UNPRIVILEGED_USER, bin_dir: Path | None = None, **kwargs):
        self._run_as = run_as
        bin_dir = bin_dir or server_bin_dir()
        if bin_dir is not None:
            kwargs.setdefault("initdb", str(bin_dir / "initdb"))
            kwargs.setdefault("postgres", str(bin_dir / "postgres"))
        kwargs.setdefault("postgres_args", SERVER_SETTINGS)
        super().__init__(**kwargs)

    # -- running as another user ------------------------------------------------

    @property
    def runs_as_other_user(self) -> bool:
        return os.geteuid() == 0

    def _privilege_drop_prefix(self) -> list[str]:
        if not self.runs_as_other_user:
            return []
        user = pwd.getpwnam(self._run_as)
        return [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "--",
        ]

    def _hand_base_dir_to_server_user(self) -> None:
        if not self.runs_as_other_user:
            return
        user = pwd.getpwnam(self._run_as)
        for root, dirs, files in os.walk(self.base_dir):
            os.chown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)

    # -- testing.postgresql hooks -------------------------------------------------

    def initialize_database(self) -> None:
        data_dir = os.path.join(self.base_dir, "data")
        if os.path.exists(os.path.join(data_dir, "PG_VERSION")):
            self._hand_base_dir_to_server_user()
            return
        self._hand_base_dir_to_server_user()
        args = self._privilege_drop_prefix() + [
            self.initdb,
            "-D",
            data_dir,
            "--lc-messages=C",
            "--encoding=UTF8",
            "--locale=C",
            *self.settings["initdb_args"].split(),
        ]
        try:
            result = subprocess.run(args, capture_output=True, cwd=self.base_dir)
        except OSError as exc:
            raise RuntimeError(f"failed to spawn initdb {self.initdb}: {exc}") from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )

    def get_server_commandline(self) -> list[str]:
        return self._privilege_drop_prefix() + super().get_server_commandline()

    def prestart(self) -> None:
        super().prestart()
        # The log file is opened by this process; make sure the server user can
        # write everything else under base_dir (copy_data_from, tmp/ socket dir).
        self._hand_base_dir_to_server_user()

    def is_server_available(self) -> bool:
        try:
            with psycopg.connect(self.url(database="template1"), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def poststart(self) -> None:
        # testing.postgresql creates a database "test" here; we do not need one.
        pass

    # -- convenience --------------------------------------------------------------

    def url(self, database: str = "postgres", **kwargs) -> str:
        return super().url(database=database, **kwargs)

    def server_version(self) -> str:
        with psycopg.connect(self.url()) as conn:
            return one_value(conn, "show server_version")

    # -- crashes and restarts -----------------------------------------------------

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``pg_ctl args`` on this server's data directory, from the folder of its
        ``postgres`` and as the server's user (pg_ctl refuses root); raises
        RuntimeError with pg_ctl's message when it fails."""
        pg_ctl = os.path.join(os.path.dirname(self.postgres), "pg_ctl")
        command = [*self._privilege_drop_prefix(), pg_ctl, *args, "-D", self.get_data_directory()]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl {' '.join(args)} failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def stop_immediately(self) -> None:
        """``pg_ctl stop -m immediate``: every server process quits at once, without a
        checkpoint or a goodbye to its clients, so the next start runs crash recovery.
        The data directory is kept (``restart()``; ``stop()`` removes it)."""
        self.pg_ctl("stop", "-m", "immediate", "-w")
        if self.child_process is not None:
            self.child_process.wait()  # the postmaster, this process's child: reaped
            self.child_process = None

    def restart(self) -> None:
        """Start the server again on its data directory and port, after
        ``stop_immediately()`` or a postmaster that died; returns once it accepts
        connections (crash recovery done). The previous run's log is kept beside the
        new one, as ``<name>.log.1``."""
        if self.child_process is not None:
            if self.child_process.poll() is None:
                raise RuntimeError("the server is still running: stop it before restarting")
            self.child_process = None
        log = os.path.join(self.base_dir, f"{self.name}.log")
        if os.path.exists(log):
            os.replace(log, log + ".1")
        self.start()
