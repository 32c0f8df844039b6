"""audit-capture archive: closed months to gzip NDJSON plus a manifest, verify, load back.

The log is the viewer tests' morning at the CRM (viewer_data.seed: single-row actions,
an import and a bulk update with item chunks, events, an XSS attempt) plus actions with
hostile text, moved two months back by the superuser (the only way to have closed
months), and actions on the first and last microsecond of a month.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from audit_capture import migrate, record_action, set_context
from audit_capture.archive import Month, archive, load, verify_dir, verify_month
from audit_capture.archive import manifest as manifests
from audit_capture.archive.writer import LOCK_NAME
from audit_capture.cli import cli

HOSTILE = {
    "back\\slash": "C:\\temp\\new\\table",
    "quote": 'say "hi"',
    "lines": "one\ntwo\r\nthree\tfour",
    "unicode": "Zoë 🙂 \u2028 \u00a0",
    '"item_chunks":[': '"item_chunks":[]}',
    "nested": {"list": [1, 2.5, None, True], "empty": {}},
}


def run(url: str | None, *args: str):
    argv = (["--database-url", url] if url else []) + list(args)
    return CliRunner().invoke(cli, argv, env={"AUDIT_CAPTURE_DATABASE_URL": None})


def error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def months_back(conn: psycopg.Connection, n: int) -> Month:
    month = Month.of(conn.execute("select now()").fetchone()[0])
    for _ in range(n):
        month = Month(month.year - (month.month == 1), (month.month - 2) % 12 + 1)
    return month


def age(conn: psycopg.Connection, ids_from: int, months: int) -> None:
    """Moves the actions from id ``ids_from`` on (and their chunks) ``months`` back, as
    the superuser with the log's triggers off (session_replication_role)."""
    conn.commit()
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        shift = f"{months} months"
        conn.execute(
            "update audit.action_item_chunk c set occurred_at = c.occurred_at - %s::interval"
            " where c.action_id >= %s and c.occurred_at <> '-infinity'",
            (shift, ids_from),
        )
        conn.execute(
            "update audit.action_log set occurred_at = occurred_at - %s::interval where id >= %s",
            (shift, ids_from),
        )


def insert_at(conn: psycopg.Connection, when, action: str) -> int:
    action_id = conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
        " transaction_id, changes) values (%s, %s, 'update', 'admin', 'crm_app', 1, %s)"
        " returning id",
        (when, action, json.dumps(HOSTILE)),
    ).fetchone()[0]
    conn.commit()
    return action_id


@pytest.fixture
def past_log(conn):
    """Two months back: the seeded morning and hostile events; the first and last
    microsecond of that month (and one just before it, one just after). Returns the
    month."""
    from viewer_data import seed

    conn.rollback()
    first = conn.execute("select coalesce(max(id), 0) + 1 from audit.action_log").fetchone()[0]
    seed(conn)
    with conn.transaction():
        set_context(
            conn, actor_id="7", actor_name='Zoë \\ "Admin"', actor_type="admin", source="web"
        )
        record_action(
            conn, "export", "Call export to file", changes=HOSTILE, context={"k": HOSTILE}
        )
    age(conn, first, 2)
    month = months_back(conn, 2)
    insert_at(conn, month.start, "First instant")
    insert_at(conn, month.end - timedelta(microseconds=1), "Last instant")
    insert_at(conn, month.start - timedelta(microseconds=1), "Month before")
    insert_at(conn, month.end, "Month after")
    return month


def month_rows(conn, month: Month, schema: str = "audit"):
    log = sql.Identifier(schema, "action_log")
    chunks = sql.Identifier(schema, "action_item_chunk")
    bounds = {"start": month.start, "end": month.end}
    actions = conn.execute(
        sql.SQL(
            "select l::text from {} l where occurred_at >= %(start)s and occurred_at < %(end)s"
            " order by id"
        ).format(log),
        bounds,
    ).fetchall()
    chunk_rows = conn.execute(
        sql.SQL(
            "select c::text, c.item_count from {} c join {} l on l.id = c.action_id"
            " where l.occurred_at >= %(start)s and l.occurred_at < %(end)s"
            " order by c.action_id, c.first_item"
        ).format(chunks, log),
        bounds,
    ).fetchall()
    return actions, chunk_rows


def lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as data:
        return [json.loads(line) for line in data]


# -- archive -----------------------------------------------------------------------


def test_archive_writes_each_closed_month_as_one_file_and_a_manifest(
    db_url, conn, past_log, tmp_path
):
    month = past_log
    result = run(
        db_url,
        "archive",
        "--before",
        str(Month.of(conn.execute("select now()").fetchone()[0])),
        "--to",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    before, after = months_back(conn, 3), months_back(conn, 1)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        f"audit_log_{m}{suffix}"
        for m in (before, month, after)
        for suffix in (".ndjson.gz", ".manifest.json")
    )
    manifest = json.loads((tmp_path / f"audit_log_{month}.manifest.json").read_text())
    actions, chunks = month_rows(conn, month)
    assert manifest["actions"] == len(actions) and manifest["chunks"] == len(chunks) > 0
    assert manifest["items"] == sum(c[1] for c in chunks)
    ids = conn.execute(
        "select min(id), max(id) from audit.action_log"
        " where occurred_at >= %s and occurred_at < %s",
        (month.start, month.end),
    ).fetchone()
    assert (manifest["first_id"], manifest["last_id"]) == ids
    assert manifest["first_occurred_at"] == month.start.isoformat()
    assert manifest["source"]["database"] == conn.info.dbname
    assert manifest["source"]["system_identifier"].isdigit()
    assert manifest["source"]["schema_revision"] == migrate.head()
    assert list(manifest["columns"]["action_log"])[:2] == ["id", "occurred_at"]
    # one line per action, in id order, its chunks with it; hostile text intact
    data = lines(tmp_path / manifest["file"])
    assert len(data) == len(actions) and [line["id"] for line in data] == sorted(
        line["id"] for line in data
    )
    assert {"First instant", "Last instant"} <= {line["action"] for line in data}
    assert not {"Month before", "Month after"} & {line["action"] for line in data}
    hostile = [line for line in data if line["changes"] == HOSTILE]
    assert hostile and hostile[0]["actor_name"] in (None, 'Zoë \\ "Admin"')
    bulk = [line for line in data if line["item_chunks"]]
    assert sum(len(line["item_chunks"]) for line in bulk) == len(chunks)
    assert all(
        isinstance(json.loads(c["items"]), list) for line in bulk for c in line["item_chunks"]
    )
    # the current month is never archived
    current = Month.of(conn.execute("select now()").fetchone()[0])
    assert not (tmp_path / f"audit_log_{current}.manifest.json").exists()


def test_months_are_utc_whatever_the_session_time_zone(db_url, conn, past_log, tmp_path):
    month = past_log
    far_east = make_conninfo(db_url, options="-c TimeZone=Pacific/Kiritimati")
    with psycopg.connect(far_east) as session:
        archive(session, tmp_path, month.next().next())
    by_action = {line["action"]: line for line in lines(tmp_path / manifests.data_name(month))}
    assert by_action["First instant"]["occurred_at"] == month.start.isoformat()
    assert (
        by_action["Last instant"]["occurred_at"]
        == (month.end - timedelta(microseconds=1)).isoformat()
    )
    assert "Month before" not in by_action and "Month after" not in by_action
    following = lines(tmp_path / manifests.data_name(month.next()))
    assert following[0]["action"] == "Month after"


