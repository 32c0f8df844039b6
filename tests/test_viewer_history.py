"""A record's history page through Flask's test client: ``/history/<type>?id=<id>``.

Against the seeded log (viewer_data.seed) plus, where a test needs them, more actions
written through the sample CRM: the page lists every action that touched the row,
single-row and bulk alike, newest first, each with what it changed on that row, and
agrees with a plain SQL query of the same meaning; it pages by keyset; it shows only
its own row; bad input is a page saying what was wrong.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import quote

import pytest
from viewer_data import BULK_CLIENTS

from audit_capture import record_action, set_context
from audit_capture.viewer import cursor as cursors

ALICE = dict(actor_id="7", actor_name="Alice Admin", actor_type="admin", source="web")
BOB = dict(actor_id="8", actor_name="Bob Ortiz", actor_type="admin", source="api")

# the ids of the actions that touched a row, newest first: the single-row actions that
# name it, and every action one of whose items is that row (a plain query of the log and
# audit.action_items, with no index in mind)
HISTORY_IDS = """
select a.id from audit.action_log a
where a.resource_type = %(type)s
  and (a.resource_id = %(id)s
       or exists (select from audit.action_items(a.id) i
                  where a.row_count > 1 and i.resource_id = %(id)s))
order by a.occurred_at desc, a.id desc
"""


def history_ids(conn, resource_type: str, resource_id: str) -> list[int]:
    conn.rollback()
    ids = [r[0] for r in conn.execute(HISTORY_IDS, {"type": resource_type, "id": resource_id})]
    conn.rollback()
    return ids


def url(resource_type: str, resource_id: str, **args: str) -> str:
    query = "".join(f"&{k}={quote(v, safe='')}" for k, v in args.items())
    return f"/history/{resource_type}?id={quote(resource_id, safe='')}{query}"


def entries(page) -> list[dict]:
    """The history table's rows: the action's id, its link, and each cell's text."""
    body = (
        page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page.text else ""
    )
    found = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r'<td data-label="([^"]+)"[^>]*>(.*?)</td>', tr, re.S)
        row = {
            unescape(label): " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
            for label, html in cells
        }
        link = re.search(r'class="action-name" href="([^"]+)"', tr).group(1)
        row["link"] = unescape(link)
        row["id"] = int(re.match(r"/actions/(\d+)", row["link"]).group(1))
        row["html"] = tr
        found.append(row)
    return found


def older_link(page) -> str | None:
    match = re.search(r'rel="next" href="([^"]+)"', page.text)
    return unescape(match.group(1)) if match else None


def title(page) -> str:
    return unescape(re.search(r"<title>(.*?) · Audit log</title>", page.text, re.S).group(1))


