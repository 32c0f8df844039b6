"""How fast the viewer's pages are on a big log, end to end through its own query code.

    python3 -m uv run --frozen python bench/viewer_speed.py                  # 1,000,000 actions
    python3 -m uv run --frozen python bench/viewer_speed.py --rows 10000000  # the full report
    ... --runs 7 --json results.json --keep (leave the server running; Ctrl-C stops it)
    ... --data DIR      keep the filled server in DIR and reuse it on the next run
    ... --only 'q='     time only the cases whose name holds this text (repeatable)

It starts its own PostgreSQL, installs revision 0001 of the audit schema, fills the log
with bench/fill_log.py, upgrades to head (which builds the viewer's indexes
CONCURRENTLY over the filled log, as on a live system; the build time is reported),
runs VACUUM ANALYZE, and then times, through ``audit_capture.viewer`` itself
(``parse_filters`` + ``list_page`` / ``export_csv``, rows turned into Python objects)
over a read-only connection of a LOGIN role granted audit_reader, with a
statement_timeout like the viewer's:

* the first page of each single filter value, of combined filters, of a departed
  admin (rare and old), of a combination that matches nothing, of text searches (an
  absent word, two letters, a medium word in ~1% of the log, a common word);
* keyset pages 100,000 and 5,000,000 rows deep (the cursor of the row at that depth is
  read once, untimed, then the page after it is timed);
* a CSV export of ~100,000 rows: time, and memory (peak traced Python allocation and
  growth of the process's peak RSS).

Each case runs once to warm up, then ``--runs`` times; the table (stdout) shows the
median and the worst. Targets: every page < 50 ms, the CSV export < 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import signal
import statistics
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fill_log  # noqa: E402

from audit_capture import migrate  # noqa: E402
from audit_capture.embedded import EmbeddedPostgresql  # noqa: E402
from audit_capture.viewer import cursor as cursors  # noqa: E402
from audit_capture.viewer.errors import TooBroad  # noqa: E402
from audit_capture.viewer.export import export_csv  # noqa: E402
from audit_capture.viewer.filters import parse_filters  # noqa: E402
from audit_capture.viewer.pages import list_page  # noqa: E402
from audit_capture.viewer.present import count_text  # noqa: E402

DATABASE = "viewer_bench"
VIEWER_ROLE = "viewer_bench"
TZ = ZoneInfo("UTC")
PAGE_TARGET_MS = 50.0
CSV_TARGET_MS = 1000.0
STATEMENT_TIMEOUT_MS = 5000
SERVER_ARGS = (
    "-h 127.0.0.1 -F -c logging_collector=off -c full_page_writes=off "
    "-c synchronous_commit=off -c max_connections=20 -c shared_buffers=4GB "
    "-c max_wal_size=16GB -c checkpoint_timeout=30min -c maintenance_work_mem=1GB "
    "-c max_parallel_maintenance_workers=2"
)

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Result:
    case: str
    kind: str  # "page" or "csv"
    samples_ms: list[float] = field(default_factory=list)
    rows: int | None = None
    note: str = ""
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms else None

    @property
    def worst(self) -> float | None:
        return max(self.samples_ms) if self.samples_ms else None

    @property
    def target(self) -> float:
        return CSV_TARGET_MS if self.kind == "csv" else PAGE_TARGET_MS

    @property
    def met(self) -> bool:
        return self.error is None and self.worst is not None and self.worst < self.target


# -- setup ------------------------------------------------------------------------------


def prepare(server: EmbeddedPostgresql, rows: int) -> tuple[str, dict]:
    """The filled, indexed, analyzed database; (viewer's URL, facts for the report)."""
    facts: dict = {"rows": rows}
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(VIEWER_ROLE)))
    url = server.url(DATABASE)
    log("installing revision 0001 (the log without the viewer's indexes)")
    migrate.upgrade(url, "0001")
    log(f"filling the log with {rows:,} actions")
    with psycopg.connect(url, autocommit=True) as conn:
        facts["fill_s"] = fill_log.fill(conn, rows, log=log)
    log("upgrading to head: the viewer's indexes, built concurrently")
    started = time.perf_counter()
    migrate.upgrade(url, "head")
    facts["index_build_s"] = time.perf_counter() - started
    log(f"  indexes built in {facts['index_build_s']:.1f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        log("vacuum analyze")
        conn.execute("vacuum analyze audit.action_log")
        conn.execute("vacuum analyze audit.action_item_chunk")
        facts["indexes"] = {
            name: size
            for name, size in conn.execute(
                "select c.relname, pg_relation_size(c.oid) from pg_index i"
                " join pg_class c on c.oid = i.indexrelid"
                " where i.indrelid = 'audit.action_log'::regclass order by 1"
            )
        }
        facts["table_bytes"] = conn.execute("select pg_table_size('audit.action_log')").fetchone()[
            0
        ]
        conn.execute(
            sql.SQL("create role {} login in role audit_reader").format(sql.Identifier(VIEWER_ROLE))
        )
    return url, facts


def viewer_connection(server: EmbeddedPostgresql) -> psycopg.Connection:
    """Like the viewer's: its own LOGIN role (audit_reader), read-only, with a timeout."""
    port = server.settings["port"]
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        dbname=DATABASE,
        user=VIEWER_ROLE,
        autocommit=True,
        options=f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}",
        application_name="viewer_speed",
    )


