"""``audit-capture archive --before 2025-01 --to DIR``: each closed month before that
which holds actions becomes one gzip file of NDJSON plus its manifest (manifest.py).

Flat memory: the server writes the lines, a block of BLOCK_ACTIONS actions at a time
(one statement per block, keyset on id, in one REPEATABLE READ snapshot per month), and
Python only compresses and hashes each block as it comes: no Python code per action.
A thread fetches the next block while the last one is compressed.
(COPY TO STDOUT would hand psycopg one message per row, which is a Python loop per row.)
The block's counts come with it, so the file's counts are checked against the month's
as the database holds them, in the same snapshot.

Any role granted audit_reader may archive: it reads the log, its chunks and the schema's
revision, and pg_control_system() (public by default; the manifest's system_identifier
is null where it was revoked).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from audit_capture.archive import manifest as manifests
from audit_capture.archive import source
from audit_capture.archive.errors import ArchiveError
from audit_capture.archive.month import Month
from audit_capture.database import one_value

BLOCK_ACTIONS = 2_000
COMPRESS_LEVEL = 6
LOCK_NAME = ".audit_log_archive.lock"

# One block of lines: the actions after id %(after)s, each with its chunks (the month's,
# or the legacy '-infinity' ones), as one bytea; and its counts.
BLOCK = """
select convert_to(string_agg(block.line, E'\\n' order by block.id) || E'\\n', 'UTF8'),
       count(*), max(block.id), coalesce(sum(block.chunks), 0)::bigint,
       coalesce(sum(block.items), 0)::bigint
