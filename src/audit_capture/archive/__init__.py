"""The archive of the log's months (issue 13): one gzip NDJSON file and a manifest per
month, verified against the manifest (and the database), loaded back for an
investigation.

    from audit_capture.archive import archive, verify_dir, verify_month, load
    archive(conn, "/srv/audit-archive", "2025-01")     # every closed month before 2025-01
    verify_dir("/srv/audit-archive")                    # [MonthVerification, ...]
    verify_month("/srv/audit-archive", "2024-11", conn) # retention's --require-archive
    load(conn, "/srv/audit-archive/audit_log_2024-11.ndjson.gz", schema="audit_archive")

manifest.py describes the files; writer.py, verify.py and load.py the three commands.
"""

from __future__ import annotations

from audit_capture.archive.errors import ArchiveError
from audit_capture.archive.load import DEFAULT_SCHEMA, LoadOutcome, load
from audit_capture.archive.month import Month
from audit_capture.archive.verify import MonthVerification, verify_dir, verify_month
from audit_capture.archive.writer import MonthOutcome, archive

__all__ = [
    "DEFAULT_SCHEMA",
    "ArchiveError",
    "LoadOutcome",
    "Month",
    "MonthOutcome",
    "MonthVerification",
    "archive",
    "load",
    "verify_dir",
    "verify_month",
]
