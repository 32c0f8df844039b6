"""The viewer through Flask's test client, against a real log made by the sample CRM.

The viewer connects as a LOGIN role granted only audit_reader, as in production.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask import Flask, session
from processes import first_line
from viewer_data import (
    BULK_CLIENTS,
    PASSWORD,
    SECRET_KEY,
    XSS_LABEL,
    XSS_NAME,
    app_config,
    csrf_token,
    drop_role,
    make_reader,
    old_action,
    sign_in,
)

from audit_capture.viewer import create_app, make_blueprint
from audit_capture.viewer import cursor as cursors
from audit_capture.viewer.config import ConfigError
from audit_capture.viewer.present import instant

# the fixtures (seeded, reader_url, app, client, user) are in conftest.py


def rows(page) -> list[dict]:
    """The list page's table: one dict per row (link, action, actor, source, resource)."""
    body = (
        page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page.text else ""
    )
    found = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r'<td data-label="([^"]+)"[^>]*>(.*?)</td>', tr, re.S)
        text = {
            unescape(label): " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
            for label, html in cells
        }
        text["id"] = int(re.search(r'href="/actions/(\d+)"', tr).group(1))
        text["html"] = tr
        found.append(text)
    return found


def link(page, rel: str) -> str | None:
    match = re.search(rf'rel="{rel}" href="([^"]+)"', page.text)
    return unescape(match.group(1)) if match else None


def all_ids(conn) -> list[int]:
    return [
        r[0]
        for r in conn.execute("select id from audit.action_log order by occurred_at desc, id desc")
    ]


def flat(html: str) -> str:
    """The page without the isolation of user text (<bdi>, and FSI/PDI in options)."""
    return (
        html.replace("<bdi>", "").replace("</bdi>", "").replace("\u2068", "").replace("\u2069", "")
    )


def message(page) -> str:
    return unescape(re.search(r'<p class="message">(.*?)</p>', page.text, re.S).group(1))


# -- access --------------------------------------------------------------------------


def test_no_session_redirects_to_sign_in(client, seeded):
    for path in ("/", "/?source=web", f"/actions/{seeded['bulk']}", "/?_format=csv"):
        response = client.get(path)
        assert response.status_code == 302, path
        location = urlsplit(response.headers["Location"])
        assert location.path == "/sign-in"
        assert parse_qs(location.query)["next"] == [path]


def test_sign_in_then_back_to_the_page_asked_for(client, seeded):
    response = sign_in(client, next_url="/?source=api")
    assert response.status_code == 302
    assert response.headers["Location"] == "/?source=api"
    page = client.get("/?source=api")
    assert page.status_code == 200
    assert "Signed in as <strong>alice</strong>" in page.text


# browsers drop tabs and line breaks from a URL: "/\t/evil.example" is "//evil.example"
OTHER_SITES = [
    "//evil.example/",
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r\n/evil.example/",
    "/\\evil.example/",
    "https://evil.example/",
]


@pytest.mark.parametrize("next_url", OTHER_SITES)
def test_sign_in_never_redirects_to_another_site(client, seeded, next_url):
    response = sign_in(client, next_url=next_url)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("next_url", OTHER_SITES)
def test_signed_in_sign_in_page_never_redirects_to_another_site(user, next_url):
    response = user.get("/sign-in", query_string={"next": next_url})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_head_of_the_sign_in_page_answers_like_get(client, seeded):
    response = client.head("/sign-in")
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert client.head("/sign-in?next=/%3Fsource%3Dweb").status_code == 200
    sign_in(client)
    signed_in = client.head("/sign-in?next=/%3Fsource%3Dweb")
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/?source=web"


def test_wrong_password_is_refused(client, seeded):
    response = sign_in(client, password="wrong")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text
    assert client.get("/").status_code == 302
    assert sign_in(client, username="mallory", password=PASSWORD).status_code == 401


def test_repeated_failures_are_rate_limited(client, seeded):
    for _ in range(5):
        assert sign_in(client, password="wrong").status_code == 401
    limited = sign_in(client, password="wrong")
    assert limited.status_code == 429
    assert "Too many failed sign-ins" in limited.text
    assert int(limited.headers["Retry-After"]) > 0
    # even the right password waits until the window has passed
    assert sign_in(client).status_code == 429


def test_sign_in_needs_the_csrf_token(client, seeded):
    client.get("/sign-in")
    for token in (None, "forged"):
        data = {"username": "alice", "password": PASSWORD}
        if token:
            data["csrf_token"] = token
        response = client.post("/sign-in", data=data)
        assert response.status_code == 400
        assert "security token" in response.text
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    "token", ["é", "\u0080", "\ufffd" * 43, "x\x00"], ids=["accent", "c1", "long", "nul"]
)
def test_a_forged_token_of_any_characters_is_refused_like_any_other(user, token):
    # hmac.compare_digest raises TypeError for str holding anything but ASCII (a 500 once)
    for path in ("/sign-in", "/sign-out"):
        response = user.post(path, data={"csrf_token": token, "username": "alice"})
        assert response.status_code == 400, path
        assert "security token" in response.text
    assert user.get("/").status_code == 200  # still signed in


def test_sign_out(user):
    token = csrf_token(user, "/")
    assert user.post("/sign-out", data={"csrf_token": token}).status_code == 302
    assert user.get("/").status_code == 302


def test_sign_out_needs_the_csrf_token(user):
    assert user.post("/sign-out").status_code == 400
    assert user.get("/").status_code == 200


