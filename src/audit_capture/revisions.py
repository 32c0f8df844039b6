"""The package's chain of revisions and the SQL files of each (``migrations/``).

A revision keeps what its SQL meant when it was written (``migrations/README.md`` says
how to add one):

- ``migrations/sql/<rev>/`` holds only the state files the revision adds or changes, and
  an empty ``<name>.removed`` marker for a state file it removes. A revision's full set
  of state files is resolved by walking back along ``down_revision``: the baseline's
  files, each later folder overriding same-named files and removing marked ones.
- ``migrations/upgrade/<rev>.sql`` (optional) holds what cannot simply be run again:
  ALTER TABLE on the log, ALTER TYPE ... ADD VALUE, a domain's new check.
- ``migrations/downgrade/<rev>.sql`` (optional) removes what the revision added.
- ``migrations/upgrade_concurrently/<rev>.sql`` and ``downgrade_concurrently/<rev>.sql``
  (optional) hold what runs OUTSIDE a transaction before the upgrade (downgrade): one
  statement at a time in autocommit, ``CREATE INDEX CONCURRENTLY`` on the live log.
  ``concurrent_statements`` splits such a file, and refuses what it cannot split safely.
- ``migrations/manifest.json`` records the sha256 of every file of every revision and
  which revisions are released (``scripts/freeze-sql``, ``scripts/release-revision``).

How a revision's files run (in an Alembic migration) is ``sqlfiles``' job.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from audit_capture import resources

UNINSTALL_FILE = "uninstall.sql"
REMOVED_SUFFIX = ".removed"
MANIFEST_FILE = "manifest.json"
Direction = Literal["upgrade", "downgrade"]
CONCURRENT_FOLDERS: dict[Direction, str] = {
    "upgrade": "upgrade_concurrently",
    "downgrade": "downgrade_concurrently",
}


class RevisionError(Exception):
    """A revision's files cannot be resolved, frozen or released as asked."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- statements that run outside a transaction ------------------------------------------


@dataclass(frozen=True)
class ConcurrentStatement:
    """One statement of a ``*_concurrently/<rev>.sql`` file."""

    text: str  # as written, with the comment lines above it, ending with ';'
    line: int  # the line of the file where its first word is
    # (index name, schema-qualified table) of a CREATE INDEX CONCURRENTLY IF NOT EXISTS
    index: tuple[str, str] | None = None
    drops_index: bool = False  # a DROP INDEX CONCURRENTLY
    # neither an index's build or drop nor a function: a step of the file's own (a
    # constraint validated, a column added), which the fallback does under its lock too
    other: bool = False


_IDENT = r"[a-z_][a-z0-9_]*"
_CREATE_INDEX = re.compile(
    rf"create (?:unique )?index concurrently if not exists ({_IDENT}) on (?:only )?"
    rf"({_IDENT}\.{_IDENT})\b"
)
# a dollar-quoted string opens with $tag$ (tag optional) where '$' does not continue a
# name (a$b); $1 is a parameter
_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_PARAMETER = re.compile(r"\$[0-9]")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]")
_TRANSACTION_OR_ROLE = re.compile(
    r"(begin|start|commit|end|rollback|abort|savepoint|release|prepare|set|reset)\b"
)


