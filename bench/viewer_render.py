"""What building a list page costs in Python: the viewer's Flask app in process (its
test client, no HTTP server), on a small realistic log.

    python3 -m uv run --frozen python bench/viewer_render.py                # 50 and 200 rows
    ... --runs 50 --rows 20000 --profile 200 (cProfile of the 200-row page, top functions)
    ... --data DIR      keep the filled server in DIR and reuse it next time

It starts its own PostgreSQL, installs the audit schema at head, fills the log with
bench/fill_log.py (``--rows`` actions: ~2,000 skewed actors, every source, resource and
action type, single-row and many-row actions) and, beside every fifth of the newest 400
actions, a copy with a long actor name, label and ids (40-90 characters; some
right-to-left, one with a hidden control character, which ``present.user_text`` marks).
Then it signs a test client in (the viewer's zone: Europe/Paris) and times
``GET /?_size=N``: the whole request (``total``), and
the two parts the page's ``Server-Timing`` header names (``db``: the queries;
``render``: the template). Each cell is the median of ``--runs`` requests after a
warm-up; the bytes are the page's body. Timings only mean something on an idle machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import secrets
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from werkzeug.security import generate_password_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fill_log  # noqa: E402

from audit_capture import migrate  # noqa: E402
from audit_capture.embedded import EmbeddedPostgresql  # noqa: E402
from audit_capture.viewer import create_app  # noqa: E402
from audit_capture.viewer.app import close  # noqa: E402

DATABASE = "viewer_render"
ROLE = "viewer_render"
USER, PASSWORD = "bench", "bench-password-not-secret"
TIMING = re.compile(r"(\w+);dur=([0-9.]+)")
FILLED = "viewer_render_rows"  # in --data DIR: the number of actions filled there

LONG_NAMES = [
    "Maria-Guadalupe Fernández de la Concepción Rodríguez-Santos",
    "שרה לוי־כהן, מחלקת הקליטה המשפטית",  # right-to-left
    "Jean-Baptiste Alexandre Montgomery-Whitfield III (paralegal)",
    "Evil\u202eAdmin with a hidden override in the middle of the name",
]
LONG_LABELS = [
    "Acme Holdings International Ltd. v. Northwind Logistics & Freight (appeal, 2nd circuit)",
    "قضية التعويض عن الإصابة في مكان العمل - الملف رقم ٤٥٢٣",  # right-to-left
    "Spring intake campaign for personal-injury leads in the tri-state area, wave 3",
]


def make_long(conn: psycopg.Connection, newest: int) -> None:
    """Among the ``newest`` actions, beside every fifth one, a copy with a long name,
    label and id (inserted: the log refuses UPDATE)."""
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " resource_id, resource_label, row_count, actor_id, actor_name, actor_type, source,"
        " changes, db_user, transaction_id)"
        " select occurred_at + interval '1 microsecond', action, action_type, resource_type,"
        "  case when resource_id is not null"
        "   then '00000000-0000-4000-8000-' || lpad(n::text, 12, '0') end,"
        "  case when resource_label is not null then (%(labels)s::text[])[1 + n %% %(nl)s] end,"
        "  row_count, 'long-actor-' || n %% 7 || '-with-a-long-identifier-000000000' || n,"
        "  (%(names)s::text[])[1 + n %% %(nn)s], actor_type, source, changes, db_user,"
        "  transaction_id"
        " from (select *, row_number() over (order by occurred_at desc, id desc) as n"
        "       from audit.action_log order by occurred_at desc, id desc limit %(newest)s) r"
        " where n %% 5 = 0",
        {
            "labels": LONG_LABELS,
            "nl": len(LONG_LABELS),
            "names": LONG_NAMES,
            "nn": len(LONG_NAMES),
            "newest": newest,
        },
    )


def prepare(server: EmbeddedPostgresql, rows: int) -> str:
    """The filled database; the URL of a LOGIN role granted audit_reader."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    url = server.url(DATABASE)
    migrate.upgrade(url, "head")
    with psycopg.connect(url, autocommit=True) as conn:
        fill_log.fill(conn, rows, days=30)
        make_long(conn, 400)
        conn.execute("vacuum analyze audit.action_log")
        conn.execute(
            sql.SQL("create role {} login in role audit_reader").format(sql.Identifier(ROLE))
        )
    return f"postgresql://{ROLE}@127.0.0.1:{server.settings['port']}/{DATABASE}"


def signed_in(app):
    client = app.test_client()
    page = client.get("/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/sign-in",
        data={"csrf_token": token, "username": USER, "password": PASSWORD, "next": "/"},
    )
    assert answer.status_code == 302, answer.text
    return client


def server_timing(header: str | None) -> dict[str, float]:
    return {name: float(ms) for name, ms in TIMING.findall(header or "")}


def measure(client, size: int, runs: int) -> dict[str, float]:
    path = f"/?_size={size}"
    samples: dict[str, list[float]] = {"total": [], "db": [], "render": []}
    body = b""
    for run in range(runs + 1):
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.text[:500]
        body = response.data
        if run:  # the first warms up
            samples["total"].append(elapsed)
            for name, ms in server_timing(response.headers.get("Server-Timing")).items():
                samples.setdefault(name, []).append(ms)
    medians = {name: statistics.median(v) for name, v in samples.items() if v}
    medians["bytes"] = len(body)
    medians["rows"] = body.count(b"<tr>") - 1  # the head's row
    return medians


def profile(client, size: int, runs: int, top: int) -> str:
    client.get(f"/?_size={size}")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        client.get(f"/?_size={size}")
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    stats.print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="actions in the log")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--profile", type=int, metavar="SIZE", help="cProfile this page size")
    parser.add_argument("--top", type=int, default=30, help="functions the profile lists")
    parser.add_argument("--data", type=Path, metavar="DIR", help="keep (reuse) the server here")
    args = parser.parse_args(argv)

    filled = args.data / FILLED if args.data else None
    if filled is not None and filled.exists() and int(filled.read_text()) != args.rows:
        parser.error(
            f"--data {args.data} holds {filled.read_text()} actions, not --rows {args.rows}"
        )
    server = EmbeddedPostgresql(**({"base_dir": str(args.data.resolve())} if args.data else {}))
    try:
        if filled is not None and filled.exists():
            reader_url = f"postgresql://{ROLE}@127.0.0.1:{server.settings['port']}/{DATABASE}"
        else:
            reader_url = prepare(server, args.rows)
            if filled is not None:
                filled.write_text(str(args.rows))
        app = create_app(
            {
                "DATABASE_URL": reader_url,
                "SECRET_KEY": secrets.token_urlsafe(48),
                "USERS": {USER: generate_password_hash(PASSWORD)},
                "TIMEZONE": "Europe/Paris",
            }
        )
        try:
            client = signed_in(app)
            print(f"{'page':<10} {'rows':>5} {'total ms':>9} {'db ms':>7}", end="")
            print(f" {'render ms':>10} {'bytes':>8}")
            for size in args.sizes:
                m = measure(client, size, args.runs)
                print(
                    f"_size={size:<4} {int(m['rows']):>5} {m['total']:>9.2f}"
                    f" {m.get('db', float('nan')):>7.2f} {m.get('render', float('nan')):>10.2f}"
                    f" {int(m['bytes']):>8,}"
                )
            print(f"(median of {args.runs} requests after a warm-up; Flask test client)")
            if args.profile:
                print(profile(client, args.profile, args.runs, args.top))
        finally:
            close(app)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