def test_session_cookie_is_http_only_and_same_site(client, seeded):
    response = sign_in(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_missing_secret_key_or_users_is_a_clear_error(reader_url):
    with pytest.raises(ConfigError, match="no secret key"):
        create_app(app_config(reader_url, SECRET_KEY=""))
    with pytest.raises(ConfigError, match="no users"):
        create_app(app_config(reader_url, USERS={}))
    with pytest.raises(ConfigError, match="not a plain password"):
        create_app(app_config(reader_url, USERS={"alice": "hunter2"}))
    with pytest.raises(ConfigError, match="unknown time zone"):
        create_app(app_config(reader_url, TIMEZONE="Mars/Olympus"))


# -- the list page -------------------------------------------------------------------


def test_list_shows_every_action_newest_first(user, conn, seeded):
    page = user.get("/")
    assert page.status_code == 200
    shown = rows(page)
    assert [r["id"] for r in shown] == all_ids(conn)
    first = shown[0]
    assert first["id"] == seeded["xss"]
    assert first["Action"].startswith("Campaign updated")
    assert "Client" in first["Actor"] and first["Source"] == "Web"
    by_id = {r["id"]: r for r in shown}
    assert by_id[seeded["client_created"]]["Actor"] == "Alice Admin Admin"
    assert by_id[seeded["client_created"]]["Resource"].startswith("Jane Roe")
    assert by_id[seeded["case_created"]]["Source"] == "AI"
    assert by_id[seeded["direct_change"]]["Source"] == "Database"
    assert "System" in by_id[seeded["direct_change"]]["Actor"]
    assert by_id[seeded["bulk"]]["Resource"] == f"{BULK_CLIENTS} rows Clients"
    assert "Mobile App" in {r["Source"] for r in shown}
    assert "API" in {r["Source"] for r in shown}
    assert f'href="/actions/{seeded["bulk"]}"' in page.text
    assert f"{len(shown)} actions" in page.text


def test_dates_are_shown_in_the_configured_time_zone_with_iso_on_hover(seeded, reader_url, conn):
    app = create_app(app_config(reader_url, TIMEZONE="Asia/Kolkata"))
    client = app.test_client()
    sign_in(client)
    page = client.get("/")
    occurred = conn.execute(
        "select occurred_at from audit.action_log where id = %s", (seeded["xss"],)
    ).fetchone()[0]
    row = rows(page)[0]
    iso = occurred.isoformat()
    assert f'datetime="{iso}" title="{iso}"' in row["html"]
    local = occurred.astimezone(ZoneInfo("Asia/Kolkata"))
    assert f"{local:%H:%M:%S}" in row["Date & Time"]
    assert "Times in Asia/Kolkata" in page.text


def test_logged_timestamps_are_shown_in_the_configured_time_zone(seeded, reader_url, conn):
    # a created client's row holds created_at (timestamptz), logged in UTC as JSON text
    created_at = conn.execute(
        "select changes ->> 'created_at' from audit.action_log where id = %s",
        (seeded["client_created"],),
    ).fetchone()[0]
    assert created_at.endswith("+00:00")
    client = create_app(app_config(reader_url, TIMEZONE="Asia/Kolkata")).test_client()
    sign_in(client)
    page = client.get(f"/actions/{seeded['client_created']}").text
    moment = datetime.fromisoformat(created_at).astimezone(ZoneInfo("Asia/Kolkata"))
    shown = f"{moment.day} {moment:%b %Y, %H:%M:%S} IST"
    assert f'<time datetime="{created_at}" title="{created_at}">{shown}</time>' in page


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-26T04:28:56.02965+00:00", datetime(2026, 11, 26, 4, 28, 56, 29650, UTC)),
        ("2026-11-26T04:28:56-05:00", datetime(2026, 11, 26, 9, 28, 56, tzinfo=UTC)),
        ("2026-11-26T04:28:56", None),  # no offset: no single instant, shown as logged
        ("2026-11-26", None),
        ("2026-02-30T04:28:56+00:00", None),  # looks like one, is not a date
        ("call back 2026-11-26T04:28:56+00:00", None),
        (42, None),
        (None, None),
    ],
)
def test_instant_reads_only_whole_timestamps_with_an_offset(value, expected):
    assert instant(value) == expected


def test_the_filter_controls_offer_the_log_s_values(user):
    page = user.get("/")
    text = flat(page.text)
    for label in (
        "Action type",
        "Actor",
        "Actor type",
        "Source",
        "Resource",
        "From",
        "To",
        "Search",
    ):
        assert f">{label}</label>" in text
    assert '<option value="status_change">Status Change</option>' in text
    assert '<option value="login">Login</option>' in text
    # the actor: a text field searching every actor (/actors), not a list of the first 500
    assert 'id="f-actor" name="_actor" type="search"' in text
    assert 'data-suggest="/actors"' in text
    assert '<option value="database">Database</option>' in text
    assert '<option value="mobile">Mobile App</option>' in text
    assert '<option value="client">Clients</option>' in text
    assert '<option value="batch_job">Batch Jobs</option>' in text or "Batch jobs" in text


FILTER_CASES = {
    "action_type=status_change": (
        "Action type is Status Change",
        "select id from audit.action_log where action_type = 'status_change'",
    ),
    "actor=id:7": ("Actor is Alice Admin", "select id from audit.action_log where actor_id = '7'"),
    "actor_type=client": (
        "Actor type is Client",
        "select id from audit.action_log where actor_type = 'client'",
    ),
    "source=api": ("Source is API", "select id from audit.action_log where source = 'api'"),
    "source=database": (
        "Source is Database",
        "select id from audit.action_log where source is null",
    ),
    "resource=case": (
        "Resource is Cases",
        "select id from audit.action_log where resource_type = 'case'",
    ),
    "q=jane": (
        "Text matches “jane”",
        "select id from audit.action_log where actor_name ilike '%jane%'"
        " or resource_label ilike '%jane%' or action ilike '%jane%'",
    ),
}


