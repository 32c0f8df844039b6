"""The viewer's settings: defaults, a TOML file, environment variables, checks.

A settings file (``audit-capture viewer --config viewer.toml``)::

    secret_key = "..."      # signs the session cookie: `audit-capture viewer new-secret`
    timezone = "Europe/Paris"               # dates shown in this zone (default UTC)
    page_size = 50                          # rows per page, 10..200
    statement_timeout_ms = 5000             # a query running longer is cancelled
    session_idle_minutes = 30               # signed out after this long without a request
    pool_min_size = 1                       # database connections kept open, 0..pool_max_size
    pool_max_size = 4                       # connections at most (pages and exports), 1..100
    options_cache_seconds = 60              # filter choices read again after this, 0..3600

    [users]                                 # name = password HASH, never a password
    alice = "scrypt:32768:8:1$...$..."      # made by `audit-capture viewer hash-password`

Environment variables override the file: ``AUDIT_CAPTURE_VIEWER_SECRET_KEY``,
``AUDIT_CAPTURE_VIEWER_USERS`` (a JSON object ``{"alice": "scrypt:..."}``),
``AUDIT_CAPTURE_VIEWER_TIMEZONE``, ``AUDIT_CAPTURE_VIEWER_PAGE_SIZE``,
``AUDIT_CAPTURE_VIEWER_STATEMENT_TIMEOUT_MS``,
``AUDIT_CAPTURE_VIEWER_SESSION_IDLE_MINUTES``, ``AUDIT_CAPTURE_VIEWER_POOL_MIN_SIZE``,
``AUDIT_CAPTURE_VIEWER_POOL_MAX_SIZE``, ``AUDIT_CAPTURE_VIEWER_OPTIONS_CACHE_SECONDS``.
Keys are case-insensitive (``SECRET_KEY`` or ``secret_key``). A missing or weak secret key
(``secret_key()``), no users, a plain password where a hash belongs, an unknown time zone
or a pool size out of range is a ``ConfigError`` with one readable line.
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "AUDIT_CAPTURE_VIEWER_"

DEFAULTS: dict[str, Any] = {
    "TIMEZONE": "UTC",
    "PAGE_SIZE": 50,
    "STATEMENT_TIMEOUT_MS": 5000,
    "USERS": {},
    # failed sign-ins allowed per client address within the window, then 429
    "SIGNIN_MAX_FAILURES": 5,
    "SIGNIN_WINDOW_SECONDS": 900,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,  # set true behind HTTPS
    "SESSION_COOKIE_NAME": "audit_viewer_session",
    # a session ends after this long without a request, and 8 hours after sign-in
    "SESSION_IDLE_MINUTES": 30,
    "PERMANENT_SESSION_LIFETIME": timedelta(hours=8),
    # the database connections of the viewer's pool: kept open, and at most (waitress
    # serves with a few threads; an export holds one connection while it streams)
    "POOL_MIN_SIZE": 1,
    "POOL_MAX_SIZE": 4,
    # the filter controls' choices (actors, resources...) are read again after this long
    "OPTIONS_CACHE_SECONDS": 60,
}

# settings read from the environment, and how to read each
ENV_SETTINGS: dict[str, Callable[[str], Any]] = {
    "SECRET_KEY": str,
    "USERS": json.loads,
    "TIMEZONE": str,
    "PAGE_SIZE": int,
    "STATEMENT_TIMEOUT_MS": int,
    "DATABASE_URL": str,
    "SESSION_IDLE_MINUTES": int,
    "SESSION_COOKIE_SECURE": lambda value: value.strip().lower() in ("1", "true", "yes", "on"),
    "POOL_MIN_SIZE": int,
    "POOL_MAX_SIZE": int,
    "OPTIONS_CACHE_SECONDS": int,
}

PAGE_SIZE_RANGE = (10, 200)
POOL_MAX_SIZE_RANGE = (1, 100)
OPTIONS_CACHE_SECONDS_RANGE = (0, 3600)

# Whoever knows the secret key can sign a session cookie naming any user, and is signed
# in without a password: it must be as hard to guess as 32 random bytes. A key is
# refused when it is shorter than SECRET_MIN_LENGTH characters, holds whitespace (a
# sentence is not random), has fewer than SECRET_MIN_DISTINCT different characters
# ("x" * 40), holds "<" or ">" (a placeholder left in, like the README's) or is a known
# sample. secrets.token_urlsafe(48) (what `audit-capture viewer new-secret` prints),
# secrets.token_hex(32) and `openssl rand -base64 32` all pass.
SECRET_MIN_LENGTH = 32
SECRET_MIN_DISTINCT = 12
KNOWN_SAMPLE_SECRETS = frozenset(
    {
        "a long random string",
        "change me",
        "changeme",
        "secret",
        "your-secret-key",
        "your secret key",
        "dev",
        "development",
        "test secret key, long enough to sign sessions",
    }
)
MAKE_A_SECRET = (
    "make one with `audit-capture viewer new-secret` (or python -c "
    '"import secrets; print(secrets.token_urlsafe(48))")'
)
HASH_METHODS = ("scrypt:", "pbkdf2:")


class ConfigError(Exception):
    """The viewer cannot start with these settings; ``str(exc)`` says why in one line."""


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a TOML file, keys upper-cased."""
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"settings file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {str(path)!r} is not valid TOML: {exc}") from None
    return {key.upper(): value for key, value in data.items()}


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as ``AUDIT_CAPTURE_VIEWER_*`` environment variables."""
    settings: dict[str, Any] = {}
    for key, parse in ENV_SETTINGS.items():
        name = ENV_PREFIX + key
        if name not in environ:
            continue
        try:
            settings[key] = parse(environ[name])
        except ValueError:
            raise ConfigError(f"{name} is not valid: {environ[name]!r}") from None
    return settings


def load(
    config: Mapping[str, Any] | None = None,
    *,
    path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Defaults, then the file, then the environment, then ``config``; checked."""
    settings = dict(DEFAULTS)
    if path is not None:
        settings.update(read_file(path))
    if environ is not None:
        settings.update(read_env(environ))
    if config:
        settings.update({key.upper(): value for key, value in config.items()})
    return check(settings)


