"""The files of an archived month and its manifest.

A month ``2024-11`` is two files in the archive folder:

* ``audit_log_2024-11.ndjson.gz``: gzip of UTF-8 lines, one action per line, in id
  order: the action's columns as ``row_to_json`` writes them (timestamps in UTC), then
  ``"item_chunks"``: the action's rows of audit.action_item_chunk, each with its
  columns, in item order (``[]`` for most actions). A chunk's ``items`` is the stored
  JSON text, kept as a string so that it comes back byte for byte
  (``jq '.item_chunks[].items | fromjson'`` reads it).
* ``audit_log_2024-11.manifest.json``: what the data file must be: its name, bytes and
  sha256, the counts of actions, chunks and items, the id and occurred_at ranges, the
  columns of both tables, when it was written and from which database.

The manifest is written last: a month without one was not finished (a killed run), and
the next run writes it again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from audit_capture.archive.errors import ArchiveError
from audit_capture.archive.month import Month

FORMAT = "audit_capture archive"
FORMAT_VERSION = 1
PREFIX = "audit_log_"
DATA_SUFFIX = ".ndjson.gz"
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial"

#: what a manifest must hold (format 1)
REQUIRED = (
    "format",
    "format_version",
    "month",
    "file",
    "bytes",
    "sha256",
    "actions",
    "chunks",
    "items",
    "first_id",
    "last_id",
    "first_occurred_at",
    "last_occurred_at",
    "columns",
    "written_at",
    "source",
)


def data_name(month: Month) -> str:
    return f"{PREFIX}{month}{DATA_SUFFIX}"


def manifest_name(month: Month) -> str:
    return f"{PREFIX}{month}{MANIFEST_SUFFIX}"


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is complete (hidden, ``.partial``)."""
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


def month_of_manifest(path: Path) -> Month | None:
    """The month a manifest file's name stands for, or None for another file."""
    name = path.name
    if not (name.startswith(PREFIX) and name.endswith(MANIFEST_SUFFIX)):
        return None
    try:
        return Month.parse(name[len(PREFIX) : -len(MANIFEST_SUFFIX)])
    except ArchiveError:
        return None


def read(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, checked for form (not yet against its data file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{path}: cannot read the manifest ({exc})") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise ArchiveError(f"{path}: the manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path}: not an audit_capture archive manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArchiveError(
            f"{path}: format_version is {version!r}; this audit-capture reads {FORMAT_VERSION}"
        )
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise ArchiveError(f"{path}: the manifest lacks {', '.join(missing)}")
    expected_month = month_of_manifest(path)
    if expected_month is not None and manifest["month"] != str(expected_month):
        raise ArchiveError(
            f"{path}: the manifest is of month {manifest['month']!r},"
            f" its name says {expected_month}"
        )
    return manifest


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden partial file, flush it to disk, then rename it to
    ``path``: a reader never sees a half-written file under the final name."""
    partial = partial_path(path)
    with create_new(partial) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    sync_folder(path.parent)


#: the archive holds the whole log: only its owner reads it (the database grants the log
#: to audit_reader alone); a folder the run creates is the owner's alone too
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def create_new(path: Path) -> BinaryIO:
    """``path`` opened for writing as a new file of mode FILE_MODE: whatever was there
    (a partial file of a killed run, or a symbolic link planted in a shared folder) is
    removed first, never followed."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    return os.fdopen(fd, "wb")


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (its directory entry on disk)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dumps(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
