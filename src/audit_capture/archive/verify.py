"""``audit-capture archive verify DIR`` and ``verify_month``: is an archived month what
its manifest says, and (given a connection) what the database still holds?

Reading a file is one pass over its bytes: the sha256 of the gzip file as stored, and
its lines decompressed as they come (zlib checks gzip's own CRC and length at the end,
so a truncated or altered stream is caught even where the manifest was edited to
match). Per line, only the leading id and occurred_at are matched (a regular
expression); the item chunks are parsed only on the lines of actions that have some.

For helper B's ``audit-capture retention --require-archive DIR``::

    from audit_capture.archive import verify_month
    result = verify_month(folder, month, conn)   # month: date, 'YYYY-MM' or Month
    if not result.ok:
        raise SomeError(result.problem)           # one line naming the file and why

With ``conn`` (the retention's own connection and transaction, read as it is, nothing
changed), the manifest's counts (actions, chunks, items, first and last id) must equal
the month's counts in the database, and the manifest must come from this database: a
month archived before more rows arrived in it is not verified. A month without
archive that holds no action is ``ok`` (nothing to lose).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import psycopg

from audit_capture.archive import manifest as manifests
from audit_capture.archive import source
from audit_capture.archive.errors import ArchiveError
from audit_capture.archive.month import Month
from audit_capture.archive.writer import archived_counts

READ_BYTES = 1 << 18
INFLATED_BYTES = 1 << 22
_HEAD = re.compile(rb'\{"id":(\d+),"occurred_at":"([^"]+)"')
_NO_CHUNKS = b',"item_chunks":[]}'
_CHUNKS = b',"item_chunks":['


@dataclass
class FileFacts:
    """What one pass over a data file found."""

    bytes: int = 0
    sha256: str = ""
    actions: int = 0
    chunks: int = 0
    items: int = 0
    first_id: int | None = None
    last_id: int | None = None
    first_occurred_at: str | None = None
    last_occurred_at: str | None = None
    problem: str | None = None  # the content itself is broken (not gzip, a bad line...)


class Inflater:
    """Reads a gzip file in blocks: hashes the bytes as stored, yields the text in
    pieces of at most INFLATED_BYTES (a block of very repetitive items inflates a
    hundredfold: memory stays flat)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def __iter__(self) -> Iterator[bytes]:
        while block := self.raw.read(READ_BYTES):
            self.sha.update(block)
            self.bytes += len(block)
            piece = self.inflate.decompress(block, INFLATED_BYTES)
            yield piece
            while self.inflate.unconsumed_tail:
                yield self.inflate.decompress(self.inflate.unconsumed_tail, INFLATED_BYTES)

    def finish(self) -> None:
        """Hash what is left unread (after a problem stopped the reading)."""
        while block := self.raw.read(READ_BYTES):
            self.sha.update(block)
            self.bytes += len(block)

    @property
    def ended(self) -> bool:
        return self.inflate.eof


def scan(path: Path) -> FileFacts:
    """Read ``path`` once: its bytes and sha256, and the counts and ranges of its lines."""
    facts = FileFacts()
    rest = b""
    line_no = 0
    with open(path, "rb") as raw:
        reader = Inflater(raw)
        try:
            for piece in reader:
                lines = (rest + piece).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    line_no += 1
                    facts.problem = _take_line(facts, line, line_no)
                    if facts.problem:
                        break
                if facts.problem:
                    break
        except zlib.error as exc:
            facts.problem = f"not a valid gzip stream ({exc})"
        reader.finish()
    facts.bytes = reader.bytes
    facts.sha256 = reader.sha.hexdigest()
    if facts.problem is None:
        if not reader.ended:
            facts.problem = "the gzip stream ends early (truncated)"
        elif reader.inflate.unused_data:
            facts.problem = "bytes follow the end of the gzip stream"
        elif rest:
            facts.problem = "its last line does not end with a newline"
    return facts


def _take_line(facts: FileFacts, line: bytes, line_no: int) -> str | None:
    head = _HEAD.match(line)
    if head is None or not line.endswith(b"}"):
        return f"line {line_no:,} is not an archived action"
    action_id = int(head.group(1))
    occurred_at = head.group(2).decode("ascii", "replace")
    if facts.last_id is not None and action_id <= facts.last_id:
        return f"line {line_no:,}: id {action_id} does not follow {facts.last_id}"
    if facts.first_id is None:
        facts.first_id = action_id
    facts.last_id = action_id
    # every timestamp reads YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00: text order is time order
    if facts.first_occurred_at is None or occurred_at < facts.first_occurred_at:
        facts.first_occurred_at = occurred_at
    if facts.last_occurred_at is None or occurred_at > facts.last_occurred_at:
        facts.last_occurred_at = occurred_at
    facts.actions += 1
    if line.endswith(_NO_CHUNKS):
        return None
    at = line.rfind(_CHUNKS)
    try:
        chunks = json.loads(line[at + len(_CHUNKS) - 1 : -1]) if at >= 0 else None
        if not isinstance(chunks, list):
            raise ValueError
        for chunk in chunks:
            if chunk["action_id"] != action_id:
                return f"line {line_no:,}: a chunk of action {chunk['action_id']} under {action_id}"
            facts.items += int(chunk["item_count"])
    except (ValueError, KeyError, TypeError):
        return f"line {line_no:,} (action {action_id}): its item_chunks cannot be read"
    facts.chunks += len(chunks)
    return None