def check(settings: dict[str, Any], *, standalone: bool = True) -> dict[str, Any]:
    """``settings`` with types checked; raises ConfigError naming the first problem."""
    settings["TIMEZONE"] = str(settings.get("TIMEZONE") or "UTC")
    zone(settings["TIMEZONE"])
    settings["PAGE_SIZE"] = page_size(settings.get("PAGE_SIZE"))
    settings["STATEMENT_TIMEOUT_MS"] = statement_timeout(settings.get("STATEMENT_TIMEOUT_MS"))
    settings["POOL_MIN_SIZE"], settings["POOL_MAX_SIZE"] = pool_sizes(
        settings.get("POOL_MIN_SIZE", DEFAULTS["POOL_MIN_SIZE"]),
        settings.get("POOL_MAX_SIZE", DEFAULTS["POOL_MAX_SIZE"]),
    )
    settings["OPTIONS_CACHE_SECONDS"] = options_cache_seconds(
        settings.get("OPTIONS_CACHE_SECONDS", DEFAULTS["OPTIONS_CACHE_SECONDS"])
    )
    if standalone:
        settings["SECRET_KEY"] = secret_key(settings.get("SECRET_KEY"))
        settings["SESSION_IDLE_MINUTES"] = idle_minutes(settings.get("SESSION_IDLE_MINUTES"))
        settings["USERS"] = users(settings.get("USERS"))
    return settings


def new_secret() -> str:
    """A fresh secret key: 48 random bytes, URL-safe base64 (64 characters)."""
    return secrets.token_urlsafe(48)


