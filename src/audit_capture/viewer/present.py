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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.viewer.counts import Count
from audit_capture.viewer.filters import DATABASE_SOURCE
from audit_capture.viewer.resource_history import has_history
from audit_capture.viewer.rows import REDACTED, LogRow


def _labels(enum) -> dict[str, str]:
    return {member.value: member.label for member in enum}


# looked up for every row of a page: a dict, not the enum's lookup and its ValueError
_ACTION_TYPE_LABELS = _labels(ActionType)
_ACTOR_TYPE_LABELS = _labels(ActorType)
_SOURCE_LABELS = _labels(Source)


def _label(labels: dict[str, str], value: str | None, default: str = "") -> str:
    if value is None:
        return default
    label = labels.get(value)
    return label if label is not None else str(value)


def source_label(source: str | None) -> str:
    """ "Web", "API", "AI", "Mobile App"; "Database" where no source was set."""
    return _label(_SOURCE_LABELS, source, default="Database")


def source_key(source: str | None) -> str:
    """A CSS-safe key for the source badge."""
    return source if source in _SOURCE_LABELS else DATABASE_SOURCE


def actor_type_label(actor_type: str | None) -> str:
    return _label(_ACTOR_TYPE_LABELS, actor_type, default="Unknown")


def actor_type_key(actor_type: str | None) -> str:
    return actor_type if actor_type in _ACTOR_TYPE_LABELS else "unknown"


def action_type_label(action_type: str | None) -> str:
    return _label(_ACTION_TYPE_LABELS, action_type)


def action_type_key(action_type: str | None) -> str:
    return action_type if action_type in _ACTION_TYPE_LABELS else "other"


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
    if HIDDEN_CHARACTERS.search(text) is None:  # most text: escaped once, no parts
        return Markup(f"<bdi>{escape(text)}</bdi>")
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
    """An active filter's part of the sentence ("Actor is Alice"), its value isolated;
    each value of a filter of several ("Source is Web or API", "Actor is Alice Admin
    (Admin) or postgres (Database role)")."""
    if active.several:
        notes = active.notes or ("",) * len(active.displays)
        return escape(f"{active.label} is ") + Markup(" or ").join(
            user_text(shown) + escape(note)
            for shown, note in zip(active.displays, notes, strict=True)
        )
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


@dataclass(slots=True)
class ListRow:
    """A line of the Single Actions table as the page shows it: every text ready, so
    the template does no per-row work but output. ``Markup`` fields went through
    ``user_text`` (escaped, isolated); ``str`` fields are escaped by the template."""

    id: int
    type_key: str  # CSS class of the action type's dot
    type_label: str  # "Status Change"
    action: Markup  # the action's label
    actor: Markup  # the actor's name, else id, else "Unknown"
    actor_key: str  # CSS class and icon of the actor type's badge
    actor_label: str  # "Admin"
    iso: str  # the exact instant (<time datetime>, its hover)
    date: str  # "26 Nov 2026", in the viewer's zone
    time: str  # "14:05:09", in the viewer's zone
    source_key: str  # CSS class and icon of the source's badge
    source_label: str  # "Mobile App", "Database"
    resource: Markup | str  # the resource link's text: its label, "60 rows", "View details"
    resource_detail: Markup  # "Clients · #12 · 60 rows", the id linking to its history


def list_rows(
    rows: Iterable[LogRow],
    zone: ZoneInfo,
    resource_labels: Mapping[str, str],
    history_url: str | None = None,
) -> list[ListRow]:
    """The Single Actions table's lines (``ListRow``) for ``rows``, their times in
    ``zone``, each resource type named by ``resource_labels`` (else by itself).
    ``history_url``: the history page's URL but the type and id (``/history/``): a
    row's ``#12`` links to ``/history/client?id=12``.

    The same text as the helpers above give one value at a time (``user_text``,
    ``date_text``, ``action_type_label``...), each computed once per distinct value of
    the page: a page repeats a few labels, names, resource types and days."""
    texts: dict[str, Markup] = {}
    days: dict[date, str] = {}
    kinds: dict[str, Markup] = {}

    def text(value: str) -> Markup:
        shown = texts.get(value)
        if shown is None:
            shown = texts[value] = user_text(value)
        return shown

    lines = []
    for row in rows:
        moment = row.occurred_at.astimezone(zone)
        day = days.get(moment.date())
        if day is None:
            day = days[moment.date()] = date_text(moment, zone)
        many = row.row_count > 1
        # "Clients · #12 · 60 rows": built as text from escaped parts (user_text's
        # markup, the separators, a number), marked safe once
        detail: str = ""
        if row.resource_type:
            detail = kinds.get(row.resource_type) or kinds.setdefault(
                row.resource_type,
                user_text(resource_labels.get(row.resource_type, row.resource_type)),
            )
        if row.resource_id:
            shown_id = f"#{user_text(row.resource_id)}"
            if history_url is not None and has_history(row.resource_type, row.resource_id):
                url = escape(
                    f"{history_url}{row.resource_type}?id={quote(row.resource_id, safe='')}"
                )
                shown_id = f'<a class="history-link" href="{url}" title="History">{shown_id}</a>'
            detail = f"{detail} · {shown_id}"
        if many and row.resource_label:
            detail = f"{detail} · {escape(plural(row.row_count, 'row'))}"
        lines.append(
            ListRow(
                id=row.id,
                type_key=action_type_key(row.action_type),
                type_label=action_type_label(row.action_type),
                action=text(row.action),
                actor=text(row.actor_name or row.actor_id or "Unknown"),
                actor_key=actor_type_key(row.actor_type),
                actor_label=actor_type_label(row.actor_type),
                iso=row.occurred_at.isoformat(),
                date=day,
                time=f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}",
                source_key=source_key(row.source),
                source_label=source_label(row.source),
                resource=text(row.resource_label)
                if row.resource_label
                else plural(row.row_count, "row")
                if many
                else "View details",
                resource_detail=Markup(detail),
            )
        )
    return lines


def row_icons(rows: Iterable[ListRow]) -> list[str]:
    """The icons of the badges of ``rows`` (their keys), each once: the list draws
    them once above its table, and each row's badge refers to its own."""
    return sorted({r.actor_key for r in rows} | {r.source_key for r in rows})


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
    "list_rows": list_rows,
    "row_icons": row_icons,
    "has_history": has_history,
}
