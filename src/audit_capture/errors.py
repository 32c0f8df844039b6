"""The exceptions of audit_capture. Each message names the bad value and the rule."""

from __future__ import annotations

from collections.abc import Iterable


class AuditCaptureError(Exception):
    """Base class of audit_capture's own errors."""


class InvalidContextValue(AuditCaptureError, ValueError):
    """A context value outside its vocabulary, e.g. ``source="webb"``, or one the log
    cannot hold (too long, a NUL character; also an argument of record_action); the
    message names the variable."""

    def __init__(
        self,
        variable: str,
        value: object,
        allowed: Iterable[str] = (),
        *,
        message: str | None = None,
    ):
        self.variable = variable
        self.value = value
        self.allowed = list(allowed)
        super().__init__(
            message or f"{variable} is {value!r}; expected one of {', '.join(self.allowed)}"
        )


class ContextValueTooLong(InvalidContextValue):
    """A context value longer than its limit (``audit.value_limits()``)."""

    def __init__(self, variable: str, value: str, limit: int):
        self.limit = limit
        super().__init__(
            variable,
            value,
            message=f"{variable} is {len(value):,} characters; at most {limit:,} are allowed",
        )


class NoTransaction(AuditCaptureError):
    """A transaction-local setting was asked for outside a transaction."""
