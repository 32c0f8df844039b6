"""Where the package's SQL and migration files live.

An installed wheel carries copies of the top-level ``triggers/``, ``migrations/`` and
``viewer/`` folders inside the package (``audit_capture/_triggers``,
``audit_capture/_migrations``, ``audit_capture/_viewer``). An editable or source checkout
has no such copies, so we fall back to the folders at the root of the source tree.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parents[1]


def _resource_dir(packaged_name: str, source_name: str) -> Path:
    packaged = PACKAGE_DIR / packaged_name
    if packaged.is_dir():
        return packaged
    source = SOURCE_ROOT / source_name
    if source.is_dir():
        return source
    raise FileNotFoundError(
        f"audit_capture resource folder {source_name!r} not found: "
        f"looked in {packaged} and {source}"
    )


def triggers_dir() -> Path:
    """The folder holding the current SQL of the audit schema (``triggers/*.sql``)."""
    return _resource_dir("_triggers", "triggers")


def migrations_dir() -> Path:
    """The package's own Alembic script folder (``migrations/``)."""
    return _resource_dir("_migrations", "migrations")


def viewer_dir() -> Path:
    """The viewer's templates and static files (``viewer/templates``, ``viewer/static``)."""
    return _resource_dir("_viewer", "viewer")