def secret_key(value: Any) -> str:
    """The secret key, refused when it is missing or could be guessed (see
    SECRET_MIN_LENGTH); the message never repeats the key."""
    where = f"secret_key in the settings file or {ENV_PREFIX}SECRET_KEY"
    if not value:
        raise ConfigError(f"no secret key: set {where}; {MAKE_A_SECRET}")
    if not isinstance(value, str):
        raise ConfigError(f"the secret key must be a string: set {where}; {MAKE_A_SECRET}")
    problem = None
    if value.strip().lower() in KNOWN_SAMPLE_SECRETS or "<" in value or ">" in value:
        problem = "is a sample or a placeholder"
    elif len(value) < SECRET_MIN_LENGTH:
        problem = (
            f"is {len(value)} characters long (at least {SECRET_MIN_LENGTH} random ones needed)"
        )
    elif any(char.isspace() for char in value):
        problem = "holds spaces: words are not random"
    elif len(set(value)) < SECRET_MIN_DISTINCT:
        problem = (
            f"uses only {len(set(value))} different characters "
            f"(at least {SECRET_MIN_DISTINCT} expected of a random key)"
        )
    if problem:
        raise ConfigError(
            f"the secret key ({where}) {problem}; anyone who guesses it can sign "
            f"in as any user: {MAKE_A_SECRET}"
        )
    return value


def idle_minutes(value: Any) -> int:
    """Minutes a signed-in session may go without a request (1 to 480)."""
    try:
        minutes = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"session_idle_minutes {value!r} is not a number of minutes") from None
    if not 1 <= minutes <= 480:
        raise ConfigError(
            f"session_idle_minutes is {minutes}; expected 1 to 480 "
            "(a session ends 8 hours after sign-in anyway)"
        )
    return minutes


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r} (expected a name like UTC or Europe/Paris)"
        ) from None


def page_size(value: Any) -> int:
    low, high = PAGE_SIZE_RANGE
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"page size {value!r} is not a number") from None
    if not low <= size <= high:
        raise ConfigError(f"page size {size} is out of range ({low} to {high})")
    return size


def statement_timeout(value: Any) -> int:
    try:
        milliseconds = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"statement timeout {value!r} is not a number of milliseconds") from None
    if milliseconds <= 0:
        raise ConfigError(f"statement timeout must be positive, got {milliseconds}")
    return milliseconds


def _whole_number(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{name} {value!r} is not a whole number")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} {value!r} is not a whole number") from None


def pool_sizes(min_size: Any, max_size: Any) -> tuple[int, int]:
    """The pool's (pool_min_size, pool_max_size): 1 <= max <= 100, 0 <= min <= max."""
    low, high = POOL_MAX_SIZE_RANGE
    largest = _whole_number("pool_max_size", max_size)
    if not low <= largest <= high:
        raise ConfigError(f"pool_max_size is {largest}; expected {low} to {high} connections")
    smallest = _whole_number("pool_min_size", min_size)
    if not 0 <= smallest <= largest:
        raise ConfigError(
            f"pool_min_size is {smallest}; expected 0 to pool_max_size ({largest}) connections"
        )
    return smallest, largest


def options_cache_seconds(value: Any) -> int:
    """How long the filter options are kept (0: read for every page)."""
    low, high = OPTIONS_CACHE_SECONDS_RANGE
    seconds = _whole_number("options_cache_seconds", value)
    if not low <= seconds <= high:
        raise ConfigError(f"options_cache_seconds is {seconds}; expected {low} to {high}")
    return seconds


def users(value: Any) -> dict[str, str]:
    """The user table ``{name: password hash}``; refuses plain passwords."""
    if not value:
        raise ConfigError(
            "no users: add a [users] table (name = password hash) to the settings file or set "
            f"{ENV_PREFIX}USERS; make a hash with `audit-capture viewer hash-password`"
        )
    if not isinstance(value, Mapping):
        raise ConfigError("users must be a table of name = password hash")
    checked = {}
    for name, password_hash in value.items():
        if (
            not isinstance(password_hash, str)
            or not password_hash.startswith(HASH_METHODS)
            or "$" not in password_hash
        ):
            raise ConfigError(
                f"user {name!r}: the password must be a hash made by "
                "`audit-capture viewer hash-password`, not a plain password"
            )
        checked[str(name)] = password_hash
    return checked


@dataclass(frozen=True)
class ViewerSettings:
    """What one mounted viewer blueprint needs; its before_request puts it on ``flask.g``
    for each request (``db.current_settings()``)."""

    database_url: str | None
    timezone: str = "UTC"
    page_size: int = 50
    statement_timeout_ms: int = 5000
    # application-level connection factory, for hosts that manage their own connections
    connect: Callable[[], Any] | None = None
    pool_min_size: int = 1
    pool_max_size: int = 4
    options_cache_seconds: int = 60

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)
