"""The remediation copy lives in one data file (bot/messages/remediation.toml) that the renderers read.

A changed wording shows in the DM and in `/mfa-check me`; a missing or invalid file fails loudly at
startup (when the renderers are imported), never in the middle of a DM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.messages import remediation
from bot.messages.personal import nudge_dm, personal_message
from bot.messages.remediation import RemediationError
from bot.models import UserFinding
from tests.test_messages import ACCOUNT, account, rendered, result, user

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = remediation.FILE.read_text(encoding="utf-8")


@pytest.fixture
def restore() -> Iterator[None]:
    previous = remediation.current()
    yield
    remediation.use(previous)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "remediation.toml"
    path.write_text(text, encoding="utf-8")
    return path


def dm_text(*users: UserFinding) -> str:
    """Every text the DM shows (not its button values)."""
    return rendered(nudge_dm("U0BOB0001", list(users), {ACCOUNT: "acme"}))


def test_the_packaged_copy_is_what_the_dm_and_me_show() -> None:
    data = tomllib.loads(DEFAULT)
    bob = user("bob")
    for text in (dm_text(bob), rendered(personal_message([bob], result(account([bob]))))):
        assert data["console"]["steps"][0] in text  # the one set of console steps, in the DM and in `me`
        assert "1. Sign in as `bob` at <https://acme.signin.aws.amazon.com/console>." in text
        assert "aws iam create-virtual-mfa-device --virtual-mfa-device-name bob" in text


def test_a_changed_wording_in_the_file_shows_in_the_dm(tmp_path: Path, restore: None) -> None:
    changed = DEFAULT.replace('title = "*In the AWS console*"', 'title = "*Im AWS-Konsolenfenster*"')
    changed = changed.replace("Sign in as {user} at {url}.", "Melde dich als {user} unter {url} an.")
    changed = changed.replace('"Sign out and back in', '"Log out and in again (team wording)')
    assert changed.count("team wording") == 1
    remediation.use(remediation.load(write(tmp_path, changed)))
    text = dm_text(user("bob"))
    assert "*Im AWS-Konsolenfenster*" in text and "*In the AWS console*" not in text
    assert "1. Melde dich als `bob` unter <https://acme.signin.aws.amazon.com/console> an." in text
    assert "Log out and in again (team wording)" in text


def test_placeholders_are_filled_escaped(tmp_path: Path, restore: None) -> None:
    changed = DEFAULT.replace("Sign in as {user} at {url}.", "Sign in as {user} ({{literally}}) at {url}.")
    remediation.use(remediation.load(write(tmp_path, changed)))
    evil = user("x`<!channel>`&<@U0ADMIN01>")
    text = dm_text(evil)
    assert "({literally})" in text
    assert "<!channel>" not in text and "<@U0ADMIN01>" not in text and "&lt;!channel&gt;" in text


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda t: t.replace("[console]", "[consol]"), "[console] title is missing"),
        (lambda t: t.replace("Sign in as {user} at {url}.", "Sign in as {usr} at {url}."), "unknown placeholder {usr}"),
        (lambda t: t.replace("Sign in as {user} at {url}.", "Sign in as {user.__class__}."), "bare name"),
        (lambda t: t.replace("Sign in as {user} at {url}.", "Sign in as {user!r}."), "bare name"),
        (lambda t: t.replace("Sign in as {user} at {url}.", "Sign in as {user at {url}."), "[console] sign_in"),
        (lambda t: t.replace('title = "*In the AWS console*"', "title = 3"), "must be a non-empty string"),
        (lambda t: t.replace("steps = [", "steps = [ 1, "), "list of non-empty strings"),
        (lambda t: t + '\n[extra]\nwording = "x"\n', "[extra] wording is not an entry the bot knows"),
        (lambda t: t.replace('setup_guide = "https://', 'setup_guide = "javascript://'), "https URL"),
        (lambda t: t.replace('title = "*In the AWS console*"', 'title = "*In the AWS console*'), "not valid TOML"),
    ],
)
def test_an_invalid_file_is_refused_with_what_is_wrong(tmp_path: Path, edit: object, says: str) -> None:
    path = write(tmp_path, edit(DEFAULT))  # type: ignore[operator]
    with pytest.raises(RemediationError) as raised:
        remediation.load(path)
    assert says in str(raised.value) and str(path) in str(raised.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RemediationError, match="cannot be read"):
        remediation.load(tmp_path / "nowhere.toml")


@pytest.mark.parametrize("broken", [None, "[console]\ntitle = 'only this'\n"])
def test_the_bot_does_not_start_without_a_valid_copy(tmp_path: Path, broken: str | None) -> None:
    """`python -m bot` from a tree whose remediation.toml is missing or invalid stops at once, saying why."""
    for package in ("bot", "handlers"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    copy = tmp_path / "bot" / "messages" / "remediation.toml"
    if broken is None:
        copy.unlink()
    else:
        copy.write_text(broken, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AWS_", "DIGEST_", "DATABASE_"))}
    env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "RemediationError" in done.stderr and str(copy) in done.stderr
    assert ("cannot be read" if broken is None else "[console] sign_in is missing") in done.stderr


def test_remediation_file_puts_a_teams_own_wording_in_force_for_the_whole_process(tmp_path: Path) -> None:
    """REMEDIATION_FILE: `check --demo --format asff` carries the team's finding text, not the packaged one."""
    from tests.test_cli import run_bot

    ours = DEFAULT.replace(remediation.current().finding_text, "Ask #it-help for a YubiKey, then enrol it in IAM.")
    path = write(tmp_path, ours)
    done = run_bot("check", "--demo", "--format", "asff", env={"REMEDIATION_FILE": str(path)}, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    texts = {finding["Remediation"]["Recommendation"]["Text"] for finding in json.loads(done.stdout)["Findings"]}
    assert texts == {"Ask #it-help for a YubiKey, then enrol it in IAM."}


@pytest.mark.parametrize("broken", [None, "[console]\ntitle = 'only this'\n"])
def test_a_missing_or_invalid_remediation_file_is_one_line_and_exit_2(tmp_path: Path, broken: str | None) -> None:
    """A REMEDIATION_FILE that is not there, or lacks entries, stops every command before it runs: one line, exit 2."""
    from tests.test_cli import run_bot

    path = tmp_path / "ours.toml"
    if broken is not None:
        path.write_text(broken, encoding="utf-8")
    done = run_bot("check", "--demo", env={"REMEDIATION_FILE": str(path)}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], done.stderr
    assert ("is not a file" if broken is None else "[console] sign_in is missing") in lines[0]
