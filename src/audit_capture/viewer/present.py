"""How log values look on the pages: labels, badges, dates, cell values.

Only words and CSS class names come from here; every value from the log still goes
through Jinja's autoescaping in the templates, and every text a user, an application or
a table owner wrote goes through ``user_text`` (or ``visible``/``isolated`` where no
markup may go): isolated in ``<bdi>``, so right-to-left text or a stray direction
mark cannot reorder what surrounds it, and with its invisible control characters
(bidirectional overrides, isolates and marks, C0/C1 controls, zero-width spaces) shown
as a visible ``⟨U+202E⟩``, so "Alice" with a hidden override cannot pose as another name.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.viewer.counts import Count
from audit_capture.viewer.filters import DATABASE_SOURCE
from audit_capture.viewer.rows import REDACTED


def _label(enum, value: str | None, default: str = "") -> str:
    if value is None:
        return default
    try:
        return enum(value).label
    except ValueError:
        return str(value)


def source_label(source: str | None) -> str:
    """ "Web", "API", "AI", "Mobile App"; "Database" where no source was set."""
    return _label(Source, source, default="Database")


def source_key(source: str | None) -> str:
    """A CSS-safe key for the source badge."""
    return (
        source if source is not None and source in Source.__members__.values() else DATABASE_SOURCE
    )


def actor_type_label(actor_type: str | None) -> str:
    return _label(ActorType, actor_type, default="Unknown")


def actor_type_key(actor_type: str | None) -> str:
    return (
        actor_type
        if actor_type is not None and actor_type in ActorType.__members__.values()
        else "unknown"
    )


def action_type_label(action_type: str | None) -> str:
    return _label(ActionType, action_type)


def action_type_key(action_type: str | None) -> str:
    return (
        action_type
        if action_type is not None and action_type in ActionType.__members__.values()
        else "other"
    )


def resource_type_label(resource_type: str | None) -> str:
    """ "case_task" -> "Case task"."""
    if not resource_type:
        return ""
    words = resource_type.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def local(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    return moment.astimezone(zone) if moment is not None else None


def date_text(moment: datetime | None, zone: ZoneInfo) -> str:
    """ "26 Nov 2026" in the viewer's zone."""
    moment = local(moment, zone)
    return f"{moment.day} {moment:%b %Y}" if moment else ""


def time_text(moment: datetime | None, zone: ZoneInfo) -> str:
    """ "14:05:09" in the viewer's zone."""
    moment = local(moment, zone)
    return f"{moment:%H:%M:%S}" if moment else ""


def datetime_text(moment: datetime | None, zone: ZoneInfo) -> str:
    """ "26 Nov 2026, 14:05:09 CET"."""
    moment = local(moment, zone)
    return f"{moment.day} {moment:%b %Y, %H:%M:%S %Z}" if moment else ""


def iso(moment: datetime | None) -> str:
    """The exact instant, ISO 8601 with its offset (for ``<time datetime>`` and hovers)."""
    return moment.isoformat() if moment is not None else ""


# A timestamp with time zone as PostgreSQL writes it in JSON: 2026-11-26T04:28:56.02965+00:00
_INSTANT = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?[+-]\d{2}:\d{2}(?::\d{2})?"
)


def instant(value: Any) -> datetime | None:
    """The moment a logged value names, when it is a timestamp with its offset (a
    ``timestamptz`` column); None for anything else, dates and zoneless times included
    (they name no single instant)."""
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # 2026-02-30...: text that only looks like a timestamp
        return None


def value_kind(value: Any) -> str:
    """How a cell value is drawn: null, redacted, bool, number, json, instant or text."""
    if value is None:
        return "null"
    if value == REDACTED:
        return "redacted"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (dict, list)):
        return "json"
    if instant(value) is not None:
        return "instant"
    return "text"


def value_text(value: Any) -> str:
    """A cell value as text (JSON for objects and arrays); never called for redacted values."""
    kind = value_kind(value)
    if kind == "null":
        return ""
    if kind == "bool":
        return "true" if value else "false"
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def pretty_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


