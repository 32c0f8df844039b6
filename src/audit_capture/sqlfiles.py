"""The SQL files that make up the audit schema, and how each revision runs them.

``triggers/*.sql`` is the current SQL: one state file per concern, each idempotent
(``create or replace``, ``if not exists``), run in lexical filename order;
``uninstall.sql`` is never part of an install and is what a downgrade to base runs.

A revision of the package's own chain keeps what its SQL meant when it was written
(``migrations/README.md`` says how to add one):

- ``migrations/sql/<rev>/`` holds only the state files the revision adds or changes, and
  an empty ``<name>.removed`` marker for a state file it removes. A revision's full set
  of state files is resolved by walking back along ``down_revision``: the baseline's
  files, each later folder overriding same-named files and removing marked ones.
- ``migrations/upgrade/<rev>.sql`` (optional) holds what cannot simply be run again:
  ALTER TABLE on the log, ALTER TYPE ... ADD VALUE, a domain's new check.
- ``migrations/downgrade/<rev>.sql`` (optional) removes what the revision added.

upgrade(rev) runs the upgrade file first, then every resolved state file. downgrade(rev)
runs the previous revision's resolved state files, then the downgrade file; the
baseline's downgrade runs its ``uninstall.sql``. ``migrations/manifest.json`` records
the sha256 of every file of every revision and which revisions are released
(``scripts/freeze-sql``, ``scripts/release-revision``).

The files hold plpgsql ``$$`` bodies, ``%`` format placeholders and ``:name``-like
text, so they go to the server verbatim through psycopg without parameters (psycopg 3
then uses the simple query protocol, which accepts many statements in one string).
They never go through SQLAlchemy ``text()``, which would read ``:name`` as a bind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psycopg

from audit_capture import resources

UNINSTALL_FILE = "uninstall.sql"
VERSION_TABLE_FILE = "version_table.sql"
REMOVED_SUFFIX = ".removed"
MANIFEST_FILE = "manifest.json"


class RevisionError(Exception):
    """A revision's files cannot be resolved, frozen or released as asked."""