# -- cases --------------------------------------------------------------------------------


def page_cases(conn: psycopg.Connection) -> list[tuple[str, dict]]:
    """(name, URL parameters) of every first page timed."""
    cases: list[tuple[str, dict]] = [("no filter", {})]
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
        cases.append((f"action_type={value}", {"action_type": value}))
    for value in ("admin", "client", "system"):
        cases.append((f"actor_type={value}", {"actor_type": value}))
    for value in ("web", "api", "ai", "mobile", "database"):
        cases.append((f"source={value}", {"source": value}))
    for value in ("client", "case", "case_task", "campaign", "batch_job", "integration", "call"):
        cases.append((f"resource={value}", {"resource": value}))
    today = datetime.now(UTC).date()
    cases += [
        ("actor=id:admin-0 (busiest admin)", {"actor": "id:admin-0"}),
        ("actor=id:client-42 (one client)", {"actor": "id:client-42"}),
        ("actor=name:postgres (database role)", {"actor": "name:postgres"}),
        ("actor=name:crm_migrator (database role)", {"actor": "name:crm_migrator"}),
        (
            "from..to: one week, a year ago",
            {"from": str(today - timedelta(days=372)), "to": str(today - timedelta(days=365))},
        ),
        (
            "3 filters: web + admin + update",
            {"source": "web", "actor_type": "admin", "action_type": "update"},
        ),
        (
            "3 filters: api + client resource + delete",
            {"source": "api", "resource": "client", "action_type": "delete"},
        ),
        (
            "3 filters: admin-7 + case + status_change",
            {"actor": "id:admin-7", "resource": "case", "action_type": "status_change"},
        ),
        ("rare and old: actor=id:departed-1", {"actor": "id:departed-1"}),
        ("matches nothing: admin-20 + mobile", {"actor": "id:admin-20", "source": "mobile"}),
        (
            "matches nothing: departed-2 + api + login",
            {"actor": "id:departed-2", "source": "api", "action_type": "login"},
        ),
        (
            "matches nothing: source=mobile + actor_type=system",
            {"source": "mobile", "actor_type": "system"},
        ),
        ("text absent: q=zyxwv", {"q": "zyxwv"}),
        ("text 2 letters: q=qz (absent)", {"q": "qz"}),
        ("text 2 letters: q=jo (no such word)", {"q": "jo"}),
        ("text prefix: q=jo* (2.1M rows)", {"q": "jo*"}),
        ("text prefix: q=mar* smi*", {"q": "mar* smi*"}),
        ("text ~1%: q=maria", {"q": "maria"}),
        ("text ~1%, 2 words: q=maria smith", {"q": "maria smith"}),
        ("text common: q=updated", {"q": "updated"}),
        ("text + filter: q=maria + source=api", {"q": "maria", "source": "api"}),
        (
            "text 2 words + filter: q=maria smith + source=api",
            {"q": "maria smith", "source": "api"},
        ),
        ("text prefix + word: q=mari* smith", {"q": "mari* smith"}),
        ("text prefix + absent word: q=mar* zzz", {"q": "mar* zzz"}),
        ("text 2 words, no match together: q=smith johnson", {"q": "smith johnson"}),
    ]
    return cases


def time_page(conn, name: str, args: dict, runs: int, cursor: str | None = None) -> Result:
    result = Result(name, "page")
    try:
        for run in range(runs + 1):
            started = time.perf_counter()
            filters = parse_filters(args, TZ)
            page = list_page(conn, filters, cursor=cursor)
            elapsed = (time.perf_counter() - started) * 1000
            if run:  # the first run warms up
                result.samples_ms.append(elapsed)
        result.rows = len(page.rows)
        result.note = count_text(page.count)
    except TooBroad as exc:
        result.error = f"TooBroad: {exc}"
    return result


