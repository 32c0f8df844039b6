"""How the viewer's pages are built: the Server-Timing header each page sends (where its
time went: the query layer, the template), and the list page's markup.

Through Flask's test client, against the seeded log (conftest.py: ``user`` is a client
signed in to the standalone viewer; the viewer reads as a role granted audit_reader).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask import Flask, render_template_string
from markupsafe import Markup, escape
from viewer_data import XSS_LABEL, XSS_NAME, app_config, old_action, sign_in

from audit_capture.enums import ActionType, ActorType, Source
from audit_capture.viewer import create_app, make_blueprint, present
from audit_capture.viewer.app import close
from audit_capture.viewer.filters import parse_filters
from audit_capture.viewer.options import load_options
from audit_capture.viewer.pages import list_page
from audit_capture.viewer.present import HIDDEN_CHARACTERS, list_rows
from audit_capture.viewer.rows import LogRow

# "db;dur=2.41, render;dur=7.90": milliseconds, and nothing else
PAGE_TIMING = re.compile(r"db;dur=[0-9]+\.[0-9]{2}, render;dur=[0-9]+\.[0-9]{2}")


def durations(header: str) -> dict[str, float]:
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([0-9.]+)", header)}


# -- Server-Timing ---------------------------------------------------------------------


def test_every_page_says_where_its_time_went(user, seeded):
    for path in (
        "/",
        "/?source=web&_size=10",
        "/?q=client&actor_type=admin",
        "/?actor=id:7&resource=client",
        f"/actions/{seeded['bulk']}",
        f"/actions/{seeded['bulk']}?items_after=50",
        "/?_actor=a",  # several actors match: the page to choose one
    ):
        page = user.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        header = page.headers.get("Server-Timing")
        assert header is not None, path
        assert PAGE_TIMING.fullmatch(header), (path, header)
        parts = durations(header)
        # the page did read the log, and did render a template
        assert parts["db"] > 0 and parts["render"] > 0, (path, header)
    assert "Choose an actor" in page.text


def test_an_export_says_how_long_its_first_rows_took(user, seeded):
    for export_format in ("csv", "json"):
        response = user.get(f"/?_format={export_format}&source=web")
        assert response.status_code == 200
        header = response.headers["Server-Timing"]
        assert re.fullmatch(r"db;dur=[0-9]+\.[0-9]{2}", header), header
        assert response.data  # the stream still carries the whole file
        response.close()


@pytest.mark.parametrize(
    "path, status",
    [
        ("/?source=nowhere", 400),  # a bad filter value: the query layer refused it
        ("/?_size=100000", 400),
        ("/actions/999999999", 404),  # read the log, found nothing
        ("/actions/abc", 400),
        ("/nowhere", 404),
        ("/?_format=xml", 400),
    ],
)
def test_an_error_page_sends_no_server_timing(user, seeded, path, status):
    """An error page is not a page whose parts mean anything: no header (and never a
    half-measured one from the view that failed)."""
    page = user.get(path)
    assert page.status_code == status, page.text[:300]
    assert "Server-Timing" not in page.headers
    assert '<p class="message">' in page.text


def test_a_redirect_and_the_sign_in_page_send_no_server_timing(client, seeded):
    assert "Server-Timing" not in client.get("/sign-in").headers
    assert "Server-Timing" not in client.get("/").headers  # not signed in: to the sign-in
    sign_in(client)
    one_actor = client.get("/?_actor=7")  # one actor matches: to the list, filtered
    assert one_actor.status_code == 302
    assert "Server-Timing" not in one_actor.headers


def test_a_visitor_turned_away_learns_no_timing(reader_url, seeded):
    """The host's authorize hook says no: the 403 page says nothing of the log's time."""
    host = Flask("timing_host")
    host.register_blueprint(
        make_blueprint(lambda: False, database_url=reader_url), url_prefix="/audit"
    )
    for path in ("/audit/", f"/audit/actions/{seeded['bulk']}", "/audit/?_format=csv"):
        denied = host.test_client().get(path)
        assert denied.status_code == 403
        assert "Server-Timing" not in denied.headers


def test_the_blueprint_in_a_host_sends_it_too(reader_url, seeded):
    host = Flask("timing_host_allowed")
    host.register_blueprint(
        make_blueprint(lambda: True, database_url=reader_url), url_prefix="/audit"
    )
    page = host.test_client().get("/audit/?resource=client")
    assert page.status_code == 200
    assert PAGE_TIMING.fullmatch(page.headers["Server-Timing"])


# -- the list page's rows ----------------------------------------------------------------

# The list's row markup as it was before the rows were prepared in Python
# (present.list_rows) and their icons drawn once: the reference the page must still
# match, text for text, link for link, icon for icon. (Since: a row's id links to its
# history, issue 16.)
REFERENCE_ROWS = """
{%- from "audit_viewer/_icons.html" import actor_badge, source_badge with context -%}
{% for row in page.rows %}
{% set detail = url_for('.action', action_id=row.id) %}
<tr>
  <td data-label="Action">
    <div class="action-cell">
      <span class="type-dot {{ action_type_key(row.action_type) }}" aria-hidden="true"></span>
      <div>
        <a class="action-name" href="{{ detail }}">{{ user_text(row.action) }}</a>
        <div class="subtle">{{ action_type_label(row.action_type) }}</div>
      </div>
    </div>
  </td>
  <td data-label="Actor">
    <div class="actor">
      <span class="actor-name">{{ user_text(row.actor_name or row.actor_id or "Unknown") }}</span>
      {{ actor_badge(row.actor_type) }}
    </div>
  </td>
  <td data-label="Date &amp; Time" class="date-cell nowrap">
    <time datetime="{{ iso(row.occurred_at) }}" title="{{ iso(row.occurred_at) }}">
      <span class="date">{{ date_text(row.occurred_at, zone) }}</span><br>
      <span class="time">{{ time_text(row.occurred_at, zone) }}</span>
    </time>
  </td>
  <td data-label="Source">{{ source_badge(row.source) }}</td>
  <td data-label="Resource" class="resource">
    <a href="{{ detail }}">{% if row.resource_label %}{{ user_text(row.resource_label) }}{% elif row.row_count > 1 %}{{ plural(row.row_count, "row") }}{% else %}View details{% endif %}</a>
    <div class="subtle">
      {%- if row.resource_type %}{{ user_text(resource_labels.get(row.resource_type, row.resource_type)) }}{% endif -%}
      {%- if row.resource_id and has_history(row.resource_type, row.resource_id) %} · <a class="history-link" href="{{ url_for('.history', resource_type=row.resource_type, id=row.resource_id) }}" title="History">#{{ user_text(row.resource_id) }}</a>
      {%- elif row.resource_id %} · #{{ user_text(row.resource_id) }}{% endif -%}
      {%- if row.row_count > 1 and row.resource_label %} · {{ plural(row.row_count, "row") }}{% endif -%}
    </div>
  </td>