@dataclass
class MonthVerification:
    """The verdict on one archived month: ``ok``, else ``problem`` (one line naming the
    file and what is wrong)."""

    month: Month
    manifest_path: Path
    manifest: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem(self) -> str | None:
        return self.problems[0] if self.problems else None


def check_manifest_file(manifest_path: Path) -> MonthVerification:
    """A manifest and its data file, against each other (no database)."""
    month = manifests.month_of_manifest(manifest_path)
    assert month is not None, manifest_path
    result = MonthVerification(month, manifest_path)
    try:
        result.manifest = manifest = manifests.read(manifest_path)
    except ArchiveError as exc:
        result.problems.append(str(exc))
        return result
    data_path = manifest_path.parent / manifests.data_name(month)
    if manifest["file"] != data_path.name:
        result.problems.append(
            f"{manifest_path}: names the file {manifest['file']!r}, expected {data_path.name}"
        )
        return result
    if not data_path.is_file():
        result.problems.append(f"{data_path}: missing (its manifest is {manifest_path.name})")
        return result
    facts = scan(data_path)
    if facts.bytes != manifest["bytes"]:
        result.problems.append(
            f"{data_path}: {facts.bytes:,} bytes, its manifest says {manifest['bytes']:,}"
            + (f"; {facts.problem}" if facts.problem else "")
        )
    elif facts.sha256 != manifest["sha256"]:
        result.problems.append(
            f"{data_path}: its sha256 is {facts.sha256}, its manifest says {manifest['sha256']}"
            " (the file or the manifest changed)"
        )
    if facts.problem and facts.bytes == manifest["bytes"]:
        result.problems.append(f"{data_path}: {facts.problem}")
    if result.problems:
        return result
    expected = {
        "actions": manifest["actions"],
        "chunks": manifest["chunks"],
        "items": manifest["items"],
        "first_id": manifest["first_id"],
        "last_id": manifest["last_id"],
    }
    found = {name: getattr(facts, name) for name in expected}
    differences = [
        f"{name} {found[name]} in the file, {expected[name]} in the manifest"
        for name in expected
        if found[name] != expected[name]
    ]
    for name in ("first_occurred_at", "last_occurred_at"):
        if _instant(getattr(facts, name)) != _instant(manifest[name]):
            differences.append(
                f"{name} {getattr(facts, name)} in the file, {manifest[name]} in the manifest"
            )
    if facts.actions and not (
        month.start <= _instant(facts.first_occurred_at)  # type: ignore[operator]
        and _instant(facts.last_occurred_at) < month.end  # type: ignore[operator]
    ):
        differences.append(f"actions outside {month} in the file")
    if differences:
        result.problems.append(f"{data_path}: {'; '.join(differences)}")
    return result


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def verify_dir(folder: Path | str) -> list[MonthVerification]:
    """Every month archived in ``folder``, oldest first; a data file without its
    manifest (removed, or a run killed before it wrote it) is a problem too."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArchiveError(f"{folder}: no such archive folder")
    manifest_paths = sorted(
        path for path in folder.iterdir() if manifests.month_of_manifest(path) is not None
    )
    results = [check_manifest_file(path) for path in manifest_paths]
    listed = {manifests.data_name(result.month) for result in results}
    for path in sorted(folder.glob(f"{manifests.PREFIX}*{manifests.DATA_SUFFIX}")):
        if path.name not in listed:
            month = Month.parse(path.name[len(manifests.PREFIX) : -len(manifests.DATA_SUFFIX)])
            orphan = MonthVerification(month, folder / manifests.manifest_name(month))
            orphan.problems.append(
                f"{path}: no manifest beside it (removed, or a run killed before the end):"
                " not verified"
            )
            results.append(orphan)
    if not results:
        raise ArchiveError(f"{folder}: no archived month (no {manifests.PREFIX}*.manifest.json)")
    return sorted(results, key=lambda result: result.month)


def verify_month(
    folder: Path | str,
    month: Month | date | datetime | str,
    conn: psycopg.Connection | None = None,
) -> MonthVerification:
    """Is ``month`` archived in ``folder``, intact, and (with ``conn``) the same as the
    month the database holds now? Never raises for a bad archive: the verdict says it.
    See the module's docstring for retention's use of it."""
    folder, month = Path(folder), Month.of(month)
    manifest_path = folder / manifests.manifest_name(month)
    if not manifest_path.exists():
        result = MonthVerification(month, manifest_path)
        if conn is not None and source.live_counts(conn, month).actions == 0:
            result.note = f"{month} holds no action: nothing to archive"
            return result
        result.problems.append(f"{manifest_path}: no archive of {month} in {folder}")
        return result
    result = check_manifest_file(manifest_path)
    if result.ok and conn is not None:
        manifest = result.manifest
        assert manifest is not None
        identity = source.source_identity(conn)
        theirs = manifest["source"]
        if (theirs.get("system_identifier"), theirs.get("database")) != (
            identity["system_identifier"],
            identity["database"],
        ):
            result.problems.append(
                f"{manifest_path}: the archive of another database ({theirs.get('database')!r},"
                f" system {theirs.get('system_identifier')})"
            )
            return result
        differences = source.live_counts(conn, month).differences(archived_counts(manifest))
        if differences:
            result.problems.append(
                f"{manifest_path}: {month} changed since it was archived:"
                f" {'; '.join(differences)} (database against manifest)"
            )
    return result
