"""Whether the connected role may track or untrack tables in this database.

Asked before ``audit.track()`` or ``audit.untrack()`` runs, by the Alembic operations
and by the CLI, so that both can say what to do instead of relaying the server's
``schema "audit" does not exist`` or ``permission denied for function track``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: One row: installed (the registry and audit.track exist), may track, may untrack,
#: the role, the role quoted for a GRANT. No parameters (psycopg and SQLAlchemy alike).
ACCESS_SQL = """
select to_regclass('audit.tracked_table') is not null
         and bool_or(has_function_privilege(p.oid, 'execute'))
               filter (where p.proname = 'track') is not null,
       coalesce(bool_or(has_function_privilege(p.oid, 'execute'))
                  filter (where p.proname = 'track'), false),
       coalesce(bool_or(has_function_privilege(p.oid, 'execute'))
                  filter (where p.proname = 'untrack'), false),
       current_user, quote_ident(current_user)
from pg_catalog.pg_proc p
where p.pronamespace = to_regnamespace('audit') and p.proname in ('track', 'untrack')
"""

NOT_INSTALLED = "audit_capture is not installed in this database"


@dataclass(frozen=True)
class TrackingAccess:
    installed: bool
    may_track: bool
    may_untrack: bool
    role: str
    quoted_role: str

    @classmethod
    def from_row(cls, row: Sequence) -> TrackingAccess:
        installed, may_track, may_untrack, role, quoted_role = row
        return cls(bool(installed), may_track, may_untrack, role, quoted_role)

    def may(self, verb: str) -> bool:
        """Whether the role may ``verb`` ("track" or "untrack") tables."""
        return self.may_track if verb == "track" else self.may_untrack

    def refusal(self, verb: str, doing: str = "") -> str:
        """ "role app may not track tables: a superuser runs `grant audit_admin to app;`"."""
        return (
            f"role {self.role} may not {verb} tables{doing}: a superuser runs "
            f"`grant audit_admin to {self.quoted_role};`"
        )
