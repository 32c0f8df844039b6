"""audit_capture: an action-level audit log kept by PostgreSQL itself.

Triggers installed through Alembic log every change to tracked tables into
``audit.action_log``; the application states who acts and through what with
transaction-local session variables, which these helpers set.
"""

from audit_capture.context import apply_context, batch, context, importing, set_context
from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.errors import AuditCaptureError, InvalidContextValue, NoTransaction
from audit_capture.events import record_action

__version__ = "0.1.0"

__all__ = [
    "ActionType",
    "ActorType",
    "apply_context",
    "AuditCaptureError",
    "InvalidContextValue",
    "NoTransaction",
    "Source",
    "batch",
    "context",
    "importing",
    "record_action",
    "set_context",
]