def flat(html: str) -> str:
    """The text of ``html``, its tags removed, its spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


def heading(page) -> str:
    return flat(re.search(r"<h1[^>]*>(.*?)</h1>", page.text, re.S).group(1))


def message(page) -> str:
    return unescape(re.search(r'<p class="message">(.*?)</p>', page.text, re.S).group(1))


def write(conn, statement: str, params=None, **context) -> None:
    """One committed transaction of the sample CRM, with an actor when given."""
    conn.rollback()
    with conn.transaction():
        if context:
            set_context(conn, **context)
        conn.execute(statement, params)
    conn.commit()


def last_action(conn, **where) -> int:
    clauses = " and ".join(f"{k} = %s" for k in where)
    found = conn.execute(
        f"select max(id) from audit.action_log where {clauses}", list(where.values())
    ).fetchone()[0]
    conn.commit()
    return found


# -- what the page shows --------------------------------------------------------------------


def test_a_clients_history_names_it_and_lists_its_actions_newest_first(user, conn, seeded):
    client_id = str(seeded["client_id"])
    page = user.get(url("client", client_id))
    assert page.status_code == 200
    assert title(page) == f"History of Client Jane Roe #{client_id}"
    assert heading(page) == f"History of Client Jane Roe #{client_id}"
    shown = entries(page)
    expected = history_ids(conn, "client", client_id)
    assert [e["id"] for e in shown] == expected
    # created, updated by alice (web), by the sync (API), by a DBA in psql (no context)
    assert len(expected) == 4
    oldest = shown[-1]
    assert oldest["id"] == seeded["client_created"]
    assert oldest["Action"].startswith("Client created")
    assert "Alice Admin Admin" in oldest["Actor"]
    assert oldest["Source"] == "Web"
    assert "name Jane Roe" in oldest["What changed"]
    assert shown[0]["Source"] == "Database"
    assert "notes empty → merged duplicate" in shown[0]["What changed"]
    phone = next(e for e in shown if "phone" in e["What changed"])
    assert phone["Source"] == "API"
    assert "LawRuler sync" in phone["Actor"]
    # each action links to its page (a single-row action: the page itself)
    assert oldest["link"] == f"/actions/{seeded['client_created']}"
    # one page: no older page, no way back to the newest
    assert older_link(page) is None
    assert "Newest</a>" not in page.text
    assert page.headers["Server-Timing"].startswith("db;dur=")
    assert "render;dur=" in page.headers["Server-Timing"]


def test_redacted_values_are_shown_as_redacted(user, conn, seeded):
    page = user.get(url("client", str(seeded["client_id"])))
    updated = next(e for e in entries(page) if e["id"] == seeded["client_updated"])
    assert "ssn redacted → redacted" in updated["What changed"]
    assert "email jane@example.com → jane.roe@example.com" in updated["What changed"]
    created = next(e for e in entries(page) if e["id"] == seeded["client_created"])
    assert "ssn redacted" in created["What changed"]
    assert 'class="badge redacted"' in updated["html"]
    for secret in ("123-45-6789", "987-65-4321"):
        assert secret not in page.text


def test_bulk_actions_are_in_a_rows_history_with_what_they_changed_on_it(user, conn, seeded):
    """A lead was imported (one action of 60 rows) and moved to "contacted" (one bulk
    status update of 60): both are in its history, each with that row's item."""
    lead = conn.execute("select id from clients where name = 'Lead 17'").fetchone()[0]
    conn.commit()
    page = user.get(url("client", str(lead)))
    # named by its import's item, no single-row action having named it
    assert title(page) == f"History of Client Lead 17 #{lead}"
    shown = entries(page)
    assert [e["id"] for e in shown] == [seeded["bulk"], seeded["import"]]
    assert [e["id"] for e in shown] == history_ids(conn, "client", str(lead))
    bulk, imported = shown
    assert bulk["Action"].startswith("Bulk client status update")
    assert f"{BULK_CLIENTS} rows" in bulk["Action"]
    assert "status new → contacted" in bulk["What changed"]
    assert "Lead 18" not in page.text  # the other rows' items are not shown
    assert "name Lead 17" in imported["What changed"]
    # the link opens the bulk action at this row's item
    item_no = int(re.search(r"#item-(\d+)", bulk["link"]).group(1))
    assert bulk["link"] == f"/actions/{seeded['bulk']}?items_after={item_no - 1}#item-{item_no}"
    detail = user.get(bulk["link"].split("#")[0])
    assert detail.status_code == 200
    item_row = re.search(rf'<tr id="item-{item_no}">(.*?)</tr>', detail.text, re.S).group(1)
    assert f"#<bdi>{lead}</bdi></code>" in item_row


def test_a_row_changed_only_in_bulk_is_named_alike_on_every_page(user, conn, seeded):
    """A row no single-row action named is named by the items of its newest actions
    (``NAMING_ENTRIES``): a bulk rename's item holds the new name, the bulk changes of
    other columns after it do not. Its Older page, whose own actions are older (the
    import's item holds the old name), is named the same."""
    from audit_capture.viewer.resource_history import NAMING_ENTRIES

    lead, other = (
        r[0]
        for r in conn.execute(
            "select id from clients where name in ('Lead 17', 'Lead 18') order by name"
        )
    )
    conn.commit()
    write(
        conn,
        "update clients set name = case when id = %s then 'Lena Bulk' else 'Leo Bulk' end"
        " where id in (%s, %s)",
        (lead, lead, other),
        **ALICE,
    )
    for n in range(NAMING_ENTRIES - 1):
        write(
            conn,
            "update clients set notes = %s where id in (%s, %s)",
            (f"call {n}", lead, other),
            **BOB,
        )
    first = user.get(url("client", str(lead), _size=str(NAMING_ENTRIES)))
    shown = entries(first)
    assert len(shown) == NAMING_ENTRIES and shown[-1]["Action"].startswith("Bulk client")
    assert "name Lead 17 → Lena Bulk" in shown[-1]["What changed"]
    older = older_link(first)
    assert older is not None
    second = user.get(older)
    assert [e["id"] for e in entries(second)] == [seeded["bulk"], seeded["import"]]
    for page in (first, second):
        assert title(page) == f"History of Client Lena Bulk #{lead}"
        assert heading(page) == f"History of Client Lena Bulk #{lead}"


