"""Exports over HTTP, through the real server: ``audit-capture viewer`` (waitress) in a
subprocess on 127.0.0.1, read by a plain HTTP client.

- every row of a 100,000-row export arrives, in CSV, JSON, NDJSON and OCSF;
- the server's memory does not grow with the size of the export (peak RSS after 100,000
  rows against after 10,000);
- a failure mid-stream (the database connection killed) ends the chunked response
  without its terminating chunk, so the client sees an incomplete body, never a
  clean-looking short file;
- a client that goes away gives the export's database connection back to the pool
  (idle, its transaction ended), where the next page finds it.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
from processes import first_line
from viewer_data import PASSWORD, USERS, drop_role, make_reader, role_sessions

ROWS = 100_000
FEW_ROWS = 10_000
# enough for an export to outgrow what the server and the sockets buffer (waitress holds
# up to 16 MB), so that it is still reading from the database when the test cuts it
BLOCKED_ROWS = 40_000
MB = 1024 * 1024
# what the server's peak RSS may grow between 10,000-row and 100,000-row exports: the
# 90,000 more rows are ~90 MB of CSV and ~120 MB of JSON, so a server that held them
# would grow far past this; what it does hold is bounded: up to 16 MB of output that
# waitress keeps for a client slower than the server, a FETCH of rows, the allocator's
# fragmentation
RSS_GROWTH_LIMIT = 50 * MB


def fill(conn: psycopg.Connection, count: int, resource_type: str) -> None:
    """``count`` actions of about 1 KB each, in one statement (as the superuser, straight
    into the log: the only way to write this many quickly)."""
    conn.execute(
        """
        insert into audit.action_log (occurred_at, action, action_type, resource_type,
          resource_id, resource_label, row_count, actor_id, actor_name, actor_type, source,
          changes, db_user, transaction_id, request_id, context)
        select now() - make_interval(secs => g), 'Client updated', 'update', %(type)s,
          g::text, 'Client ' || g, 1, 'a-' || (g %% 40), 'Admin ' || (g %% 40), 'admin', 'web',
          jsonb_build_object('notes', jsonb_build_object('old', repeat('o', 400),
                                                         'new', repeat('n', 400))),
          'crm_app', 1000 + g, 'req-' || g, '{"page": "/clients"}'
        from generate_series(1, %(count)s) g
        """,
        {"type": resource_type, "count": count},
    )
    conn.commit()
    conn.execute("analyze audit.action_log")  # as autovacuum would: plans that stream
    conn.commit()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Viewer:
    """``audit-capture viewer`` serving in a subprocess; a signed-in cookie."""

    def __init__(self, process: subprocess.Popen, port: int):
        self.process = process
        self.port = port
        self.cookie = ""

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict | None = None
    ) -> http.client.HTTPResponse:
        conn = self.connection()
        all_headers = {"Cookie": self.cookie, **(headers or {})}
        conn.request(method, path, body=body, headers=all_headers)
        sock = conn.sock
        response = conn.getresponse()
        response.hang_up = lambda: (response.close(), sock.close())  # the socket's last user
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response

    def sign_in(self) -> None:
        page = self.request("GET", "/sign-in").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        from urllib.parse import urlencode

        response = self.request(
            "POST",
            "/sign-in",
            body=urlencode(
                {
                    "csrf_token": unescape(token),
                    "username": "alice",
                    "password": PASSWORD,
                    "next": "/",
                }
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response.read()
        assert response.status == 302, response.status

    def peak_rss(self) -> int:
        """The server process's peak resident memory so far (VmHWM), in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


@contextmanager
def viewer_process(
    reader_url: str,
    tmp_path: Path,
    threads: int = 4,
    statement_timeout_ms: int = 5000,
    pool_max_size: int = 4,
):
    settings = tmp_path / "viewer.toml"
    users = "\n".join(f'{name} = "{password_hash}"' for name, password_hash in USERS.items())
    settings.write_text(
        f'secret_key = "{secrets.token_urlsafe(48)}"\n'
        f"statement_timeout_ms = {statement_timeout_ms}\n"
        f"pool_max_size = {pool_max_size}\n[users]\n{users}\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_CAPTURE_")}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("audit-capture")),
            "viewer",
            "--database-url",
            reader_url,
            "--config",
            str(settings),
            "--port",
            str(port),
            "--threads",
            str(threads),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    viewer = Viewer(process, port)
    try:
        # printed once it listens
        assert first_line(process).startswith("audit-capture viewer: serving"), (
            process.stderr.read()
        )
        viewer.sign_in()
        yield viewer
    finally:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture
