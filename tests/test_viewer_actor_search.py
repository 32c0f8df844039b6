"""The actor filter finds anyone (issue 12, item 4): ``/actors?q=`` (JSON, for the
suggestions) and the filter form's text field (``_actor``, without JavaScript) search
EVERY actor of the log by a prefix of its id or of any word of its name: admins and
clients with an id, system actors known by name alone, and the database roles of
direct changes; the filter sentence names the chosen actor."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from audit_capture import record_action, set_context
from audit_capture.viewer import actor_search, options

RLO = "\u202e"
XSS = "<script>alert(1)</script>"


@pytest.fixture
def actors(seeded, conn):
    """The seeded log plus actors an admin looks for: two Marias, a system actor with
    no id, one past the old 500-actor list, and hostile names."""
    conn.autocommit = True
    try:
        for values in (
            dict(actor_id="a-100", actor_name="Maria Smith", actor_type="admin", source="web"),
            dict(actor_id="a-200", actor_name="Mario Garcia-Lopez", actor_type="admin"),
            dict(actor_name="Campaign scheduler", actor_type="system", source="api"),
            dict(actor_id="zz-9", actor_name="Zoe Last", actor_type="client", source="mobile"),
            dict(actor_id="b-1", actor_name=f"Bidi {RLO}nimda", actor_type="client"),
            dict(actor_id="h-1", actor_name=f"Hostile {XSS}", actor_type="client"),
            dict(actor_id="l-1", actor_name="Long " + "x" * 190, actor_type="client"),
            dict(actor_id="n-1", actor_name="Admin", actor_type="admin"),
        ):
            with conn.transaction():
                set_context(conn, **{"source": "web", **values})
                record_action(conn, "login", "LawRuler login", resource_type="integration")
        role = conn.execute(
            "select actor_name from audit.action_log where source is null limit 1"
        ).fetchone()[0]
    finally:
        conn.autocommit = False
    return role


def search(user, query: str, status: int = 200):
    response = user.get("/actors?" + query)
    assert response.status_code == status, response.text
    assert response.mimetype == "application/json"
    return response.get_json()


def keys(body) -> list[str]:
    return [a["actor"] for a in body["actors"]]


def test_found_by_id_prefix(user, actors):
    body = search(user, "q=a-1")
    assert keys(body) == ["id:a-100"]
    assert body["actors"][0] == {
        "actor": "id:a-100",
        "id": "a-100",
        "name": "Maria Smith",
        "type": "admin",
        "kind": "Admin",
    }
    # an exact id comes first
    assert keys(search(user, "q=7"))[0] == "id:7"


def test_found_by_a_prefix_of_any_word_of_the_name(user, actors):
    assert keys(search(user, "q=mar")) == ["id:a-100", "id:a-200"]  # Maria, Mario
    assert keys(search(user, "q=SMI")) == ["id:a-100"]  # a later word, any case
    assert keys(search(user, "q=maria%20%20sm")) == ["id:a-100"]  # several words
    assert keys(search(user, "q=lopez")) == ["id:a-200"]  # after a hyphen
    assert keys(search(user, "q=aria")) == []  # inside a word: no


def test_system_actor_without_id_and_database_role(user, actors):
    body = search(user, "q=sched")
    assert body["actors"] == [
        {
            "actor": "name:Campaign scheduler",
            "id": None,
            "name": "Campaign scheduler",
            "type": "system",
            "kind": "System",
        }
    ]
    role = actors
    found = search(user, "q=" + role[:3])["actors"]
    assert {"actor": f"name:{role}", "kind": "Database role"}.items() <= next(
        a for a in found if a["actor"] == f"name:{role}"
    ).items()


def test_every_actor_is_searched_not_the_first_500(user, actors, monkeypatch):
    # the old select offered the first MAX_ACTORS ids; the search walks them all
    monkeypatch.setattr(options, "MAX_ACTORS", 2)
    assert keys(search(user, "q=zoe")) == ["id:zz-9"]


def test_no_match_limit_and_more(user, actors):
    assert search(user, "q=nobody") == {
        "q": "nobody",
        "actors": [],
        "more": False,
        "complete": True,
    }
    body = search(user, "q=a&limit=1")
    assert len(body["actors"]) == 1 and body["more"] is True


def test_like_and_regex_characters_are_plain_text(user, actors):
    for query in ("%25", "_", "a%25", ".*", "(", "[", "\\", "%5C", "a-"):
        search(user, "q=" + query)  # never a 500
    assert keys(search(user, "q=%25")) == []
    assert keys(search(user, "q=_")) == []
    assert keys(search(user, "q=.*")) == []
    assert keys(search(user, "q=a-")) == ["id:a-100", "id:a-200"]


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "q is empty"),
        ("q=", "q is empty"),
        ("q=%20%20", "q is empty"),
        ("q=" + "m" * 101, "q is 101 characters long; expected 1 to 100"),
        ("q=a%00b", "q holds the control character U+0000"),
        ("q=a%E2%80%AEb", "q holds the control character U+202E"),
        ("q=mar&limit=0", "limit is '0'; expected a number from 1 to 50"),
        ("q=mar&limit=51", "limit is '51'"),
        ("q=mar&limit=ten", "limit is 'ten'"),
        ("q=mar&q=ann", "q is given 2 times"),
        ("q=mar&actor_type=admin", "actor_type is not a parameter of /actors"),
    ],
)
def test_bad_queries_are_400_with_a_clear_message(user, actors, query, message):
    body = search(user, query, status=400)
    assert message in body["error"]


def test_not_signed_in(client, actors):
    response = client.get("/actors?q=mar")
    assert response.status_code == 302
    assert "/sign-in" in response.headers["Location"]
    assert "Maria" not in response.text


def test_headers_of_the_endpoint(user, actors):
    response = user.get("/actors?q=mar")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hostile_names_come_back_as_json_data(user, actors):
    body = search(user, "q=hostile")
    # data, served as application/json with nosniff (never read as a page); the script
    # puts it into the page as text
    assert body["actors"][0]["name"] == f"Hostile {XSS}"


# -- the filter form, without JavaScript ---------------------------------------------


def location(response) -> dict[str, list[str]]:
    assert response.status_code == 302, response.text
    parts = urlsplit(response.headers["Location"])
    assert parts.path == "/"
    return parse_qs(parts.query)


def test_form_text_matching_one_actor_filters_by_it(user, actors):
    assert location(user.get("/?_actor=smith&source=web&actor=")) == {
        "actor": ["id:a-100"],
        "source": ["web"],
    }
    # a system actor without id, a database role, a key typed as in a URL
    assert location(user.get("/?_actor=sched"))["actor"] == ["name:Campaign scheduler"]
    assert location(user.get(f"/?_actor={actors}"))["actor"] == [f"name:{actors}"]
    assert location(user.get("/?_actor=id:a-200"))["actor"] == ["id:a-200"]
    # the whole name, or an exact id, chooses among several that start with it
    assert location(user.get("/?_actor=7"))["actor"] == ["id:7"]


def test_form_text_left_as_shown_keeps_the_actor_and_cleared_removes_it(user, actors):
    # the page shows the chosen actor's name in the field: sent back unchanged, the same
    # actor (even when the name alone would be ambiguous); emptied, every actor
    page = user.get("/?actor=id:a-100")
    assert 'value="Maria Smith"' in page.text
    assert location(user.get("/?_actor=Maria+Smith&actor=id:a-100&_cursor=x")) == {
        "actor": ["id:a-100"]
    }
    assert location(user.get("/?_actor=&actor=id:a-100&source=web")) == {"source": ["web"]}
    # typed over: the new text wins
    assert location(user.get("/?_actor=zoe&actor=id:a-100"))["actor"] == ["id:zz-9"]


@pytest.mark.parametrize("shown", ["id:a-100%00", "id:%00", "name:Long%00x"])
def test_form_text_beside_an_actor_holding_a_nul(user, actors, shown):
    # the hidden actor field comes back unchecked: a NUL in it failed the query (a 500)
    assert location(user.get(f"/?_actor=zoe&actor={shown}"))["actor"] == ["id:zz-9"]
    page = user.get(f"/?_actor=mar&actor={shown}&source=web")
    assert page.status_code == 200 and "Choose an actor" in page.text


def test_form_text_matching_several_is_a_choice(user, actors):
    page = user.get("/?_actor=mar&source=web")
    assert page.status_code == 200
    assert "Choose an actor" in page.text
    assert "2 actors match" in page.text
    assert 'href="/?source=web&amp;actor=id:a-100"' in page.text
    assert 'href="/?source=web&amp;actor=id:a-200"' in page.text


def test_form_text_matching_none_is_a_message(user, actors):
    page = user.get("/?_actor=nobody")
    assert page.status_code == 200
    assert "No actor matches" in page.text and "nobody" in page.text


@pytest.mark.parametrize(
    "query, message",
    [("_actor=" + "m" * 101, "_actor is 101 characters long"), ("_actor=a%01", "U+0001")],
)
def test_form_text_bad_is_400(user, actors, query, message):
    page = user.get("/?" + query)
    assert page.status_code == 400
    assert message in page.text


def test_filter_sentence_names_the_actor(user, actors, conn):
    page = user.get("/?actor=id:a-100")
    assert page.status_code == 200
    assert "Actor is <bdi>Maria Smith</bdi> (Admin)" in page.text
    page = user.get("/?actor=name:Campaign+scheduler")
    assert "Actor is <bdi>Campaign scheduler</bdi> (System)" in page.text
    page = user.get(f"/?actor=name:{actors}")
    assert f"Actor is <bdi>{actors}</bdi> (Database role)" in page.text
    # a name that is also a kind: the name is the isolated one
    page = user.get("/?actor=id:n-1")
    assert "Actor is <bdi>Admin</bdi> (Admin)" in page.text
    # an actor the log does not know: its key, as before, and an empty list
    page = user.get("/?actor=id:gone")
    assert page.status_code == 200 and "Actor is <bdi>gone</bdi>" in page.text


def test_hostile_names_in_sentence_and_choices_are_shown_safely(user, actors):
    for path in ("/?actor=id:h-1", "/?_actor=x"):
        text = user.get(path).text
        assert XSS not in text
    bidi = user.get("/?actor=id:b-1").text
    assert "⟨U+202E⟩" in bidi
    assert RLO not in bidi.replace(f'value="Bidi {RLO}nimda"', "")
    choices = user.get("/?_actor=l").text  # Long xxx..., LawRuler sync, ...
    assert "Long " + "x" * 190 in choices
    assert XSS not in choices


def test_search_module_alone(conn, actors, reader_url):
    import psycopg

    with psycopg.connect(reader_url) as reader:
        found = actor_search.find_actors(reader, "maria smith")
        assert [a.key for a in found.actors] == ["id:a-100"] and found.chosen().exact
        assert actor_search.describe(reader, "id:nobody") is None
        assert actor_search.describe(reader, "bogus") is None


def test_the_directory_is_read_again_after_its_lifetime(conn, actors, reader_url):
    import psycopg

    now = [0.0]
    cache = actor_search.DirectoryCache(ttl=60, clock=lambda: now[0])
    with psycopg.connect(reader_url) as reader:
        assert cache.get(reader).find("newcomer").actors == ()
        conn.autocommit = True
        with conn.transaction():
            set_context(conn, actor_id="n-9", actor_name="Newcomer Nuñez", actor_type="admin")
            record_action(conn, "login", "LawRuler login", resource_type="integration")
        conn.autocommit = False
        now[0] = 59.0
        assert cache.get(reader).find("newcomer").actors == ()  # kept: no walk per keystroke
        now[0] = 60.0
        found = cache.get(reader).find("NUÑ").actors  # read again; any case, any letter
        assert [a.key for a in found] == ["id:n-9"]


def test_under_a_host_s_prefix_and_authorize_hook(reader_url, actors):
    from test_viewer_app import host_app

    client = host_app(reader_url, {}).test_client()
    assert client.get("/admin/audit/actors?q=mar").status_code == 403  # nobody signed in
    client.get("/login/agent")
    assert client.get("/admin/audit/actors?q=mar").status_code == 403  # not allowed
    client.get("/login/admin")
    page = client.get("/admin/audit/")
    assert 'data-suggest="/admin/audit/actors"' in page.text
    assert [a["actor"] for a in client.get("/admin/audit/actors?q=mar").get_json()["actors"]] == [
        "id:a-100",
        "id:a-200",
    ]
    chosen = client.get("/admin/audit/?_actor=smith")
    assert chosen.status_code == 302
    assert chosen.headers["Location"] == "/admin/audit/?actor=id:a-100"
