"""How fast the viewer's pages are on a big log: over HTTP as an admin feels it, and
through its own query code.

    python3 -m uv run --frozen python bench/viewer_speed.py                  # 1,000,000 actions
    python3 -m uv run --frozen python bench/viewer_speed.py --rows 10000000  # the full report
    ... --runs 7 --json results.json --keep (leave the servers running; Ctrl-C stops them)
    ... --repeat 3      three whole runs, side by side (noise shows as their spread)
    ... --data DIR      keep the filled server in DIR and reuse it (upgraded to head) next time
    ... --only 'q='     time only the cases whose name holds this text (repeatable)

It starts its own PostgreSQL, installs the audit schema at head, drops the viewer's
indexes of audit.action_log (inserting 10 million rows under the GIN index is several
times slower), fills the log with bench/fill_log.py, builds those indexes again from
their saved definitions (the build time is reported), runs VACUUM ANALYZE, and creates a
LOGIN role granted audit_reader. Then it starts ``audit-capture viewer`` (waitress) as a
subprocess on 127.0.0.1, with a settings file holding a user whose hash comes from
``audit-capture viewer hash-password``, and signs in over HTTP like a browser (GET
/sign-in, its CSRF token, POST, the session cookie). Each case is timed two ways:

* **query**: through ``audit_capture.viewer`` itself (``parse_filters`` + ``list_page`` /
  ``export_csv``, rows turned into Python objects) over a read-only connection of that
  role, with a statement_timeout like the viewer's;
* **HTTP**: the full round trip of ``GET /?...`` to the last byte, over one persistent
  keep-alive connection (as a browser's), signed in. Each HTTP page's action ids (its
  ``/actions/<id>`` links, in order) must equal the query layer's rows for the same case:
  a page showing other rows is a failed case, whatever its time.

The cases: the first page of each single filter value, of combined filters, of a
departed admin (rare and old), of combinations that match nothing, of text searches
(absent words, prefixes, rare and common words, several words, with filters; and the
searches of issue 12: ``mari* smith``, ``mar*``, ``maria smith``, ``portal login``,
``smith`` and its page 21, ``lawruler`` + login, ``garcia`` + client + case), a busy
admin with source=database (no match), a page of 200 rows; keyset pages 100,000 and
5,000,000 rows deep (the cursor of the row at that depth is read once, untimed); a
record's history (issue 16, ``/history/client?id=``: a row with single-row actions
only, a client in bulk actions too, and that client's deepest ``Older`` link at 10 a
page; ``history_cases``; the HTTP check reads each row's action link); and a
CSV export of 100,000 rows or more (from the day of the 100,000th newest row): its time
at both layers, the rows compared, and memory (the bench's own peak traced Python
allocation and peak RSS growth; the viewer process's VmHWM and VmRSS,
/proc/<pid>/status, before and after its exports).

Each case runs once to warm up, then ``--runs`` times; the table (stdout) shows the
median and the worst of each layer per whole run (``--repeat``), side by side, and the
medians of the two parts the viewer's ``Server-Timing`` header names in each HTTP
response (``db``: its query layer; ``render``: its template). Targets:
every HTTP page < 50 ms, the median page < 20 ms, the CSV export over HTTP < 1 s with
the viewer's memory flat.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import io
import json
import os
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fill_log  # noqa: E402
from werkzeug.datastructures import MultiDict  # noqa: E402

from audit_capture import migrate  # noqa: E402
from audit_capture.embedded import EmbeddedPostgresql  # noqa: E402
from audit_capture.viewer import cursor as cursors  # noqa: E402
from audit_capture.viewer.db import configure_session  # noqa: E402
from audit_capture.viewer.errors import BadRequest, TooBroad  # noqa: E402
from audit_capture.viewer.export import export_csv  # noqa: E402
from audit_capture.viewer.filters import parse_filters  # noqa: E402
from audit_capture.viewer.pages import list_page  # noqa: E402
from audit_capture.viewer.present import count_text  # noqa: E402
from audit_capture.viewer.resource_history import find_resource, history_page  # noqa: E402

DATABASE = "viewer_bench"
VIEWER_ROLE = "viewer_bench"
VIEWER_USER = "bench"
VIEWER_THREADS = 4
TZ = ZoneInfo("UTC")
PAGE_TARGET_MS = 50.0
MEDIAN_PAGE_TARGET_MS = 20.0
CSV_TARGET_MS = 1000.0
CSV_ROWS = 100_000
MIN_ROWS = 1_000
STATEMENT_TIMEOUT_MS = 5000
SERVER_ARGS = (
    "-h 127.0.0.1 -F -c logging_collector=off -c full_page_writes=off "
    "-c synchronous_commit=off -c max_connections=40 -c shared_buffers=4GB "
    "-c max_wal_size=16GB -c checkpoint_timeout=30min -c maintenance_work_mem=1GB "
    "-c max_parallel_maintenance_workers=2"
)
# the ids of the rows of a list page, in order: each row links its action twice
ACTION_LINK = re.compile(r'href="/actions/([0-9]+)"')
# the ids of the rows of a history page, in order: each row links its action once (a
# bulk action's link opens it at the row's item: /actions/<id>?items_after=...)
HISTORY_ACTION_LINK = re.compile(r'class="action-name" href="/actions/([0-9]+)[?"]')
HISTORY_PATH = "/history/"
#: how deep the deep history case goes at most: its page
HISTORY_DEEP_PAGE = 21
# a part of the viewer's Server-Timing header: "db;dur=2.41"
SERVER_TIMING_PART = re.compile(r"([A-Za-z0-9_-]+);dur=([0-9]+(?:\.[0-9]+)?)")

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Timing:
    """One layer's samples of one case in one whole run."""

    samples_ms: list[float] = field(default_factory=list)
    error: str | None = None
    # HTTP only: the parts of each sample the viewer's Server-Timing header names (the
    # query layer, the template), ms
    db_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms else None

    @property
    def worst(self) -> float | None:
        return max(self.samples_ms) if self.samples_ms else None

    @property
    def db_median(self) -> float | None:
        return statistics.median(self.db_ms) if self.db_ms else None

    @property
    def render_median(self) -> float | None:
        return statistics.median(self.render_ms) if self.render_ms else None