def test_the_500_row_batch_deletion_and_a_bulk_status_update_are_in_the_history(user, conn, seeded):
    write(
        conn,
        "insert into clients (name, email) select 'Batch ' || n, 'b' || n || '@example.com'"
        " from generate_series(1, 500) n",
        **ALICE,
    )
    maria = conn.execute("select id from clients where name = 'Batch 250'").fetchone()[0]
    conn.commit()
    write(conn, "update clients set name = 'Maria Lopez' where id = %s", (maria,), **ALICE)
    write(
        conn,
        "update clients set status = 'qualified' where name like 'Batch %%' or id = %s",
        (maria,),
        **BOB,
    )
    bulk_update = last_action(conn, action="Bulk client status update")
    write(conn, "delete from clients where name like 'Batch %%' or id = %s", (maria,), **ALICE)
    deletion = last_action(conn, action="Batch client deletion")
    assert (
        conn.execute(
            "select row_count from audit.action_log where id = %s", (deletion,)
        ).fetchone()[0]
        == 500
    )
    conn.commit()

    page = user.get(url("client", str(maria)))
    assert title(page) == f"History of Client Maria Lopez #{maria}"
    shown = entries(page)
    assert [e["id"] for e in shown] == history_ids(conn, "client", str(maria))
    assert shown[0]["Action"].startswith("Batch client deletion")
    assert shown[1]["Action"].startswith("Bulk client status update")
    assert shown[2]["Action"].startswith("Client updated")
    assert shown[0]["id"] == deletion
    assert "500 rows" in shown[0]["Action"]
    assert "name Maria Lopez" in shown[0]["What changed"]  # the row as it was deleted
    assert "deleted" in shown[0]["What changed"]
    assert shown[1]["id"] == bulk_update
    assert "status new → qualified" in shown[1]["What changed"]
    assert "Bob Ortiz" in shown[1]["Actor"] and shown[1]["Source"] == "API"
    assert "name Batch 250 → Maria Lopez" in shown[2]["What changed"]


def test_paging_through_a_busy_rows_history_by_its_older_links(user, conn, seeded):
    """25 changes of one client and 2 bulk actions, 10 a page: three pages, in the plain
    query's order, no action lost or repeated at a boundary; each older page links back
    to the newest."""
    client_id = seeded["client_id"]
    for n in range(25):
        write(
            conn,
            "update clients set phone = %s where id = %s",
            (f"+1 555 {n:04}", client_id),
            **(ALICE if n % 2 else BOB),
        )
        if n in (7, 19):
            status = "qualified" if n == 7 else "closed"
            write(conn, "update clients set status = %s", (status,), **ALICE)
    expected = history_ids(conn, "client", str(client_id))
    assert len(expected) == 4 + 25 + 2

    seen: list[int] = []
    next_url = url("client", str(client_id), _size="10")
    pages = 0
    while next_url:
        page = user.get(next_url)
        assert page.status_code == 200, page.text
        shown = entries(page)
        assert len(shown) == (10 if len(seen) + 10 <= len(expected) else len(expected) - len(seen))
        seen += [e["id"] for e in shown]
        pages += 1
        if pages > 1:
            newest = re.search(r'<a href="([^"]+)">Newest</a>', page.text).group(1)
            assert unescape(newest) == url("client", str(client_id), _size="10")
        next_url = older_link(page)
        if next_url:
            assert "_size=10" in next_url and "_cursor=" in next_url
    assert pages == 4
    assert seen == expected


def test_the_page_of_a_row_without_history_says_so(user, conn, seeded):
    page = user.get(url("client", "999999"))
    assert page.status_code == 200
    assert title(page) == "History of Client #999999"
    assert "No action in the log touched this client." in flat(page.text)
    assert "<tbody>" not in page.text


