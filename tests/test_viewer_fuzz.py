"""A request fuzzer over every route of the viewer (Hypothesis).

Every route the standalone app serves (``/``, its CSV and JSON exports, ``/actions/<id>``
and its items paging, ``/actors``, ``/live`` and ``/live/poll``, a record's history
``/history/<type>?id=``, ``/static/<file>``, ``/sign-in``, ``/sign-out``) and the
blueprint mounted in a host application (``/admin/audit/...``, its own time zone), signed
in and anonymous, gets requests built from the parameters it reads: valid values (so
that the pages that answer 200 are fuzzed too), values mixed with invalid ones, repeated
and unknown parameters, any unicode (NUL, lone surrogates sent as the bytes UTF-8 would
give them, RTL and isolation marks, other scripts' digits), strings of ~100 kB, huge and
negative numbers, malformed dates and cursors, cursors well-formed but anywhere in time,
raw bytes that are no UTF-8, and other HTTP methods. Every response must:

- never be a 5xx, nor an exception escaping the app;
- never show a traceback or a Python exception's name (unless the request held it);
- carry the Content-Security-Policy header (``viewer/security.py``);
- when it is a 4xx, say what was wrong to a person: the error page's message, the
  sign-in form's notice, or ``{"error": ...}`` for ``/actors``;
- redirect only to a path of the same site;
- when it is an export, stream a whole file (consumed to the end: CSV with its header
  line, JSON an array).

The log is ``viewer_data.seed``'s, in a database made once for the module. By default
each route gets a bounded number of examples, derandomized (the same ones every run:
what CI runs, in about 30 seconds). A long run, random and different each time::

    AUDIT_CAPTURE_FUZZ_EXAMPLES=5000 scripts/test tests/test_viewer_fuzz.py

runs that many examples per route (a failure prints the blob that reproduces it:
``@reproduce_failure``). ``test_the_fuzzer_knows_every_route`` fails when a route or a
filter is added that the fuzzer does not send: give it a strategy here.
"""

from __future__ import annotations

import builtins
import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

import psycopg
import pytest
from flask import Flask, session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from viewer_data import PASSWORD, app_config, csrf_token, drop_role, make_reader, seed, sign_in
from werkzeug.security import generate_password_hash

from audit_capture import database
from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.viewer import config, create_app, make_blueprint
from audit_capture.viewer import cursor as cursors
from audit_capture.viewer import db as viewer_db
from audit_capture.viewer import errors as viewer_errors
from audit_capture.viewer.app import close
from audit_capture.viewer.filters import FILTER_PARAMS, MAX_VALUES, SEVERAL_PARAMS

EXAMPLES_ENVVAR = "AUDIT_CAPTURE_FUZZ_EXAMPLES"
DATABASE = "viewer_fuzz"
PREFIX = "/admin/audit"  # where the host application mounts the blueprint
SESSION_COOKIE = "audit_viewer_session"


def fuzz(default_examples: int) -> settings:
    """Hypothesis settings: ``default_examples``, derandomized; or, with
    AUDIT_CAPTURE_FUZZ_EXAMPLES set, that many random examples."""
    chosen = os.environ.get(EXAMPLES_ENVVAR, "").strip()
    long_run = bool(chosen)
    return settings(
        max_examples=int(chosen) if long_run else default_examples,
        derandomize=not long_run,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- the log, the apps, the clients ---------------------------------------------------------


@dataclass
class FuzzLog:
    url: str
    reader_url: str
    ids: dict[str, int]
    max_id: int


@pytest.fixture(scope="module")
def fuzz_log(pg_server, template_db_url):
    """One seeded log for the module (conftest's are made per test: a second each),
    read through a role granted only audit_reader, as in production."""
    template = conninfo_to_dict(template_db_url)["dbname"]
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
        )
        admin.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(DATABASE), sql.Identifier(template)
            )
        )
    url = pg_server.url(DATABASE)
    conn = psycopg.connect(url)
    reader = None
    try:
        seeded = seed(conn)
        reader, reader_url = make_reader(conn, url)
        max_id = conn.execute("select max(id) from audit.action_log").fetchone()[0]
        conn.commit()
        yield FuzzLog(url, reader_url, dict(seeded.ids), max_id)
    finally:
        if reader is not None:
            drop_role(conn, reader)
        conn.close()
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
            )