@pytest.mark.parametrize("query", FILTER_CASES)
def test_each_filter_alone(user, conn, query):
    sentence, expected_sql = FILTER_CASES[query]
    page = user.get(f"/?{query}")
    assert page.status_code == 200, page.text
    expected = {r[0] for r in conn.execute(expected_sql)}
    assert expected, "the seed should give every filter something to find"
    assert {r["id"] for r in rows(page)} == expected
    assert f'<span class="sentence">{sentence}</span>'.replace(
        "“", "&#34;"
    ) in page.text or sentence in unescape(page.text)
    param = query.split("=")[0]
    # one click clears it
    clear = re.search(r'href="([^"]*)" title="Clear [^"]+" aria-label="Clear', page.text).group(1)
    assert param not in parse_qs(urlsplit(unescape(clear)).query)
    assert 'class="clear-all" href="/"' in page.text


def test_filters_combined(user, conn):
    page = user.get("/?source=web&actor_type=admin&resource=client&action_type=update")
    assert page.status_code == 200
    expected = {
        r[0]
        for r in conn.execute(
            "select id from audit.action_log where source = 'web' and actor_type = 'admin'"
            " and resource_type = 'client' and action_type = 'update'"
        )
    }
    assert {r["id"] for r in rows(page)} == expected and expected
    assert (
        "Action type is Update, Actor type is Admin, Source is Web, Resource is Clients"
        in page.text
    )
    # clearing one keeps the others
    clears = dict(re.findall(r'href="([^"]*)" title="Clear ([^"]+)"', page.text))
    without_source = parse_qs(
        urlsplit(unescape(next(href for href, label in clears.items() if label == "Source"))).query
    )
    assert without_source == {
        "action_type": ["update"],
        "actor_type": ["admin"],
        "resource": ["client"],
    }


def test_filters_that_match_nothing(user):
    page = user.get("/?source=mobile&action_type=delete")
    assert page.status_code == 200
    assert rows(page) == []
    assert "No actions match these filters." in page.text


def test_date_range(user, conn, seeded):
    old = old_action(conn, datetime(2024, 3, 10, 23, 30, tzinfo=UTC))
    older = old_action(conn, datetime(2024, 3, 9, 12, 0, tzinfo=UTC))
    page = user.get("/?from=2024-03-10&to=2024-03-10")
    assert [r["id"] for r in rows(page)] == [old]
    assert "Date from 2024-03-10, Date until 2024-03-10" in page.text
    assert [r["id"] for r in rows(user.get("/?to=2024-03-10"))] == [old, older]
    assert older not in {r["id"] for r in rows(user.get("/?from=2024-03-10"))}


def test_date_range_is_in_the_viewer_time_zone(seeded, reader_url, conn):
    # 23:30 UTC on the 10th is already the 11th in Kolkata (UTC+5:30)
    old = old_action(conn, datetime(2024, 3, 10, 23, 30, tzinfo=UTC))
    client = create_app(app_config(reader_url, TIMEZONE="Asia/Kolkata")).test_client()
    sign_in(client)
    assert [r["id"] for r in rows(client.get("/?from=2024-03-11&to=2024-03-11"))] == [old]
    assert rows(client.get("/?from=2024-03-10&to=2024-03-10")) == []


def test_the_form_s_empty_values_mean_all(user, conn):
    page = user.get("/?action_type=&actor=&actor_type=&source=api&resource=&from=&to=&q=")
    assert page.status_code == 200
    assert "Source is API" in page.text
    assert {r["id"] for r in rows(page)} == {
        r[0] for r in conn.execute("select id from audit.action_log where source = 'api'")
    }


# -- pagination ----------------------------------------------------------------------


def test_pages_forward_and_back_across_equal_timestamps(user, conn, seeded):
    same = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    for _ in range(25):
        old_action(conn, same)
    expected = all_ids(conn)
    assert len(expected) > 30

    first = user.get("/?_size=10")
    assert link(first, "prev") is None
    pages, page = [first], first
    while link(page, "next"):
        page = user.get(link(page, "next"))
        assert page.status_code == 200
        pages.append(page)
    seen = [r["id"] for p in pages for r in rows(p)]
    assert seen == expected  # every action once, in order, none lost at a boundary
    assert all(len(rows(p)) == 10 for p in pages[:-1])

    # and back again, page by page, to the first page
    back = [pages[-1]]
    while link(back[-1], "prev"):
        back.append(user.get(link(back[-1], "prev")))
    assert [[r["id"] for r in rows(p)] for p in back] == [
        [r["id"] for r in rows(p)] for p in reversed(pages)
    ]


def test_pages_keep_the_filter(user, conn, seeded):
    for day in range(1, 16):
        old_action(conn, datetime(2024, 2, day, tzinfo=UTC))
    page = user.get("/?resource=client&_size=10")
    following = link(page, "next")
    assert "resource=client" in following and "_size=10" in following
    assert all("Client" in r["Resource"] for r in rows(user.get(following)))


def test_export_links_carry_the_filter(user):
    page = user.get("/?source=web&resource=client")
    links = re.findall(r'href="([^"]*_format=(?:csv|json)[^"]*)"', page.text)
    assert len(links) == 2
    for href in links:
        query = parse_qs(urlsplit(unescape(href)).query)
        assert query["source"] == ["web"] and query["resource"] == ["client"]


# -- the action page ------------------------------------------------------------------