</tr>
{% endfor %}
"""  # noqa: E501 (the markup as it was)


def reference_user_text(value) -> Markup:
    """``present.user_text`` as it was (one path for every text)."""
    if value is None:
        return Markup("")
    text = str(value)
    parts: list[Markup] = []
    last = 0
    for match in HIDDEN_CHARACTERS.finditer(text):
        char = match.group()
        parts.append(escape(text[last : match.start()]))
        parts.append(
            Markup('<span class="ctl" title="{}">{}</span>').format(
                unicodedata.name(char, "control character"), f"⟨U+{ord(char):04X}⟩"
            )
        )
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("<bdi>") + Markup("").join(parts) + Markup("</bdi>")


OLD_ICON = re.compile(
    r'<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"'
    r' stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"'
    r' focusable="false">(.*?)\s*</svg>',
    re.S,
)
ROW_ICON = re.compile(r'<svg aria-hidden="true"><use href="#icon-([a-z_]+)"/></svg>')
SYMBOL = re.compile(r'<symbol id="icon-([a-z_]+)"[^>]*>(.*?)</symbol>', re.S)


class Tokens(HTMLParser):
    """A page's markup as what it shows: each tag with its attributes, each text
    (whitespace collapsed; whitespace alone between tags shows nothing here)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tokens: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tokens.append(f"<{tag} {sorted(attrs)}>")

    def handle_endtag(self, tag):
        self.tokens.append(f"</{tag}>")

    def handle_data(self, data):
        text = " ".join(data.split())
        if text:
            self.tokens.append(text)


