"""The closed vocabularies of the log, as typed enums.

Each list is written once in SQL (``audit.action_types()``, ``audit.actor_types()``,
``audit.sources()``, which the log's CHECK domains use); the tests compare these enums
with those functions and with the constraints, so the two cannot drift apart.
"""

from enum import StrEnum


class ActionType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    STATUS_CHANGE = "status_change"
    IMPORT = "import"
    LOGIN = "login"
    LOGOUT = "logout"
    EXPORT = "export"
    SEND = "send"

    @property
    def label(self) -> str:
        """Display name: "Status Change"."""
        return self.value.replace("_", " ").title()


class ActorType(StrEnum):
    ADMIN = "admin"
    CLIENT = "client"
    SYSTEM = "system"

    @property
    def label(self) -> str:
        return self.value.title()


class Source(StrEnum):
    WEB = "web"
    API = "api"
    AI = "ai"
    MOBILE = "mobile"

    @property
    def label(self) -> str:
        return _SOURCE_LABELS[self]


_SOURCE_LABELS = {
    Source.WEB: "Web",
    Source.API: "API",
    Source.AI: "AI",
    Source.MOBILE: "Mobile App",
}


def coerce(enum: type[StrEnum], variable: str, value: object) -> str | None:
    """``value`` as a member of ``enum`` (its string), or an InvalidContextValue.

    None stays None (unset). Accepts a member or its exact string value.
    """
    from audit_capture.errors import InvalidContextValue

    if value is None:
        return None
    if isinstance(value, str):  # a member is one too
        try:
            return enum(value).value
        except ValueError:
            pass
    raise InvalidContextValue(variable, value, [m.value for m in enum])
