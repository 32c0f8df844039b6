"""The viewer's Live view: ``/live`` and the ``/live/poll`` feed behind it
(src/audit_capture/viewer/live.py, live_feed.py), through the Flask test client, the
viewer connecting as a role granted only audit_reader.

The rule of the feed: it never skips an action. Ids are drawn before commit, so an
action with a lower id can commit after a higher one; the feed shows nothing past an
id that an open transaction may still commit."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import psycopg
import pytest

from audit_capture.viewer import live_feed

ROW = re.compile(r"<tr(?: data-id=\"(\d+)\")?>\n(<td data-label=\"Action\">.*?)\n</tr>", re.S)


def page_rows(text: str) -> dict[str, str]:
    """The rows of a list or Live page (or of a poll's html): each row's markup by the
    id its action link names."""
    found = {}
    for match in ROW.finditer(text):
        action_id = re.search(r'href="/actions/(\d+)"', match.group(2)).group(1)
        found[action_id] = match.group(2)
    return found


def attribute(text: str, name: str) -> str:
    return html.unescape(re.search(rf'{name}="([^"]*)"', text).group(1))


@dataclass
class Feed:
    """A client of the feed, as live.js is: it starts from the page's state and sends
    back what each answer gives."""

    client: object
    after: str
    mark: str

    @classmethod
    def open(cls, client) -> Feed:
        page = client.get("/live")
        assert page.status_code == 200, page.text
        return cls(client, attribute(page.text, "data-after"), attribute(page.text, "data-mark"))

    def poll(self) -> list[int]:
        """The ids of one answer, oldest first."""
        response = self.client.get("/live/poll", query_string=self.args())
        assert response.status_code == 200, response.text
        body = response.get_json()
        assert response.headers["Cache-Control"] == "no-store"
        self.after = "" if body["after"] is None else str(body["after"])
        self.mark = body["mark"] or ""
        ids = [int(i) for i in page_rows(body["html"])]
        assert body["count"] == len(ids)
        return ids[::-1]

    def args(self) -> dict[str, str]:
        return {k: v for k, v in (("after", self.after), ("mark", self.mark)) if v}


def newest_id(conn) -> int:
    (newest,) = conn.execute("select max(id) from audit.action_log").fetchone()
    conn.commit()
    return newest


def log_event(conn, label: str) -> None:
    conn.execute("select audit.log_action('login', %s, 'integration', 'lawruler')", (label,))


# -- the page --------------------------------------------------------------------------------


def test_the_list_links_to_the_live_view(user):
    page = user.get("/")
    assert 'href="/live"' in page.text


def test_the_live_page_shows_the_newest_actions_as_the_list_draws_them(user, conn):
    page = user.get("/live")
    assert page.status_code == 200
    newest = newest_id(conn)
    live = page_rows(page.text)
    assert list(live)[0] == str(newest)  # newest first
    assert attribute(page.text, "data-after") == str(newest)  # nothing open: all settled
    listed = page_rows(user.get("/", query_string={"_size": "200"}).text)
    assert live and set(live) <= set(listed)
    for action_id, markup in live.items():  # the same cells, the same links
        assert markup == listed[action_id]
    # the page's script is a file (the CSP allows no inline script); every icon is drawn
    assert re.findall(r"<script[^>]*>", page.text) == [
        '<script src="/static/viewer.js" defer>',
        '<script src="/static/live.js" defer>',
    ]
    assert "style=" not in page.text
    for icon in ("admin", "client", "system", "web", "api", "ai", "mobile", "database"):
        assert f'id="icon-{icon}"' in page.text
    assert "filters do not apply" in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_static_script_is_served(client):
    response = client.get("/static/live.js")
    assert response.status_code == 200
    assert "opaqueredirect" in response.text  # a redirect (signed out) becomes a message


@pytest.mark.parametrize("path", ["/live", "/live/poll", "/live/poll?after=1&mark=1:"])
def test_anonymous_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=/live")
    assert "Alice Admin" not in response.text


def test_signed_out_the_poll_is_sent_to_sign_in(user):
    feed = Feed.open(user)
    token = re.search(r'name="csrf_token" value="([^"]+)"', user.get("/live").text).group(1)
    assert user.post("/sign-out", data={"csrf_token": token}).status_code == 302
    response = user.get("/live/poll", query_string=feed.args())
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")


# -- the feed ----------------------------------------------------------------------------------


def test_the_poll_brings_actions_committed_since_in_id_order(user, conn):
    feed = Feed.open(user)
    assert feed.poll() == []
    log_event(conn, "<script>alert(3)</script>")  # the rows' markup is escaped
    log_event(conn, "LawRuler login")
    log_event(conn, "LawRuler logout")
    conn.commit()
    newest = newest_id(conn)
    response = user.get("/live/poll", query_string=feed.args())
    body = response.get_json()
    assert "LawRuler logout" in body["html"] and 'href="/actions/' in body["html"]
    assert "<script" not in body["html"] and "&lt;script&gt;alert(3)" in body["html"]
    assert body["after"] == newest and body["count"] == 3 and body["more"] is False
    assert body["mark"] is None or body["mark"].startswith(f"{newest}:")
    feed.after, feed.mark = str(body["after"]), body["mark"] or ""
    assert feed.poll() == []


def test_a_lower_id_committed_late_holds_the_higher_one_back_until_it_commits(user, conn, db_url):
    feed = Feed.open(user)
    assert feed.poll() == []
    with psycopg.connect(db_url) as early, psycopg.connect(db_url) as late:
        log_event(early, "Drawn first, committed last")
        log_event(late, "Drawn second, committed first")
        late.commit()
        late_id = newest_id(conn)  # committed, visible; the open one holds late_id - 1
        for _poll in range(3):  # however often it asks: nothing past the open lower id
            assert feed.poll() == []
        early.commit()
    # the next answer's mark finds the open one ended; at most one more to settle the last
    shown = feed.poll() or feed.poll()
    assert shown == [late_id - 1, late_id]
    assert feed.poll() == []


def test_a_page_opened_while_a_transaction_holds_an_id_waits_for_it(user, conn, db_url):
    before = newest_id(conn)
    with psycopg.connect(db_url) as early:
        log_event(early, "Open while the page loads")
        log_event(conn, "Committed while it is open")
        conn.commit()
        page = user.get("/live")
        assert attribute(page.text, "data-after") == ""  # nothing settled yet
        assert str(before + 2) not in page_rows(page.text)
        assert "Waiting for transactions in progress" in page.text
        feed = Feed(user, "", attribute(page.text, "data-mark"))
        assert feed.poll() == [] and feed.after == ""
        early.commit()
    shown = feed.poll() or feed.poll()
    assert shown[-2:] == [before + 1, before + 2]


def test_a_rolled_back_id_is_a_gap(user, conn, db_url):
    feed = Feed.open(user)
    with psycopg.connect(db_url) as early:
        log_event(early, "Rolled back")
        log_event(conn, "Kept")
        conn.commit()
        assert feed.poll() == []
        early.rollback()
    shown = feed.poll() or feed.poll()
    assert shown == [newest_id(conn)]


def test_a_burst_larger_than_one_answer_comes_in_pieces(user, conn):
    feed = Feed.open(user)
    first = newest_id(conn) + 1
    for n in range(live_feed.MAX_ROWS + 5):
        log_event(conn, f"Burst {n}")
    conn.commit()
    body = user.get("/live/poll", query_string=feed.args()).get_json()
    assert body["count"] == live_feed.MAX_ROWS and body["more"] is True
    assert body["after"] == first + live_feed.MAX_ROWS - 1
    feed.after, feed.mark = str(body["after"]), body["mark"]
    assert feed.poll() == list(range(first + live_feed.MAX_ROWS, first + live_feed.MAX_ROWS + 5))


# -- bad input ---------------------------------------------------------------------------------

TOO_MANY_WRITERS = "5:" + ",".join(f"3/{n}" for n in range(live_feed.MAX_WRITERS + 1))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("after=abc", "after is 'abc'; expected the id of the last action shown"),
        ("after=-1", "after is '-1'"),
        ("after=1.5", "after is '1.5'"),
        ("after=%D9%A5", "after is '٥'"),  # ARABIC-INDIC DIGIT FIVE: isdigit() says yes
        (f"after={2**63}", "after is '9223372036854775808'"),
        ("after=" + "9" * 5000, "after is '9999"),
        ("after=999999999", "after names action 999999999, but this database has drawn"),
        ("mark=garbage", "mark is 'garbage', which is not a mark this viewer gave"),
        ("mark=5", "mark is '5'"),
        ("mark=5:3/7,", "mark is '5:3/7,'"),
        ("mark=5:3/7,3/7", "mark is '5:3/7,3/7'"),
        ("mark=5:3/x", "mark is '5:3/x'"),
        ("mark=5:3/7%00", "mark is '5:3/7\\x00'"),
        (f"mark={TOO_MANY_WRITERS}", "which is not a mark this viewer gave"),
        ("mark=5:" + "3/7" * 3000, "which is not a mark this viewer gave"),
        ("mark=999999999:", "mark names action 999999999, but this database has drawn"),
        ("source=web", "'source' is not a parameter of /live/poll; expected after, mark"),
        ("after=1&after=2", "'after' is given 2 times; expected it once"),
    ],
)
def test_a_bad_poll_is_a_400_with_a_sentence(user, query, message):
    response = user.get("/live/poll?" + query)
    assert response.status_code == 400, response.text
    assert message in response.get_json()["error"]


@pytest.mark.parametrize("query", ["source=web", "after=5", "x=1&x=2"])
def test_the_page_takes_no_parameter(user, query):
    response = user.get("/live?" + query)
    assert response.status_code == 400
    assert "is not a parameter of /live" in response.text or "given 2 times" in response.text
    assert '<p class="message">' in response.text


def test_a_forged_mark_only_settles_the_clients_own_view_early(user, conn, db_url):
    """A mark with no open writer settles at once: the client that forged it sees the
    higher id past the open lower one (its own view skips), and nothing it could not
    read on the list anyway."""
    after = newest_id(conn)
    with psycopg.connect(db_url) as early:
        log_event(early, "Still open")
        log_event(conn, "Committed")
        conn.commit()
        forged = f"{after + 2}:"
        body = user.get(f"/live/poll?after={after}&mark={forged}").get_json()
        assert body["after"] == after + 2 and [int(i) for i in page_rows(body["html"])] == [
            after + 2
        ]
        early.rollback()


def test_an_audit_server_says_the_live_view_needs_the_primary(user, conn):
    conn.autocommit = True
    conn.execute(
        "create subscription audit_capture connection 'dbname=nowhere'"
        " publication audit_capture"
        " with (connect = false, enabled = false, create_slot = false, slot_name = none)"
    )
    try:
        page = user.get("/live")
        assert page.status_code == 409
        assert "needs the database the application writes to" in page.text
        poll = user.get("/live/poll?after=1")
        assert poll.status_code == 409 and "audit server" in poll.get_json()["error"]
        assert user.get("/").status_code == 200  # the list still reads the log
    finally:
        conn.execute("drop subscription audit_capture")
        conn.autocommit = False