# Characters that change how text around them is shown, or are not shown at all: the
# bidirectional embeddings, overrides, isolates and marks (U+202A-U+202E,
# U+2066-U+2069, U+200E, U+200F, U+061C), C0 and C1 controls but tab, line feed and
# carriage return, and the zero-width space, word joiner and byte order mark. (The
# zero-width joiners U+200C/U+200D stay: scripts and emoji need them.)
HIDDEN_CHARACTERS = re.compile(
    "[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff]"
)


def _marker(char: str) -> str:
    return f"⟨U+{ord(char):04X}⟩"


def _character_name(char: str) -> str:
    return unicodedata.name(char, "control character")


def visible(value: Any) -> str:
    """``value`` as text with each hidden character shown as ``⟨U+202E⟩`` (for places
    that take no markup: attributes, the page title)."""
    if value is None:
        return ""
    return HIDDEN_CHARACTERS.sub(lambda m: _marker(m.group()), str(value))


def isolated(value: Any) -> str:
    """``visible(value)`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE: the
    plain-text form of ``<bdi>``, for a select's options, which take no markup."""
    return "\u2068" + visible(value) + "\u2069"


def user_text(value: Any) -> Markup:
    """``value`` escaped, isolated in ``<bdi>``, each hidden character shown as a marked
    ``⟨U+202E⟩`` naming it on hover."""
    if value is None:
        return Markup("")
    text = str(value)
    parts: list[Markup] = []
    last = 0
    for match in HIDDEN_CHARACTERS.finditer(text):
        char = match.group()
        parts.append(escape(text[last : match.start()]))
        parts.append(
            Markup('<span class="ctl" title="{}">{}</span>').format(
                _character_name(char), _marker(char)
            )
        )
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("<bdi>") + Markup("").join(parts) + Markup("</bdi>")


def filter_phrase(active) -> Markup:
    """An active filter's part of the sentence ("Actor is Alice"), its value isolated."""
    phrase, shown = active.phrase, active.display
    # "Actor is Admin (Admin)": the value follows "<label> is ", whatever comes after it
    lead = f"{active.label} is "
    if shown and phrase.startswith(lead + shown):
        at = len(lead)
    else:
        at = phrase.rfind(shown) if shown else -1
    if at < 0:
        return escape(visible(phrase))
    return escape(phrase[:at]) + user_text(shown) + escape(phrase[at + len(shown) :])


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def about(n: float) -> str:
    """An estimate for people, rounded to two significant figures: "about 2,100
    actions", "about 45,000 actions", "about 1.2 million actions", "about 12 million
    actions"."""
    digits = len(str(int(n))) - 2
    rounded = int(round(n, -digits)) if digits > 0 else int(n)
    for size, word in ((1_000_000_000, "billion"), (1_000_000, "million")):
        if rounded >= size:
            return f"about {rounded / size:g} {word} actions"
    return f"about {rounded:,} actions"


def count_text(count: Count) -> str:
    """A page's count in words (the rule: ``counts``): "No actions", "1 action", "679
    actions" (exact), "about 2,100 actions" (the planner's estimate, above 1,000),
    "more than 1,000 actions" (counted that far, the estimate was lower), "at least 51
    actions" (counting was too slow), "Many actions" (too slow, and no row seen)."""
    n = int(count.value)
    if count.how == "estimate":
        return about(count.value)
    if count.how == "more_than":
        return f"more than {plural(n, 'action')}"
    if count.how == "at_least":
        return f"at least {plural(n, 'action')}" if n else "Many actions"
    return "No actions" if n == 0 else plural(n, "action")


HELPERS = {
    "source_label": source_label,
    "source_key": source_key,
    "actor_type_label": actor_type_label,
    "actor_type_key": actor_type_key,
    "action_type_label": action_type_label,
    "action_type_key": action_type_key,
    "resource_type_label": resource_type_label,
    "date_text": date_text,
    "time_text": time_text,
    "datetime_text": datetime_text,
    "iso": iso,
    "instant": instant,
    "value_kind": value_kind,
    "value_text": value_text,
    "pretty_json": pretty_json,
    "plural": plural,
    "count_text": count_text,
    "user_text": user_text,
    "visible": visible,
    "isolated": isolated,
    "filter_phrase": filter_phrase,
}