def test_action_page_of_an_update(user, conn, seeded):
    page = user.get(f"/actions/{seeded['client_updated']}")
    assert page.status_code == 200
    text = unescape(flat(page.text))
    assert "<h1>Client updated</h1>" in text
    assert "Alice Admin" in text and "badge actor-admin" in text and "source-web" in text
    assert "Jane Roe" in text
    # what changed: email old and new, the SSN only as "redacted"
    assert re.search(
        r"<code>email</code></td>\s*<td class=\"old\">jane@example.com</td>\s*"
        r"<td class=\"new\">jane.roe@example.com</td>",
        text,
    )
    assert "<code>ssn</code>" in text
    assert "badge redacted" in text
    assert "123-45-6789" not in text and "987-65-4321" not in text
    # where it came from
    action = conn.execute(
        "select db_user, transaction_id from audit.action_log where id = %s",
        (seeded["client_updated"],),
    ).fetchone()
    assert f"<code>{action[0]}</code>" in text
    assert f"<code>{action[1]}</code>" in text
    assert "<code>req-1003</code>" in text
    assert "<code>public.clients</code>" in text or "<code>clients</code>" in text
    assert "<code>UPDATE</code>" in text


def test_action_page_of_a_create_shows_the_row(user, seeded):
    text = unescape(flat(user.get(f"/actions/{seeded['client_created']}").text))
    assert "The row as it was created" in text
    assert "jane@example.com" in text and "123-45-6789" not in text
    assert "badge redacted" in text
    # one side only: a Value column, no empty Old column
    assert '<table class="changes row">' in text and '<th scope="col">Old</th>' not in text
    assert '<td class="new">jane@example.com</td>' in text


def test_action_page_shows_the_context(user, seeded):
    text = unescape(user.get(f"/actions/{seeded['campaign_created']}").text)
    assert '"page": "/campaigns/new"' in text and '"ip": "203.0.113.9"' in text
    ai = unescape(user.get(f"/actions/{seeded['case_created']}").text)
    assert '"model": "intake-v2"' in ai and "source-ai" in ai


def test_action_page_of_a_direct_database_change(user, seeded):
    text = unescape(user.get(f"/actions/{seeded['direct_change']}").text)
    assert "source-database" in text and ">Database<" in text.replace("</svg>", ">")
    assert "merged duplicate" in text


def test_action_page_of_an_event(user, seeded):
    text = unescape(flat(user.get(f"/actions/{seeded['export']}").text))
    assert "<h1>Call export to file</h1>" in text
    assert "<code>calls</code>" in text and "42" in text
    assert "none (application event)" in text


def test_bulk_action_items_are_paged(user, conn, seeded):
    page = user.get(f"/actions/{seeded['bulk']}")
    text = unescape(flat(page.text))
    assert "Affected items" in text
    assert f"Items 1–50 of {BULK_CLIENTS}" in text
    assert text.count('<span class="old">new</span>') == 50
    assert text.count('<span class="new">contacted</span>') == 50
    following = link(page, "next")
    assert following and "items_after=50" in following
    second = user.get(following)
    assert f"Items 51–{BULK_CLIENTS} of {BULK_CLIENTS}" in unescape(flat(second.text))
    assert link(second, "next") is None
    back = link(second, "prev")
    assert f"Items 1–50 of {BULK_CLIENTS}" in unescape(flat(user.get(back).text))


def test_import_items_show_the_created_rows(user, seeded):
    text = unescape(user.get(f"/actions/{seeded['import']}").text)
    assert "Lead 1" in text and "created" in text


def test_items_are_named_by_their_label_column(user, seeded):
    # created rows hold the clients' name (the label column): each item is named by it
    text = flat(user.get(f"/actions/{seeded['import']}").text)
    assert '<span class="item-label" title="Lead 1">Lead 1</span>' in text
    assert text.count('class="item-label"') == 50
    assert "Client · created" in unescape(text)
    # a status change's items hold the changed columns only: no name, the type and id
    bulk = flat(user.get(f"/actions/{seeded['bulk']}").text)
    assert 'class="item-label"' not in bulk
    assert re.search(
        r"Client <code>#\d+</code>\s*<div class=\"subtle\">updated · "
        r'<a class="history-link" href="/history/client\?id=\d+">History</a></div>',
        bulk,
    )


# -- exports --------------------------------------------------------------------------


def export(user, query: str, fmt: str):
    response = user.get(f"/?{query}&_format={fmt}" if query else f"/?_format={fmt}")
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("query", ["", "source=web&resource=client", "q=lead"])
def test_csv_export_has_the_page_s_rows(user, query):
    page_ids = [r["id"] for r in rows(user.get(f"/?{query}&_size=200"))]
    response = export(user, query, "csv")
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith('.csv"')
    if query.startswith("source"):
        assert "source-web_resource-client" in disposition
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r["id"]) for r in table] == page_ids
    for r in table:  # changes is JSON, not a Python repr
        json.loads(r["changes"])


def test_csv_export_never_holds_a_redacted_value(user):
    body = export(user, "resource=client", "csv").get_data(as_text=True)
    assert "[redacted]" in body
    assert "123-45-6789" not in body and "987-65-4321" not in body


@pytest.mark.parametrize("query", ["", "actor=id:7&action_type=create"])
def test_json_export_has_the_page_s_rows(user, query):
    page_ids = [r["id"] for r in rows(user.get(f"/?{query}&_size=200"))]
    response = export(user, query, "json")
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].endswith('.json"')
    if query:
        assert "action_type-create_actor-id-7" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert [item["id"] for item in data] == page_ids
    assert {"action", "actor_name", "source", "changes", "occurred_at"} <= set(data[0])


@pytest.mark.parametrize("query", ["", "source=web&resource=client"])
def test_ndjson_export_is_the_json_export_one_object_a_line(user, query):
    response = export(user, query, "ndjson")
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"].endswith('.ndjson"')
    body = response.get_data(as_text=True)
    assert body.endswith("\n") and "\n\n" not in body
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines == json.loads(export(user, query, "json").get_data(as_text=True))
    assert "123-45-6789" not in body  # redacted, as in every export


