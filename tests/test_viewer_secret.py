"""The standalone viewer's secret key: whoever knows it signs a session cookie naming
any user and is signed in without a password, so a key that could be guessed (the
README's sample, a short word, a sentence) stops the viewer at start with a message
saying how to make a good one."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner
from viewer_data import SECRET_KEY, USERS

from audit_capture.cli import cli
from audit_capture.viewer import config, create_app
from audit_capture.viewer.config import ConfigError

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
# what the README's settings file shows (pasted as is)
README_SAMPLE = re.search(r'^secret_key = "([^"]*)"', README, re.M).group(1)

WEAK_KEYS = {
    "short": "is 5 characters long",
    "a long random string": "is a sample or a placeholder",
    README_SAMPLE: "is a sample or a placeholder",
    "<your secret key here, 32 characters or more>": "is a sample or a placeholder",
    "correct horse battery staple and some more words": "holds spaces",
    "x" * 64: "uses only 1 different characters",
    "abababababababababababababababab1234": "uses only 6 different characters",
}
STRONG_KEYS = [
    secrets.token_urlsafe(48),
    secrets.token_hex(32),
    SECRET_KEY,
    "3q2+7wAAAAC3u8zdEjRWeJq83vABI0VniavN7/ASNFY=",
]  # openssl rand -base64 32


def settings(key) -> dict:
    return {
        "DATABASE_URL": "postgresql://viewer@127.0.0.1:1/none",
        "SECRET_KEY": key,
        "USERS": USERS,
    }


@pytest.mark.parametrize("key", list(WEAK_KEYS))
def test_a_weak_secret_key_stops_the_standalone_app(key):
    with pytest.raises(ConfigError) as refused:
        create_app(settings(key))
    message = str(refused.value)
    assert WEAK_KEYS[key] in message
    assert "audit-capture viewer new-secret" in message
    assert "secrets.token_urlsafe(48)" in message
    if len(key) > 8:
        assert key not in message  # the key is a secret: never repeated in a log


@pytest.mark.parametrize("key", [None, "", 12345])
def test_a_missing_secret_key_says_how_to_make_one(key):
    with pytest.raises(ConfigError, match="audit-capture viewer new-secret"):
        create_app(settings(key))


# ids by kind: the random keys differ from one collection to the next (pytest-xdist's
# workers must collect the same tests)
@pytest.mark.parametrize("key", STRONG_KEYS, ids=["urlsafe", "hex", "suite", "base64"])
def test_a_random_key_is_accepted(key):
    assert create_app(settings(key)).secret_key == key


def test_the_readme_sample_is_refused():
    assert "new-secret" in README_SAMPLE  # it says where a key comes from ...
    with pytest.raises(ConfigError, match="sample or a placeholder"):
        config.secret_key(README_SAMPLE)  # ... and cannot be pasted as is


def run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_new_secret_prints_a_fresh_key_that_is_accepted():
    first, second = run("viewer", "new-secret"), run("viewer", "new-secret")
    assert first.exit_code == 0 and second.exit_code == 0
    key = first.output.strip()
    assert len(key) == 64 and key != second.output.strip()
    assert config.secret_key(key) == key


@pytest.mark.parametrize("key", ["short", README_SAMPLE])
def test_the_viewer_command_refuses_a_weak_key_in_one_line(tmp_path, key):
    path = tmp_path / "viewer.toml"
    users = "\n".join(f'{name} = "{value}"' for name, value in USERS.items())
    path.write_text(f'secret_key = "{key}"\n[users]\n{users}\n')
    env = {"AUDIT_CAPTURE_VIEWER_SECRET_KEY": None, "AUDIT_CAPTURE_VIEWER_USERS": None}
    result = run(
        "--database-url",
        "postgresql://viewer@127.0.0.1:1/none",
        "viewer",
        "--config",
        str(path),
        env=env,
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: the secret key (secret_key in the settings file"
    )
    assert "audit-capture viewer new-secret" in lines[0]
    # the environment variable is checked the same way
    result = run(
        "--database-url",
        "postgresql://viewer@127.0.0.1:1/none",
        "viewer",
        "--config",
        str(path),
        env={**env, "AUDIT_CAPTURE_VIEWER_SECRET_KEY": "short"},
    )
    assert result.exit_code == 1 and "is 5 characters long" in result.output
