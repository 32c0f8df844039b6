"""The exceptions of audit_capture. Each message names the bad value and the rule."""


class AuditCaptureError(Exception):
    """Base class of audit_capture's own errors."""


class InvalidContextValue(AuditCaptureError, ValueError):
    """A context value outside its vocabulary, e.g. ``source="webb"``."""

    def __init__(self, variable: str, value: object, allowed: list[str]):
        self.variable = variable
        self.value = value
        self.allowed = list(allowed)
        super().__init__(
            f"{variable} is {value!r}; expected one of {', '.join(self.allowed)}"
        )


class NoTransaction(AuditCaptureError):
    """A transaction-local setting was asked for outside a transaction."""
