"""The viewer's filters: URL parameters in, a bound SQL condition and a sentence out.

The URL is the API. A filtered view is a link::

    /?source=api&resource=client&from=2025-01-01&q=alice

``parse_filters(request.args, tz)`` validates every parameter against ONE declarative
list, ``FILTERS``: each entry knows its parameter, its label, how to check a value,
what the value looks like to a person and the SQL it adds. The same entry therefore
produces the WHERE clause (``Filters.where()``), the sentence above the table
(``Filters.sentence()``: "Source is API, Resource is Clients") and the error a bad
value gets (``BadRequest``: "source is 'webb'; expected one of web, api, ai, mobile,
database"). Adding a filter is adding an entry.

SQL is composed only with ``psycopg.sql`` objects and named placeholders; values are
always bound parameters, never text pasted into a statement.

Parameters (all optional):

``action_type``  create, update, delete, status_change, import, login, logout, export, send
``actor``        ``id:<actor_id>``, or ``name:<actor_name>`` for an actor without an id
                 (found by a few letters of a name or id: ``actor_search``; the form's
                 ``_actor`` text field and ``/actors?q=`` use it)
``actor_type``   admin, client, system
``source``       web, api, ai, mobile, database (database: no context was set, source IS NULL)
``resource``     a resource_type (client, campaign, ...)
``from``, ``to`` YYYY-MM-DD, whole days in the viewer's time zone, both inclusive
``q``            1..100 characters: words matched against the action label, the actor
                 name and the resource label (full-text index, ``'simple'``
                 configuration: no stemming, case-insensitive); ``word*`` is a prefix

Several values: ``action_type``, ``actor``, ``actor_type``, ``source`` and ``resource``
(``SEVERAL_PARAMS``) may be repeated, and match any of their values
(``?source=web&source=api``: "Source is Web or API"), at most ``MAX_VALUES`` each
(``ACTOR_MAX_VALUES`` actors). A comma separates nothing: in the closed vocabularies it
makes a bad value (whose message says to repeat the parameter), in an actor it is part
of the id or name, which may hold commas. Every other parameter is given once.

Parameters starting with ``_`` (``_cursor``, ``_dir``, ``_size``, ``_format``) belong to
the page, not to the filter, and are ignored here (``page_size()`` and ``direction()``
check the two that the query layer takes). Any other parameter is a BadRequest: a typo
in a shared link must not silently show the whole log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from psycopg import sql

from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.viewer.errors import BadRequest

# -- the text search document ----------------------------------------------------------

#: The searched text of one action, exactly as the full-text index of
#: triggers/13_viewer_indexes.sql is defined: the planner uses the index only when the
#: query's expression is the index's expression, character for character.
TEXT_DOCUMENT = sql.SQL(
    "to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' '"
    " || coalesce(resource_label, ''))"
)

#: The same text in lower case, unparsed: a cheap sieve for the walk of the query layer.
#: Every lexeme that ``to_tsvector('simple', ...)`` makes is a piece of the text
#: lower-cased the same way (the parser cuts words out of the text; the 'simple'
#: dictionary lower-cases them), so a row whose lower-cased text does not hold a word
#: of the query cannot match it. The sieve costs ~0.3 µs a row, to_tsvector ~7 µs.
TEXT_LOWER = sql.SQL(
    "lower(action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, ''))"
)

Q_MAX_LENGTH = 100
# letters and digits (what the 'simple' text search parser makes words of), each
# optionally ending with * for a prefix
_WORD = re.compile(r"([^\W_]+)(\*?)")


def text_match(placeholder: str) -> sql.Composable:
    """The condition "the text matches the tsquery in parameter ``placeholder``", the one
    the full-text index answers."""
    return sql.SQL("{} @@ to_tsquery('simple', {})").format(
        TEXT_DOCUMENT, sql.Placeholder(placeholder)
    )


def text_query(q: str) -> str:
    """``q`` as a tsquery (for ``to_tsquery('simple', ...)``): every word must appear.

    "Alice Adm*" -> "'alice' & 'adm':*". Words match whole, case-insensitively; a word
    ending with * matches as a prefix. Whole words are the fast default: the full-text
    index intersects their posting lists at once, where a prefix must first gather every
    word it starts (measured at 10M: 2 whole words 30 ms, the same as prefixes 200 ms).
    Words hold letters and digits only, so they need no escaping inside the quotes.
    Raises BadRequest when q holds no word.
    """
    terms = [f"'{word.lower()}'" + (":*" if star else "") for word, star in _WORD.findall(q)]
    if not terms:
        raise BadRequest(f"q is {q!r}; it needs at least one letter or digit to search for")
    return " & ".join(dict.fromkeys(terms))


# -- one active filter -----------------------------------------------------------------


@dataclass(frozen=True)
class ActiveFilter:
    """One filter in use: ("source", "api", "Source", "API").

    ``phrase`` is its part of the sentence ("Source is API", "Text matches “ali”");
    ``condition`` and ``params`` its part of the WHERE clause.

    A filter given several values (``?source=web&source=api``) is ONE active filter:
    ``values`` and ``displays`` hold each value and how it is shown, ``value`` and
    ``display`` the first value and all of them joined ("Web or API"), ``condition``
    matches any of them (``source = any(...)``), and ``pieces`` holds each value's own
    condition and parameters (their matches are disjoint, and together the filter's:
    the query layer reads an actor's values one branch each). A filter of one value
    has ``values == (value,)`` and no pieces.
    """

    param: str
    value: str
    label: str
    display: str
    phrase: str = ""
    condition: sql.Composable = field(
        default_factory=lambda: sql.SQL("true"), compare=False, repr=False
    )
    params: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)
    values: tuple[str, ...] = ()
    displays: tuple[str, ...] = ()
    pieces: tuple[ActiveFilter, ...] = field(default=(), compare=False, repr=False)
    #: the viewer's words after each display in the phrase (" (Admin)": ``shown_as``)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.values:
            object.__setattr__(self, "values", (self.value,))
        if not self.displays:
            object.__setattr__(self, "displays", (self.display,))

    @property
    def several(self) -> bool:
        return len(self.values) > 1


@dataclass
class FilterOptions:
    """Choices for the filter controls, as (value, label) pairs (``options.load_options``
    reads them from the log); ``parse_filters`` checks a value against them.

    ``actors`` holds (key as in the ``actor`` parameter, display name, actor_type),
    e.g. ("id:7", "Alice Admin", "admin") or ("name:postgres", "postgres", "system").
    """

    action_types: list[tuple[str, str]]
    actors: list[tuple[str, str, str]]
    actor_types: list[tuple[str, str]]
    sources: list[tuple[str, str]]
    resources: list[tuple[str, str]]


@dataclass(frozen=True)
class ParseContext:
    """What a definition may use to check and show a value."""

    tz: ZoneInfo
    # resource_type -> plural label, and actor key -> display name, when known
    # (load_options gives both); without them, any well-formed value is accepted
    resources: Mapping[str, str] | None = None
    actors: Mapping[str, str] | None = None
    # after the name of each bound parameter: "" for a filter of one value, "_0", "_1"...
    # for each value of a filter of several (their pieces: ``ActiveFilter.pieces``)
    suffix: str = ""


# -- the declarative list --------------------------------------------------------------


@dataclass(frozen=True)
class FilterDef:
    """A filter: its URL parameter, its label, and a parser from a raw value to an
    ActiveFilter (which holds the display value, the sentence phrase and the SQL)."""

    param: str
    label: str
    parse: Callable[[FilterDef, str, ParseContext], ActiveFilter]
    help: str = ""
    #: how many values it takes at once (repeated in the URL: ``source=web&source=api``)
    most: int = 1
    #: the column that ``column = any(values)`` tests, for a filter of several values
    column: str = ""

    def active(
        self,
        value: str,
        display: str,
        condition: sql.Composable,
        params: Mapping[str, object],
        phrase: str | None = None,
    ) -> ActiveFilter:
        return ActiveFilter(
            self.param,
            value,
            self.label,
            display,
            phrase or f"{self.label} is {display}",
            condition,
            params,
        )


def _ph(fdef: FilterDef, suffix: str = "") -> tuple[str, sql.Placeholder]:
    """A parameter name private to one filter, and its placeholder."""
    name = "f_" + fdef.param + suffix
    return name, sql.Placeholder(name)


_PLAIN_WORD = re.compile(r"[a-z0-9_]{1,20}")


def _several_hint(param: str, value: str) -> str:
    """For a value holding a comma: how to ask for several values instead, with its
    first two words when they are plain (never the user's other characters, which the
    message shows only inside repr())."""
    if "," not in value:
        return ""
    first, second = (word.strip() for word in value.split(",")[:2])
    if not (_PLAIN_WORD.fullmatch(first) and _PLAIN_WORD.fullmatch(second)):
        first, second = "...", "..."
    return f" (for several values, repeat the parameter: {param}={first}&{param}={second})"


def _choices(param: str, value: str, allowed: list[str]) -> str:
    if value not in allowed:
        raise BadRequest(
            f"{param} is {value!r}; expected one of {', '.join(allowed)}"
            + _several_hint(param, value)
        )
    return value


def _parse_action_type(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    kind = ActionType(_choices(fdef.param, value, [m.value for m in ActionType]))
    name, ph = _ph(fdef, ctx.suffix)
    return fdef.active(value, kind.label, sql.SQL("action_type = {}").format(ph), {name: value})


def _parse_actor_type(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    kind = ActorType(_choices(fdef.param, value, [m.value for m in ActorType]))
    name, ph = _ph(fdef, ctx.suffix)
    return fdef.active(value, kind.label, sql.SQL("actor_type = {}").format(ph), {name: value})


DATABASE_SOURCE = "database"
SOURCE_CHOICES = [m.value for m in Source] + [DATABASE_SOURCE]


def source_label(value: str) -> str:
    return "Database" if value == DATABASE_SOURCE else Source(value).label


def _parse_source(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    _choices(fdef.param, value, SOURCE_CHOICES)
    if value == DATABASE_SOURCE:
        # no context was set: a direct database change
        return fdef.active(value, "Database", sql.SQL("source is null"), {})
    name, ph = _ph(fdef, ctx.suffix)
    return fdef.active(value, source_label(value), sql.SQL("source = {}").format(ph), {name: value})


RESOURCE_TYPE = re.compile(r"[a-z][a-z0-9_]{0,62}")


def resource_plural(resource_type: str) -> str:
    """A plural label for a resource type no registry names: "call" -> "Calls"."""
    words = resource_type.replace("_", " ").strip()
    return (words[:1].upper() + words[1:]) + (
        "es" if words.endswith(("s", "x", "ch", "sh")) else "s"
    )


def _parse_resource(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    if not RESOURCE_TYPE.fullmatch(value):  # match() with $ let a final line break through
        raise BadRequest(
            f"resource is {value!r}; expected a resource type such as client or campaign "
            "(lower-case letters, digits and _)" + _several_hint("resource", value)
        )
    if ctx.resources is not None and value not in ctx.resources:
        raise BadRequest(
            f"resource is {value!r}; expected one of {', '.join(sorted(ctx.resources))}"
        )
    display = (ctx.resources or {}).get(value) or resource_plural(value)
    name, ph = _ph(fdef, ctx.suffix)
    return fdef.active(value, display, sql.SQL("resource_type = {}").format(ph), {name: value})


ACTOR_MAX_LENGTH = 200


def _parse_actor(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    kind, sep, key = value.partition(":")
    if not sep or kind not in ("id", "name") or not key or len(key) > ACTOR_MAX_LENGTH:
        raise BadRequest(
            f"actor is {value!r}; expected id:<actor id> or name:<actor name> "
            f"(at most {ACTOR_MAX_LENGTH} characters after the colon)"
        )
    display = (ctx.actors or {}).get(value) or key
    name, ph = _ph(fdef, ctx.suffix)
    if kind == "id":
        condition = sql.SQL("actor_id = {}").format(ph)
    else:
        # an actor without id (a database role, say) is known by its name alone
        condition = sql.SQL("actor_id is null and actor_name = {}").format(ph)
    return fdef.active(value, display, condition, {name: key})


def parse_day(param: str, value: str) -> date:
    """A YYYY-MM-DD date, or BadRequest naming what is wrong with it."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):  # \d takes any script's digits
        raise BadRequest(f"{param} is {value!r}; expected a date as YYYY-MM-DD, e.g. 2025-01-31")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{param} is {value!r}, which is not a date in the calendar") from None


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz`` (an aware datetime; DST-safe)."""
    return datetime.combine(day, time.min, tzinfo=tz)


def _parse_from(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    day = parse_day(fdef.param, value)
    name, ph = _ph(fdef, ctx.suffix)
    return fdef.active(
        value,
        day.isoformat(),
        sql.SQL("occurred_at >= {}").format(ph),
        {name: day_start(day, ctx.tz)},
        phrase=f"Date from {day.isoformat()}",
    )


def _parse_to(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    day = parse_day(fdef.param, value)
    if day == date.max:
        raise BadRequest(f"{fdef.param} is {value!r}, which is too far in the future")
    name, ph = _ph(fdef, ctx.suffix)
    # inclusive day: everything before the next day starts
    return fdef.active(
        value,
        day.isoformat(),
        sql.SQL("occurred_at < {}").format(ph),
        {name: day_start(day + timedelta(days=1), ctx.tz)},
        phrase=f"Date until {day.isoformat()}",
    )


def _parse_q(fdef: FilterDef, value: str, ctx: ParseContext) -> ActiveFilter:
    text = value.strip()
    if not text or len(value) > Q_MAX_LENGTH:
        raise BadRequest(
            f"q is {len(value)} characters long; expected 1 to {Q_MAX_LENGTH} characters"
            if text
            else "q is empty; type a word to search for, or remove the search"
        )
    name, _ = _ph(fdef, ctx.suffix)
    return fdef.active(
        text, text, text_match(name), {name: text_query(text)}, phrase=f"Text matches “{text}”"
    )


#: The parameters of the two filters the query layer plans around (see text_search
#: and pages).
TEXT_PARAM = "q"
ACTOR_PARAM = "actor"
SOURCE_PARAM = "source"

#: The most values a filter of several takes (``?source=web&source=api``): every value
#: of the closed vocabularies (9 action types at most) with room to spare, and 20
#: resource types. An actor takes fewer: each actor with an id is read per source
#: (``rows.actor_branches``), 5 branches an actor.
MAX_VALUES = 20
ACTOR_MAX_VALUES = 10

#: THE list. Order is the order of the sentence and of the query string.
FILTERS: tuple[FilterDef, ...] = (
    FilterDef(
        "action_type", "Action type", _parse_action_type, most=MAX_VALUES, column="action_type"
    ),
    FilterDef(ACTOR_PARAM, "Actor", _parse_actor, most=ACTOR_MAX_VALUES),
    FilterDef("actor_type", "Actor type", _parse_actor_type, most=MAX_VALUES, column="actor_type"),
    FilterDef(SOURCE_PARAM, "Source", _parse_source, most=MAX_VALUES, column="source"),
    FilterDef("resource", "Resource", _parse_resource, most=MAX_VALUES, column="resource_type"),
    FilterDef("from", "From", _parse_from),
    FilterDef("to", "To", _parse_to),
    FilterDef(TEXT_PARAM, "Text", _parse_q),
)
FILTER_PARAMS = tuple(f.param for f in FILTERS)
#: The filters that take several values: any of them matches
SEVERAL_PARAMS = tuple(f.param for f in FILTERS if f.most > 1)


def _any_of(fdef: FilterDef, parts: list[ActiveFilter]) -> tuple[sql.Composable, dict]:
    """The condition "any of ``parts``" (each a value of ``fdef`` parsed alone) and its
    parameters: ``column = any(values)``, which an index on the column answers as the
    single value's ``column = value`` (action_log_kind_idx: one descent per value)."""
    name, ph = _ph(fdef)
    if fdef.param == ACTOR_PARAM:
        keys = [p.value.partition(":") for p in parts]
        ids = [key for kind, _, key in keys if kind == "id"]
        names = [key for kind, _, key in keys if kind == "name"]
        conditions: list[sql.Composable] = []
        params: dict[str, object] = {}
        if ids:
            conditions.append(sql.SQL("actor_id = any({})").format(sql.Placeholder(name + "_ids")))
            params[name + "_ids"] = ids
        if names:
            conditions.append(
                sql.SQL("(actor_id is null and actor_name = any({}))").format(
                    sql.Placeholder(name + "_names")
                )
            )
            params[name + "_names"] = names
        if len(conditions) == 1:
            return conditions[0], params
        return sql.SQL("({})").format(sql.SQL(" or ").join(conditions)), params
    values = [p.value for p in parts]
    if fdef.param == SOURCE_PARAM and DATABASE_SOURCE in values:
        # no context was set: source is null, which no "= any" matches
        values.remove(DATABASE_SOURCE)
        return sql.SQL("(source = any({}) or source is null)").format(ph), {name: values}
    return sql.SQL("{} = any({})").format(sql.Identifier(fdef.column), ph), {name: values}


def _several(fdef: FilterDef, values: list[str], ctx: ParseContext) -> ActiveFilter:
    """The filter ``fdef`` of several ``values``: each parsed alone (a bad one is a
    BadRequest naming it), with a parameter of its own (its piece), then together."""
    parts = [
        fdef.parse(fdef, value, replace(ctx, suffix=f"_{n}")) for n, value in enumerate(values)
    ]
    condition, params = _any_of(fdef, parts)
    displays = tuple(p.display for p in parts)
    return ActiveFilter(
        fdef.param,
        parts[0].value,
        fdef.label,
        " or ".join(displays),
        f"{fdef.label} is {' or '.join(displays)}",
        condition,
        params,
        values=tuple(p.value for p in parts),
        displays=displays,
        pieces=tuple(parts),
    )


# -- the parsed filter set -------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The filters of one URL, validated; ``active`` in FILTERS order."""

    active: tuple[ActiveFilter, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.active)

    def get(self, param: str) -> ActiveFilter | None:
        return next((a for a in self.active if a.param == param), None)

    def sentence(self) -> str:
        """ "Source is API, Resource is Clients"; "" when no filter is set."""
        return ", ".join(a.phrase for a in self.active)

    def where(self) -> tuple[sql.Composable, dict]:
        """The bound condition over audit.action_log (unqualified column names) and its
        parameters: ``(sql.SQL("true"), {})`` when no filter is set."""
        if not self.active:
            return sql.SQL("true"), {}
        params: dict = {}
        for a in self.active:
            params.update(a.params)
        return sql.SQL(" and ").join(a.condition for a in self.active), params

    def shown_as(
        self, param: str, display: str | Sequence[str], note: str | Sequence[str] = ""
    ) -> Filters:
        """These filters with the filter ``param`` shown as ``display``, and ``note``
        after it in the sentence: "Actor is Maria Smith (Admin)" where the URL holds
        "id:7" (the name is the user's text, isolated; the note is the viewer's). For a
        filter of several values, ``display`` and ``note`` may give one per value:
        "Actor is Alice Admin (Admin) or postgres (Database role)"."""
        displays = (display,) if isinstance(display, str) else tuple(display)
        notes = (note,) * len(displays) if isinstance(note, str) else tuple(note)
        phrase = " or ".join(
            f"{shown}{after}" for shown, after in zip(displays, notes, strict=True)
        )
        return Filters(
            tuple(
                replace(
                    a,
                    display=" or ".join(displays),
                    displays=displays,
                    notes=notes,
                    phrase=f"{a.label} is {phrase}",
                )
                if a.param == param
                else a
                for a in self.active
            )
        )

    def query_args(self) -> dict[str, str | list[str]]:
        """URL parameters that reproduce these filters: a filter of several values is a
        list (``url_for`` repeats the parameter)."""
        return {a.param: list(a.values) if a.several else a.value for a in self.active}

    def without(self, param: str, value: str | None = None) -> dict[str, str | list[str]]:
        """The URL parameters with the filter ``param`` removed (the one-click clear
        link), or only its ``value``: the others of a filter of several values stay."""
        args = self.query_args()
        if value is None or param not in args:
            args.pop(param, None)
            return args
        kept = [
            v for v in (self.get(param) or ActiveFilter(param, "", "", "")).values if v != value
        ]
        if not kept:
            del args[param]
        else:
            args[param] = kept if len(kept) > 1 else kept[0]
        return args

    def slug(self) -> str:
        """A file-name-safe summary for exports: "source-api_resource-client"; "all"."""
        parts = []
        for a in self.active:
            raw = "-".join(a.values)
            value = re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-").lower()[:40] or "x"
            parts.append(f"{a.param}-{value}")
        return "_".join(parts) or "all"


def given_once(args: Mapping[str, str], several: Collection[str] = ()) -> None:
    """BadRequest when a parameter is repeated, but for the filters of ``several``
    values (``SEVERAL_PARAMS``, which ``parse_filters`` caps): "?from=2025-01-01&from=
    2025-02-01" has no meaning a reader could expect."""
    getlist = getattr(args, "getlist", None)  # a MultiDict, as request.args is
    if getlist is None:
        return
    for key in args:
        if key in several:
            continue
        values = getlist(key)
        if len(values) > 1:
            shown = ", ".join(repr(v[:40]) for v in values[:5])
            raise BadRequest(f"{key} is given {len(values)} times ({shown}); expected it once")


def given_values(args: Mapping[str, str], fdef: FilterDef) -> list[str]:
    """The values of the filter ``fdef`` in ``args``: empty ones left out (what an HTML
    form sends for "All"), each once, in URL order; BadRequest past ``fdef.most``."""
    getlist = getattr(args, "getlist", None)
    raw: list[str] = getlist(fdef.param) if getlist is not None else [args.get(fdef.param, "")]
    values = [v for v in raw if v is not None and v != ""]
    if len(values) > fdef.most:
        raise BadRequest(
            f"{fdef.param} is given {len(values)} times; it takes at most {fdef.most} values"
        )
    return list(dict.fromkeys(values))


def parse_filters(
    args: Mapping[str, str], tz: ZoneInfo, *, options: FilterOptions | None = None
) -> Filters:
    """Validate the URL parameters ``args`` into Filters; BadRequest on any bad value.

    ``tz`` is the viewer's time zone (``from``/``to`` are whole days there). With
    ``options`` (from ``load_options``), a resource must be one the log knows and the
    actor is shown by name; without, any well-formed value is accepted. Empty values
    mean "not set" (what an HTML form sends for "All"). The filters of
    ``SEVERAL_PARAMS`` may be repeated (``source=web&source=api``: either), up to their
    ``most`` values, every other parameter, the page's own too, given once. A comma is
    no separator: in the closed vocabularies it is a bad value (whose message says to
    repeat the parameter), in an actor's id or name it is part of the value.
    """
    given_once(args, SEVERAL_PARAMS)
    unknown = sorted(k for k in args if not k.startswith("_") and k not in FILTER_PARAMS)
    if unknown:
        raise BadRequest(
            f"{unknown[0]} is not a filter; expected one of {', '.join(FILTER_PARAMS)}"
        )
    ctx = ParseContext(
        tz=tz,
        resources=dict(options.resources) if options is not None else None,
        actors={key: name for key, name, _type in options.actors} if options is not None else None,
    )
    active = []
    for fdef in FILTERS:
        values = given_values(args, fdef)
        if not values:
            continue
        for value in values:
            if "\x00" in value:  # PostgreSQL text cannot hold it: the query would fail
                raise BadRequest(f"{fdef.param} holds a NUL character (%00); remove it")
        if len(values) == 1:
            active.append(fdef.parse(fdef, values[0], ctx))
        else:
            active.append(_several(fdef, values, ctx))
    filters = Filters(tuple(active))
    start, end = filters.get("from"), filters.get("to")
    if start and end and end.value < start.value:
        raise BadRequest(f"to is {end.value}, which is before from ({start.value})")
    return filters


# -- the page parameters the query layer takes -----------------------------------------

DEFAULT_SIZE, MIN_SIZE, MAX_SIZE = 50, 10, 200
DIRECTIONS = ("next", "prev")


def page_size(value: str | None) -> int:
    """``_size``: 10..200, default 50."""
    if value is None or value == "":
        return DEFAULT_SIZE
    if not re.fullmatch(r"[0-9]{1,4}", value) or not MIN_SIZE <= int(value) <= MAX_SIZE:
        raise BadRequest(f"_size is {value!r}; expected a number from {MIN_SIZE} to {MAX_SIZE}")
    return int(value)


def direction(value: str | None) -> str:
    """``_dir``: next (older rows, the default) or prev (newer rows)."""
    if value is None or value == "":
        return "next"
    return _choices("_dir", value, list(DIRECTIONS))