def test_ocsf_export_is_one_event_a_line_for_the_same_actions(user):
    response = export(user, "", "ocsf")
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"].endswith('.ocsf.ndjson"')
    body = response.get_data(as_text=True)
    assert "[redacted]" in body and "123-45-6789" not in body  # redacted, as in every export
    events = [json.loads(line) for line in body.splitlines()]
    actions = json.loads(export(user, "", "json").get_data(as_text=True))
    assert [e["metadata"]["uid"] for e in events] == [str(a["id"]) for a in actions]
    assert {e["class_uid"] for e in events} >= {3004, 6003}
    for event, action in zip(events, actions, strict=True):
        assert event["message"] == action["action"]
        assert event["metadata"]["original_time"] == action["occurred_at"]


def test_export_requires_sign_in(client, seeded):
    assert client.get("/?_format=csv").status_code == 302
    for export_format in ("ndjson", "ocsf"):
        assert client.get(f"/?_format={export_format}").status_code == 302


# -- read-only ---------------------------------------------------------------------------


def test_the_viewer_s_connection_cannot_write(app, seeded):
    from flask import g

    from audit_capture.viewer import db
    from audit_capture.viewer.config import ViewerSettings

    viewer_db = db.ViewerDatabase(  # one connection: the next request gets the same
        ViewerSettings(app.config["DATABASE_URL"], statement_timeout_ms=1234, pool_max_size=1)
    )
    try:
        with app.test_request_context("/"):
            g.audit_viewer_db = viewer_db
            conn = db.get_conn()
            assert conn.execute("show default_transaction_read_only").fetchone()[0] == "on"
            assert conn.execute("show statement_timeout").fetchone()[0] == "1234ms"
            # no JIT: a read costed over every month compiled before its first row
            assert conn.execute("show jit").fetchone()[0] == "off"
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("create temporary table t (x int)")
            conn.rollback()
            with pytest.raises(psycopg.Error):
                conn.execute(
                    "insert into audit.action_log (action, action_type, actor_type, db_user,"
                    " transaction_id) values ('Forged', 'create', 'admin', 'x', 1)"
                )
            db.close_conn()
            assert "audit_viewer_conn" not in g
            # back in the pool, idle (its failed transaction rolled back), still read-only
            assert not conn.closed
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert db.get_conn() is conn
            assert conn.execute("show default_transaction_read_only").fetchone()[0] == "on"
            db.close_conn()
    finally:
        viewer_db.close()
    assert conn.closed


