"""`python -m bot check` as a person runs it: a real process, real exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bot.demo import DEMO_SANDBOX_KEY_ONLY, DEMO_VIOLATORS

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_USER_KEYS = {"user_name", "arn", "console_access", "mfa_devices", "status", "reason", "slack_user_id"}


def run_bot(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "DIGEST_", "GRACE_"))}
    base.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        PYTHONPATH=str(ROOT),
    )
    base.update(env or {})
    cwd = cwd or Path(tempfile.mkdtemp(prefix="mfa-bot-cli-"))  # the default SQLite store lands here
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=base, cwd=cwd, timeout=120
    )


def test_demo_prints_a_correct_report_and_exits_1(tmp_path):
    done = run_bot("check", "--demo", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    violations = done.stdout.split("VIOLATIONS (3)")[1].split("EXEMPT")[0]
    assert {name for name in DEMO_VIOLATORS if f"    {name} " in violations} == DEMO_VIOLATORS
    assert "heidi" in done.stdout.split("EXEMPT (1): accepted risk, not compliant")[1]
    assert "erin  0d           console password since" in violations
    assert "virtual MFA device created but never enabled" in violations.split("erin")[1].splitlines()[0]
    demo, sandbox = done.stdout.split("Account acme-sandbox (111122223333)")
    assert "root user: WARNING: MFA OFF" in demo
    assert "root user: no credentials (no password, no access keys): cannot sign in" in sandbox
    assert "WARNING" not in sandbox and "no violations" in sandbox
    assert "compliant: 3 (MFA: 1 virtual, 1 fido, 1 hardware)" in demo
    assert "findings: fresh through " in demo and "+ CloudTrail)" in demo
    assert "Traceback" not in done.stderr


def test_demo_json_is_exactly_the_contract(tmp_path):
    done = run_bot("check", "--demo", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"generated_at", "accounts", "summary"}
    account, sandbox = document["accounts"]
    assert set(account) == {
        "account_id", "alias", "error", "report_generated_at", "fresh_through", "cloudtrail_error", "root", "users"
    }  # fmt: skip
    assert account["fresh_through"] >= account["report_generated_at"] and account["cloudtrail_error"] is None
    assert account["root"] == {
        "mfa_enabled": False, "hardware": None, "password_present": True, "access_keys_present": False
    }  # fmt: skip
    assert sandbox["root"] == {
        "mfa_enabled": False, "hardware": None, "password_present": False, "access_keys_present": False
    }  # fmt: skip
    devices = {u["user_name"]: [d["type"] for d in u["mfa_devices"]] for u in account["users"]}
    assert (devices["alice"], devices["carol"], devices["dave"]) == (["virtual"], ["fido"], ["hardware"])
    for user in account["users"] + sandbox["users"]:
        assert set(user) == CONTRACT_USER_KEYS
        assert user["status"] in {"violation", "compliant", "no_console", "exempt", "grace"}
        assert all(set(d) == {"serial", "type"} and d["type"] in {"virtual", "fido", "hardware"}
                   for d in user["mfa_devices"])  # fmt: skip
    assert document["summary"] == {"violation": 3, "compliant": 4, "no_console": 3, "exempt": 1, "grace": 0}
    assert {u["user_name"] for u in account["users"] if u["status"] == "violation"} == DEMO_VIOLATORS


def test_demo_in_scope_all_adds_the_key_only_user_with_its_own_reason(tmp_path):
    done = run_bot("check", "--demo", "--json", env={"MFA_SCOPE": "all"}, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    ci = next(u for u in document["accounts"][1]["users"] if u["user_name"] == DEMO_SANDBOX_KEY_ONLY)
    assert (ci["status"], ci["console_access"]) == ("violation", False)
    assert ci["reason"] == "access key 1 active, never used; no console password, no MFA device"
    assert document["summary"]["violation"] == 4


def test_cloudtrail_denied_keeps_the_exit_code_and_says_how_fresh(demo_account, iam_proxy, aws_env):
    iam_proxy.fail("LookupEvents", "AccessDeniedException")
    done = run_bot("check", env={**aws_env, "AWS_ENDPOINT_URL": iam_proxy.url})
    assert done.returncode == 1, done.stderr  # violations, as without the failure: not an error
    assert "CloudTrail not readable (AccessDeniedException)" in done.stdout
    assert "VIOLATIONS (3)" in done.stdout and "error:" not in done.stderr


def test_a_report_failure_exits_2_naming_account_and_cause(demo_account, iam_proxy, aws_env):
    iam_proxy.fail("GetCredentialReport", "AccessDenied", status=403)
    done = run_bot("check", env={**aws_env, "AWS_ENDPOINT_URL": iam_proxy.url})
    assert done.returncode == 2
    assert "error: account acme-demo (123456789012): AccessDenied: iam:GetCredentialReport was denied" in done.stderr
    assert "no violations" not in done.stdout and "NOT audited" in done.stdout
    assert "Traceback" not in done.stderr


def test_json_marks_a_failed_account_as_an_error(demo_account, iam_proxy, aws_env):
    iam_proxy.fail("GenerateCredentialReport", "Throttling")
    done = run_bot(
        "check", "--json", env={**aws_env, "AWS_ENDPOINT_URL": iam_proxy.url, "REPORT_DEADLINE_SECONDS": "1"}
    )
    assert done.returncode == 2
    account = json.loads(done.stdout)["accounts"][0]
    assert account["error"] and account["users"] == []


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("check",), {"GRACE_PERIOD_DAYS": "abc"}, "error: GRACE_PERIOD_DAYS must be a whole number, got 'abc'"),
        (("check", "--frobnicate"), {}, "error: unrecognized arguments: --frobnicate"),
        (("launch",), {}, "error: argument command: invalid choice: 'launch'"),
        (("check",), {"MFA_SCOPE": "keys"}, "error: MFA_SCOPE must be console or all, got 'keys'"),
        (("check",), {"SLACK_BOT_TOKEN": "not-a-token-s3cret"}, "error: SLACK_BOT_TOKEN must start with 'xoxb-'"),
        (("check",), {"AWS_DEFAULT_REGION": "us-east-1"}, "error: account unknown: no AWS credentials found"),
        (
            ("check",),
            {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1",
             "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_MAX_ATTEMPTS": "1"},
            "error: account unknown: cannot reach the AWS endpoint",
        ),
    ],
)  # fmt: skip
def test_bad_setup_is_one_clear_line_and_exit_2(tmp_path, args, env, expected):
    done = run_bot(*args, env=env, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert "s3cret" not in done.stdout + done.stderr


def test_environment_wins_over_dotenv(tmp_path):
    (tmp_path / ".env").write_text("GRACE_PERIOD_DAYS=abc\n")
    assert run_bot("check", "--frobnicate", cwd=tmp_path).returncode == 2
    # The demo's passwords are minutes old: a 3-day grace period turns every violation into grace.
    done = run_bot("check", "--demo", env={"GRACE_PERIOD_DAYS": "3"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 violation" in done.stdout and "3 grace" in done.stdout
    only_dotenv = run_bot("check", "--demo", cwd=tmp_path)
    assert only_dotenv.returncode == 2 and "GRACE_PERIOD_DAYS" in only_dotenv.stderr


def test_migrate_creates_the_schema_and_a_bad_database_is_one_line(tmp_path):
    done = run_bot("migrate", env={"DATABASE_URL": f"sqlite:///{tmp_path}/bot.db"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bot.db").exists()
    unreachable = "postgresql://mfa:hunter2@127.0.0.1:1/mfa"
    done = run_bot("migrate", env={"DATABASE_URL": unreachable}, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL" in lines[0] and "***" in lines[0], done.stderr
    assert "hunter2" not in done.stderr + done.stdout


OLD_PYTHON = (
    "import runpy, sys\n"
    "sys.version_info = (3, 10, 14, 'final', 0)\n"
    "sys.modules['bot.cli'] = None  # stands for a module that needs 3.11: importing it fails\n"
    "runpy.run_module('bot', run_name='__main__', alter_sys=True)\n"
)


def test_an_older_python_gets_one_line_and_exit_2(tmp_path):
    import ast

    for name in ("__init__.py", "__main__.py"):  # read by any Python 3: no newer syntax before the check
        ast.parse((ROOT / "bot" / name).read_text(), feature_version=(3, 7))
    done = subprocess.run(
        [sys.executable, "-c", OLD_PYTHON],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["error: mfa-bot needs Python 3.11 or newer; this is Python 3.10"]


GOOD_SLACK = {"SLACK_BOT_TOKEN": "xoxb-good-token", "DIGEST_CHANNEL": "C0DIGEST1"}


def test_a_refused_token_is_one_line_naming_it_and_exit_2(tmp_path):
    from tests.slack_standin import Reply, SlackStandIn

    with SlackStandIn() as standin:
        standin.reply("auth.test", Reply(body={"ok": False, "error": "invalid_auth"}))
        env = {**GOOD_SLACK, "SLACK_BOT_TOKEN": "xoxb-wrong-SECRET", "SLACK_API_URL": standin.api_url}
        done = run_bot("digest", env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == ["error: SLACK_BOT_TOKEN was refused by Slack (auth.test: invalid_auth)"]
        assert not standin.calls("chat.postMessage") and "SECRET" not in done.stdout + done.stderr

        standin.reply("apps.connections.open", Reply(body={"ok": False, "error": "invalid_auth"}))
        env = {**GOOD_SLACK, "SLACK_APP_TOKEN": "xapp-wrong-SECRET", "SLACK_API_URL": standin.api_url}
        done = run_bot("serve", env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            "error: SLACK_APP_TOKEN was refused by Slack (apps.connections.open: invalid_auth)"
        ]
        assert "SECRET" not in done.stdout + done.stderr


def test_an_unreachable_slack_api_fails_in_seconds_with_one_line(tmp_path):
    import socket
    import time

    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        for url in (f"http://127.0.0.1:{silent.getsockname()[1]}/api/", "http://127.0.0.1:1/api/"):
            for command in ("digest", "serve"):
                env = {**GOOD_SLACK, "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": url}
                started = time.monotonic()
                done = run_bot(command, env=env, cwd=tmp_path)
                elapsed = time.monotonic() - started
                assert done.returncode == 2, done.stderr
                (line,) = done.stderr.splitlines()
                assert line.startswith(f"error: Slack could not be reached at SLACK_API_URL {url} ("), line
                assert elapsed < 15, (command, url, elapsed)


@pytest.mark.parametrize(
    "database_url", ["mysql://app:hunter2@db/mfa", "app:hunter2@db/mfa", "postgresql://a:b@db:x/y"]
)
def test_configuration_is_checked_before_any_network_call(tmp_path, database_url):
    from tests.slack_standin import SlackStandIn

    with SlackStandIn() as standin:
        for command in ("serve", "digest"):
            env = {
                **GOOD_SLACK,
                "SLACK_SIGNING_SECRET": "s",
                "SLACK_API_URL": standin.api_url,
                "DATABASE_URL": database_url,
            }
            done = run_bot(command, env=env, cwd=tmp_path)
            assert done.returncode == 2, done.stderr
            (line,) = done.stderr.splitlines()
            assert line.startswith("error: DATABASE_URL") and "hunter2" not in line, line
        assert not standin.requests  # Slack was never asked


def test_check_honours_a_stored_exemption_and_records_its_scan_with_the_store_opened_alongside(
    demo_account, iam_proxy, aws_env, tmp_path
):
    # The store opens in a thread while the AWS reads run: the exemption granted from Slack must
    # still be applied, and the scan recorded, exactly as when it was opened first.
    from datetime import UTC, datetime, timedelta

    from bot.store import Store
    from tests.store_rows import stored_scans

    url = f"sqlite:///{tmp_path}/bot.db"
    now = datetime.now(UTC)
    with Store.open(url) as store:
        arn = "arn:aws:iam::123456789012:user/bob"
        store.grant_exemption(arn, "123456789012", "bob", "break-glass", now + timedelta(days=3), "U0ADMIN01", now)
    done = run_bot("check", "--json", env={**aws_env, "AWS_ENDPOINT_URL": iam_proxy.url, "DATABASE_URL": url})
    assert done.returncode == 1, done.stderr
    statuses = {u["user_name"]: u["status"] for u in json.loads(done.stdout)["accounts"][0]["users"]}
    assert statuses["bob"] == "exempt" and statuses["erin"] == "violation"
    with Store.open(url) as store:
        assert len(stored_scans(store)) == 1


def test_check_with_a_store_that_cannot_open_is_one_line_and_exit_2(demo_account, iam_proxy, aws_env, tmp_path):
    unreachable = "postgresql://mfa:hunter2@127.0.0.1:1/mfa"
    done = run_bot("check", env={**aws_env, "AWS_ENDPOINT_URL": iam_proxy.url, "DATABASE_URL": unreachable})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open DATABASE_URL"), done.stderr
    assert "hunter2" not in done.stderr + done.stdout and "Traceback" not in done.stderr