def concurrent_statements(path: Path) -> list[ConcurrentStatement]:
    """The statements of ``path`` (a ``*_concurrently/<rev>.sql`` file), one by one.

    The rule: a statement ends at a ``;`` that is outside a '...' string, a "..."
    name, a ``$tag$...$tag$`` string (``do $$ ... $$``, a plpgsql body) and a ``--``
    comment. What this rule cannot split safely is refused, with the line: a ``$``
    that opens no such string (nor continues a name, nor is a ``$1`` parameter),
    ``begin atomic`` bodies (a function the file needs has a SQL-standard ``return
    ...`` or a ``$$`` body), ``/* */`` comments, E'...' strings (backslash escapes),
    psql's backslash commands, an unterminated string or text after the last ``;``. So are
    statements that would defeat the file's purpose:
    CREATE INDEX without ``concurrently if not exists <name> on <schema>.<table>``
    (the name is needed to drop an INVALID index a failed build left), DROP INDEX
    without ``concurrently if exists``, and transaction, role and session commands
    (the runner sets the role and runs each statement in a transaction of its own).
    """
    text = path.read_text(encoding="utf-8")
    name = path.as_posix()

    def refuse(at: int, why: str) -> RevisionError:
        line = text.count("\n", 0, at) + 1
        return RevisionError(
            f"{name}, line {line}: {why}; the statements of a *_concurrently file run one "
            "at a time outside a transaction and are split at each ';' outside strings, "
            "quoted names and -- comments (migrations/README.md)"
        )

    statements: list[ConcurrentStatement] = []
    start, first, shape = 0, -1, []  # shape: the code, strings emptied, comments gone
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
            shape.append(" ")
            continue
        if text.startswith("/*", i):
            raise refuse(i, "a /* comment */ (write -- comments)")
        if char == "$" and not (i and _IDENT_CHAR.match(text[i - 1])):
            quote = _DOLLAR_QUOTE.match(text, i)
            if quote is None:
                if not _PARAMETER.match(text, i):
                    raise refuse(i, "a '$' that opens no $tag$ string")
            else:
                if first < 0:
                    first = i
                end = text.find(quote[0], quote.end())
                if end < 0:
                    raise refuse(i, f"an unterminated {quote[0]}...{quote[0]}")
                shape.append(quote[0] * 2)
                i = end + len(quote[0])
                continue
        if char == "\\":
            raise refuse(i, "a '\\' (a psql command: the file also runs without psql)")
        if first < 0 and not char.isspace() and char != ";":
            first = i
        if char in "'\"":
            before = text[max(i - 2, 0) : i].rjust(2)
            if char == "'" and before[1] in "eE" and not (before[0].isalnum() or before[0] == "_"):
                raise refuse(i, "an E'...' string (backslash escapes)")
            end = i + 1
            while True:
                end = text.find(char, end)
                if end < 0:
                    raise refuse(i, f"an unterminated {char}...{char}")
                if text.startswith(char * 2, end):
                    end += 2
                    continue
                break
            shape.append(char * 2 if char == "'" else text[i : end + 1])
            i = end + 1
            continue
        if char == ";":
            if first < 0:
                raise refuse(i, "an empty statement")
            code = " ".join("".join(shape).split()).lower()
            line = text.count("\n", 0, first) + 1
            statement, why = _checked(text[start : i + 1], code, line)
            if statement is None:
                raise refuse(first, why)
            statements.append(statement)
            start, first, shape = i + 1, -1, []
        else:
            shape.append(char)
        i += 1
    if first >= 0:
        raise refuse(first, "a statement without its closing ';'")
    if not statements:
        raise refuse(0, "no statement")
    return statements


def _normalized(sql_text: str) -> str:
    """``sql_text`` without its -- comments (outside '...' strings), its spacing collapsed
    and lowercased: two statements that differ only there compare equal."""
    text = re.sub(r"('(?:[^']|'')*')|--[^\n]*", lambda m: m.group(1) or " ", sql_text)
    return " ".join(text.split()).lower()