def test_the_read_only_setting_holds_even_for_a_role_that_could_write(app, seeded, db_url):
    from audit_capture.viewer import db
    from audit_capture.viewer.config import ViewerSettings

    with (
        db.connect(ViewerSettings(db_url)) as conn,  # the superuser: it could write
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("update clients set notes = 'via the viewer'")


# -- escaping and headers --------------------------------------------------------------


def test_log_values_are_escaped(user, seeded):
    page = user.get("/")
    assert XSS_NAME not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert XSS_LABEL not in page.text
    detail = user.get(f"/actions/{seeded['xss']}")
    assert XSS_NAME not in detail.text and XSS_LABEL not in detail.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail.text
    assert "&lt;img src=x onerror=" in detail.text
    # the only script is the viewer's own file
    assert re.findall(r"<script[^>]*>", detail.text) == ['<script src="/static/viewer.js" defer>']


@pytest.mark.parametrize("path", ["/", "/sign-in", "/actions/1", "/?source=webb", "/nowhere"])
def test_security_headers(user, path):
    response = user.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_pages_have_no_inline_script_or_style(user, seeded):
    for path in ("/", f"/actions/{seeded['bulk']}", "/sign-in"):
        text = user.get(path).text
        assert "<script>" not in text and " style=" not in text and "<style" not in text
        assert not re.search(r"<[^>]*\son[a-z]+=", text)


def test_static_files_are_served_without_sign_in(client):
    css = client.get("/static/viewer.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert client.get("/static/viewer.js").status_code == 200


# -- bad input ---------------------------------------------------------------------------


BAD_INPUTS = {
    "/?source=webb": (400, "source is 'webb'; expected one of web, api, ai, mobile, database"),
    "/?action_type=explode": (400, "action_type is 'explode'"),
    "/?actor_type=robot": (400, "actor_type is 'robot'"),
    "/?actor=7": (400, "actor is '7'"),
    "/?resource=planet": (400, "resource is 'planet'"),
    "/?resource=client%0A&_format=csv": (400, "resource is 'client\\n'; expected a resource type"),
    "/?from=2024-13-01": (400, "from is '2024-13-01'"),
    "/?to=yesterday": (400, "to is 'yesterday'; expected a date as YYYY-MM-DD"),
    "/?from=2024-05-02&to=2024-05-01": (400, "before from"),
    "/?q=" + "x" * 101: (400, "q is 101 characters long"),
    "/?colour=red": (400, "colour is not a filter"),
    # a repeated filter of several values is no longer a 400 (issue 16: source=web&source=api
    # is "web or api", test_viewer_several.py); the others still are, and so is a bad value
    # among good ones, a comma list and too many values
    "/?from=2024-05-01&from=2024-05-02": (400, "from is given 2 times"),
    "/?q=lead&q=client": (400, "q is given 2 times ('lead', 'client'); expected it once"),
    "/?source=web&source=webb": (400, "source is 'webb'; expected one of web, api"),
    "/?source=web,api": (400, "for several values, repeat the parameter: source=web&source=api"),
    "/?resource=client&resource=x" + "&resource=client" * 20: (
        400,
        "resource is given 22 times; it takes at most 20 values",
    ),
    "/?_format=json&_format=csv": (400, "_format is given 2 times"),
    "/?actor=name:a%00b": (400, "actor holds a NUL character"),
    "/?actor=id:a%00b&_format=csv": (400, "actor holds a NUL character"),
    "/?q=lead%00&_format=json": (400, "q holds a NUL character"),
    "/?_cursor=not-a-cursor": (400, "_cursor is 'not-a-cursor'"),
    "/?_cursor=AQAGDp2cgXQAAAAAAAAAAAAAAACAAAAAAAA": (400, "_cursor is"),
    "/?_dir=sideways": (400, "_dir is 'sideways'"),
    "/?_size=5000": (400, "_size is '5000'"),
    "/?_size=ten": (400, "_size is 'ten'"),
    "/?_size=%D9%A5%D9%A0": (400, "_size is '٥٠'"),  # Arabic-Indic digits: not ASCII
    "/?from=%D9%A2%D9%A0%D9%A2%D9%A5-%D9%A0%D9%A1-%D9%A0%D9%A1": (
        400,
        "from is '٢٠٢٥-٠١-٠١'; expected a date as YYYY-MM-DD",
    ),
    "/?_format=xml": (400, "_format is 'xml'; expected one of csv, json, ndjson, ocsf"),
    "/actions/abc": (400, "the action id 'abc' is not a number"),
    "/actions/-1": (400, "is not a number"),
    "/actions/999999999": (404, "There is no action 999999999."),
    "/actions/99999999999999999999": (404, "There is no action"),
    "/actions/0": (404, "There is no action 0."),
    "/nowhere": (404, "Not Found"),
}


@pytest.mark.parametrize("path", BAD_INPUTS)
def test_bad_input_is_a_page_that_says_what_was_wrong(user, path):
    status, words = BAD_INPUTS[path]
    response = user.get(path)
    assert response.status_code == status, response.text
    assert words in message(response) or words in unescape(response.text)
    assert "Traceback" not in response.text
    assert "Back to all actions" in response.text


def test_a_forged_cursor_from_a_real_one(user):
    real = link(user.get("/?_size=10"), "next")
    cursor = parse_qs(urlsplit(real).query)["_cursor"][0]
    forged = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    response = user.get(f"/?_size=10&_cursor={forged}")
    assert response.status_code == 400
    assert "_cursor is" in message(response)


def test_a_text_search_from_a_cursor_at_the_ends_of_the_calendar(user):
    # a well-formed cursor at 9999-12-31 made the text search's "day after" overflow (a 500)
    last = cursors.encode(datetime(9999, 12, 31, 23, 59, tzinfo=UTC), 5)
    response = user.get(f"/?q=lead&_cursor={last}")
    assert response.status_code == 400
    assert message(response).startswith("_cursor is")
    for moment in (cursors.EARLIEST, cursors.LATEST - timedelta(microseconds=1)):
        for direction in ("next", "prev"):
            cursor = cursors.encode(moment, 5)
            assert user.get(f"/?q=lead&_cursor={cursor}&_dir={direction}").status_code == 200


def test_an_item_position_past_the_last_item(user, seeded):
    # an edited link: "No items here" with a Previous link 50 items back, again and again
    response = user.get(f"/actions/{seeded['bulk']}?items_after=500")
    assert response.status_code == 400
    assert message(response) == (
        f"items_after is 500, past the last of this action's {BULK_CLIENTS} items"
    )


@pytest.mark.parametrize("position", ["ten", "-1", "²", "٥"])  # ² and ٥ are digits to str.isdigit
def test_bad_item_position(user, seeded, position):
    response = user.get(f"/actions/{seeded['bulk']}", query_string={"items_after": position})
    assert response.status_code == 400
    assert f"items_after is '{position}'" in message(response)


def test_a_query_past_the_statement_timeout_asks_to_narrow_the_filter(user, monkeypatch):
    from audit_capture.viewer import views
    from audit_capture.viewer.errors import TooBroad

    def too_slow(*args, **kwargs):
        raise TooBroad()

    monkeypatch.setattr(views, "list_page", too_slow)
    response = user.get("/?q=lead")
    assert response.status_code == 400
    assert "narrow it" in message(response)


def test_database_down_is_a_503_page(seeded):
    app = create_app(app_config("postgresql://nobody@127.0.0.1:1/none"))
    client = app.test_client()
    sign_in(client)
    response = client.get("/")
    assert response.status_code == 503
    assert "cannot reach the audit database" in response.text
    assert "127.0.0.1" not in response.text  # no connection details for the browser


def test_an_unexpected_error_is_a_plain_500_page(user, monkeypatch):
    from audit_capture.viewer import views

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "list_page", broken)
    user.application.config["PROPAGATE_EXCEPTIONS"] = False
    response = user.get("/")
    assert response.status_code == 500
    assert "secret internals" not in response.text and "Traceback" not in response.text


# -- the blueprint in a host application ---------------------------------------------------


def host_app(reader_url, allowed: dict) -> Flask:
    host = Flask("crm_host")
    host.config.update(SECRET_KEY="host secret", TESTING=True)

    def may_see_audit_log() -> bool:
        return session.get("role") == "admin"

    @host.route("/login/<role>")
    def login(role):
        session["role"] = role
        return "ok"

    @host.route("/")
    def home():
        return "CRM home"

    host.register_blueprint(
        make_blueprint(
            may_see_audit_log, database_url=reader_url, timezone="Europe/Paris", page_size=10
        ),
        url_prefix="/admin/audit",
    )
    return host


def test_blueprint_under_a_prefix_with_the_host_s_authorize_hook(reader_url, seeded, conn):
    client = host_app(reader_url, {}).test_client()
    assert client.get("/admin/audit/").status_code == 403
    client.get("/login/agent")
    denied = client.get(f"/admin/audit/actions/{seeded['bulk']}")
    assert denied.status_code == 403
    assert "not allowed to see the audit log" in denied.text
    assert client.get("/admin/audit/?_format=csv").status_code == 403

    client.get("/login/admin")
    page = client.get("/admin/audit/")
    assert page.status_code == 200
    assert "Times in Europe/Paris" in page.text
    assert 'href="/admin/audit/static/viewer.css"' in page.text
    assert f'href="/admin/audit/actions/{seeded["bulk"]}"' in page.text
    assert len(re.findall(r'<td data-label="Action"', page.text)) == 10  # the host's page size
    following = re.search(r'rel="next" href="([^"]+)"', page.text).group(1)
    assert unescape(following).startswith("/admin/audit/?")
    assert client.get(unescape(following)).status_code == 200
    detail = client.get(f"/admin/audit/actions/{seeded['bulk']}")
    assert detail.status_code == 200 and "Affected items" in detail.text
    assert "Sign out" not in detail.text  # the host owns sign-in
    assert client.get("/admin/audit/static/viewer.css").status_code == 200
    assert client.get("/admin/audit/?source=webb").status_code == 400
    assert detail.headers["X-Frame-Options"] == "DENY"
    assert client.get("/").text == "CRM home"


@pytest.fixture
def not_a_reader_url(conn, db_url):
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"not_a_reader_{conn.info.dbname}"
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    conn.commit()
    yield name, make_conninfo(db_url, user=name)
    drop_role(conn, name)


def test_a_mounted_viewer_whose_role_cannot_read_the_log_says_so(not_a_reader_url, seeded, caplog):
    name, url = not_a_reader_url
    client = host_app(url, {}).test_client()
    client.get("/login/admin")
    for path in (
        "/admin/audit/",
        f"/admin/audit/actions/{seeded['bulk']}",
        "/admin/audit/?_format=csv",
        "/admin/audit/?source=web&_format=json",
    ):
        response = client.get(path)
        assert response.status_code == 500, path
        assert "The audit viewer is not set up" in response.text
        assert f"cannot read audit.action_log: grant audit_reader to {name}" in unescape(
            message(response)
        ), path
    assert f"grant audit_reader to {name}" in caplog.text
    # the host's own pages are not the viewer's business
    assert client.get("/").text == "CRM home"


def test_a_mounted_viewer_without_the_audit_schema_says_so(empty_db_url):
    client = host_app(empty_db_url, {}).test_client()
    client.get("/login/admin")
    response = client.get("/admin/audit/")
    assert response.status_code == 500
    assert "the audit schema is not installed in this database" in unescape(message(response))


def test_blueprint_without_authorize_lets_nobody_in(reader_url, seeded):
    host = Flask("bare_host")
    host.register_blueprint(make_blueprint(database_url=reader_url), url_prefix="/audit")
    assert host.test_client().get("/audit/").status_code == 403


# -- the command line ------------------------------------------------------------------------


def run_cli(*args, input=None, env=None):
    from click.testing import CliRunner

    from audit_capture.cli import cli

    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def test_cli_hash_password_reads_one_line_from_a_pipe_quietly():
    from werkzeug.security import check_password_hash

    result = run_cli("viewer", "hash-password", input="piped-pass-1\nignored\n")
    assert result.exit_code == 0, result.output
    (password_hash,) = result.output.splitlines()  # the hash alone: no prompt, no warning
    assert check_password_hash(password_hash, "piped-pass-1")
    assert run_cli("viewer", "hash-password", input="\n").exit_code == 1
    assert "at least 8 characters" in run_cli("viewer", "hash-password", input="short\n").output

    # a real pipe: no GetPassWarning on stderr, the hash on stdout
    piped = subprocess.run(
        [str(Path(sys.executable).with_name("audit-capture")), "viewer", "hash-password"],
        input="piped-pass-2\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    (password_hash,) = piped.stdout.splitlines()
    assert check_password_hash(password_hash, "piped-pass-2")


def test_cli_hash_password_prints_a_hash_that_checks():
    from werkzeug.security import check_password_hash

    result = run_cli("viewer", "hash-password", input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    password_hash = result.output.strip().splitlines()[-1]
    assert password_hash.startswith("scrypt:")
    assert check_password_hash(password_hash, "s3cret-pass")


def test_cli_viewer_without_secret_or_users_is_one_line(tmp_path, reader_url):
    env = {"AUDIT_CAPTURE_VIEWER_SECRET_KEY": None, "AUDIT_CAPTURE_VIEWER_USERS": None}
    result = run_cli("--database-url", reader_url, "viewer", env=env)
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: no secret key")
    assert len(result.output.strip().splitlines()) == 1

    settings = tmp_path / "viewer.toml"
    settings.write_text(f'secret_key = "{SECRET_KEY}"\n')
    result = run_cli("--database-url", reader_url, "viewer", "--config", str(settings), env=env)
    assert result.exit_code == 1 and result.output.startswith("Error: no users")

    settings.write_text(f'secret_key = "{SECRET_KEY}"\n[users]\nalice = "plain password"\n')
    result = run_cli("--database-url", reader_url, "viewer", "--config", str(settings), env=env)
    assert result.exit_code == 1 and "not a plain password" in result.output


def test_cli_viewer_checks_the_role_can_read_the_log(tmp_path, conn, db_url, monkeypatch):
    import waitress.server
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"not_a_reader_{conn.info.dbname}"
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    conn.commit()
    try:
        settings = tmp_path / "viewer.toml"
        settings.write_text(
            f'secret_key = "{SECRET_KEY}"\n[users]\nalice = "{app_config("")["USERS"]["alice"]}"\n'
        )
        served = []

        class Server:
            def run(self):
                pass

        def create_server(app, **kw):
            served.append(kw)
            return Server()

        monkeypatch.setattr(waitress.server, "create_server", create_server)
        result = run_cli(
            "--database-url", make_conninfo(db_url, user=name), "viewer", "--config", str(settings)
        )
        assert result.exit_code == 1
        assert f"cannot read audit.action_log: grant audit_reader to {name}" in result.output
        assert not served

        reader, url = make_reader(conn, db_url)
        try:
            result = run_cli(
                "viewer", "--database-url", url, "--config", str(settings), "--port", "8123"
            )
            assert result.exit_code == 0, result.output
            assert "serving http://127.0.0.1:8123/" in result.output
            assert served[0]["host"] == "127.0.0.1" and served[0]["port"] == 8123
        finally:
            drop_role(conn, reader)
    finally:
        conn.rollback()
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))
        conn.commit()


def test_cli_viewer_on_a_port_in_use_says_so_in_one_line(tmp_path, conn, db_url):
    """The "serving" line comes once the port is bound; a port taken is a one-line error
    (it was a traceback after that line)."""
    reader, url = make_reader(conn, db_url)
    try:
        settings = tmp_path / "viewer.toml"
        settings.write_text(
            f'secret_key = "{SECRET_KEY}"\n[users]\nalice = "{app_config("")["USERS"]["alice"]}"\n'
        )
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_cli(
                "viewer", "--database-url", url, "--config", str(settings), "--port", str(port)
            )
        assert result.exit_code == 1
        assert result.output == (
            f"Error: cannot serve on 127.0.0.1:{port}: Address already in use"
            " (choose another --port or --host)\n"
        )
    finally:
        drop_role(conn, reader)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_cli_viewer_stops_cleanly_even_started_with_ctrl_c_ignored(tmp_path, conn, db_url, stop):
    """A script's background job starts with SIGINT ignored: Ctrl-C (or a supervisor's
    SIGTERM) still stops the viewer, with a line saying so and exit code 0."""
    reader, url = make_reader(conn, db_url)
    try:
        settings = tmp_path / "viewer.toml"
        settings.write_text(
            f'secret_key = "{SECRET_KEY}"\n[users]\nalice = "{app_config("")["USERS"]["alice"]}"\n'
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "AUDIT_CAPTURE_DATABASE_URL"}
        viewer = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("audit-capture")),
                "viewer",
                "--database-url",
                url,
                "--config",
                str(settings),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        try:
            # printed once it listens
            assert first_line(viewer).startswith("audit-capture viewer: serving"), (
                viewer.stderr.read()
            )
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sign-in") as page:
                assert page.status == 200
            viewer.send_signal(stop)
            out, err = viewer.communicate(timeout=15)
        finally:
            if viewer.poll() is None:
                viewer.kill()
                viewer.wait()
        assert viewer.returncode == 0, err
        assert out.splitlines()[-1] == "audit-capture viewer: stopped", out
    finally:
        drop_role(conn, reader)