def test_rerun_skips_unchanged_months_and_refuses_a_changed_one(db_url, conn, past_log, tmp_path):
    month = past_log
    assert (
        run(db_url, "archive", "--before", str(month.next()), "--to", str(tmp_path)).exit_code == 0
    )
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = run(db_url, "archive", "--before", str(month.next()), "--to", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert f"{month}: archived already, unchanged" in again.output
    insert_at(conn, month.start + timedelta(days=3), "Late arrival")
    changed = run(db_url, "archive", "--before", str(month.next()), "--to", str(tmp_path))
    line = error_line(changed)
    assert f"{month} changed since it was archived" in line and "actions" in line
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # old files kept


def test_killed_run_leaves_nothing_that_looks_finished_and_a_rerun_completes(
    db_url, conn, past_log, tmp_path
):
    month = past_log
    data_path = tmp_path / manifests.data_name(month)
    # what a run killed while writing leaves: a partial file (hidden) ...
    manifests.partial_path(data_path).write_bytes(b"\x1f\x8b half a month")
    # ... or, killed between the data file's rename and the manifest's, no manifest
    data_path.write_bytes(gzip.compress(b'{"id":1,"occurred_at":"x"}\n'))
    assert "no manifest beside it" in error_line(run(None, "archive", "verify", str(tmp_path)))
    rerun = run(db_url, "archive", "--before", str(month.next()), "--to", str(tmp_path))
    assert rerun.exit_code == 0, rerun.output
    assert not manifests.partial_path(data_path).exists()
    verified = run(None, "archive", "verify", str(tmp_path))
    assert verified.exit_code == 0, verified.output
    assert f"{month}: ok" in verified.output


KILLED_WHILE_WRITING = """
import os, signal, sys
import psycopg
from audit_capture.archive import writer

real_write = writer._HashingWriter.write

def write_then_die(self, data):
    real_write(self, data)
    self.raw.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would, halfway through a file

writer._HashingWriter.write = write_then_die
writer.archive(psycopg.connect(sys.argv[1]), sys.argv[2], sys.argv[3])
"""


def test_a_run_killed_halfway_is_finished_by_the_next(db_url, conn, past_log, tmp_path):
    month = past_log
    oldest = months_back(conn, 3)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_WRITING, db_url, str(tmp_path), str(month.next())],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = manifests.partial_path(tmp_path / manifests.data_name(oldest))
    assert partial.stat().st_size > 0
    assert not list(tmp_path.glob("audit_log_*"))  # nothing that looks finished
    rerun = run(db_url, "archive", "--before", str(month.next()), "--to", str(tmp_path))
    assert rerun.exit_code == 0, rerun.output
    assert not partial.exists()
    assert [result.month for result in verify_dir(tmp_path) if result.ok] == [oldest, month]


def test_open_and_malformed_months_and_bad_folders_are_one_line(db_url, conn, tmp_path):
    current = Month.of(conn.execute("select now()").fetchone()[0])
    line = error_line(
        run(db_url, "archive", "--before", str(current.next()), "--to", str(tmp_path))
    )
    assert f"{current}, the current month (UTC), which is still open" in line
    for bad in ("2025-13", "2025-1", "2025-01-15", "yesterday", "0000-01", "9999-12", ""):
        line = error_line(run(db_url, "archive", "--before", bad, "--to", str(tmp_path)))
        assert f"--before is {bad!r}" in line
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for folder in (blocker, blocker / "sub"):
        line = error_line(run(db_url, "archive", "--before", str(current), "--to", str(folder)))
        assert str(folder) in line
        assert "cannot write to the archive folder" in line or "is a file" in line
    assert "--before YYYY-MM and --to DIR" in run(db_url, "archive", "--to", str(tmp_path)).output
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_no_month_with_actions_archives_nothing(db_url, conn, tmp_path):
    result = run(db_url, "archive", "--before", "2001-01", "--to", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "no action before 2001-01: nothing to archive" in result.output
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_NAME]


def test_a_second_run_on_the_same_folder_is_refused(db_url, conn, past_log, tmp_path):
    with open(tmp_path / LOCK_NAME, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        line = error_line(
            run(db_url, "archive", "--before", str(past_log.next()), "--to", str(tmp_path))
        )
    assert "another archive run is writing to" in line


def test_an_archive_of_another_database_in_the_folder_is_refused(db_url, conn, past_log, tmp_path):
    month = past_log
    archive(conn, tmp_path, month.next())
    path = tmp_path / manifests.manifest_name(month)
    manifest = json.loads(path.read_text())
    manifest["source"]["database"] = "elsewhere"
    path.write_text(json.dumps(manifest))
    line = error_line(run(db_url, "archive", "--before", str(month.next()), "--to", str(tmp_path)))
    assert "is the archive of another database ('elsewhere'" in line


# -- privileges --------------------------------------------------------------------


def test_a_reader_may_archive_and_a_role_without_it_may_not(
    db_url, conn, past_log, make_role, tmp_path
):
    month = past_log
    reader = make_role("grant audit_reader to {role}")
    result = run(reader, "archive", "--before", str(month.next()), "--to", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert verify_dir(tmp_path / "r")[-1].ok
    stranger = make_role()
    line = error_line(
        run(stranger, "archive", "--before", str(month.next()), "--to", str(tmp_path / "s"))
    )
    assert "permission denied" in line
    assert not list((tmp_path / "s").glob("*.ndjson.gz"))


# -- verify ------------------------------------------------------------------------


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-50])