def test_an_application_events_resource_has_a_history(user, conn, seeded):
    """The LawRuler login (an event about integration 1) is in that row's history."""
    page = user.get(url("integration", "1"))
    assert page.status_code == 200
    login = next(e for e in entries(page) if e["id"] == seeded["login"])
    assert login["Action"].startswith("LawRuler login")
    sentence = "An application event about this integration: no row was changed."
    assert sentence in flat(login["html"])
    assert title(page) == "History of Integration LawRuler #1"


@pytest.mark.parametrize(
    "resource_id",
    ["a/b c", '(1,"a b")', "100%", "?id=3&x=#y", "  padded  ", "ünïcode/路径", "..", "/"],
)
def test_any_resource_id_goes_there_and_back(user, conn, seeded, resource_id):
    """An id is any text: the action's page links its history, whose URL brings the
    same text back (the page shows that row's event and no other)."""
    conn.rollback()
    with conn.transaction():
        set_context(conn, **ALICE)
        event = record_action(
            conn,
            "export",
            "Call export to file",
            resource_type="call",
            resource_id=resource_id,
            row_count=0,
        )
    conn.commit()
    detail = user.get(f"/actions/{event}")
    link = re.search(r'class="history-link" href="([^"]+)"', detail.text)
    assert link is not None, detail.text
    page = user.get(unescape(link.group(1)))
    assert page.status_code == 200
    assert [e["id"] for e in entries(page)] == [event]
    assert title(page) == f"History of Call #{resource_id}"


# -- links into the history -----------------------------------------------------------------


def test_an_actions_page_links_its_resources_history(user, seeded):
    page = user.get(f"/actions/{seeded['client_updated']}")
    link = re.search(r'class="history-link" href="([^"]+)">(.*?)</a>', page.text)
    assert link is not None, page.text
    assert flat(link.group(2)) == "History of this client"
    assert unescape(link.group(1)) == f"/history/client?id={seeded['client_id']}"


def test_a_bulk_actions_items_link_each_rows_history(user, conn, seeded):
    page = user.get(f"/actions/{seeded['bulk']}")
    items = re.findall(r'<tr id="item-(\d+)">(.*?)</tr>', page.text, re.S)
    assert len(items) == 50
    for _item_no, html in items:
        row_id = re.search(r"<code>#<bdi>(\d+)</bdi></code>", html).group(1)
        link = re.search(r'class="history-link" href="([^"]+)"', html).group(1)
        assert unescape(link) == f"/history/client?id={row_id}"


def test_an_event_without_a_resource_id_links_no_history(user, seeded):
    page = user.get(f"/actions/{seeded['export']}")
    assert page.status_code == 200
    assert "history-link" not in page.text


def test_the_lists_resource_ids_link_their_history(user, seeded):
    page = user.get("/")
    rows = re.findall(r"<tr>\s*(.*?)</tr>", page.text.split("<tbody>", 1)[1], re.S)
    linked = 0
    for html in rows:
        action_id = int(re.search(r'href="/actions/(\d+)"', html).group(1))
        link = re.search(r'class="history-link" href="([^"]+)"[^>]*>#<bdi>([^<]+)</bdi>', html)
        if action_id == seeded["client_updated"]:
            assert link is not None
            assert unescape(link.group(1)) == f"/history/client?id={seeded['client_id']}"
        if action_id in (seeded["bulk"], seeded["import"], seeded["export"]):
            assert link is None  # many rows, or no row: no id to follow
        linked += link is not None
    assert linked >= 5


# -- a row's history is its own -------------------------------------------------------------


def test_a_page_never_shows_a_row_with_a_similar_id(user, conn, seeded):
    """Client 3 and client 35 (leads of the seeded import), and ids that differ only by
    spaces or a leading zero: each page shows only its own row's actions."""
    write(conn, "update clients set phone = '+1 555 0035' where id = 35", **ALICE)
    only_35 = last_action(conn, action="Client updated", resource_id="35")
    write(conn, "update clients set phone = '+1 555 0003' where id = 3", **ALICE)
    only_3 = last_action(conn, action="Client updated", resource_id="3")

    three = [e["id"] for e in entries(user.get(url("client", "3")))]
    thirty_five = [e["id"] for e in entries(user.get(url("client", "35")))]
    assert three == history_ids(conn, "client", "3")
    assert thirty_five == history_ids(conn, "client", "35")
    assert only_3 in three and only_35 not in three
    assert only_35 in thirty_five and only_3 not in thirty_five
    for lookalike in ("35 ", " 35", "035", "35.0", "3%", "3_", "'35'"):
        page = user.get(url("client", lookalike))
        assert page.status_code == 200, lookalike
        assert entries(page) == [], lookalike
        assert "No action in the log touched this client." in flat(page.text)