def install_files(folder: Path) -> list[Path]:
    """The ``.sql`` files of ``folder`` that an install runs, in the order it runs them."""
    return sorted(
        (path for path in folder.glob("*.sql") if path.name != UNINSTALL_FILE),
        key=lambda path: path.name,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a chain of revisions and the files of each ---------------------------------------


@dataclass(frozen=True)
class Chain:
    """The revisions of an Alembic script folder (``migrations/``) and their SQL."""

    root: Path

    @classmethod
    def packaged(cls) -> Chain:
        """The package's own chain (``migrations/``)."""
        return cls(resources.migrations_dir())

    @cached_property
    def parents(self) -> dict[str, str | None]:
        """{revision: down_revision}, read from ``versions/*.py`` by Alembic."""
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(self.root))
        found: dict[str, str | None] = {}
        for rev in script.walk_revisions():
            down = rev.down_revision
            if isinstance(down, tuple | list):
                raise RevisionError(f"revision {rev.revision} merges {down}: not supported")
            found[rev.revision] = down
        return found

    def lineage(self, revision: str) -> list[str]:
        """The revisions from the baseline up to ``revision``, oldest first."""
        if revision not in self.parents:
            raise RevisionError(f"no revision {revision!r} in {self.root / 'versions'}")
        revs: list[str] = []
        current: str | None = revision
        while current is not None:
            revs.append(current)
            current = self.parents[current]
        return revs[::-1]

    def revisions(self) -> list[str]:
        """Every revision, oldest first (the chain has no branches)."""
        heads = [rev for rev in self.parents if rev not in self.parents.values()]
        if len(heads) != 1:
            raise RevisionError(f"{self.root / 'versions'} has heads {sorted(heads)}, not one")
        return self.lineage(heads[0])

    def head(self) -> str:
        return self.revisions()[-1]

    def folder(self, revision: str) -> Path:
        """``sql/<revision>/``: the state files ``revision`` adds or changes (may be absent)."""
        return self.root / "sql" / revision

    def upgrade_file(self, revision: str) -> Path:
        return self.root / "upgrade" / f"{revision}.sql"

    def downgrade_file(self, revision: str) -> Path:
        return self.root / "downgrade" / f"{revision}.sql"

    def state_files(self, revision: str) -> dict[str, Path]:
        """{file name: path} of every state file of ``revision`` (``uninstall.sql``
        included), resolved along the chain."""
        files: dict[str, Path] = {}
        for rev in self.lineage(revision):
            folder = self.folder(rev)
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.name.endswith(REMOVED_SUFFIX):
                    name = path.name.removesuffix(REMOVED_SUFFIX)
                    if name not in files:
                        raise RevisionError(
                            f"{path} removes {name}, which revision {rev}'s ancestors lack"
                        )
                    del files[name]
                elif path.suffix == ".sql":
                    files[path.name] = path
        return files

    def install_files(self, revision: str) -> list[Path]:
        """The resolved state files an install of ``revision`` runs, in order."""
        files = self.state_files(revision)
        if not files:
            raise RevisionError(f"revision {revision} has no SQL: {self.folder(revision)}")
        return [files[name] for name in sorted(files) if name != UNINSTALL_FILE]

    def uninstall_file(self, revision: str) -> Path:
        path = self.state_files(revision).get(UNINSTALL_FILE)
        if path is None:
            raise RevisionError(f"revision {revision} has no {UNINSTALL_FILE}")
        return path

    def own_files(self, revision: str) -> list[Path]:
        """Every file that belongs to ``revision`` alone: its folder's files, its
        upgrade and downgrade files."""
        folder = self.folder(revision)
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        extra = [self.upgrade_file(revision), self.downgrade_file(revision)]
        return files + [path for path in extra if path.is_file()]

    # -- the manifest ------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    def manifest(self) -> dict:
        """``{"revisions": {rev: {"released": bool, "files": {relative path: sha256}}}}``."""
        if not self.manifest_path.is_file():
            return {"revisions": {}}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self.manifest_path.write_text(text, encoding="utf-8")

    def is_released(self, revision: str) -> bool:
        return bool(self.manifest()["revisions"].get(revision, {}).get("released"))

    def recorded_files(self, revision: str) -> dict[str, str]:
        """{path relative to the chain's folder: sha256} of ``revision``'s own files."""
        return {
            path.relative_to(self.root).as_posix(): sha256(path)
            for path in self.own_files(revision)
        }

    def manifest_problems(self) -> list[str]:
        """What differs between the files on disk and ``manifest.json``, one line per
        file, each saying what to do; empty when they agree."""
        manifest = self.manifest()["revisions"]
        revisions = self.revisions()
        problems = [
            f"{MANIFEST_FILE} lists revision {rev}, which versions/ lacks: remove its entry"
            for rev in sorted(set(manifest) - set(revisions))
        ]
        for folder in ("sql", "upgrade", "downgrade"):
            for path in sorted((self.root / folder).glob("*")):
                if (path.name if folder == "sql" else path.stem) not in revisions:
                    problems.append(
                        f"{path.relative_to(self.root).as_posix()} belongs to no revision"
                    )
        for rev in revisions:
            problems += self.revision_problems(rev)
        return problems

    def revision_problems(self, revision: str) -> list[str]:
        """``manifest_problems()`` of one revision's files."""
        entry = self.manifest()["revisions"].get(revision)
        if entry is None:
            return [f"revision {revision} is not in {MANIFEST_FILE}: run scripts/freeze-sql"]
        if entry.get("released"):
            fix = (
                f"revision {revision} is released and never changes: restore the file "
                "(git checkout) and put the change in a new revision "
                '(scripts/new-revision "what changed")'
            )
        else:
            fix = "if the change is meant, run scripts/freeze-sql"
        listed, actual = entry.get("files", {}), self.recorded_files(revision)
        problems = []
        for name in sorted(set(listed) | set(actual)):
            if name not in actual:
                problems.append(f"{name} is missing ({MANIFEST_FILE} lists it): {fix}")
            elif name not in listed:
                problems.append(f"{name} is not in {MANIFEST_FILE}: {fix}")
            elif listed[name] != actual[name]:
                problems.append(f"{name} differs from its sha256 in {MANIFEST_FILE}: {fix}")
        return problems

    # -- maintainers' tools ------------------------------------------------------------

    def freeze(self, triggers: Path, revision: str | None = None) -> list[str]:
        """Write into the head revision's folder the files of ``triggers`` that differ from
        the previous revision's resolved set (and a marker for each one it lacks), and
        record the revision's files in the manifest. Returns what it wrote.

        Refuses a revision that is not the head, or that is released.
        """
        head = self.head()
        revision = revision or head
        if revision != head:
            raise RevisionError(
                f"revision {revision} is not the head ({head}): only the head revision's "
                "SQL may be frozen; a change goes into a new revision "
                '(scripts/new-revision "what changed")'
            )
        if self.is_released(revision):
            raise RevisionError(
                f"revision {revision} is released ({MANIFEST_FILE}): its SQL never changes; "
                'put the change in a new revision (scripts/new-revision "what changed")'
            )
        current = {path.name: path for path in triggers.glob("*.sql")}
        if not current:
            raise RevisionError(f"{triggers} holds no .sql file")
        down = self.parents[revision]
        previous = self.state_files(down) if down else {}
        folder = self.folder(revision)
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink()
        written: list[str] = []
        for name in sorted(current):
            data = current[name].read_bytes()
            if name not in previous or previous[name].read_bytes() != data:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
                written.append(name)
        for name in sorted(set(previous) - set(current)):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / (name + REMOVED_SUFFIX)).write_bytes(b"")
            written.append(name + REMOVED_SUFFIX)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        self.record(revision)
        return written

    def record(self, revision: str, released: bool | None = None) -> None:
        """Write ``revision``'s files (and, when given, its released flag) into the manifest."""
        manifest = self.manifest()
        entry = manifest["revisions"].setdefault(revision, {"released": False})
        entry["files"] = self.recorded_files(revision)
        if released is not None:
            entry["released"] = released
        self.write_manifest(manifest)

    def release(self, revision: str) -> None:
        """Mark ``revision`` released: from now on its files never change."""
        self.lineage(revision)  # names a known revision
        problems = self.revision_problems(revision)
        if problems:
            raise RevisionError("; ".join(problems))
        self.record(revision, released=True)