@dataclass
class Result:
    """A case: its query-layer and HTTP timings, one of each per whole run (--repeat)."""

    case: str
    kind: str  # "page", "csv", or "floor" (HTTP only, no database)
    query: list[Timing] = field(default_factory=list)
    http: list[Timing] = field(default_factory=list)
    rows: int | None = None
    note: str = ""
    skipped: str = ""  # why the case cannot run on this log (too small)

    @property
    def target(self) -> float:
        return CSV_TARGET_MS if self.kind == "csv" else PAGE_TARGET_MS

    @property
    def errors(self) -> list[str]:
        return list(dict.fromkeys(t.error for t in (*self.query, *self.http) if t.error))

    @property
    def met(self) -> bool:
        """No error, and the HTTP worst of every run within the target."""
        return (
            not self.skipped
            and not self.errors
            and bool(self.http)
            and all(t.worst is not None and t.worst < self.target for t in self.http)
        )


@dataclass
class Case:
    """A timed page: its URL parameters (filters, and ``_size``), and the number of pages
    to go down first (by their next cursors, untimed), or a cursor to start from.
    ``path``: the list (``/``), or a record's history (``/history/<type>``, its
    ``params`` the row's ``id``); ``deepest``: go down as many of the ``page - 1`` pages
    as the history has (a small log's has fewer), rather than skip the case."""

    name: str
    params: dict
    page: int = 1
    cursor: str | None = None
    path: str = "/"
    deepest: bool = False

    @property
    def history(self) -> bool:
        return self.path.startswith(HISTORY_PATH)


# -- setup ------------------------------------------------------------------------------


def index_sizes(conn: psycopg.Connection) -> dict[str, int]:
    """The bytes of each index of audit.action_log, by name: a partitioned index's are
    its partitions' (pg_partition_tree)."""
    return {
        name: size
        for name, size in conn.execute(
            "select c.relname, (select sum(pg_relation_size(t.relid))::bigint"
            " from pg_partition_tree(c.oid) t) from pg_index i"
            " join pg_class c on c.oid = i.indexrelid"
            " where i.indrelid = 'audit.action_log'::regclass order by 1"
        )
    }


def prepare(server: EmbeddedPostgresql, rows: int) -> tuple[str, dict]:
    """The filled, indexed, analyzed database; (its URL, facts for the report)."""
    facts: dict = {"rows": rows}
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(VIEWER_ROLE)))
    url = server.url(DATABASE)
    log("installing the audit schema at head")
    migrate.upgrade(url, "head")
    with psycopg.connect(url, autocommit=True) as conn:
        facts["fill_s"], facts["index_build_s"] = fill_log.fill_unindexed(conn, rows, log=log)
        log("vacuum analyze")
        conn.execute("vacuum analyze audit.action_log")
        conn.execute("vacuum analyze audit.action_item_chunk")
        # written now, not by the shutdown checkpoint (GBs of dirty buffers after a 10M
        # fill: the server's stop timed out waiting for it)
        conn.execute("checkpoint")
        facts["indexes"] = index_sizes(conn)
        facts["table_bytes"] = conn.execute(
            "select sum(pg_table_size(relid))::bigint from pg_partition_tree('audit.action_log')"
        ).fetchone()[0]
        facts["partitions"] = conn.execute("select count(*) from audit.log_partitions").fetchone()[
            0
        ]
        conn.execute(
            sql.SQL("create role {} login in role audit_reader").format(sql.Identifier(VIEWER_ROLE))
        )
    return url, facts


def viewer_url(server: EmbeddedPostgresql) -> str:
    return f"postgresql://{VIEWER_ROLE}@127.0.0.1:{server.settings['port']}/{DATABASE}"


def viewer_connection(server: EmbeddedPostgresql) -> psycopg.Connection:
    """Like the viewer's: its own LOGIN role (audit_reader), its session made as the
    viewer makes its own (``configure_session``: read-only, a timeout, no JIT)."""
    conn = psycopg.connect(viewer_url(server), autocommit=True, application_name="viewer_speed")
    configure_session(conn, STATEMENT_TIMEOUT_MS)
    return conn


# -- the viewer over HTTP -------------------------------------------------------------------