def test_a_cursor_of_another_rows_page_shows_only_this_rows_older_actions(user, conn, seeded):
    """A cursor is only a position: carried to another row's page, it shows that row's
    actions older than the position, never the first row's."""
    position = cursors.encode(
        *conn.execute(
            "select occurred_at, id from audit.action_log where id = %s", (seeded["bulk"],)
        ).fetchone()
    )
    conn.commit()
    page = user.get(url("client", str(seeded["client_id"]), _cursor=position))
    assert page.status_code == 200
    shown = [e["id"] for e in entries(page)]
    assert shown == [
        i for i in history_ids(conn, "client", str(seeded["client_id"])) if i < seeded["bulk"]
    ]
    assert seeded["import"] not in shown and seeded["bulk"] not in shown


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/history/spaceship?id=1",
        "/history/Client?id=1",
        "/history/client-x?id=1",
        "/history/a%2Fb?id=1",
        "/history/" + "x" * 80 + "?id=1",
    ],
)
def test_an_unknown_resource_type_is_a_404_saying_so(user, seeded, path):
    page = user.get(path)
    assert page.status_code == 404
    assert "There is no resource type" in message(page)
    assert "no tracked table has it" in message(page)
    assert "Traceback" not in page.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "id is missing"),
        ("?id=", "id is missing"),
        ("?id=" + "9" * 2001, "id is 2,001 characters long; a resource id has at most 2,000"),
        ("?id=3%00", "id holds a NUL character"),
        ("?id=3&id=35", "id is given 2 times ('3', '35'); expected it once"),
        ("?id=3&_cursor=garbage", "_cursor is 'garbage', which is not a page position"),
        ("?id=3&_size=5", "_size is '5'; expected a number from 10 to 200"),
        ("?id=3&_size=abc", "_size is 'abc'"),
    ],
)
def test_bad_input_is_a_400_saying_what_was_wrong(user, seeded, query, expected):
    page = user.get("/history/client" + query)
    assert page.status_code == 400, page.text
    assert expected in message(page)
    assert "Traceback" not in page.text


def test_a_tampered_cursor_is_a_400(user, conn, seeded):
    page = user.get(url("client", str(seeded["client_id"]), _size="10"))
    good = cursors.encode(
        *conn.execute(
            "select occurred_at, id from audit.action_log where id = %s",
            (seeded["client_created"],),
        ).fetchone()
    )
    conn.commit()
    assert user.get(url("client", str(seeded["client_id"]), _cursor=good)).status_code == 200
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    page = user.get(url("client", str(seeded["client_id"]), _cursor=tampered))
    assert page.status_code == 400
    assert "not a page position of this viewer" in message(page)


def test_a_history_cut_short_by_the_statement_timeout_is_a_page_saying_so(conn, reader_url, seeded):
    """The log locked (a DBA's maintenance): the viewer's statement_timeout cancels the
    read, and the page says so (400), never a traceback."""
    from viewer_data import app_config, sign_in

    from audit_capture.viewer import create_app
    from audit_capture.viewer.app import close

    app = create_app(app_config(reader_url, STATEMENT_TIMEOUT_MS=300))
    try:
        client = app.test_client()
        sign_in(client)
        conn.rollback()
        conn.execute("lock table audit.action_log in access exclusive mode")
        try:
            page = client.get(url("client", str(seeded["client_id"])))
        finally:
            conn.rollback()
        assert page.status_code == 400
        assert message(page) == "Reading this row's history took too long; try again in a moment."
        assert "Traceback" not in page.text
        assert client.get(url("client", str(seeded["client_id"]))).status_code == 200
    finally:
        close(app)