def reader(conn, db_url):
    name, url = make_reader(conn, db_url)
    yield name, url
    conn.rollback()
    # the role's sessions (a viewer that failed to stop) must not keep it from being dropped
    conn.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (name,)
    )
    conn.commit()
    drop_role(conn, name)


def export(viewer: Viewer, query: str) -> http.client.HTTPResponse:
    response = viewer.request("GET", f"/?{query}")
    assert response.status == 200, re.findall(
        r"<p class=\"message\">(.*?)</p>", response.read().decode(), re.S
    )
    assert response.getheader("Transfer-Encoding") == "chunked"
    return response


def csv_ids(response: http.client.HTTPResponse, pause: float = 0) -> list[int]:
    """The id column of a CSV export, read as it streams (after a ``pause`` of so many
    seconds, once the server has filled its buffers: a slow client)."""
    time.sleep(pause)
    table = csv.reader(io.TextIOWrapper(response, encoding="utf-8", newline=""))
    header = next(table)
    assert header[0] == "id"
    return [int(row[0]) for row in table]


def json_ids(response: http.client.HTTPResponse) -> list[int]:
    """The ids of a JSON export (one object a line between ``[`` and ``]``), read as it
    streams; checks the array is whole."""
    lines = io.TextIOWrapper(response, encoding="utf-8")
    assert next(lines) == "[\n"
    ids = []
    last = None
    for line in lines:
        last = line
        if line.startswith("{"):
            ids.append(json.loads(line.rstrip(",\n"))["id"])
    assert last == "]\n"
    return ids


def ndjson_ids(response: http.client.HTTPResponse, key=lambda line: line["id"]) -> list[int]:
    """The ids of an NDJSON export (one whole JSON object a line, the last line ended),
    read as it streams; ``key`` finds the id in a line (an OCSF event's metadata.uid)."""
    ids = []
    for line in io.TextIOWrapper(response, encoding="utf-8"):
        assert line.endswith("\n")
        ids.append(int(key(json.loads(line))))
    return ids


def ocsf_ids(response: http.client.HTTPResponse) -> list[int]:
    return ndjson_ids(response, key=lambda event: event["metadata"]["uid"])


def sql_ids(conn: psycopg.Connection, where: str = "true") -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            f"select id from audit.action_log where {where} order by occurred_at desc, id desc"
        )
    ]


def test_exports_of_100k_rows_arrive_whole_and_memory_stays_flat(conn, reader, tmp_path):
    fill(conn, FEW_ROWS, "few")
    fill(conn, ROWS - FEW_ROWS, "many")
    # one worker thread: glibc gives each thread its own malloc arena, so with several
    # the peak grows with the number of threads that have served an export, whatever
    # their sizes; with one, any growth is the export's own
    # and a statement timeout far shorter than the download of the slow client below
    with viewer_process(reader[1], tmp_path, threads=1, statement_timeout_ms=1000) as viewer:
        few = sql_ids(conn, "resource_type = 'few'")
        assert len(few) == FEW_ROWS
        # a first export warms the server up (imports, caches); the peak after a second
        # small one is the reference
        assert csv_ids(export(viewer, "resource=few&_format=csv")) == few
        assert json_ids(export(viewer, "resource=few&_format=json")) == few
        assert ndjson_ids(export(viewer, "resource=few&_format=ndjson")) == few
        assert ocsf_ids(export(viewer, "resource=few&_format=ocsf")) == few
        after_few = viewer.peak_rss()

        everything = sql_ids(conn)
        assert len(everything) >= ROWS
        assert csv_ids(export(viewer, "_format=csv"), pause=2) == everything
        assert json_ids(export(viewer, "_format=json")) == everything
        assert ndjson_ids(export(viewer, "_format=ndjson")) == everything
        assert ocsf_ids(export(viewer, "_format=ocsf")) == everything
        after_many = viewer.peak_rss()
        assert after_many - after_few < RSS_GROWTH_LIMIT, (after_few, after_many)
        assert viewer.process.poll() is None