def rows_html(page_html: str) -> str:
    return page_html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]


def shown(rows: str, symbols: dict[str, str]) -> list[str]:
    """The rows' tokens, each icon as the drawing it shows (inline, or by reference)."""
    rows = OLD_ICON.sub(lambda m: f"<svg>{m.group(1)}</svg>", rows)
    rows = ROW_ICON.sub(lambda m: f"<svg>{symbols[m.group(1)]}</svg>", rows)
    return Tokens(rows).tokens


@pytest.fixture
def varied_log(conn, seeded):
    """The seeded morning, and older actions of every shape a row can take: names and
    labels with hidden characters, right-to-left text and markup; an actor known by id
    only, or not at all; many rows with and without a label; a resource id without a
    label; times either side of midnight and of a daylight-saving change in Paris."""
    shapes = [
        dict(actor_name="Evil\u202eAdmin", resource_label="Acme \u200bv. Roe", resource_id="7"),
        dict(actor_name="שרה לוי", resource_label="قضية ٤٥", source=None, actor_type="system"),
        dict(actor_name=None, actor_id="id-only-<b>", resource_label=None, resource_id="<i>9"),
        dict(actor_name=None, actor_id=None, resource_label=None, resource_id=None, row_count=3),
        dict(
            action="Bulk case status update",
            action_type="status_change",
            row_count=12,
            resource_type="case",
            resource_label='"Spring" & <Co>',
            resource_id=None,
        ),
        dict(
            action="Batch send SMS",
            action_type="send",
            resource_type="batch_job",
            actor_type="client",
            source="mobile",
            resource_label=None,
            row_count=1,
        ),
        dict(
            action="LawRuler login",
            action_type="login",
            resource_type="integration",
            source="api",
            resource_label="LawRuler",
            resource_id="1",
        ),
        dict(
            action="Call export to file",
            action_type="export",
            resource_type="call",
            source="ai",
            row_count=0,
            resource_label=None,
        ),
    ]
    moments = [
        datetime(2026, 3, 28, 22, 59, 59, tzinfo=UTC),  # 23:59:59 in Paris (CET)
        datetime(2026, 3, 28, 23, 0, 0, tzinfo=UTC),  # the next day in Paris
        datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC),  # 03:30 CEST, after the change
        datetime(2025, 12, 31, 23, 30, tzinfo=UTC),  # the next year in Paris
    ]
    for n, shape in enumerate(shapes * 2):
        old_action(conn, moments[n % len(moments)] - timedelta(days=n // len(moments)), **shape)
    return seeded


def test_the_rows_show_what_they_showed_before(conn, reader_url, varied_log):
    """The list page's rows, built from ListRows with their icons drawn once, show the
    same text, links, times (in the viewer's zone), badges and icons as the markup they
    replace, rendered by the per-value helpers from the same rows."""
    app = create_app(app_config(reader_url, TIMEZONE="Europe/Paris"))
    try:
        client = app.test_client()
        sign_in(client)
        page = client.get("/?_size=200")
        assert page.status_code == 200
        symbols = dict(SYMBOL.findall(page.text))
        new = shown(rows_html(page.text), symbols)

        with app.test_request_context("/?_size=200"):
            app.preprocess_request()  # the blueprint's settings, as for the page
            zone = ZoneInfo("Europe/Paris")
            with psycopg.connect(reader_url) as reader:
                listed = list_page(reader, parse_filters({}, zone), size=200)
                options = load_options(reader)
            reference = render_template_string(
                REFERENCE_ROWS,
                page=listed,
                resource_labels=dict(options.resources),
                user_text=reference_user_text,
            )
        old = shown(reference, symbols)
    finally:
        close(app)
    assert len(listed.rows) > 25
    assert new == old
    # and the hard rows are among them, as they were
    text = " ".join(new)
    for seen in ("⟨U+202E⟩", "⟨U+200B⟩", "שרה לוי", '"Spring" & <Co>', "id-only-<b>", "<i>9"):
        assert seen in text, seen
    assert "29 Mar 2026" in text and "00:00:00" in text and "03:30:00" in text
    assert "1 Jan 2026" in text and "Unknown" in text and "3 rows" in text


def test_the_rows_escape_what_users_wrote(user, seeded):
    page = user.get("/")
    assert XSS_NAME not in page.text and XSS_LABEL not in page.text
    assert escape(XSS_NAME) in page.text and escape(XSS_LABEL) in page.text


def test_a_row_s_labels_stay_text_for_the_template_to_escape():
    """ListRow's labels of values outside the vocabularies (a log written before a
    vocabulary changed, a hostile superuser) are plain text: the template escapes them.
    Only what went through user_text is markup."""
    row = LogRow(
        id=1,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        action="<b>x</b>",
        action_type="<script>",
        resource_type="<img>",
        resource_id=None,
        resource_label=None,
        row_count=2,
        actor_id=None,
        actor_name="<i>",
        actor_type="<svg onload=x>",
        source='"><script>',
    )
    (line,) = list_rows([row], ZoneInfo("UTC"), {})
    for label in (line.type_label, line.actor_label, line.source_label, line.resource):
        assert not isinstance(label, Markup), label
    assert (line.type_key, line.actor_key, line.source_key) == ("other", "unknown", "database")
    assert line.actor_label == "<svg onload=x>" and line.source_label == '"><script>'
    assert str(line.action) == "<bdi>&lt;b&gt;x&lt;/b&gt;</bdi>"
    assert str(line.resource_detail) == "<bdi>&lt;img&gt;</bdi>"
    assert line.resource == "2 rows"


def test_the_labels_are_the_vocabularies_own():
    for member in ActionType:
        assert present.action_type_label(member.value) == member.label
        assert present.action_type_key(member.value) == member.value
    for member in ActorType:
        assert present.actor_type_label(member.value) == member.label
    for member in Source:
        assert present.source_label(member.value) == member.label
        assert present.source_key(member.value) == member.value
    assert present.source_label(None) == "Database" and present.source_key(None) == "database"
    assert present.actor_type_label(None) == "Unknown" and present.action_type_label(None) == ""


@pytest.mark.parametrize(
    "text",
    ["", "Alice", "<script>&\"'", "Evil\u202eAdmin", "\u200b", "a\x00b\u2066c", "שרה"],
)
def test_user_text_is_what_it_was(text):
    assert present.user_text(text) == reference_user_text(text)


def test_the_list_draws_its_icons_once_whatever_its_rows(user, varied_log):
    """A row refers to its badges' icons, drawn once above the table (one drawing per
    icon the rows use): the table itself draws nothing, and a row weighs under 1,200
    bytes (it was 1,800: each row drew its two icons)."""
    small, large = user.get("/?_size=10"), user.get("/?_size=25")
    assert large.text.count("<tr>") == 26  # the head's row and 25
    table = rows_html(large.text)
    assert not re.search(r"<(path|circle|rect|ellipse|symbol)\b", table)
    drawn = [name for name, _ in SYMBOL.findall(large.text)]
    assert sorted(set(drawn)) == drawn  # each once
    assert set(ROW_ICON.findall(table)) == set(drawn)  # each one a row uses
    per_row = (len(large.data) - len(small.data)) / 15
    assert per_row < 1200, per_row


def test_a_mounted_viewer_s_rows_link_under_its_prefix(reader_url, seeded):
    host = Flask("rows_host")
    host.register_blueprint(
        make_blueprint(lambda: True, database_url=reader_url), url_prefix="/admin/audit"
    )
    page = host.test_client().get("/admin/audit/")
    links = re.findall(r'href="([^"]*actions/[^"]*)"', rows_html(page.text))
    assert links and all(re.fullmatch(r"/admin/audit/actions/[0-9]+", link) for link in links)
    assert f'href="/admin/audit/actions/{seeded["bulk"]}"' in page.text