# -- running SQL ----------------------------------------------------------------------


def execute_sql(conn: psycopg.Connection, sql_text: str) -> None:
    """Run a whole SQL script (many statements) on ``conn``, inside its transaction."""
    conn.execute(sql_text, prepare=False)


def execute_file(conn: psycopg.Connection, path: Path) -> None:
    try:
        execute_sql(conn, path.read_text(encoding="utf-8"))
    except psycopg.Error as exc:
        exc.add_note(f"while running {path}")
        raise


def install(conn: psycopg.Connection, files: list[Path] | None = None) -> list[Path]:
    """Run ``files`` (default: the current ``triggers/``) on ``conn``.

    Does not commit. Returns the files it ran.
    """
    files = install_files(resources.triggers_dir()) if files is None else files
    for path in files:
        execute_file(conn, path)
    restore_role(conn)
    return files


def uninstall(conn: psycopg.Connection, folder: Path | None = None) -> None:
    """Run ``uninstall.sql`` of ``folder`` (default: the current ``triggers/``)."""
    execute_file(conn, (folder or resources.triggers_dir()) / UNINSTALL_FILE)
    restore_role(conn)


def restore_role(conn: psycopg.Connection) -> None:
    """Undo a ``set local role`` left by the SQL files (they create objects as the
    audit schema's owner), so the rest of the transaction runs as the caller again."""
    conn.execute("reset role")