def _checked(statement: str, code: str, line: int) -> tuple[ConcurrentStatement | None, str]:
    """The statement, or None and why it is refused."""
    if _TRANSACTION_OR_ROLE.match(code):
        return None, (
            f"{code.split()[0].upper()}: transaction, role and session commands have no "
            "place here (each statement runs in its own transaction, as audit_owner)"
        )
    if re.search(r"\bbegin atomic\b", code):
        return None, (
            "a BEGIN ATOMIC body (its ';' cannot be split safely): write the function's "
            "body as 'return ...', or create it in the transactional part"
        )
    index = None
    if re.match(r"create (unique )?index\b", code):
        found = _CREATE_INDEX.match(code)
        if not found:
            return None, (
                "CREATE INDEX must read 'create [unique] index concurrently if not exists "
                "<name> on <schema>.<table>' (a plain name, lowercase)"
            )
        index = (found[1], found[2])
    elif re.match(r"drop index\b", code):
        if not code.startswith("drop index concurrently if exists "):
            return None, "DROP INDEX must read 'drop index concurrently if exists ...'"
        return ConcurrentStatement(statement, line, drops_index=True), ""
    other = index is None and not code.startswith("create or replace function ")
    return ConcurrentStatement(statement, line, index, other=other), ""


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

    def concurrent_file(self, revision: str, direction: Direction) -> Path:
        """``upgrade_concurrently/<revision>.sql`` or ``downgrade_concurrently/...``: what
        runs outside a transaction before the upgrade's (downgrade's) transactional part."""
        return self.root / CONCURRENT_FOLDERS[direction] / f"{revision}.sql"

    def concurrent_statements(
        self, revision: str, direction: Direction
    ) -> list[ConcurrentStatement]:
        """The statements of ``concurrent_file()``, split and checked; [] without one."""
        path = self.concurrent_file(revision, direction)
        if not path.is_file():
            return []
        return concurrent_statements(path)

    def concurrent_problems(self, revision: str, state: dict[str, Path] | None = None) -> list[str]:
        """What differs between ``revision``'s ``*_concurrently`` files and the state files
        their transactional part runs (``state``: the upgrade's, default the revision's
        own; the downgrade's are the previous revision's), one line per statement.

        Each ``create index`` and ``create or replace function`` of such a file must be a
        statement of those state files, the same but for ``concurrently`` (comments and
        spacing aside): an index of another definition would be kept by the state
        file's ``if not exists``, and a function the state file replaced would no longer
        be the one that computed the index's entries. An index of a name that no state
        file creates is a step of the revision's own upgrade (downgrade) file instead
        (revision 0003's new primary keys, ``add primary key using index <name>``): that
        file must name it.
        """
        down = self.parents[revision]
        targets: dict[Direction, tuple[str | None, dict[str, Path]]] = {
            "upgrade": (revision, self.state_files(revision) if state is None else state),
            "downgrade": (down, self.state_files(down) if down else {}),
        }
        problems = []
        for direction, (target, files) in targets.items():
            statements = self.concurrent_statements(revision, direction)
            name = self.concurrent_file(revision, direction).relative_to(self.root).as_posix()
            if statements and target is None:
                problems.append(f"{name}: never runs (the baseline's downgrade is uninstall.sql)")
                continue
            against = _normalized(
                "\n".join(
                    path.read_text(encoding="utf-8")
                    for file, path in sorted(files.items())
                    if file != UNINSTALL_FILE
                )
            )
            explicit_file = (
                self.upgrade_file(revision)
                if direction == "upgrade"
                else self.downgrade_file(revision)
            )
            explicit = (
                _normalized(explicit_file.read_text(encoding="utf-8"))
                if explicit_file.is_file()
                else ""
            )
            for statement in statements:
                code = _normalized(statement.text)
                if not (statement.index or code.startswith("create or replace function ")):
                    continue
                if statement.index and not re.search(
                    rf"\bindex (?:concurrently )?if not exists {statement.index[0]} ", against
                ):
                    # not an index of the state files: a step of the revision's own
                    # upgrade (downgrade) file, which must use it by name (e.g. a new
                    # primary key added 'using index <name>')
                    if re.search(rf"\b{statement.index[0]}\b", explicit):
                        continue
                    problems.append(
                        f"{name}, line {statement.line}: not a statement of revision "
                        f"{target}'s state files, whose 'create index if not exists' lack "
                        f"{statement.index[0]}, nor an index "
                        f"{explicit_file.relative_to(self.root).as_posix()} uses by name "
                        "(e.g. 'primary key using index'): nothing would use it"
                    )
                    continue
                if (
                    re.sub(r"^create (unique )?index concurrently ", r"create \1index ", code)
                    in against
                ):
                    continue
                problems.append(
                    f"{name}, line {statement.line}: not a statement of revision {target}'s "
                    "state files (the same but for 'concurrently', comments aside): make it "
                    "the state file's, character for character, or the state files keep "
                    "(create index if not exists) or replace (create or replace function) "
                    "what it built"
                )
        return problems

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
        upgrade and downgrade files, and what runs outside a transaction before them."""
        folder = self.folder(revision)
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        extra = [
            self.upgrade_file(revision),
            self.downgrade_file(revision),
            self.concurrent_file(revision, "upgrade"),
            self.concurrent_file(revision, "downgrade"),
        ]
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
        for folder in ("sql", "upgrade", "downgrade", *CONCURRENT_FOLDERS.values()):
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
        # refuses a *_concurrently file it cannot split, or that differs from the SQL
        problems = self.concurrent_problems(revision, current)
        if problems:
            raise RevisionError("; ".join(problems))
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