def _edit_counts(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["actions"] += 1
    path.write_text(json.dumps(manifest))


def _edit_sha_and_counts(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["items"] -= 1
    path.write_text(json.dumps(manifest))


TAMPERING = {
    "byte changed": ("data", _flip_a_byte, "its sha256 is"),
    "truncated": ("data", _truncate, "bytes, its manifest says"),
    "data removed": ("data", Path.unlink, "missing"),
    "manifest counts edited": ("manifest", _edit_counts, "actions"),
    "manifest items edited": ("manifest", _edit_sha_and_counts, "items"),
    "manifest removed": ("manifest", Path.unlink, "no manifest beside it"),
    "manifest not json": ("manifest", lambda p: p.write_text("{"), "not valid JSON"),
}


@pytest.mark.parametrize("how", TAMPERING)
def test_verify_names_a_tampered_file_in_one_line(db_url, conn, past_log, tmp_path, how):
    month = past_log
    archive(conn, tmp_path, month.next())
    which, tamper, words = TAMPERING[how]
    path = tmp_path / (
        manifests.data_name(month) if which == "data" else manifests.manifest_name(month)
    )
    tamper(path)
    result = run(None, "archive", "verify", str(tmp_path))
    line = error_line(result)
    assert result.exit_code == 1
    assert f"audit_log_{month}." in line and words in line, line
    assert f"{months_back(conn, 3)}: ok" in result.output  # the other months still check


def test_verify_month_against_the_database(db_url, conn, past_log, tmp_path):
    month = past_log
    archive(conn, tmp_path, month.next())
    assert verify_month(tmp_path, month, conn).ok
    assert verify_month(tmp_path, month.start.date(), conn).ok  # a partition's month date
    assert verify_month(str(tmp_path), str(month)).ok  # the files alone
    empty = months_back(conn, 6)
    assert verify_month(tmp_path, empty, conn).ok  # no action: nothing to archive
    assert "no archive of" in verify_month(tmp_path, empty).problem
    path = tmp_path / manifests.manifest_name(month)
    original = path.read_text()
    path.write_text(original.replace(f'"database": "{conn.info.dbname}"', '"database": "crm2"'))
    foreign = verify_month(tmp_path, month, conn)
    assert not foreign.ok and "the archive of another database ('crm2'" in foreign.problem
    assert verify_month(tmp_path, month).ok  # the files alone agree
    path.write_text(original)
    conn.commit()
    insert_at(conn, month.start + timedelta(days=1), "Late arrival")
    late = verify_month(tmp_path, month, conn)
    assert not late.ok and "changed since it was archived" in late.problem
    assert "actions" in late.problem


# -- load --------------------------------------------------------------------------


def test_load_into_a_schema_gives_every_row_back_identical(db_url, conn, past_log, tmp_path):
    month = past_log
    archive(conn, tmp_path, month.next())
    result = run(db_url, "archive", "load", str(tmp_path / manifests.data_name(month)))
    assert result.exit_code == 0, result.output
    assert f"{month} loaded into schema audit_archive" in result.output
    conn.rollback()
    original, loaded = month_rows(conn, month), month_rows(conn, month, "audit_archive")
    assert original[0] and original[1]
    assert loaded == original  # every column of every action and every chunk
    # a second month into the same schema: allowed; the same month again: refused
    other = months_back(conn, 3)
    assert (
        run(db_url, "archive", "load", str(tmp_path / manifests.manifest_name(other))).exit_code
        == 0
    )
    again = run(db_url, "archive", "load", str(tmp_path / manifests.data_name(month)))
    assert "audit_archive.action_log already holds actions of" in error_line(again)
    # readers may read it
    conn.rollback()
    privileges = conn.execute(
        "select has_table_privilege('audit_reader', 'audit_archive.action_log', 'select')"
    ).fetchone()[0]
    assert privileges


def test_load_of_a_tampered_file_is_refused_before_anything(db_url, conn, past_log, tmp_path):
    month = past_log
    archive(conn, tmp_path, month.next())
    _flip_a_byte(tmp_path / manifests.data_name(month))
    line = error_line(run(db_url, "archive", "load", str(tmp_path / manifests.data_name(month))))
    assert "refused, nothing loaded" in line and manifests.data_name(month) in line
    conn.rollback()
    assert conn.execute("select to_regnamespace('audit_archive')").fetchone()[0] is None


def test_load_refuses_the_live_audit_schema_and_a_schema_of_another_role(
    db_url, conn, past_log, make_role, tmp_path
):
    month = past_log
    archive(conn, tmp_path, month.next())
    path = str(tmp_path / manifests.data_name(month))
    line = error_line(run(db_url, "archive", "load", path, "--schema", "audit"))
    assert "is the one the archive came from" in line
    other = make_role(f"grant create on database {conn.info.dbname} to {{role}}")
    with psycopg.connect(other, autocommit=True) as session:
        session.execute("create schema theirs")
    line = error_line(run(db_url, "archive", "load", path, "--schema", "theirs"))
    assert "schema theirs exists and belongs to" in line
    for bad in ("", " spaced"):
        assert "--schema is" in error_line(run(db_url, "archive", "load", path, "--schema", bad))
    assert "not an archive file" in error_line(run(db_url, "archive", "load", "/etc/hostname"))


def test_load_into_another_database_serves_the_viewer_unchanged(
    db_url, conn, past_log, empty_db_url, tmp_path
):
    """The investigation database: installed with migrate upgrade, the month loaded
    into its audit schema; the viewer's list page, as a reader, shows the month."""
    from viewer_data import app_config, drop_role, make_reader, sign_in

    from audit_capture.viewer import create_app
    from audit_capture.viewer.app import close

    month = past_log
    archive(conn, tmp_path, month.next())
    migrate.upgrade(empty_db_url, "head")
    result = run(
        empty_db_url,
        "archive",
        "load",
        str(tmp_path / manifests.data_name(month)),
        "--schema",
        "audit",
    )
    assert result.exit_code == 0, result.output
    conn.rollback()
    with psycopg.connect(empty_db_url) as investigation:
        assert month_rows(investigation, month) == month_rows(conn, month)
        ids = [
            row[0]
            for row in conn.execute(
                "select id from audit.action_log where occurred_at >= %s and occurred_at < %s",
                (month.start, month.end),
            )
        ]
        items = "select * from audit.action_items(%s)"
        for action_id in ids:
            assert (
                investigation.execute(items, (action_id,)).fetchall()
                == conn.execute(items, (action_id,)).fetchall()
            ), action_id
        # a later insert there does not collide with the loaded ids
        next_id = investigation.execute(
            "select nextval(pg_get_serial_sequence('audit.action_log', 'id'))"
        ).fetchone()[0]
        assert next_id > max(ids)
        name, reader_url = make_reader(investigation, empty_db_url)
        viewer = create_app(app_config(reader_url))
        try:
            client = viewer.test_client()
            assert sign_in(client).status_code == 302
            page = client.get(
                f"/?from={month.start.date()}&to={(month.end - timedelta(days=1)).date()}"
            )
            assert page.status_code == 200, page.text
            assert "First instant" in page.text and "Last instant" in page.text
            assert "Clients imported (60)" in page.text
            assert "Month after" not in page.text  # not loaded
        finally:
            close(viewer)
            drop_role(investigation, name)


def test_load_without_the_rights_is_one_line_and_loads_nothing(
    db_url, conn, past_log, make_role, empty_db_url, tmp_path
):
    month = past_log
    archive(conn, tmp_path, month.next())
    path = str(tmp_path / manifests.data_name(month))
    nobody = make_role()  # no CREATE on the database
    line = error_line(run(nobody, "archive", "load", path))
    assert "cannot load into schema audit_archive: permission denied" in line
    # the audit schema of another database: only who may insert into the log
    migrate.upgrade(empty_db_url, "head")
    admin = make_conninfo(nobody, dbname=conninfo_to_dict(empty_db_url)["dbname"])
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        role = sql.Identifier(conninfo_to_dict(nobody)["user"])
        c.execute(sql.SQL("grant audit_admin to {}").format(role))
    line = error_line(run(admin, "archive", "load", path, "--schema", "audit"))
    assert "needs a role that may insert into the log" in line
    with psycopg.connect(empty_db_url) as investigation:
        assert investigation.execute("select count(*) from audit.action_log").fetchone()[0] == 0
    conn.rollback()
    assert conn.execute("select to_regnamespace('audit_archive')").fetchone()[0] is None


def test_files_are_the_owners_alone_and_a_planted_link_is_not_followed(
    db_url, conn, past_log, tmp_path
):
    month = past_log
    folder = tmp_path / "new"
    folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # a link where the run writes its partial file, planted in a shared folder
    manifests.partial_path(folder / manifests.data_name(month)).symlink_to(victim)
    manifests.partial_path(folder / manifests.manifest_name(month)).symlink_to(victim)
    (folder / LOCK_NAME).symlink_to(tmp_path / "created-through-a-link")
    line = error_line(run(db_url, "archive", "--before", str(month.next()), "--to", str(folder)))
    assert "cannot write to the archive folder" in line
    assert not (tmp_path / "created-through-a-link").exists()
    (folder / LOCK_NAME).unlink()
    archive(conn, folder, month.next())
    assert victim.read_text() == "precious"
    assert verify_dir(folder)[-1].ok
    for path in folder.glob("audit_log_*"):
        assert path.stat().st_mode & 0o077 == 0, path
    created = tmp_path / "made" / "here"
    archive(conn, created, month.next())
    assert created.stat().st_mode & 0o077 == 0


def test_without_pg_control_system_the_manifest_names_the_database_alone(
    db_url, conn, past_log, make_role, tmp_path
):
    month = past_log
    conn.execute("revoke execute on function pg_control_system() from public")
    conn.commit()
    reader = make_role("grant audit_reader to {role}")
    assert (
        run(reader, "archive", "--before", str(month.next()), "--to", str(tmp_path)).exit_code == 0
    )
    manifest = json.loads((tmp_path / manifests.manifest_name(month)).read_text())
    assert manifest["source"]["system_identifier"] is None
    assert manifest["source"]["database"] == conn.info.dbname
    again = run(reader, "archive", "--before", str(month.next()), "--to", str(tmp_path))
    assert "archived already, unchanged" in again.output
    with psycopg.connect(reader) as session:
        assert verify_month(tmp_path, month, session).ok


def test_an_audit_schema_before_partitioning_says_to_upgrade(empty_db_url, tmp_path):
    migrate.upgrade(empty_db_url, "0002")
    line = error_line(run(empty_db_url, "archive", "--before", "2001-01", "--to", str(tmp_path)))
    assert "the audit schema is at revision 0002" in line and "migrate upgrade" in line
    line = error_line(
        run(
            empty_db_url.replace("/empty_", "/none_"),
            "archive",
            "--before",
            "2001-01",
            "--to",
            str(tmp_path),
        )
    )
    assert "cannot connect" in line or "does not exist" in line


def test_legacy_chunks_of_an_upgraded_log_go_with_their_actions(db_url, conn, past_log, tmp_path):
    """On a log upgraded from revision 0002 the chunks written before carry
    '-infinity' (contract: found through their action's id); here the month's chunks
    are made so by the superuser."""
    month = past_log
    conn.rollback()
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        moved = conn.execute(
            "update audit.action_item_chunk c set occurred_at = '-infinity'"
            " where c.occurred_at >= %s and c.occurred_at < %s",
            (month.start, month.end),
        ).rowcount
    archive(conn, tmp_path, month.next())
    manifest = json.loads((tmp_path / manifests.manifest_name(month)).read_text())
    original = month_rows(conn, month)
    assert manifest["chunks"] == len(original[1]) >= moved > 0
    assert manifest["items"] == sum(row[1] for row in original[1]) > 0
    assert verify_month(tmp_path, month, conn).ok
    load(conn, tmp_path / manifests.data_name(month))
    assert month_rows(conn, month, "audit_archive") == original