# -- settings ---------------------------------------------------------------------------------


FILE_KEY = "file-" + "Zq8vN2mXc7LbR4tY9wKp1sJ6dF3gH0aE5uI"
ENV_KEY = "env-" + "Tg5hY8uJ2kL9mN4bV7cX1zQ6wE3rP0oAsD"


def test_settings_from_a_toml_file_and_the_environment(tmp_path):
    from audit_capture.viewer import config

    password_hash = app_config("")["USERS"]["alice"]
    path = tmp_path / "viewer.toml"
    path.write_text(
        f'secret_key = "{FILE_KEY}"\ntimezone = "Europe/Paris"\npage_size = 25\n'
        f'statement_timeout_ms = 3000\n[users]\nalice = "{password_hash}"\n'
    )
    settings = config.load(path=path, environ={})
    assert settings["SECRET_KEY"] == FILE_KEY
    assert settings["TIMEZONE"] == "Europe/Paris"
    assert settings["PAGE_SIZE"] == 25 and settings["STATEMENT_TIMEOUT_MS"] == 3000
    assert settings["USERS"] == {"alice": password_hash}

    environ = {
        "AUDIT_CAPTURE_VIEWER_SECRET_KEY": ENV_KEY,
        "AUDIT_CAPTURE_VIEWER_USERS": json.dumps({"bob": password_hash}),
        "AUDIT_CAPTURE_VIEWER_PAGE_SIZE": "100",
    }
    settings = config.load(path=path, environ=environ)
    assert settings["SECRET_KEY"] == ENV_KEY
    assert settings["USERS"] == {"bob": password_hash}
    assert settings["PAGE_SIZE"] == 100 and settings["TIMEZONE"] == "Europe/Paris"


@pytest.mark.parametrize(
    "text, error",
    [
        ("secret_key = ", "is not valid TOML"),
        (
            'secret_key = "x"\npage_size = 5000\n[users]\na = "scrypt:1$2$3"',
            "page size 5000 is out of range",
        ),
        (
            'secret_key = "x"\nstatement_timeout_ms = "soon"\n[users]\na = "scrypt:1$2$3"',
            "statement timeout",
        ),
    ],
)
def test_bad_settings_files(tmp_path, text, error):
    from audit_capture.viewer import config

    path = tmp_path / "viewer.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        config.load(path=path, environ={})
    with pytest.raises(ConfigError, match="not found"):
        config.load(path=tmp_path / "missing.toml", environ={})


def test_a_host_s_own_connection_is_made_read_only(db_url, seeded):
    from audit_capture.viewer import db
    from audit_capture.viewer.config import ViewerSettings

    settings = ViewerSettings(
        None, statement_timeout_ms=2500, connect=lambda: psycopg.connect(db_url)
    )
    with db.connect(settings) as conn:
        assert conn.execute("show statement_timeout").fetchone()[0] == "2500ms"
        assert conn.execute("show jit").fetchone()[0] == "off"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("update clients set notes = 'via the viewer'")