def deep_cursor(conn: psycopg.Connection, depth: int) -> str:
    """The cursor of the row ``depth`` rows into the log (read once, not timed)."""
    occurred_at, action_id = conn.execute(
        "select occurred_at, id from audit.action_log order by occurred_at desc, id desc"
        " offset %s limit 1",
        (depth,),
    ).fetchone()
    return cursors.encode(occurred_at, action_id)


def csv_filter(conn: psycopg.Connection, wanted: int) -> dict:
    """A date filter matching about ``wanted`` rows: from the day of the row that deep."""
    (occurred_at,) = conn.execute(
        "select occurred_at from audit.action_log order by occurred_at desc, id desc"
        " offset %s limit 1",
        (wanted - 1,),
    ).fetchone()
    return {"from": str(occurred_at.astimezone(TZ).date() + timedelta(days=1))}


def time_csv(conn, args: dict, runs: int) -> Result:
    filters = parse_filters(args, TZ)
    result = Result(f"CSV export, {filters.sentence()}", "csv")
    try:
        for run in range(runs + 1):
            started = time.perf_counter()
            size = lines = 0
            for chunk in export_csv(conn, filters):
                size += len(chunk)
                lines += chunk.count(b"\n")
            elapsed = (time.perf_counter() - started) * 1000
            if run:
                result.samples_ms.append(elapsed)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        for _chunk in export_csv(conn, filters):
            pass
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        result.rows = lines - 1  # the header; no value here holds a newline
        result.note = (
            f"{size / 1e6:.1f} MB; peak Python allocation {peak / 1024:.0f} KiB, "
            f"peak RSS growth {rss_growth / 1024:.1f} MiB"
        )
    except TooBroad as exc:
        result.error = f"TooBroad: {exc}"
    return result


# -- report -------------------------------------------------------------------------------


def report(results: list[Result], facts: dict) -> str:
    header = ("case", "rows", "median ms", "worst ms", "target", "met", "count / note")
    lines = []
    for r in results:
        lines.append(
            (
                r.case,
                "-" if r.rows is None else f"{r.rows:,}",
                "-" if r.median is None else f"{r.median:.1f}",
                "-" if r.worst is None else f"{r.worst:.1f}",
                f"< {r.target:g} ms",
                "yes" if r.met else "NO",
                r.error or r.note,
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]

    def fmt(row):
        return "  ".join(
            str(v).ljust(w) if i in (0, 6) else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    out = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]
    indexes = ", ".join(f"{name} {size / 2**20:,.0f} MB" for name, size in facts["indexes"].items())
    out += [
        "",
        f"{facts['rows']:,} actions (table {facts['table_bytes'] / 2**20:,.0f} MB); "
        f"fill {facts['fill_s']['actions']:.1f} s + items {facts['fill_s']['items']:.1f} s; "
        f"viewer indexes built concurrently in {facts['index_build_s']:.1f} s",
        f"indexes: {indexes}",
        f"end to end through audit_capture.viewer (parse_filters + list_page / export_csv), "
        f"read-only audit_reader login, statement_timeout {STATEMENT_TIMEOUT_MS} ms; "
        f"median and worst of {facts['runs']} runs after a warm-up; "
        f"{sum(r.met for r in results)}/{len(results)} within target",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the server running after the report (Ctrl-C stops it)",
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

    def wanted(name: str) -> bool:
        return not args.only or any(text in name for text in args.only)

    # Ctrl-C or SIGTERM stops the server through the finally below, even when the run was
    # started in the background with SIGINT ignored
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
            log(f"reusing the log of {args.rows:,} actions filled earlier")
        facts["runs"] = args.runs
        results: list[Result] = []
        with viewer_connection(server) as conn:
            for name, params in page_cases(conn):
                if wanted(name):
                    results.append(time_page(conn, name, params, args.runs))
                    log(f"  {name}: {results[-1].median or 0:.1f} ms {results[-1].error or ''}")
            for depth in (100_000, 5_000_000):
                real = min(depth, args.rows - 200)
                name = f"keyset page {real:,} rows deep"
                if wanted(name):
                    results.append(time_page(conn, name, {}, args.runs, deep_cursor(conn, real)))
                    log(f"  {name}: {results[-1].median or 0:.1f} ms")
            if wanted("CSV export"):
                results.append(time_csv(conn, csv_filter(conn, 100_000), args.runs))
                log(f"  {results[-1].case}: {results[-1].median or 0:.1f} ms")
        print(report(results, facts))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "facts": facts,
                        "results": [
                            dict(asdict(r), median=r.median, worst=r.worst, met=r.met)
                            for r in results
                        ],
                    },
                    indent=2,
                    default=str,
                )
            )
        if args.keep:
            log(f"server kept at {url} (Ctrl-C stops it)")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    finally:
        log("stopping PostgreSQL")
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