def export_backends(conn: psycopg.Connection, role: str) -> list[int]:
    """The viewer's sessions in the middle of an export (a COPY batch, or a JSON one)."""
    conn.rollback()
    pids = [
        r[0]
        for r in conn.execute(
            "select pid from pg_stat_activity where usename = %s"
            " and (query ilike 'copy (%%' or query ilike '%%json_build_object%%')",
            (role,),
        )
    ]
    conn.commit()
    return pids


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)
    return result


def test_a_failure_mid_export_is_an_incomplete_response(conn, reader, tmp_path):
    fill(conn, BLOCKED_ROWS, "many")
    fill(conn, 100, "few")
    role, url = reader
    with viewer_process(url, tmp_path) as viewer:
        for export_format in ("csv", "json", "ndjson", "ocsf"):
            response = export(viewer, f"_format={export_format}")
            received = len(response.read(64 * 1024))
            assert received == 64 * 1024, export_format
            pids = wait_for(lambda: export_backends(conn, role), "the export's session")
            conn.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) pid", (pids,))
            conn.commit()
            # what the server had sent still arrives; then the body ends without its
            # last (zero-length) chunk: the client knows the file is incomplete
            with pytest.raises(http.client.IncompleteRead):
                while chunk := response.read(1024 * 1024):
                    received += len(chunk)
            assert viewer.process.poll() is None, export_format
            # and the viewer serves the next export whole
            assert csv_ids(export(viewer, "resource=few&_format=csv")) == sql_ids(
                conn, "resource_type = 'few'"
            ), export_format


def test_a_client_that_goes_away_gives_the_export_s_connection_back_to_the_pool(
    conn, reader, tmp_path
):
    fill(conn, BLOCKED_ROWS, "many")
    role, url = reader
    # a pool of one connection: the page after an export is served only if the export
    # gave its connection back
    with viewer_process(url, tmp_path, pool_max_size=1) as viewer:
        for export_format in ("csv", "json", "ndjson", "ocsf"):
            response = export(viewer, f"_format={export_format}")
            response.read(64 * 1024)
            (exporting,) = wait_for(lambda: export_backends(conn, role), "the export's session")
            response.hang_up()  # the client goes away mid-export
            wait_for(lambda: not export_backends(conn, role), "the export's session to end")
            # the same session, idle in the pool: its transaction ended, not closed
            wait_for(
                lambda pid=exporting: role_sessions(conn, role) == [(pid, "idle")],
                "the export's session to be idle in the pool",
            )
            page = viewer.request("GET", "/?resource=many")
            assert page.status == 200, page.read()
            page.read()
            assert role_sessions(conn, role) == [(exporting, "idle")]


@pytest.mark.parametrize("actor", ["busy", "o'brien%_\\ü—李&_format=json"])
def test_an_actor_s_export_is_every_row_in_order_across_its_sources(conn, reader, tmp_path, actor):
    # the actor's rows in every source and none, two at each instant, among others':
    # the export merges its per-source reads (batches of ITERSIZE meet across sources)
    fill(conn, 3_000, "other")
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " actor_id, actor_name, actor_type, db_user, transaction_id, source)"
        " select now() - make_interval(secs => g / 2), 'Client updated', 'update', 'client',"
        " %s, 'Bea Busy', 'admin', 'crm_app', 1,"
        " (array['web', 'api', 'ai', 'mobile', null])[1 + g * 7 %% 5]"
        " from generate_series(1, 5000) g",
        (actor,),
    )
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()
    expected = [
        r[0]
        for r in conn.execute(
            "select id from audit.action_log where actor_id = %s"
            " order by occurred_at desc, id desc",
            (actor,),
        )
    ]
    assert len(expected) == 5000
    query = urlencode({"actor": "id:" + actor})
    with viewer_process(reader[1], tmp_path) as viewer:
        assert csv_ids(export(viewer, query + "&_format=csv")) == expected
        assert json_ids(export(viewer, query + "&_format=json")) == expected
        nobody = urlencode({"actor": "id:" + actor + "%"})
        assert csv_ids(export(viewer, nobody + "&_format=csv")) == []
