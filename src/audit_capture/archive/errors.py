"""The archive's one error: its message is the one line the command prints."""

from __future__ import annotations

from audit_capture.errors import AuditCaptureError


class ArchiveError(AuditCaptureError):
    """An archive that cannot be written, verified or loaded; the message names the
    file, month or value and the reason."""
