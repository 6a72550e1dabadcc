"""`serve` starts quietly: one INFO line per fact, no library chatter, no secret."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.config import load_config
from bot.startup import startup_facts
from tests.bot_process import bot_env, serve_process
from tests.slack_standin import SlackStandIn

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # a Wednesday


def facts(**env: str) -> dict[str, str]:
    lines = startup_facts(load_config(env, dotenv_path=None), now=NOW)
    return dict(line.split(": ", 1) for line in lines)


def test_one_fact_per_line_and_the_database_password_masked():
    found = facts(
        DATABASE_URL="postgresql://bot:s3cret-pw@db.internal:5432/mfa?sslpassword=also-secret",
        DIGEST_CHANNEL="C0DIGEST1",
        PORT="8080",
    )
    assert list(found) == ["mode", "accounts", "digest", "events queue", "database", "Security Hub import"]
    assert found["mode"] == "HTTP on port 8080 (POST /slack/events)"
    assert found["accounts"] == "the AWS credentials' own account"
    assert found["digest"] == "0 9 * * 1-5 (UTC) to C0DIGEST1; next at 2026-12-02T09:00+00:00"
    assert found["events queue"].startswith("off")
    assert "s3cret-pw" not in found["database"] and "also-secret" not in found["database"]
    assert found["database"].startswith("postgresql://bot:***@db.internal:5432/mfa")
    assert found["Security Hub import"] == "off"


def test_socket_mode_organization_and_digest_off():
    found = facts(
        SLACK_APP_TOKEN="xapp-1-secret-app-token",
        AWS_ORGANIZATION="true",
        AWS_ROLE_NAME="MfaBotAudit",
        DIGEST_CRON="off",
        SECURITY_HUB_IMPORT="true",
    )
    assert found["mode"] == "Socket Mode"
    assert found["accounts"] == "every active account of the AWS Organization, through role MfaBotAudit"
    assert found["digest"] == "off (DIGEST_CRON=off)"
    assert found["Security Hub import"] == "on"
    assert facts(DIGEST_CHANNEL="")["digest"] == "off (DIGEST_CHANNEL is not set)"
    many = facts(AWS_ACCOUNT_IDS=",".join(f"{n:012d}" for n in range(1, 8)), AWS_ROLE_NAME="R")["accounts"]
    assert many.startswith("7 listed (000000000001, ") and many.endswith("and 2 more), through role R")


def test_serve_logs_the_facts_once_and_no_library_chatter(moto_server: str, tmp_path: Path):
    with SlackStandIn() as standin:
        env = bot_env(tmp_path, standin, moto_server, f"sqlite:///{tmp_path / 'bot.db'}", "secret",
                      DIGEST_CHANNEL="C0DIGEST1")  # fmt: skip
        with serve_process(tmp_path / "run", env) as (_url, _process, log_path):
            deadline = time.monotonic() + 10
            while "Security Hub import:" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the scheduler starts in the worker right after it boots
        log = log_path.read_text()
    info = [line for line in log.splitlines() if " INFO " in line or "[INFO]" in line]
    messages = [re.sub(r"^.* INFO [\w.]+: ", "", line) for line in info]
    for fact in ("mode: HTTP on port", "accounts: ", "digest: 0 9 * * 1-5 (UTC) to C0DIGEST1", "events queue: ",
                 "database: sqlite:///", "Security Hub import: off"):  # fmt: skip
        assert sum(m.startswith(fact) for m in messages) == 1, (fact, log)
    assert "As you gave `client` as well" not in log
    assert "apscheduler" not in log
    assert "[INFO]" not in log  # gunicorn's own start-up lines
    assert "xoxb-test-token" not in log