def version_table_file() -> Path:
    """``migrations/version_table.sql``: run after each SQL file of a revision."""
    return resources.migrations_dir() / VERSION_TABLE_FILE


def give_version_table_to_schema_owner(conn: psycopg.Connection) -> None:
    """Make ``audit.alembic_version`` belong to the audit schema's owner and readable by
    the audit roles (``migrations/version_table.sql`` says why)."""
    execute_file(conn, version_table_file())


# -- inside an Alembic revision ------------------------------------------------------


def _running_chain() -> Chain:
    """The chain Alembic is running (the package's, or a test's copy)."""
    from alembic import context

    return Chain(Path(context.script.dir))


def upgrade(revision: str) -> None:
    """A revision's upgrade(): ``upgrade/<revision>.sql`` if any, then every resolved
    state file of ``revision``."""
    chain = _running_chain()
    explicit = chain.upgrade_file(revision)
    _run_in_migration(
        ([explicit] if explicit.is_file() else []) + chain.install_files(revision), chain
    )


def downgrade(revision: str) -> None:
    """A revision's downgrade(): the previous revision's resolved state files, then
    ``downgrade/<revision>.sql`` if any; for the baseline, its ``uninstall.sql``."""
    chain = _running_chain()
    down = chain.parents[revision]
    if down is None:
        _uninstall_in_migration(chain.uninstall_file(revision), chain)
        return
    explicit = chain.downgrade_file(revision)
    _run_in_migration(chain.install_files(down) + ([explicit] if explicit.is_file() else []), chain)


def _run_in_migration(paths: list[Path], chain: Chain) -> None:
    from alembic import context, op

    if context.is_offline_mode():
        # the script runs in psql exactly what an online upgrade runs, file by file
        output = op.get_context().impl.static_output
        after_each = version_table_file().read_text(encoding="utf-8")
        for path in paths:
            output(f"-- {path.relative_to(chain.root).as_posix()}")
            output(path.read_text(encoding="utf-8"))
            output(after_each)
        output("reset role;")
        return
    driver_connection = _driver_connection()
    for path in paths:
        execute_file(driver_connection, path)
        give_version_table_to_schema_owner(driver_connection)
    restore_role(driver_connection)


def _uninstall_in_migration(path: Path, chain: Chain) -> None:
    """Run ``uninstall.sql`` in the baseline's downgrade to base.

    ``uninstall.sql`` may drop the whole audit schema, and with it Alembic's version
    table ``audit.alembic_version``. Alembic still has to delete its row afterwards, so
    the table is put back with its rows when the uninstall removed it; the migration
    environment drops it again once it is empty.
    """
    from alembic import context

    if context.is_offline_mode():
        _run_in_migration([path], chain)
        return
    conn = _driver_connection()
    versions = [
        row[0]
        for row in conn.execute(
            "select version_num from audit.alembic_version"
            if _version_table_exists(conn)
            else "select null where false"
        )
    ]
    _run_in_migration([path], chain)
    if not _version_table_exists(conn):
        conn.execute("create schema if not exists audit")
        conn.execute(
            "create table audit.alembic_version ("
            " version_num varchar(32) not null,"
            " constraint alembic_version_pkc primary key (version_num))"
        )
        for version in versions:
            conn.execute("insert into audit.alembic_version (version_num) values (%s)", (version,))


def _driver_connection() -> psycopg.Connection:
    """The psycopg connection under the running migration's SQLAlchemy connection."""
    from alembic import op

    conn = op.get_bind().connection.driver_connection
    assert isinstance(conn, psycopg.Connection), conn
    return conn


def _version_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass('audit.alembic_version') is not null").fetchone()
    return bool(row and row[0])