#: alice's password hashed cheaply (PBKDF2, 1,000 rounds): the fuzzer signs in hundreds
#: of times, and the default hash (scrypt) costs 0.1-0.3 s a check; not what is fuzzed
CHEAP_USERS = {"alice": generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")}


@pytest.fixture
def fuzz_app(fuzz_log):
    """The standalone viewer; sign-in failures are not rate limited here (the fuzzer signs
    in with a wrong password again and again, and must still reach the 302 and the 401)."""
    app = create_app(app_config(fuzz_log.reader_url, USERS=CHEAP_USERS, SIGNIN_MAX_FAILURES=10**9))
    yield app
    close(app)


@pytest.fixture
def signed_in_cookie(fuzz_app) -> str:
    """The session cookie of alice, signed in once (a sign-in costs a password hash)."""
    client = fuzz_app.test_client()
    assert sign_in(client).status_code == 302
    return client.get_cookie(SESSION_COOKIE).value


@pytest.fixture
def host_app(fuzz_log):
    """A host application with the viewer mounted at PREFIX under its own authorization
    (``/login/admin`` lets in), in another time zone than UTC."""
    host = Flask("crm_host")
    host.config.update(SECRET_KEY="host secret", TESTING=True)

    @host.route("/login/<role>")
    def login(role):
        session["role"] = role
        return "ok"

    host.register_blueprint(
        make_blueprint(
            lambda: session.get("role") == "admin",
            database_url=fuzz_log.reader_url,
            timezone="Pacific/Kiritimati",  # UTC+14: a day there starts the day before in UTC
            page_size=10,
        ),
        url_prefix=PREFIX,
    )
    yield host
    close(host)


# -- values -----------------------------------------------------------------------------------

# characters that parsers, databases, HTML and URLs each treat specially
ODD_CHARACTERS = [
    "\x00",  # PostgreSQL text cannot hold it
    "\x7f",
    "\n",
    "\r",
    "\t",
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2069",
    "\ufeff",
    "\ufffd",
    "\ud800",  # lone surrogates: sent as the bytes UTF-8 would give them
    "\udfff",
    "\U0001f600",
    "\u0665",  # ARABIC-INDIC DIGIT FIVE: a digit to str.isdigit
    "\u00b2",
    "é",
    "ß",
    "İ",  # lower() makes it two characters
    " ",
    "%",
    "&",
    "=",
    "+",
    "#",
    "?",
    "/",
    "\\",
    ":",
    "*",
    "'",
    '"',
    "<",
    ">",
    ";",
    "-",
]
ODD_WORDS = [
    "<script>alert(1)</script>",
    "' or 1=1 --",
    "../../etc/passwd",
    "%00",
    "%ZZ",
    "NaN",
    "Infinity",
    "-0",
    "0x10",
    "1e309",
    "null",
    "[]",
    "{}",
    "id:",
    "name:",
    "id:7:8",
    "*",
    "&&",
    "!",
    "'a' & 'b'",
    "a:*",
    "DROP TABLE",
]


def pick(*strategies: st.SearchStrategy) -> st.SearchStrategy:
    """One of ``strategies``, each as likely (``st.one_of`` flattens nested one_of's
    branches into one list, so a strategy with many branches would crowd out the others);
    a strategy given twice is twice as likely."""
    return st.sampled_from(strategies).flatmap(lambda chosen: chosen)


odd_character = st.sampled_from(ODD_CHARACTERS)
any_character = st.one_of(st.characters(codec=None), odd_character)


def long_text(sizes=(101, 201, 5_000, 100_000)) -> st.SearchStrategy[str]:
    """A piece repeated to one of ``sizes`` characters (~100 kB at most)."""
    return st.builds(
        lambda piece, size: (piece * (size // len(piece) + 1))[:size],
        st.text(any_character, min_size=1, max_size=3),
        st.sampled_from(sizes),
    )


number_text = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.integers(-3, 300).map(str),
    st.sampled_from([str(2**31), str(2**63 - 1), str(2**63), str(2**64), "-" + str(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(0, 10**6).map(lambda n: f"{n:,}"),
    st.integers(0, 999).map(lambda n: "\u0665" * (n % 4 + 1)),
)

malformed_date = st.one_of(
    st.tuples(st.integers(-1, 99_999), st.integers(-1, 14), st.integers(-1, 33)).map(
        lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}"
    ),
    st.sampled_from(
        [
            "2024-02-30",
            "2023-02-29",
            "0000-01-01",
            "2024-1-1",
            " 2024-01-01",
            "2024-01-01\n",
            "2024-01-01T00:00",
            "20240101",
            "2024/01/01",
            "yesterday",
            "\u0662\u0660\u0662\u0665-\u0660\u0661-\u0660\u0661",
            "9999-12-31",
            "0001-01-01",
        ]
    ),
)

# any instant a cursor can name, and ids of every size: well-formed, checksummed cursors
# (the checksum catches edits, it is no secret: a cursor anywhere in time is a request
# anyone can make)
EDGES_OF_TIME = [
    datetime(1, 1, 1, tzinfo=UTC),
    cursors.EARLIEST,  # the first and last positions a cursor may name
    cursors.LATEST - timedelta(microseconds=1),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
]
instant = st.one_of(st.sampled_from(EDGES_OF_TIME), st.datetimes(timezones=st.just(UTC)))
valid_cursor = st.builds(cursors.encode, instant, st.integers(1, 2**63 - 1))
edge_cursor = st.builds(cursors.encode, st.sampled_from(EDGES_OF_TIME), st.integers(1, 40))
# near the seeded rows, so that pages around them are read
recent_cursor = st.builds(
    lambda seconds, action_id: cursors.encode(
        datetime.now(UTC) - timedelta(seconds=seconds), action_id
    ),
    st.integers(-86_400, 86_400 * 400),
    st.integers(1, 40),
)


def _mutated(cursor: str, position: int, replacement: str) -> str:
    position %= len(cursor)
    return cursor[:position] + replacement + cursor[position + 1 :]


malformed_cursor = st.one_of(
    st.builds(_mutated, valid_cursor, st.integers(0, 40), st.sampled_from("A_-=+/.9")),
    valid_cursor.map(lambda c: c[:-1]),
    valid_cursor.map(lambda c: c + "A"),
    valid_cursor.map(lambda c: c + "=="),
    st.text(st.sampled_from("ABCDEFabcdef0123456789-_=+/"), min_size=15, max_size=45),
)

# bytes that are no UTF-8 (Werkzeug decodes them with replacement characters)
raw_bytes = st.binary(min_size=1, max_size=12)

hostile = st.one_of(
    st.text(any_character, max_size=30),
    st.lists(st.sampled_from(ODD_CHARACTERS + ODD_WORDS), min_size=1, max_size=5).map("".join),
    long_text(),
    number_text,
    malformed_date,
    malformed_cursor,
    raw_bytes,
    st.just(""),
)

# -- what each parameter takes when valid (the seeded log's values: viewer_data.seed) -----

ACTORS = ["id:7", "id:svc-12", "id:agent-1", "id:c-3", "id:x-1", "name:postgres", "id:ghost"]
RESOURCES = ["client", "campaign", "case", "case_task", "integration", "call", "batch_job"]
WORDS = ["lead", "client", "jane", "roe", "alice", "admin", "lawruler", "updated", "campaign"]
TEXTS = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(lambda w: w[:3] + "*"),
    st.lists(
        st.sampled_from(WORDS + ["zzz", "a*", "spring", "export"]), min_size=1, max_size=3
    ).map(" ".join),
)
today = datetime.now(UTC).date()
any_day = st.one_of(
    st.dates(min_value=today - timedelta(days=60), max_value=today + timedelta(days=2)),
    st.dates(),
).map(lambda d: d.isoformat())

EXPORT_FORMATS = ["csv", "json", "ndjson", "ocsf"]
VALID: dict[str, st.SearchStrategy[str]] = {
    "action_type": st.sampled_from([m.value for m in ActionType]),
    "actor": st.sampled_from(ACTORS),
    "actor_type": st.sampled_from([m.value for m in ActorType]),
    "source": st.sampled_from([m.value for m in Source] + ["database"]),
    "resource": st.sampled_from(RESOURCES),
    "from": any_day,
    "to": any_day,
    "q": TEXTS,
    "_cursor": pick(recent_cursor, edge_cursor, edge_cursor, valid_cursor),
    "_dir": st.sampled_from(["next", "prev"]),
    "_size": st.integers(10, 200).map(str),
    "_format": st.sampled_from(EXPORT_FORMATS),
    # the filter form's actor text field: a few letters of a name, or a key
    "_actor": st.one_of(
        st.sampled_from(["ali", "Alice Admin", "jane", "law", "7", "svc", "post", "nobody"]),
        st.sampled_from(ACTORS),
    ),
}
LIST_PARAMS = tuple(VALID)

ITEM_PARAMS = {"items_after": st.integers(0, 120).map(str)}
# a record's history: the seeded rows' ids (clients 1..61, campaign 1, integration 1, ...)
# and ids that are none of them, a page position and size
HISTORY_PARAMS = {
    "id": st.one_of(st.integers(0, 70).map(str), st.sampled_from(["1 ", "01", '(1,"a b")'])),
    "_cursor": VALID["_cursor"],
    "_size": VALID["_size"],
}
HISTORY_TYPES = st.one_of(
    st.sampled_from(RESOURCES),
    st.sampled_from(["nothing_tracked", "Client", "client/1", "", "client_"]),
)
ACTORS_PARAMS = {
    "q": st.sampled_from(["a", "ali", "Alice", "jane roe", "7", "svc-", "law", "post", "zz"]),
    "limit": st.integers(1, 50).map(str),
}
# the Live view's poll: the last id shown and a mark as /live/poll hands them out
# ("41:3/7,5/12"; the seeded log's ids are below 60), well-formed or near it
virtual_transaction = st.builds(
    lambda proc, local: f"{proc}/{local}", st.integers(-1, 200), st.integers(0, 2**32 - 1)
)
LIVE_PARAMS = {
    "after": st.one_of(st.integers(0, 60), st.sampled_from([2**31, 2**63 - 1])).map(str),
    "mark": st.builds(
        lambda last, writers: f"{last}:{','.join(writers)}",
        st.one_of(st.integers(0, 60), st.sampled_from([2**63 - 1, 2**63])),
        st.lists(virtual_transaction, unique=True, max_size=4),
    ),
}

Value = str | bytes
Query = list[tuple[Value, Value]]

unknown_name = st.one_of(
    st.sampled_from(["colour", "page", "sort", "_other", "Q", "q ", "source[]", ""]),
    st.text(any_character, min_size=1, max_size=8),
)


def spliced(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with something odd put into it, at its start, end or anywhere."""
    piece = st.one_of(
        st.just("\x00"),  # the one character PostgreSQL refuses in any text: often
        odd_character,
        st.sampled_from(ODD_WORDS),
        st.text(any_character, max_size=3),
    )
    return st.builds(
        lambda value, odd, at: (
            value[: at % (len(value) + 1)] + odd + value[at % (len(value) + 1) :]
        ),
        valid.map(lambda value: value if isinstance(value, str) else value.decode("latin-1")),
        piece,
        st.one_of(st.just(0), st.just(10**6), st.integers(0, 40)),
    )


def query(params: dict[str, st.SearchStrategy[str]], max_size: int = 6) -> st.SearchStrategy[Query]:
    """Query parameters: the route's own with valid or hostile values, repeated or not,
    unknown ones, in any order."""
    unknown = st.tuples(unknown_name, hostile)
    if not params:
        return st.lists(unknown, max_size=max_size)
    known = st.sampled_from(sorted(params)).flatmap(
        lambda name: st.tuples(st.just(name), any_value(params[name]))
    )
    return st.lists(pick(known, known, unknown), max_size=max_size)


def any_value(valid: st.SearchStrategy[str]) -> st.SearchStrategy[Value]:
    """A parameter's value: valid, valid with something odd in it, or hostile."""
    return pick(valid, spliced(valid), hostile)


def valid_query(params: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[Query]:
    """Some of the route's parameters, each once, each valid: the pages that answer."""
    return st.fixed_dictionaries({}, optional=params).map(lambda d: list(d.items()))


def repeated(name: str, values: st.SearchStrategy[Value], most: int) -> st.SearchStrategy[Query]:
    """``name`` given 1 to ``most`` times, each with one of ``values``."""
    return st.lists(values, min_size=1, max_size=most).map(lambda vs: [(name, v) for v in vs])


#: The filters of several values (issue 16: ``source=web&source=api``), each repeated:
#: valid values (pages that answer), one odd or hostile value among valid ones, or
#: more values than a filter takes (a 400 at once, however many).
SEVERAL: dict[str, st.SearchStrategy[Query]] = {
    name: pick(
        repeated(name, VALID[name], 5),
        repeated(name, VALID[name], 5),
        st.tuples(repeated(name, VALID[name], 4), any_value(VALID[name])).map(
            lambda t, n=name: [*t[0], (n, t[1])]
        ),
        st.integers(MAX_VALUES + 1, 3_000).map(lambda k, n=name: [(n, "web")] * k),
    )
    for name in SEVERAL_PARAMS
}


def encode(value: Value) -> str:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote_from_bytes(raw, safe="")


def query_string(pairs: Query) -> str:
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in pairs)


action_id = st.one_of(
    st.integers(-3, 60).map(str),
    number_text,
    st.text(any_character, min_size=1, max_size=20),
    long_text((5_000,)),
    raw_bytes,
)

# -- sending and checking -----------------------------------------------------------------


def exception_names() -> set[str]:
    """The names of the exceptions a page must never show: Python's, psycopg's (one per
    SQLSTATE: UndefinedColumn...) and the package's own."""
    modules = [builtins, psycopg.errors, viewer_errors, viewer_db, database, config]
    return {
        name
        for module in modules
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    } - {"Error", "Warning", "NoData"}  # words a page may say


EXCEPTION_NAMES = frozenset(exception_names())
# a traceback's lines, and capitalized words: an exception's name is one of
# EXCEPTION_NAMES or ends as one does (a set lookup a word, not 300 alternatives a place)
SUSPECT = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z0-9]+")


def shows_an_exception(word: str) -> bool:
    return (
        word in ("Traceback", 'File "')
        or word in EXCEPTION_NAMES
        or word.endswith(("Error", "Exception"))
    )


CSP = "Content-Security-Policy"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Sent:
    """One request: what the fuzzer sent, and what came back (body read to the end)."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    mimetype: str
    body: str

    @property
    def request_text(self) -> str:
        return unquote_to_bytes(self.path).decode("utf-8", "replace")


def send(client, method: str, url: str, pairs: Query = (), form: Query | None = None) -> Sent:
    """``method url?pairs`` (``url`` already quoted; a url-encoded ``form`` when given),
    its whole body read (an export's stream, to its end), the response closed."""
    if pairs:
        url += ("&" if "?" in url else "?") + query_string(pairs)
    data = None if form is None else query_string(form)
    kwargs = {} if data is None else {"data": data, "content_type": FORM}
    response = client.open(url, method=method, **kwargs)
    try:
        body = response.get_data()
        return Sent(
            method,
            url if data is None else f"{url} {data}",
            response.status_code,
            dict(response.headers),
            response.mimetype,
            body.decode("utf-8", "replace"),
        )
    finally:
        response.close()


def human_message(sent: Sent) -> str:
    """What a 4xx says to a person: the error page's message, the sign-in form's notice,
    or /actors' ``error``."""
    if sent.mimetype == "application/json":
        return json.loads(sent.body)["error"]
    notice = re.search(r'<div class="notice" role="alert">(.*?)</div>', sent.body, re.S)
    if notice:
        return unescape(notice.group(1))
    message = re.search(r'<p class="message">(.*?)</p>', sent.body, re.S)
    assert message, f"a {sent.status} without a message: {sent.body[:500]!r}"
    assert "Back to all actions" in sent.body
    return unescape(message.group(1))


def check(sent: Sent, *, viewer: bool = True) -> Sent:
    """The rules every response keeps (module doc). ``viewer``: the response came from the
    viewer (a host application's own 404 carries no viewer header)."""
    where = f"{sent.method} {sent.path[:300]!r}"
    assert sent.status < 500, f"{where}: {sent.status}\n{sent.body[-2000:]}"
    for word in set(SUSPECT.findall(sent.body)):
        if shows_an_exception(word):
            assert word in sent.request_text, f"{where}: {word!r} in the page"
    if not viewer:
        return sent
    assert CSP in sent.headers, f"{where}: no {CSP}"
    if sent.method == "HEAD" or sent.status in (204, 304):
        return sent
    if 300 <= sent.status < 400:
        # a path of this site (Werkzeug's own redirects, //x to /x, name the host)
        location = sent.headers["Location"]
        site = urlsplit(location)
        assert site.scheme in ("", "http") and site.netloc in ("", "localhost"), location
        assert site.path.startswith("/") and not location.startswith("//"), location
        assert "\\" not in location
    elif 400 <= sent.status < 500:
        assert human_message(sent).strip(), f"{where}: an empty message"
    elif sent.status == 200 and "attachment" in sent.headers.get("Content-Disposition", ""):
        check_export(sent)
    return sent


def check_export(sent: Sent) -> None:
    """A whole file: CSV with its header line and every record complete, a JSON array,
    or NDJSON (an export's or OCSF events): every line one whole JSON object."""
    if sent.mimetype == "text/csv":
        records = list(csv.reader(io.StringIO(sent.body)))
        assert records[0][:2] == ["id", "occurred_at"]
        assert {len(r) for r in records} == {len(records[0])}
    elif sent.mimetype == "application/x-ndjson":
        assert sent.body == "" or sent.body.endswith("\n")
        for line in sent.body.splitlines():
            obj = json.loads(line)
            assert "id" in obj or obj["class_uid"] in (3002, 3004, 6003)
    else:
        assert sent.mimetype == "application/json"
        assert isinstance(json.loads(sent.body), list)


def session_client(app: Flask, cookie: str | None):
    """A new test client, signed in when ``cookie`` is alice's session cookie."""
    client = app.test_client()
    if cookie is not None:
        client.set_cookie(SESSION_COOKIE, cookie)
    return client


METHODS = st.sampled_from(["GET"] * 6 + ["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])


def run(examples: int, strategy: st.SearchStrategy, step: Callable[..., Sent]) -> Counter:
    """``step(drawn)`` for ``examples`` values of ``strategy``; the statuses seen."""
    seen: Counter = Counter()

    @fuzz(examples)
    @given(strategy)
    def one(drawn):
        seen[step(drawn).status] += 1

    one()
    return seen


# -- the routes -------------------------------------------------------------------------------

STANDALONE_ROUTES = {
    "/": "audit_viewer.actions",
    "/actions/<action_id>": "audit_viewer.action",
    "/actors": "audit_viewer.actors",
    "/live": "audit_viewer.live",
    "/live/poll": "audit_viewer.live_poll",
    "/history/<path:resource_type>": "audit_viewer.history",
    "/static/<path:filename>": "audit_viewer.static",
    "/sign-in": "audit_viewer_auth.sign_in",
    "/sign-out": "audit_viewer_auth.sign_out",
}


def test_the_fuzzer_knows_every_route(fuzz_app, host_app):
    assert {r.rule: r.endpoint for r in fuzz_app.url_map.iter_rules()} == STANDALONE_ROUTES
    mounted = {r.rule for r in host_app.url_map.iter_rules() if r.rule.startswith(PREFIX)}
    assert mounted == {PREFIX + r for r in STANDALONE_ROUTES if not r.startswith("/sign")}
    assert set(FILTER_PARAMS) <= set(VALID)
    assert set(SEVERAL_PARAMS) <= set(SEVERAL)  # a filter of several values: repeat it too


# Parameters in every request of a run (the rest drawn as ever), and how many requests:
# the readers with most arithmetic and the fewest ways in get runs of their own
# (checksummed cursors anywhere in time, mostly, since any other is refused at once)
PINNED = {
    "any": ({}, 150),
    "cursor": ({"_cursor": VALID["_cursor"]}, 60),
    # the text search's windows of days around the position
    "cursor-and-text": ({"_cursor": VALID["_cursor"], "q": any_value(VALID["q"])}, 100),
    # the filter form's actor field, sent with the actor it shows (a hidden field)
    "actor-field": ({"_actor": any_value(VALID["_actor"]), "actor": any_value(VALID["actor"])}, 60),
}


@pytest.mark.parametrize("run_name", PINNED)
def test_the_list(fuzz_app, signed_in_cookie, run_name):
    """The list with any parameters (and, but for "any", the run's own in every request)."""
    pinned, examples = PINNED[run_name]
    client = session_client(fuzz_app, signed_in_cookie)
    rest = {name: values for name, values in VALID.items() if name not in pinned}
    pairs = pick(query(rest), valid_query(rest))
    if pinned:
        pairs = pick(st.just([]), pairs)  # the pinned parameters alone, too
    for name, values in reversed(pinned.items()):
        pairs = st.tuples(st.tuples(st.just(name), values), pairs).map(lambda t: [t[0], *t[1]])
    seen = run(examples, pairs, lambda pairs: check(send(client, "GET", "/", pairs)))
    assert seen[200] and seen[400], seen
    if "_cursor" not in pinned:
        assert seen[302], seen  # _actor redirects to the filter of the actor it names


def test_the_list_with_several_values(fuzz_app, signed_in_cookie):
    """Filters of several values (issue 16), alone and with any other parameters: the
    repeated ones give pages (200), bad values among good ones and too many values 400s,
    never a 5xx; exports of several values too."""
    client = session_client(fuzz_app, signed_in_cookie)
    several = st.lists(
        st.sampled_from(sorted(SEVERAL)).flatmap(lambda name: SEVERAL[name]),
        min_size=1,
        max_size=3,
    ).map(lambda groups: [pair for group in groups for pair in group])
    rest = pick(st.just([]), valid_query(VALID), query(VALID, max_size=3))
    seen = run(
        80,
        st.tuples(several, rest).map(lambda t: t[0] + t[1]),
        lambda pairs: check(send(client, "GET", "/", pairs)),
    )
    assert seen[200] and seen[400], seen


def test_the_exports(fuzz_app, signed_in_cookie):
    client = session_client(fuzz_app, signed_in_cookie)
    filters = {k: v for k, v in VALID.items() if k != "_format"}
    formats = st.sampled_from(EXPORT_FORMATS).map(lambda f: [("_format", f)])
    seen = run(
        40,
        st.tuples(formats, pick(valid_query(filters), query(filters, max_size=3))).map(
            lambda t: t[1] + t[0]
        ),
        lambda pairs: check(send(client, "GET", "/", pairs)),
    )
    assert seen[200] and seen[400], seen


def test_the_action_page_and_its_items(fuzz_app, signed_in_cookie, fuzz_log):
    client = session_client(fuzz_app, signed_in_cookie)
    ids = st.one_of(
        st.sampled_from(sorted(fuzz_log.ids.values())).map(str),
        st.integers(1, fuzz_log.max_id + 2).map(str),
        action_id,
    )
    seen = run(
        80,
        st.tuples(ids, pick(query(ITEM_PARAMS, max_size=3), valid_query(ITEM_PARAMS))),
        lambda t: check(send(client, "GET", "/actions/" + encode(t[0]), t[1])),
    )
    assert seen[200] and seen[400] and seen[404], seen


def test_the_actor_search(fuzz_app, signed_in_cookie):
    client = session_client(fuzz_app, signed_in_cookie)
    seen = run(
        60,
        pick(query(ACTORS_PARAMS), valid_query(ACTORS_PARAMS)),
        lambda pairs: check(send(client, "GET", "/actors", pairs)),
    )
    assert seen[200] and seen[400], seen


def test_the_live_view(fuzz_app, signed_in_cookie):
    """The Live page (it takes no parameter) and its poll (``after``, ``mark``)."""
    client = session_client(fuzz_app, signed_in_cookie)
    seen = run(
        80,
        pick(
            st.tuples(st.just("/live"), pick(st.just([]), query({}, max_size=2))),
            st.tuples(st.just("/live/poll"), pick(query(LIVE_PARAMS), valid_query(LIVE_PARAMS))),
        ),
        lambda t: check(send(client, "GET", t[0], t[1])),
    )
    assert seen[200] and seen[400], seen


def test_a_records_history(fuzz_app, signed_in_cookie):
    """``/history/<type>?id=&_cursor=&_size=``: any type (a tracked one, an event's, none,
    hostile), any id, position and size."""
    client = session_client(fuzz_app, signed_in_cookie)
    seen = run(
        80,
        st.tuples(
            any_value(HISTORY_TYPES),
            pick(query(HISTORY_PARAMS, max_size=4), valid_query(HISTORY_PARAMS)),
        ),
        lambda t: check(send(client, "GET", "/history/" + encode(t[0]), t[1])),
    )
    assert seen[200] and seen[400] and seen[404], seen


def test_the_static_files(fuzz_app):
    client = fuzz_app.test_client()
    names = st.one_of(
        st.sampled_from(["viewer.css", "viewer.js", "favicon.svg"]),
        st.sampled_from(["../templates/audit_viewer/base.html", "%2e%2e/x", "/etc/passwd", "."]),
        st.text(any_character, min_size=1, max_size=20),
        raw_bytes,
    )
    seen = run(
        30,
        st.tuples(METHODS, names, query({}, max_size=2)),
        lambda t: check(
            send(
                client,
                t[0],
                "/static/" + encode(t[1]),
                t[2],
            )
        ),
    )
    assert seen[200] and seen[404], seen


REAL_TOKEN = "the session's own token"


# where to go after signing in: this site's pages, and the ways out of it browsers take
NEXT = st.sampled_from(
    [
        "/",
        "/?source=api",
        "/actions/1",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "/%2F/evil.example",
        "https://evil.example",
        "javascript:alert(1)",
    ]
)


def test_sign_in(fuzz_app):
    fields = {  # valid or nearly: query() and any_value() add the hostile values
        "username": st.sampled_from(["alice", "ALICE", " alice ", "bob"]),
        "password": st.just(PASSWORD),
        "next": NEXT,
    }
    next_url = any_value(fields["next"])
    alice = [("username", "alice"), ("password", PASSWORD)]
    wrong = st.tuples(any_value(fields["username"]), any_value(fields["password"])).filter(
        lambda pair: pair != ("alice", PASSWORD)
    )
    form = pick(
        next_url.map(lambda n: [*alice, ("next", n)]),
        st.just(alice),
        wrong.map(lambda pair: [("username", pair[0]), ("password", pair[1])]),
        query(fields, max_size=4),
        valid_query(fields),
    )

    def step(drawn) -> Sent:
        method, token, fields, pairs = drawn
        client = fuzz_app.test_client()
        real = csrf_token(client)
        posted = [("csrf_token", real if token == REAL_TOKEN else token), *fields]
        sent = check(send(client, method, "/sign-in", pairs, posted if method == "POST" else None))
        if sent.status == 302 and method == "POST":  # signed in: where it went answers
            check(send(client, "GET", sent.headers["Location"]))
        return sent

    seen = run(
        40,
        st.tuples(
            st.sampled_from(["POST"] * 4 + ["GET", "HEAD", "PUT"]),
            pick(st.just(REAL_TOKEN), st.just(REAL_TOKEN), hostile),
            form,
            query({"next": next_url}, max_size=2),
        ),
        step,
    )
    assert seen[302] and seen[400] and seen[401], seen


def test_signed_in_goes_only_to_this_site(fuzz_app):
    """Signed in (a POST with the right name, password and token), and then asking the
    sign-in page again: either way, the redirect to ``next`` stays on this site."""

    def step(next_url: Value) -> Sent:
        client = fuzz_app.test_client()
        form = [("csrf_token", csrf_token(client)), ("username", "alice"), ("password", PASSWORD)]
        sent = check(send(client, "POST", "/sign-in", form=[*form, ("next", next_url)]))
        assert sent.status == 302, sent.body[-1000:]
        again = check(send(client, "GET", "/sign-in", [("next", next_url)]))
        assert again.status == 302 and again.headers["Location"] == sent.headers["Location"]
        return sent

    assert set(run(25, any_value(NEXT), step)) == {302}


def test_sign_out_without_its_token(fuzz_app, signed_in_cookie):
    def step(drawn) -> Sent:
        method, form = drawn
        client = session_client(fuzz_app, signed_in_cookie)
        sent = check(send(client, method, "/sign-out", form=form))
        assert check(send(client, "GET", "/")).status == 200  # still signed in
        return sent

    seen = run(
        20,
        st.tuples(METHODS, query({"csrf_token": hostile}, max_size=3)),
        step,
    )
    assert seen[400] and seen[405], seen


ANY_ROUTE = st.one_of(
    st.tuples(st.just("/"), pick(query(VALID), valid_query(VALID))),
    st.tuples(st.integers(1, 40).map(lambda n: f"/actions/{n}"), query(ITEM_PARAMS, max_size=2)),
    st.tuples(action_id.map(lambda a: "/actions/" + encode(a)), st.just([])),
    st.tuples(st.just("/actors"), query(ACTORS_PARAMS)),
    st.tuples(st.sampled_from(["/live", "/live/poll"]), query(LIVE_PARAMS, max_size=3)),
    st.tuples(st.sampled_from(["/history/client", "/history/call"]), query(HISTORY_PARAMS)),
    st.tuples(st.sampled_from(["/sign-in", "/sign-out", "/nowhere", "/actions/"]), query({})),
)


def test_anonymous_requests_are_sent_to_sign_in(fuzz_app, fuzz_log):
    client = fuzz_app.test_client()

    def step(drawn) -> Sent:
        method, (path, pairs) = drawn
        sent = check(send(client, method, path, pairs))
        if (
            path in ("/", "/actors", "/live", "/live/poll") or path.startswith("/history/")
        ) and method in ("GET", "HEAD"):
            assert sent.status == 302 and sent.headers["Location"].startswith("/sign-in")
        assert "Alice Admin" not in sent.body  # nothing of the log
        return sent

    seen = run(60, st.tuples(METHODS, ANY_ROUTE), step)
    assert seen[302] and seen[405], seen


def test_the_blueprint_in_a_host_application(host_app, fuzz_log):
    admin = host_app.test_client()
    admin.get("/login/admin")
    anonymous = host_app.test_client()
    matcher = host_app.url_map.bind("localhost")

    def step(drawn) -> Sent:
        signed_in, method, (path, pairs) = drawn
        client = admin if signed_in else anonymous
        sent = send(client, method, PREFIX + path, pairs)
        try:  # the host's own 404 and 405 (no viewer route matched) are the host's pages
            endpoint, _ = matcher.match(unquote_to_bytes(sent.path.split("?")[0]).decode(), method)
            ours = endpoint.startswith("audit_viewer.")
        except Exception:
            ours = False
        check(sent, viewer=ours)
        if ours and not signed_in and not endpoint.endswith(".static"):
            assert sent.status == 403
        return sent

    seen = run(80, st.tuples(st.booleans(), METHODS, ANY_ROUTE), step)
    assert seen[200] and seen[400] and seen[403], seen
