"""Signed-in sessions of the standalone viewer end on the server: signing out ends every
copy of the cookie, a session idle too long or past its lifetime ends, and a cookie
forged with the secret key signs nobody in."""

from __future__ import annotations

import pytest
from viewer_data import app_config, csrf_token, sign_in

from audit_capture.viewer import create_app
from audit_capture.viewer.auth import SESSIONS
from audit_capture.viewer.config import ConfigError

COOKIE = "audit_viewer_session"
MINUTE = 60


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * MINUTE


@pytest.fixture
def clock(app):
    fake = Clock()
    app.extensions[SESSIONS].clock = fake
    return fake


def cookie_of(client) -> str:
    return client.get_cookie(COOKIE).value


def copy_of(app, cookie: str):
    """Another browser holding a copy of ``cookie`` (an attacker who copied it)."""
    other = app.test_client()
    other.set_cookie(COOKIE, cookie)
    return other


def signed_in(client) -> bool:
    response = client.get("/")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


def sign_out(client) -> None:
    token = csrf_token(client, "/")
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 302


def test_a_cookie_copied_before_sign_out_is_refused_after_it(app, user):
    stolen = copy_of(app, cookie_of(user))
    assert signed_in(stolen)  # the copy works while the session lives ...
    sign_out(user)
    assert not signed_in(user)
    assert not signed_in(stolen)  # ... and not after the owner signed out
    location = stolen.get("/?source=web").headers["Location"]
    assert location.startswith("/sign-in")


def test_signing_in_again_does_not_revive_an_old_copy(app, user):
    stolen = copy_of(app, cookie_of(user))
    sign_out(user)
    assert sign_in(user).status_code == 302
    assert signed_in(user) and not signed_in(stolen)


def test_a_cookie_forged_with_the_secret_key_signs_nobody_in(app, seeded):
    # someone who learned the key signs {"audit_viewer_user": "alice"}: no live session
    serializer = app.session_interface.get_signing_serializer(app)
    forged = copy_of(app, serializer.dumps({"audit_viewer_user": "alice", "_permanent": True}))
    assert not signed_in(forged)
    guessed = copy_of(
        app, serializer.dumps({"audit_viewer_user": "alice", "audit_viewer_session": "guessed-id"})
    )
    assert not signed_in(guessed)


def test_one_user_s_session_id_does_not_sign_in_another(seeded, reader_url):
    # the cookie is signed, so this takes the key; even then the live id is alice's
    users = {**app_config("")["USERS"], "bob": app_config("")["USERS"]["alice"]}
    app = create_app(app_config(reader_url, USERS=users))
    alice = app.test_client()
    sign_in(alice)
    serializer = app.session_interface.get_signing_serializer(app)
    data = serializer.loads(cookie_of(alice))
    assert not signed_in(copy_of(app, serializer.dumps({**data, "audit_viewer_user": "bob"})))
    assert signed_in(copy_of(app, serializer.dumps(data)))


def test_a_session_idle_past_the_timeout_is_signed_out(app, clock, user):
    clock.advance(29)
    assert signed_in(user)
    clock.advance(29)  # 58 minutes after sign-in, 29 after the last request: still in
    assert signed_in(user)
    clock.advance(30)  # 30 minutes without a request: the default idle timeout
    assert not signed_in(user)
    clock.advance(1)
    assert not signed_in(user)  # and it stays ended


def test_activity_extends_a_session_up_to_its_lifetime(app, clock, user):
    for _ in range(23):  # a request every 20 minutes for 7 h 40 min
        clock.advance(20)
        assert signed_in(user)
    clock.advance(20)  # 8 hours after sign-in, however active
    assert not signed_in(user)


def test_the_idle_timeout_is_a_setting(seeded, reader_url):
    app = create_app(app_config(reader_url, SESSION_IDLE_MINUTES=5))
    clock = Clock()
    app.extensions[SESSIONS].clock = clock
    client = app.test_client()
    sign_in(client)
    clock.advance(4)
    assert signed_in(client)
    clock.advance(5)
    assert not signed_in(client)


@pytest.mark.parametrize(
    "value, words",
    [
        (0, "session_idle_minutes is 0; expected 1 to 480"),
        (1000, "session_idle_minutes is 1000"),
        ("soon", "session_idle_minutes 'soon' is not a number of minutes"),
    ],
)
def test_a_bad_idle_timeout_is_refused(reader_url, value, words):
    with pytest.raises(ConfigError, match=words):
        create_app(app_config(reader_url, SESSION_IDLE_MINUTES=value))


def test_the_idle_timeout_from_the_environment():
    from audit_capture.viewer import config

    settings = config.load(
        {"SECRET_KEY": app_config("")["SECRET_KEY"], "USERS": app_config("")["USERS"]},
        environ={"AUDIT_CAPTURE_VIEWER_SESSION_IDLE_MINUTES": "12"},
    )
    assert settings["SESSION_IDLE_MINUTES"] == 12


def test_a_restart_signs_everyone_out(seeded, reader_url, user):
    # the sessions live in the server process: a new one knows none of them
    restarted = create_app(app_config(reader_url)).test_client()
    restarted.set_cookie(COOKIE, cookie_of(user))
    assert not signed_in(restarted)