from (
  select l.id,
         left(row_to_json(l)::text, -1)
           || ',"item_chunks":' || coalesce(ch.chunks, '[]') || '}' as line,
         ch.n as chunks, coalesce(ch.items, 0) as items
  from audit.action_log l
  cross join lateral (
    -- not json_agg(): it puts a line break between elements
    select '[' || string_agg(row_to_json(c)::text, ',' order by c.first_item) || ']'
             as chunks, count(*) as n,
           sum(c.item_count) as items
    from audit.action_item_chunk c
    where c.action_id = l.id and c.occurred_at in (l.occurred_at, '-infinity')
  ) ch
  where l.occurred_at >= %(start)s and l.occurred_at < %(end)s and l.id > %(after)s
  order by l.id
  limit %(limit)s
) block
"""


@dataclass(frozen=True)
class MonthOutcome:
    """What the run did with one month: ``written`` or ``skipped`` (archived already,
    unchanged), and its manifest."""

    month: Month
    status: str
    manifest: dict[str, Any]


Say = Callable[[str], None]


def archive(
    conn: psycopg.Connection,
    folder: Path | str,
    before: Month | str,
    *,
    say: Say = lambda line: None,
    block_actions: int = BLOCK_ACTIONS,
) -> list[MonthOutcome]:
    """Archive every month before ``before`` that holds actions into ``folder``.

    Refuses (ArchiveError, nothing written) a ``before`` later than the current month,
    a folder it cannot write, a folder another run is writing; refuses a month archived
    already whose counts changed since, or whose manifest comes from another database.
    Months archived already and unchanged are skipped. ``conn`` may be in any state;
    each month is read in its own transaction, which is ended."""
    before = before if isinstance(before, Month) else Month.parse(before, option="--before")
    folder = Path(folder)
    conn.rollback()
    _check_installed(conn)
    current = source.current_month(conn)
    if before > current:
        raise ArchiveError(
            f"--before {before} takes in {current}, the current month (UTC), which is"
            f" still open: archive only closed months, --before {current} at the latest"
        )
    conn.rollback()
    with _locked_folder(folder):
        months = source.months_with_actions(conn, before)
        identity = source.source_identity(conn)
        conn.rollback()
        if not months:
            say(f"no action before {before}: nothing to archive")
            return []
        return [
            _archive_month(conn, folder, month, identity, say, block_actions) for month in months
        ]


def _check_installed(conn: psycopg.Connection) -> None:
    if one_value(conn, "select to_regclass('audit.action_log') is null"):
        raise ArchiveError("the audit schema is not installed in this database")
    chunk_time = one_value(
        conn,
        "select exists (select from pg_catalog.pg_attribute where attrelid ="
        " 'audit.action_item_chunk'::regclass and attname = 'occurred_at' and not attisdropped)",
    )
    if not chunk_time:
        from audit_capture.migrate import current_on

        raise ArchiveError(
            f"the audit schema is at revision {current_on(conn)}, before the log was"
            " partitioned by month: run audit-capture migrate upgrade first"
        )


@contextmanager
def _locked_folder(folder: Path) -> Iterator[None]:
    """Create ``folder`` if needed and hold its lock file for the run: a second run on
    the same folder stops at once rather than writing the same partial files."""
    try:
        folder.mkdir(mode=manifests.FOLDER_MODE, parents=True, exist_ok=True)
        # never through a link: O_CREAT would create the link's target
        lock = os.open(
            folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, manifests.FILE_MODE
        )
    except OSError as exc:
        raise ArchiveError(
            f"cannot write to the archive folder {folder}: {exc.strerror or exc}"
        ) from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArchiveError(
                f"another archive run is writing to {folder} (it holds {folder / LOCK_NAME})"
            ) from None
        yield
    finally:
        os.close(lock)


def _archive_month(
    conn: psycopg.Connection,
    folder: Path,
    month: Month,
    identity: dict[str, Any],
    say: Say,
    block_actions: int,
) -> MonthOutcome:
    manifest_path = folder / manifests.manifest_name(month)
    if manifest_path.exists():
        return _archived_already(conn, folder, month, manifest_path, identity, say)
    started = time.perf_counter()
    data_path = folder / manifests.data_name(month)
    partial = manifests.partial_path(data_path)
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        conn.execute("select set_config('TimeZone', 'UTC', true)")
        counts = source.live_counts(conn, month)
        try:
            with manifests.create_new(partial) as raw:
                written = _write_lines(conn, raw, month, block_actions)
                raw.flush()
                os.fsync(raw.fileno())
        except OSError as exc:
            raise ArchiveError(f"cannot write {partial}: {exc.strerror or exc}") from None
        action_columns = source.columns(conn, "audit.action_log")
        chunk_columns = source.columns(conn, "audit.action_item_chunk")
        # the seal chain's head in the same snapshot: kept with the archive, outside the
        # database, for `audit-capture verify --expect MANIFEST`
        chain_head = source.chain_head(conn)
    mismatch = [
        f"{name} {getattr(written, name):,} written against {getattr(counts, name):,}"
        for name in ("actions", "chunks", "items")
        if getattr(written, name) != getattr(counts, name)
    ]
    if mismatch:  # e.g. chunks of the month whose action is not in it
        raise ArchiveError(
            f"{month}: the file does not hold the month as the database does"
            f" ({'; '.join(mismatch)}): {partial} left for inspection, no manifest written"
        )
    os.replace(partial, data_path)
    manifests.sync_folder(folder)
    manifest = {
        "format": manifests.FORMAT,
        "format_version": manifests.FORMAT_VERSION,
        "month": str(month),
        "from_at": month.start.isoformat(),
        "to_at": month.end.isoformat(),
        "file": data_path.name,
        "bytes": written.bytes,
        "sha256": written.sha256,
        "actions": counts.actions,
        "chunks": counts.chunks,
        "items": counts.items,
        "first_id": counts.first_id,
        "last_id": counts.last_id,
        "first_occurred_at": _iso(counts.first_occurred_at),
        "last_occurred_at": _iso(counts.last_occurred_at),
        "columns": {
            "action_log": dict(action_columns),
            "action_item_chunk": dict(chunk_columns),
        },
        "written_at": datetime.now(UTC).isoformat(),
        "written_by": _writer(),
        "source": identity,
        "chain_head": chain_head,
    }
    manifests.write_atomic(manifest_path, manifests.dumps(manifest))
    seconds = time.perf_counter() - started
    say(
        f"{month}: {counts.actions:,} actions, {counts.chunks:,} chunks, {counts.items:,} items"
        f" -> {data_path} ({written.bytes / 1e6:,.1f} MB, {seconds:.1f} s)"
    )
    return MonthOutcome(month, "written", manifest)


def _archived_already(
    conn: psycopg.Connection,
    folder: Path,
    month: Month,
    manifest_path: Path,
    identity: dict[str, Any],
    say: Say,
) -> MonthOutcome:
    """A month with a manifest: skipped when the database still holds what it says;
    refused (the old files kept) when it changed or comes from another database."""
    manifest = manifests.read(manifest_path)
    theirs = manifest["source"]
    if (theirs.get("system_identifier"), theirs.get("database")) != (
        identity["system_identifier"],
        identity["database"],
    ):
        raise ArchiveError(
            f"{manifest_path} is the archive of another database ({theirs.get('database')!r},"
            f" system {theirs.get('system_identifier')}): archive to another folder"
        )
    data_path = folder / manifest["file"]
    if not data_path.is_file() or data_path.stat().st_size != manifest["bytes"]:
        raise ArchiveError(
            f"{data_path} is missing or not the size its manifest says"
            f" ({manifest['bytes']:,} bytes): run audit-capture archive verify {folder}"
        )
    with conn.transaction():
        counts = source.live_counts(conn, month)
    differences = counts.differences(archived_counts(manifest))
    if differences:
        raise ArchiveError(
            f"{month} changed since it was archived ({manifest['written_at']}):"
            f" {'; '.join(differences)} (database against manifest); move"
            f" {manifests.PREFIX}{month}.* out of {folder} to archive the month as it is now"
        )
    say(f"{month}: archived already, unchanged ({counts.actions:,} actions): skipped")
    return MonthOutcome(month, "skipped", manifest)


def archived_counts(manifest: dict[str, Any]) -> source.MonthCounts:
    """The counts a manifest records, comparable with ``source.live_counts``."""
    return source.MonthCounts(
        actions=manifest["actions"],
        chunks=manifest["chunks"],
        items=manifest["items"],
        first_id=manifest["first_id"],
        last_id=manifest["last_id"],
        first_occurred_at=None,
        last_occurred_at=None,
    )


@dataclass
class _Written:
    actions: int = 0
    chunks: int = 0
    items: int = 0
    bytes: int = 0
    sha256: str = ""


class _HashingWriter:
    """A write-only file that hashes and counts the bytes passed on to ``raw``."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.sha.update(data)
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def _write_lines(conn: psycopg.Connection, raw: Any, month: Month, limit: int) -> _Written:
    written = _Written()
    hashing = _HashingWriter(raw)
    # mtime 0 and no file name in the header: the same month gives the same bytes
    with gzip.GzipFile(
        filename="", fileobj=hashing, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0
    ) as out:
        for lines, actions, chunks, items in _prefetched(_blocks(conn, month, limit)):
            out.write(lines)
            written.actions += actions
            written.chunks += chunks
            written.items += items
    written.bytes = hashing.bytes
    written.sha256 = hashing.sha.hexdigest()
    return written


def _blocks(conn: psycopg.Connection, month: Month, limit: int) -> Iterator[tuple]:
    """The month's blocks of lines, in id order: (lines, actions, chunks, items)."""
    after = 0
    while True:
        params = {**source.bounds(month), "after": after, "limit": limit}
        row = conn.execute(BLOCK, params, binary=True).fetchone()
        assert row is not None
        lines, actions, last_id, chunks, items = row
        if not actions:
            return
        yield lines, actions, chunks, items
        if actions < limit:
            return
        after = last_id


T = TypeVar("T")


def _prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a thread of their own up to ``depth`` ahead: the server
    builds the next block while this thread compresses the last one (zlib lets go of
    the GIL). A month of 1M actions on a busy 2-core machine: 29-31 s against 34-53 s
    one after the other (indicative)."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put("error", exc)

    producer = threading.Thread(target=produce, name="archive-blocks", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()  # the statement it runs ends first: the connection is free after


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _writer() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"audit-capture {version('audit-capture')}"
    except PackageNotFoundError:
        return "audit-capture"