def test_a_database_without_audit_history_says_to_upgrade(user, conn, seeded):
    """A log whose audit schema predates audit.history() (a viewer newer than the
    database's revision): the page says what to do, never a 500."""
    conn.rollback()
    conn.execute("drop function audit.history(regclass, text, timestamptz, bigint, integer)")
    conn.execute("drop function audit.history(text, text, timestamptz, bigint, integer)")
    conn.commit()
    page = user.get(url("client", str(seeded["client_id"])))
    assert page.status_code == 503
    assert "audit-capture migrate upgrade" in message(page)
    assert "Traceback" not in page.text


def test_the_longest_id_is_taken(user, seeded):
    page = user.get(url("client", "9" * 2000))
    assert page.status_code == 200
    assert "No action in the log touched this client." in flat(page.text)


# -- like every other page ------------------------------------------------------------------


def test_a_signed_out_visitor_is_sent_to_sign_in(client, seeded):
    page = client.get(url("client", str(seeded["client_id"])))
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/sign-in?next=")
    assert "Jane Roe" not in page.text


def test_a_name_taken_from_items_is_text_never_markup(user, conn, seeded):
    """A name that a table's writer chose, read from a bulk insert's items (no
    single-row action names the row), is shown as text in the title and the heading."""
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)>"\u202e'
    write(
        conn,
        "insert into clients (name, email)"
        " values (%s, 'x1@example.com'), ('Other', 'x2@example.com')",
        (hostile,),
        **ALICE,
    )
    (row,) = conn.execute("select id from clients where email = 'x1@example.com'").fetchone()
    conn.commit()
    page = user.get(url("client", str(row)))
    assert page.status_code == 200
    assert title(page).startswith("History of Client <script>alert(1)</script>")
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert re.search(r"<[^>]+\son[a-z]+=", page.text) is None


def test_the_page_has_the_viewers_security_headers_and_no_inline_script(user, seeded):
    page = user.get(url("client", str(seeded["client_id"])))
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert re.search(r"<script(?![^>]*\ssrc=)", page.text) is None
    assert " style=" not in page.text
    assert re.search(r"<[^>]+\son[a-z]+=", page.text) is None


def test_a_truncate_of_the_table_is_in_its_rows_history(user, conn, seeded):
    task = conn.execute("select id from case_tasks").fetchone()[0]
    conn.commit()
    write(conn, "truncate case_tasks", **ALICE)
    page = user.get(url("case_task", str(task)))
    shown = entries(page)
    assert [e["id"] for e in shown][0] == last_action(
        conn, resource_type="case_task", operation="TRUNCATE"
    )
    assert "The table was truncated: its rows were not copied." in shown[0]["What changed"]
    assert title(page) == f"History of Case task Upload ID #{task}"


def test_the_rows_name_is_read_along_the_history_index(conn, seeded):
    """The title's label is one seek of action_log_resource_idx, which compares byte by
    byte (collate "C"): the query asks in that collation, or no plan could use it."""
    from audit_capture.viewer.resource_history import RESOURCE

    conn.rollback()
    conn.execute("set enable_seqscan = off")
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "explain " + RESOURCE, {"type": "client", "id": str(seeded["client_id"])}
        )
    )
    conn.rollback()
    # each month's partition of the index (named after its columns) seeks the row
    assert re.search(
        r"Index Scan using \S*resource_type_resource_id\S* on action_log_p[^\n]*\n\s+"
        r"Index Cond: \(\(resource_type = 'client'::text COLLATE \"C\"\) AND \(resource_id = ",
        plan,
    ), plan


def test_the_lists_link_of_an_odd_id_goes_to_that_rows_history(user, conn, seeded):
    """The list builds its links itself (one prefix, the id quoted): an id holding a
    slash, a space, an ampersand, quotes and a hash lands on its own history."""
    odd = 'a/b c&d="e"#f?g'
    conn.rollback()
    with conn.transaction():
        set_context(conn, **ALICE)
        event = record_action(
            conn, "export", "Call export to file", resource_type="call", resource_id=odd
        )
    conn.commit()
    page = user.get("/")
    row = re.search(
        rf'<tr>\s*(<td data-label="Action">.*?href="/actions/{event}".*?)</tr>', page.text, re.S
    ).group(1)
    link = unescape(re.search(r'class="history-link" href="([^"]+)"', row).group(1))
    assert link == f"/history/call?id={quote(odd, safe='')}"
    history = user.get(link)
    assert [e["id"] for e in entries(history)] == [event]
    assert title(history) == f"History of Call #{odd}"