def audit_capture_command() -> str:
    """The ``audit-capture`` script beside this Python (the project's environment)."""
    return str(Path(sys.executable).with_name("audit-capture"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_line(process: subprocess.Popen, guard: float = 120) -> str:
    """The first line the process writes to its stdout, or '' if it ends without one."""
    assert process.stdout is not None
    read: list[str] = []
    reader = threading.Thread(target=lambda: read.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(guard)
    if reader.is_alive():
        process.kill()
        raise RuntimeError(f"the viewer printed no line in {guard:g} s")
    return read[0]


class Viewer:
    """``audit-capture viewer`` serving in a subprocess, and a signed-in browser-like
    client: one keep-alive connection and the session cookie."""

    def __init__(self, process: subprocess.Popen, port: int):
        self.process = process
        self.port = port
        self.cookie = ""
        self.password = ""
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        # the durations of the last response's Server-Timing header, by name (ms)
        self.server_timing: dict[str, float] = {}

    def request(self, method: str, path: str, body: str | None = None, headers=None):
        """(status, body, response) of one request on the persistent connection."""
        all_headers = {"Cookie": self.cookie, **(headers or {})} if self.cookie else headers
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=all_headers or {})
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                # the server closed the idle connection: a browser opens another
                self.conn.close()
                if attempt == 2:
                    raise
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        self.server_timing = server_timing(response.getheader("Server-Timing"))
        return response.status, data, response

    def get(self, params: dict, path: str = "/") -> tuple[int, bytes]:
        # a filter of several values is a list: the parameter repeated (source=web&source=api)
        status, data, _response = self.request("GET", f"{path}?" + urlencode(params, doseq=True))
        return status, data

    def sign_in(self, password: str) -> None:
        status, page, _ = self.request("GET", "/sign-in")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.decode())
        if status != 200 or not found:
            raise RuntimeError(f"GET /sign-in answered {status} without a CSRF token")
        status, _, _ = self.request(
            "POST",
            "/sign-in",
            body=urlencode(
                {
                    "csrf_token": unescape(found.group(1)),
                    "username": VIEWER_USER,
                    "password": password,
                    "next": "/",
                }
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 302:
            raise RuntimeError(f"signing in answered {status}, not 302")

    def memory(self) -> dict[str, int]:
        """The viewer process's peak (VmHWM) and current (VmRSS) resident memory, bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return {
            key: int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) * 1024
            for key in ("VmHWM", "VmRSS")
        }


@contextlib.contextmanager
def viewer_process(server: EmbeddedPostgresql) -> Iterator[Viewer]:
    """The viewer serving the bench database through its reader role, signed in."""
    password = secrets.token_urlsafe(16)
    hashed = subprocess.run(
        [audit_capture_command(), "viewer", "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    workdir = tempfile.TemporaryDirectory(prefix="viewer_bench_")
    settings = Path(workdir.name) / "viewer.toml"
    settings.write_text(
        f'secret_key = "{secrets.token_urlsafe(48)}"\n'
        f"statement_timeout_ms = {STATEMENT_TIMEOUT_MS}\n"
        f'[users]\n{VIEWER_USER} = "{hashed}"\n'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_CAPTURE_")}
    # a file, not a pipe nobody reads: a pipe that fills would block the server
    stderr = (Path(workdir.name) / "viewer.stderr").open("w+")
    process = subprocess.Popen(
        [
            audit_capture_command(),
            "viewer",
            "--database-url",
            viewer_url(server),
            "--config",
            str(settings),
            "--port",
            str(port),
            "--threads",
            str(VIEWER_THREADS),
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        line = first_line(process)
        if not line.startswith("audit-capture viewer: serving"):
            process.kill()
            process.wait()
            stderr.seek(0)
            raise RuntimeError(f"the viewer did not start: {line}{stderr.read()}")
        log(line.strip())
        viewer = Viewer(process, port)
        viewer.password = password
        viewer.sign_in(password)
        yield viewer
    finally:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        stderr.seek(0)
        errors = stderr.read()
        stderr.close()
        if errors.strip():
            log(f"the viewer's stderr:\n{errors.rstrip()}")
        workdir.cleanup()


def server_timing(header: str | None) -> dict[str, float]:
    """``{"db": 2.41, "render": 7.9}`` from ``db;dur=2.41, render;dur=7.90`` (ms)."""
    return {name: float(ms) for name, ms in SERVER_TIMING_PART.findall(header or "")}


def page_ids(body: bytes, link: re.Pattern = ACTION_LINK) -> list[int]:
    """The action ids a list page (or, with ``HISTORY_ACTION_LINK``, a history page)
    shows, in order."""
    ids: list[int] = []
    for found in link.findall(body.decode()):
        if not ids or ids[-1] != int(found):
            ids.append(int(found))
    return ids


def page_message(body: bytes) -> str:
    """The message of an error page (or the start of the page)."""
    text = body.decode(errors="replace")
    found = re.search(r'<p class="message">(.*?)</p>', text, re.S)
    return unescape(found.group(1).strip()) if found else text[:200]


# -- cases --------------------------------------------------------------------------------


def page_cases() -> list[Case]:
    """Every page timed."""
    cases: list[Case] = [Case("no filter", {})]
    for value in (
        "create",
        "update",
        "delete",
        "status_change",
        "import",
        "login",
        "logout",
        "export",
        "send",
    ):
        cases.append(Case(f"action_type={value}", {"action_type": value}))
    for value in ("admin", "client", "system"):
        cases.append(Case(f"actor_type={value}", {"actor_type": value}))
    for value in ("web", "api", "ai", "mobile", "database"):
        cases.append(Case(f"source={value}", {"source": value}))
    for value in ("client", "case", "case_task", "campaign", "batch_job", "integration", "call"):
        cases.append(Case(f"resource={value}", {"resource": value}))
    today = datetime.now(UTC).date()
    cases += [
        Case("_size=200 (no filter)", {"_size": "200"}),
        Case("actor=id:admin-0 (busiest admin)", {"actor": "id:admin-0"}),
        Case("actor=id:client-42 (one client)", {"actor": "id:client-42"}),
        Case("actor=id:sys-intake (busiest system actor)", {"actor": "id:sys-intake"}),
        Case("actor=name:postgres (database role)", {"actor": "name:postgres"}),
        Case("actor=name:crm_migrator (database role)", {"actor": "name:crm_migrator"}),
        Case(
            "from..to: one week, a year ago",
            {"from": str(today - timedelta(days=372)), "to": str(today - timedelta(days=365))},
        ),
        Case(
            "3 filters: web + admin + update",
            {"source": "web", "actor_type": "admin", "action_type": "update"},
        ),
        Case(
            "3 filters: api + client resource + delete",
            {"source": "api", "resource": "client", "action_type": "delete"},
        ),
        Case(
            "3 filters: admin-7 + case + status_change",
            {"actor": "id:admin-7", "resource": "case", "action_type": "status_change"},
        ),
        Case("rare and old: actor=id:departed-1", {"actor": "id:departed-1"}),
        Case(
            "matches nothing: admin-0 (busiest) + source=database",
            {"actor": "id:admin-0", "source": "database"},
        ),
        Case("matches nothing: admin-20 + mobile", {"actor": "id:admin-20", "source": "mobile"}),
        Case(
            "matches nothing: departed-2 + api + login",
            {"actor": "id:departed-2", "source": "api", "action_type": "login"},
        ),
        Case(
            "matches nothing: source=mobile + actor_type=system",
            {"source": "mobile", "actor_type": "system"},
        ),
        Case("text absent: q=zyxwv", {"q": "zyxwv"}),
        Case("text 2 letters: q=qz (absent)", {"q": "qz"}),
        Case("text 2 letters: q=jo (no such word)", {"q": "jo"}),
        Case("text prefix: q=jo*", {"q": "jo*"}),
        Case("text prefix: q=mar*", {"q": "mar*"}),
        Case("text prefix: q=mar* smi*", {"q": "mar* smi*"}),
        Case("text ~1%: q=maria", {"q": "maria"}),
        Case("text 2 words: q=maria smith", {"q": "maria smith"}),
        Case("text common: q=updated", {"q": "updated"}),
        Case("text: q=smith", {"q": "smith"}),
        Case("text: q=smith, page 21", {"q": "smith"}, page=21),
        Case("text 2 words: q=portal login", {"q": "portal login"}),
        Case(
            "text + filter: q=lawruler + action_type=login",
            {"q": "lawruler", "action_type": "login"},
        ),
        Case(
            "text + 2 filters: q=garcia + actor_type=client + resource=case",
            {"q": "garcia", "actor_type": "client", "resource": "case"},
        ),
        Case("text + filter: q=maria + source=api", {"q": "maria", "source": "api"}),
        Case(
            "text 2 words + filter: q=maria smith + source=api",
            {"q": "maria smith", "source": "api"},
        ),
        Case("text prefix + word: q=mari* smith", {"q": "mari* smith"}),
        Case("text prefix + absent word: q=mar* zzz", {"q": "mar* zzz"}),
        Case("text 2 words, no match together: q=smith johnson", {"q": "smith johnson"}),
        Case("text rare prefix + common prefix: q=zeb* smi*", {"q": "zeb* smi*"}),
        Case(
            "text + actor: busiest admin + q=maria smith",
            {"actor": "id:admin-0", "q": "maria smith"},
        ),
        Case(
            "text + actor: departed-1 (old rows) + q=smith",
            {"actor": "id:departed-1", "q": "smith"},
        ),
    ]
    # several values per filter (issue 16): any of them, the parameter repeated
    cases += [
        Case("several: source=web or api", {"source": ["web", "api"]}),
        Case("several: source=mobile or database", {"source": ["mobile", "database"]}),
        Case(
            "several: action_type=import or export or send",
            {"action_type": ["import", "export", "send"]},
        ),
        Case("several: resource=case or case_task", {"resource": ["case", "case_task"]}),
        Case(
            "several: actor_type=client or system + source=mobile or database (rare)",
            {"actor_type": ["client", "system"], "source": ["mobile", "database"]},
        ),
        Case(
            "several: 3 admins (busiest, admin-7, admin-20)",
            {"actor": ["id:admin-0", "id:admin-7", "id:admin-20"]},
        ),
        Case(
            "several: 3 admins + source=web or api",
            {"actor": ["id:admin-0", "id:admin-7", "id:admin-20"], "source": ["web", "api"]},
        ),
        Case(
            "several: busiest admin + database role postgres",
            {"actor": ["id:admin-0", "name:postgres"]},
        ),
        Case(
            "several: 2 departed admins (old rows)",
            {"actor": ["id:departed-1", "id:departed-2"]},
        ),
        Case(
            "several: 2 admins + resource=case or client + action_type=update or delete",
            {
                "actor": ["id:admin-0", "id:admin-7"],
                "resource": ["case", "client"],
                "action_type": ["update", "delete"],
            },
        ),
        Case(
            "several, matches nothing: admin-0 or admin-20 + source=database",
            {"actor": ["id:admin-0", "id:admin-20"], "source": "database"},
        ),
        Case(
            "several + text: 3 admins + q=smith",
            {"actor": ["id:admin-0", "id:admin-7", "id:admin-20"], "q": "smith"},
        ),
        Case(
            "several + text: source=web or api + q=maria smith",
            {"source": ["web", "api"], "q": "maria smith"},
        ),
    ]
    return cases


#: the rows of the newest single-row actions of a resource type (candidates for a row
#: whose history holds single-row actions only)
NEWEST_SINGLE_ROWS = """
select resource_id from audit.action_log
where resource_type = %s and row_count = 1 and operation is not null
order by occurred_at desc, id desc limit 20
"""
#: the first row of the newest bulk update of clients: a row in bulk actions (in a
#: several of them on a log of a million actions)
NEWEST_BULK_ROW = """
select i.resource_id
from (select id from audit.action_log
      where resource_type = 'client' and row_count > 1 and operation = 'UPDATE'
      order by occurred_at desc, id desc limit 1) a
cross join lateral audit.action_items(a.id, 1, 1) i
"""
#: a small page, so that the busy row's history has many
HISTORY_DEEP_SIZE = 10


def single_row_resource(conn: psycopg.Connection) -> tuple[str, str] | None:
    """(type, id) of a row whose whole history is single-row actions: among the rows of
    the newest single-row actions of clients, then of integrations (the rarest type in
    bulk actions, bench/sql/fill_log.sql), the first whose history (read as the viewer
    reads it, untimed) holds no bulk action and fits one page."""
    for resource_type in ("client", "integration", "campaign"):
        for (resource_id,) in conn.execute(NEWEST_SINGLE_ROWS, (resource_type,)).fetchall():
            page = history_page(conn, find_resource(conn, resource_type, resource_id))
            if page.next_cursor is None and all(e.row_count == 1 for e in page.entries):
                return resource_type, resource_id
    return None


def history_cases(conn: psycopg.Connection) -> list[Case]:
    """The record's history pages (issue 16), their rows picked from the filled log the
    same way every time: a row whose actions are all single-row ones
    (``single_row_resource``), the first row of the newest bulk update of clients
    (``NEWEST_BULK_ROW``: a row in bulk actions too), and that row's deepest ``Older``
    link at ``HISTORY_DEEP_SIZE`` a page, at most ``HISTORY_DEEP_PAGE`` pages down."""
    cases = []
    single = single_row_resource(conn)
    if single is not None:
        resource_type, resource_id = single
        cases.append(
            Case(
                f"history: {resource_type} #{resource_id} (single-row actions only)",
                {"id": resource_id},
                path=HISTORY_PATH + resource_type,
            )
        )
    found = conn.execute(NEWEST_BULK_ROW).fetchone()
    if found is not None:
        path, busy = HISTORY_PATH + "client", found[0]
        cases += [
            Case(f"history: client #{busy} (in bulk actions too)", {"id": busy}, path=path),
            Case(
                f"history: client #{busy}, its deepest Older link ({HISTORY_DEEP_SIZE} a page,"
                f" page {HISTORY_DEEP_PAGE} at most)",
                {"id": busy, "_size": str(HISTORY_DEEP_SIZE)},
                page=HISTORY_DEEP_PAGE,
                path=path,
                deepest=True,
            ),
        ]
    return cases


class TooSmall(Exception):
    """The case needs a bigger log."""


def split_params(params: dict) -> tuple[dict, int]:
    """(the filters, the page size) of a case's URL parameters."""
    filters = {k: v for k, v in params.items() if k != "_size"}
    return filters, int(params.get("_size", 50))


def history_rows(conn: psycopg.Connection, case: Case, cursor: str | None, size: int):
    """A history case's page at the query layer, as the viewer reads it (its row named,
    then its page of actions)."""
    resource = find_resource(conn, case.path.removeprefix(HISTORY_PATH), case.params["id"])
    return history_page(conn, resource, cursor=cursor, size=size)


def history_start(conn: psycopg.Connection, case: Case) -> tuple[str | None, int]:
    """A history case's start: (the cursor reached by following ``case.page - 1`` Older
    links, untimed; the page it opens). TooSmall when the history has fewer pages, but
    for a ``deepest`` case, which stops at its last page."""
    cursor = case.cursor
    _args, size = split_params(case.params)
    for page in range(1, case.page):
        older = history_rows(conn, case, cursor, size).next_cursor
        if older is None:
            if case.deepest:
                return cursor, page
            raise TooSmall(f"the log is too small: the history has fewer than {case.page} pages")
        cursor = older
    return cursor, case.page


def start_cursor(conn: psycopg.Connection, case: Case) -> str | None:
    """The cursor the timed page starts from: the case's own, or the one reached by
    following ``case.page - 1`` next cursors (untimed)."""
    cursor = case.cursor
    filters, size = split_params(case.params)
    for _ in range(case.page - 1):
        cursor = list_page(
            conn, parse_filters(MultiDict(filters), TZ), cursor=cursor, size=size
        ).next_cursor
        if cursor is None:
            raise TooSmall(f"the log is too small: the filter has fewer than {case.page} pages")
    return cursor


def time_query_page(conn, case: Case, cursor: str | None, runs: int, result: Result) -> list[int]:
    """Times the page at the query layer; its ids (for the HTTP check)."""
    timing = Timing()
    result.query.append(timing)
    filters_args, size = split_params(case.params)
    ids: list[int] = []
    try:
        if case.history:
            return time_query_history(conn, case, cursor, runs, result, timing)
        for run in range(runs + 1):
            started = time.perf_counter()
            filters = parse_filters(MultiDict(filters_args), TZ)
            page = list_page(conn, filters, cursor=cursor, size=size)
            elapsed = (time.perf_counter() - started) * 1000
            if run:  # the first run warms up
                timing.samples_ms.append(elapsed)
        ids = [row.id for row in page.rows]
        result.rows = len(page.rows)
        result.note = count_text(page.count)
    except (TooBroad, BadRequest) as exc:
        timing.error = f"query: {type(exc).__name__}: {exc}"
    return ids


def time_query_history(
    conn, case: Case, cursor: str | None, runs: int, result: Result, timing: Timing
) -> list[int]:
    """Times a history page at the query layer (``history_rows``); its action ids."""
    _args, size = split_params(case.params)
    for run in range(runs + 1):
        started = time.perf_counter()
        page = history_rows(conn, case, cursor, size)
        elapsed = (time.perf_counter() - started) * 1000
        if run:
            timing.samples_ms.append(elapsed)
    result.rows = len(page.entries)
    items = sum(len(e.items) for e in page.entries)
    bulk = sum(e.row_count > 1 for e in page.entries)
    result.note = f"{bulk} of them bulk, {items} items; " + (
        "an older page follows" if page.next_cursor else "the last page"
    )
    return [e.action_id for e in page.entries]


def time_http_page(
    viewer: Viewer, case: Case, cursor: str | None, runs: int, result: Result, ids: list[int]
) -> None:
    """Times the page over HTTP, to its last byte; checks it shows ``ids``."""
    timing = Timing()
    result.http.append(timing)
    params = dict(case.params)
    if cursor:
        params["_cursor"] = cursor
        if not case.history:  # a history page has only older pages
            params["_dir"] = "next"
    for run in range(runs + 1):
        started = time.perf_counter()
        status, body = viewer.get(params, path=case.path)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            timing.error = f"HTTP {status}: {page_message(body)}"
            return
        shown = page_ids(body, HISTORY_ACTION_LINK if case.history else ACTION_LINK)
        if shown != ids:
            timing.error = (
                f"HTTP page shows other rows than the query layer: {len(shown)} ids "
                f"{shown[:3]}..., expected {len(ids)} {ids[:3]}..."
            )
            return
        if run:
            timing.samples_ms.append(elapsed)
            record_parts(viewer, timing)


def record_parts(viewer: Viewer, timing: Timing) -> None:
    """The db and render durations of the last response's Server-Timing (when it had one)."""
    parts = getattr(viewer, "server_timing", {})
    if "db" in parts:
        timing.db_ms.append(parts["db"])
    if "render" in parts:
        timing.render_ms.append(parts["render"])


FLOOR_CASE = "HTTP floor: GET /static/viewer.css (no database)"


def time_http_floor(viewer: Viewer, runs: int, result: Result) -> None:
    """What any request costs: the server, Flask and the socket, without the database."""
    timing = Timing()
    result.http.append(timing)
    result.note = "what every page pays before its queries and template"
    for run in range(runs + 1):
        started = time.perf_counter()
        status, body, _response = viewer.request("GET", "/static/viewer.css")
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            timing.error = f"HTTP {status} for the stylesheet"
            return
        if run:
            timing.samples_ms.append(elapsed)


def deep_cursor(conn: psycopg.Connection, depth: int) -> str:
    """The cursor of the row ``depth`` rows into the log (read once, not timed)."""
    occurred_at, action_id = conn.execute(
        "select occurred_at, id from audit.action_log order by occurred_at desc, id desc"
        " offset %s limit 1",
        (depth,),
    ).fetchone()
    return cursors.encode(occurred_at, action_id)


def csv_filter(conn: psycopg.Connection, wanted: int) -> dict:
    """A date filter matching at least ``wanted`` rows (up to a day's more): from the day
    of the row that deep."""
    (occurred_at,) = conn.execute(
        "select occurred_at from audit.action_log order by occurred_at desc, id desc"
        " offset %s limit 1",
        (wanted - 1,),
    ).fetchone()
    return {"from": str(occurred_at.astimezone(TZ).date())}


def csv_id_column(data: bytes) -> list[int]:
    table = csv.reader(io.StringIO(data.decode(), newline=""))
    header = next(table)
    if header[0] != "id":
        raise ValueError(f"the CSV's first column is {header[0]!r}, not id")
    return [int(row[0]) for row in table]


def time_query_csv(conn, args: dict, runs: int, result: Result) -> list[int]:
    """Times the export at the query layer; the ids it exported."""
    timing = Timing()
    result.query.append(timing)
    filters = parse_filters(MultiDict(args), TZ)
    data = b""
    try:
        for run in range(runs + 1):
            started = time.perf_counter()
            chunks = [chunk for chunk in export_csv(conn, filters)]
            elapsed = (time.perf_counter() - started) * 1000
            if run:
                timing.samples_ms.append(elapsed)
        data = b"".join(chunks)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        for _chunk in export_csv(conn, filters):
            pass
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        result.note = (
            f"{len(data) / 1e6:.1f} MB; query layer: peak Python allocation "
            f"{peak / 1024:.0f} KiB, peak RSS growth {rss_growth / 1024:.1f} MiB"
        )
    except TooBroad as exc:
        timing.error = f"query: TooBroad: {exc}"
        return []
    ids = csv_id_column(data)
    result.rows = len(ids)
    return ids


def time_http_csv(
    viewer: Viewer, args: dict, runs: int, result: Result, ids: list[int], facts: dict
) -> None:
    """Times the export over HTTP to its last byte, checks its rows, and the viewer's
    memory before and after (its peak and current RSS)."""
    timing = Timing()
    result.http.append(timing)
    first = viewer.memory()
    before = first
    for run in range(runs + 1):
        started = time.perf_counter()
        status, body = viewer.get({**args, "_format": "csv"})
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            timing.error = f"HTTP {status}: {page_message(body)}"
            return
        exported = csv_id_column(body)
        if exported != ids:
            timing.error = (
                f"the HTTP export holds {len(exported):,} rows, not the query layer's {len(ids):,}"
            )
            return
        del body, exported
        if run:
            timing.samples_ms.append(elapsed)
            record_parts(viewer, timing)
        else:  # the warm-up export: what a first export costs the server is not growth
            # (nor, wholly, is the growth after it: each of the server's threads that
            # serves an export first grows its own glibc malloc arena; see
            # tests/test_viewer_export_http.py, which measures with one thread)
            before = viewer.memory()
    after = viewer.memory()
    memory = facts.setdefault("viewer_memory", [])
    memory.append({"before_warm_up": first, "before": before, "after": after})
    result.note += (
        f"; viewer process: peak RSS {first['VmHWM'] / 2**20:.0f} (before the warm-up "
        f"export), {before['VmHWM'] / 2**20:.0f} -> "
        f"{after['VmHWM'] / 2**20:.0f} MiB, RSS {before['VmRSS'] / 2**20:.0f} -> "
        f"{after['VmRSS'] / 2**20:.0f} MiB over {runs} timed exports"
    )


def whole_run(conn, viewer: Viewer, results: dict[str, Result], args, facts: dict) -> None:
    """Every case once at each layer (``args.runs`` timed samples each), appended to
    ``results`` (a case's results of earlier whole runs are kept)."""

    def wanted(name: str) -> bool:
        return not args.only or any(text in name for text in args.only)

    if wanted(FLOOR_CASE):
        result = results.setdefault(FLOOR_CASE, Result(FLOOR_CASE, "floor"))
        time_http_floor(viewer, args.runs, result)
    cases = page_cases()
    for depth in sorted({min(depth, args.rows - 200) for depth in (100_000, 5_000_000)}):
        cases.append(Case(f"keyset page {depth:,} rows deep", {}, cursor=deep_cursor(conn, depth)))
    cases += history_cases(conn)
    for case in cases:
        if not wanted(case.name):
            continue
        result = results.setdefault(case.name, Result(case.name, "page"))
        try:
            if case.history:
                cursor, reached = history_start(conn, case)
            else:
                cursor, reached = start_cursor(conn, case), case.page
        except TooSmall as exc:
            result.skipped = str(exc)
            log(f"  {case.name}: skipped, {exc}")
            continue
        ids = time_query_page(conn, case, cursor, args.runs, result)
        if case.history and case.page > 1:
            result.note = f"page {reached}; {result.note}"
        time_http_page(viewer, case, cursor, args.runs, result, ids)
        q, h = result.query[-1], result.http[-1]
        log(
            f"  {case.name}: query {q.median or 0:.1f} ms, HTTP {h.median or 0:.1f} ms"
            f" (db {ms(h.db_median)}, render {ms(h.render_median)})"
            f" {' '.join(result.errors)}"
        )
    if wanted("CSV export"):
        export_args = csv_filter(conn, min(CSV_ROWS, args.rows))
        name = f"CSV export, {parse_filters(MultiDict(export_args), TZ).sentence()}"
        result = results.setdefault(name, Result(name, "csv"))
        ids = time_query_csv(conn, export_args, args.runs, result)
        time_http_csv(viewer, export_args, args.runs, result, ids, facts)
        q, h = result.query[-1], result.http[-1]
        log(f"  {name}: query {q.median or 0:.1f} ms, HTTP {h.median or 0:.1f} ms")


# -- report -------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def median_page(results: list[Result], run: int, layer: str) -> float | None:
    """The median over the pages of their median in whole run ``run``."""
    medians = [
        getattr(r, layer)[run].median
        for r in results
        if r.kind == "page" and len(getattr(r, layer)) > run and getattr(r, layer)[run].median
    ]
    return statistics.median(medians) if medians else None


def median_part(results: list[Result], run: int, part: str) -> float | None:
    """The median over the pages of the median ``part`` (``db_median`` or
    ``render_median``, from the Server-Timing header) of their HTTP samples in whole run
    ``run``."""
    values = [
        getattr(r.http[run], part)
        for r in results
        if r.kind == "page" and len(r.http) > run and getattr(r.http[run], part) is not None
    ]
    return statistics.median(values) if values else None


def report(results: list[Result], facts: dict) -> str:
    repeat = facts["repeat"]
    header = ["case", "rows"]
    for run in range(repeat):
        header.append(f"query #{run + 1}")
    for run in range(repeat):
        header.append(f"HTTP #{run + 1}")
    header += ["target", "met"]
    # the viewer's own account of each HTTP page (Server-Timing): the query layer and the
    # template, medians; the rest of the HTTP time is Flask, waitress and the socket
    for run in range(repeat):
        header.append(f"db / render #{run + 1}")
    header.append("count / note")
    lines = []
    for r in results:
        line = [r.case, "-" if r.rows is None else f"{r.rows:,}"]
        for layer in (r.query, r.http):
            for run in range(repeat):
                t = layer[run] if run < len(layer) else Timing()
                line.append(
                    "ERROR" if t.error else "-" if r.skipped else f"{ms(t.median)} / {ms(t.worst)}"
                )
        met = "-" if r.skipped else "yes" if r.met else "NO"
        line += [f"< {r.target:g}", met]
        for run in range(repeat):
            t = r.http[run] if run < len(r.http) else Timing()
            parts = (t.db_median, t.render_median)
            line.append("-" if parts == (None, None) else f"{ms(parts[0])} / {ms(parts[1])}")
        line.append(r.skipped or "; ".join(r.errors) or r.note)
        lines.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    left = (0, len(header) - 1)

    def fmt(row):
        return "  ".join(
            str(v).ljust(w) if i in left else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    out = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]
    pages = [r for r in results if r.kind == "page" and not r.skipped]
    out.append("")
    for run in range(repeat):
        http_median = median_page(results, run, "http")
        within = sum(
            1
            for r in pages
            if len(r.http) > run
            and not r.http[run].error
            and r.http[run].worst is not None
            and r.http[run].worst < PAGE_TARGET_MS
        )
        out.append(
            f"run #{run + 1}: HTTP pages within {PAGE_TARGET_MS:g} ms (worst): "
            f"{within}/{len(pages)}; median page HTTP {ms(http_median)} ms "
            f"(target < {MEDIAN_PAGE_TARGET_MS:g}), "
            f"query {ms(median_page(results, run, 'query'))} ms; "
            f"its Server-Timing: db {ms(median_part(results, run, 'db_median'))} ms, "
            f"render {ms(median_part(results, run, 'render_median'))} ms"
        )
    indexes = ", ".join(f"{name} {size / 2**20:,.0f} MB" for name, size in facts["indexes"].items())
    out += [
        "",
        f"{facts['rows']:,} actions (table {facts['table_bytes'] / 2**20:,.0f} MB"
        f", {facts.get('partitions', 1)} partitions); "
        f"fill {facts['fill_s']['actions']:.1f} s + items {facts['fill_s']['items']:.1f} s "
        f"(indexes dropped); indexes built again in {facts['index_build_s']:.1f} s",
        f"indexes: {indexes}",
        "each cell: median / worst ms of "
        f"{facts['runs']} runs after a warm-up, per whole run (#); query: audit_capture.viewer "
        "(parse_filters + list_page / export_csv) over a read-only audit_reader login, "
        f"statement_timeout {STATEMENT_TIMEOUT_MS} ms; HTTP: GET to the last byte, "
        f"`audit-capture viewer` (waitress, {VIEWER_THREADS} threads), signed in, "
        "one keep-alive connection, every page's ids checked against the query layer's; "
        "db / render: medians of the viewer's Server-Timing header of the HTTP samples "
        "(db: the query layer, render: the template; an export's is its first rows)",
        f"{sum(r.met for r in results)}/{sum(not r.skipped for r in results)} cases within "
        "target in every run (met: no error and HTTP worst < target)"
        + "".join(f"; skipped: {r.case}" for r in results if r.skipped),
    ]
    return "\n".join(out)


FACTS_FILE = "viewer_bench_facts.json"


def start_server(data: Path | None, rows: int) -> tuple[EmbeddedPostgresql, str, dict | None]:
    """The server, the viewer database's URL, and the facts of an earlier fill of
    ``rows`` actions in ``data`` (None: the database must be prepared)."""
    if data is None:
        server = EmbeddedPostgresql(postgres_args=SERVER_ARGS, boot_timeout=60)
        return server, server.url(DATABASE), None
    data.mkdir(parents=True, exist_ok=True)
    facts_file = data / FACTS_FILE
    facts = json.loads(facts_file.read_text()) if facts_file.exists() else None
    if facts is not None and facts.get("rows") != rows:
        raise SystemExit(
            f"--data {data} holds a log of {facts['rows']:,} actions, not "
            f"{rows:,}; pass --rows {facts['rows']} or another folder"
        )
    if facts is None and (data / "data").exists():
        raise SystemExit(
            f"--data {data} holds a server whose fill did not finish; "
            "remove the folder and run again"
        )
    server = EmbeddedPostgresql(
        postgres_args=SERVER_ARGS, boot_timeout=60, base_dir=str(data.resolve())
    )
    return server, server.url(DATABASE), facts


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive, default=1_000_000)
    parser.add_argument("--runs", type=positive, default=5, help="timed samples per case")
    parser.add_argument(
        "--repeat", type=positive, default=1, help="whole runs, reported side by side"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the servers running after the report (Ctrl-C stops them)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="keep the server's files in DIR (reachable by the server's user) "
        "and reuse a log filled there by an earlier run of the same --rows",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="time only the cases whose name holds TEXT (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.rows < MIN_ROWS:
        parser.error(f"--rows is {args.rows}; give at least {MIN_ROWS:,} (the deep keyset pages)")

    # Ctrl-C or SIGTERM stops the servers through the finally blocks, even when the run
    # was started in the background with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    log("starting PostgreSQL" + (f" in {args.data}" if args.data else ""))
    server, url, facts = start_server(args.data, args.rows)
    try:
        if facts is None:
            url, facts = prepare(server, args.rows)
            if args.data:
                (args.data / FACTS_FILE).write_text(json.dumps(facts))
        else:
            log(f"reusing the log of {args.rows:,} actions filled earlier; upgrading it to head")
            # a revision released since the fill (a new index) is built over the filled log
            started = time.perf_counter()
            migrate.upgrade(url, "head")
            log(f"  at head ({time.perf_counter() - started:.1f} s)")
            with psycopg.connect(url) as conn:
                facts["indexes"] = index_sizes(conn)
        facts["runs"] = args.runs
        facts["repeat"] = args.repeat
        results: dict[str, Result] = {}
        with viewer_connection(server) as conn, viewer_process(server) as viewer:
            for run in range(args.repeat):
                log(f"whole run #{run + 1} of {args.repeat}")
                whole_run(conn, viewer, results, args, facts)
            print(report(list(results.values()), facts))
            if args.json:
                args.json.write_text(
                    json.dumps(
                        {
                            "facts": facts,
                            "results": [
                                dict(asdict(r), met=r.met, errors=r.errors)
                                for r in results.values()
                            ],
                        },
                        indent=2,
                        default=str,
                    )
                )
            if args.keep:
                log(
                    f"servers kept: {url}; http://127.0.0.1:{viewer.port}/ (sign in as "
                    f"{VIEWER_USER} / {viewer.password}); Ctrl-C stops them"
                )
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
    finally:
        log("stopping PostgreSQL")
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
