"""The whole story against the real `python -m bot serve` (HTTP), moto's IAM and the Slack stand-in.

The bot starts after today's DIGEST_CRON time has passed, so it catches up and posts the digest;
then an admin nudges, a non-admin is refused, the cooldown holds, the person enables MFA and
presses re-check: thanks in the DM, the digest row shows "fixed". Separately: two bot processes
on one database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), both due at the same
minute, post exactly one digest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from bot.buttons import user_value
from bot.demo import demo_client, seed_demo_account
from bot.store import Store
from tests.bot_process import bot_env, due_now, serve_process, wait_until
from tests.fixtures_aws import FAKE_AWS_ENV
from tests.slack_standin import ADMIN, MEMBERS, NOBODY, Recorded, SlackStandIn, action_body, post, sign

REPO = Path(__file__).resolve().parents[1]
SECRET = "e2e-signing-secret"
CHANNEL = "C0DIGEST1"
ACCOUNT = "123456789012"


@contextmanager
def serve(moto_url: str, standin: SlackStandIn, database_url: str, workdir: Path) -> Iterator[tuple[str, Path]]:
    """`python -m bot serve` in HTTP mode, due for a digest this minute; yields its URL and log path."""
    cron, zone = due_now()
    extra = {"DIGEST_CHANNEL": CHANNEL, "DIGEST_CRON": cron, "DIGEST_TIMEZONE": zone, "RECHECK_INTERVAL_MINUTES": "0"}
    env = bot_env(workdir, standin, moto_url, database_url, SECRET, **extra)
    with serve_process(workdir, env) as (url, _, log_path):
        yield url, log_path


def click(url: str, standin: SlackStandIn, action_id: str, value: str, user: str, channel: str, message: dict) -> str:
    response_url = standin.response_url()
    body = action_body(action_id, value, user, response_url, channel=channel, message=message)
    assert post(url, "/slack/events", body, sign(body, SECRET)).status == 200
    return response_url


def ephemeral(standin: SlackStandIn, response_url: str) -> str:
    (answer,) = standin.wait_for(lambda: standin.posts_to(response_url), 30)
    assert answer.payload["response_type"] == "ephemeral"
    return answer.payload["text"]


def to(channel: str, method: str = "chat.postMessage"):
    return lambda standin: [r for r in standin.accepted(method) if r.payload.get("channel") == channel]


def text_of(record: Recorded) -> str:
    return json.dumps(record.payload.get("blocks", []), ensure_ascii=False)


def test_digest_nudge_refusal_cooldown_fix_and_recheck_end_to_end(moto_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        seed_demo_account(demo_client(moto_url))
    database_url = f"sqlite:///{tmp_path / 'bot.db'}"
    with (
        SlackStandIn(members=MEMBERS) as standin,
        serve(moto_url, standin, database_url, tmp_path / "bot") as (url, log),
    ):
        # 1. started after today's DIGEST_CRON time: the digest is caught up, once
        (digest,) = standin.wait_for(lambda: to(CHANNEL)(standin), 30)
        text = text_of(digest)
        for row in ("<@U0BOB0001> · `bob`", "<@U0ERIN001> · `erin`", "<@U0IVAN001> · `ivan`"):
            assert row in text
        assert '"action_id": "nudge_all"' in text and text.count('"action_id": "nudge"') == 3
        # the stand-in answers before the bot records the post: wait until the store has it, rows too
        with Store.open(database_url) as store:

            def recorded() -> str | None:
                posted = store.last_digest(CHANNEL)
                return posted and store.digest_rows(CHANNEL, posted.period_key) and posted.message_ts

            top_ts = wait_until(recorded, 20, "the digest recorded as posted")
        message = {"ts": top_ts, "blocks": digest.payload["blocks"]}

        # 2. an admin clicks Nudge on bob's row: bob gets his steps, the row says who nudged
        sent = ephemeral(standin, click(url, standin, "nudge", f"{ACCOUNT}:bob", ADMIN, CHANNEL, message))
        assert "DM sent to <@U0BOB0001>" in sent
        (dm,) = standin.wait_for(lambda: to("U0BOB0001")(standin), 20)  # a DM: the user ID as channel
        steps = text_of(dm)
        assert "https://acme-demo.signin.aws.amazon.com/console" in steps
        assert "aws iam create-virtual-mfa-device" in steps and "two consecutive codes" in steps
        assert '"action_id": "recheck"' in steps and json.dumps(user_value(ACCOUNT, "bob")) in steps
        nudged = standin.wait_for(lambda: to(CHANNEL, "chat.update")(standin), 20)
        assert f"_nudged by <@{ADMIN}> at" in text_of(nudged[-1])

        # 3. a non-admin clicks it: refused, naming nobody
        refused = ephemeral(standin, click(url, standin, "nudge", f"{ACCOUNT}:bob", NOBODY, CHANNEL, message))
        assert "Only MFA-bot admins" in refused and "bob" not in refused

        # 4. the admin clicks again: the cooldown says when and by whom
        again = ephemeral(standin, click(url, standin, "nudge", f"{ACCOUNT}:bob", ADMIN, CHANNEL, message))
        assert "Skipped" in again and f"by <@{ADMIN}>" in again
        assert len(to("U0BOB0001")(standin)) == 1

        # 5. bob enables MFA and presses re-check: thanks in the DM, the digest row is fixed
        iam = demo_client(moto_url)
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-phone")["VirtualMFADevice"]["SerialNumber"]
        iam.enable_mfa_device(
            UserName="bob", SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
        )
        dm_message = {"ts": dm.payload.get("ts") or "1.000002", "blocks": dm.payload["blocks"]}
        click(url, standin, "recheck", f"{ACCOUNT}:bob", "U0BOB0001", "D0BOB0001", dm_message)
        (thanks,) = standin.wait_for(lambda: to("D0BOB0001", "chat.update")(standin), 20)
        assert "*Thank you!* `bob`" in text_of(thanks)
        fixed = standin.wait_for(
            lambda: [u for u in to(CHANNEL, "chat.update")(standin) if "*fixed* at" in text_of(u)], 20
        )
        assert "<@U0BOB0001> · `bob`" in text_of(fixed[-1]) and "<@U0ERIN001> · `erin`" in text_of(fixed[-1])

        with Store.open(database_url) as store:
            assert {e.user_name for e in store.open_episodes()} == {"erin", "ivan"}
            assert [n.outcome for n in store.actions(action="nudge")] == ["skipped_cooldown", "sent"]
            assert store.actions(action="refused:nudge")[0].actor == NOBODY
        assert len(to(CHANNEL)(standin)) == 1  # still exactly one digest
        assert "xoxb-test-token" not in log.read_text()
    print(f"\nend-to-end story: {time.monotonic() - started:.1f} s")


@pytest.fixture
def migrated_url(store_url: str) -> str:
    """A database both processes share, migrated first (as `python -m bot migrate` would)."""
    Store.open(store_url).close()
    return store_url


def test_two_bot_processes_due_at_the_same_minute_post_exactly_one_digest(
    moto_url: str, migrated_url: str, tmp_path: Path
) -> None:
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        seed_demo_account(demo_client(moto_url))
    with SlackStandIn(members=MEMBERS) as standin, ExitStack() as stack:
        logs = [stack.enter_context(serve(moto_url, standin, migrated_url, tmp_path / f"bot{i}"))[1] for i in (1, 2)]

        def both_decided() -> bool:
            texts = [log.read_text() for log in logs]
            return sum("posted to C0DIGEST1" in t for t in texts) + sum("already claimed" in t for t in texts) >= 2

        standin.wait_for(both_decided, 40)
        time.sleep(1.0)  # nothing else arrives late
        assert len(to(CHANNEL)(standin)) == 1
        texts = [log.read_text() for log in logs]
        assert sorted("posted to C0DIGEST1" in t for t in texts) == [False, True]
    with Store.open(migrated_url) as store:
        digest = store.last_digest(CHANNEL)
        assert digest is not None and not digest.period_key.startswith("manual")


def test_python_m_bot_digest_posts_one_now_under_its_own_period(moto_url: str, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        seed_demo_account(demo_client(moto_url))
    database_url = f"sqlite:///{tmp_path / 'bot.db'}"
    with SlackStandIn(members=MEMBERS) as standin:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            "HOME": str(tmp_path),
            **FAKE_AWS_ENV,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_ENDPOINT_URL": moto_url,
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_API_URL": standin.api_url,
            "EMAIL_DOMAIN": "example.com",
            "DATABASE_URL": database_url,
            "DIGEST_CHANNEL": CHANNEL,
        }

        def run(**extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bot", "digest"],
                cwd=tmp_path,
                env={**env, **extra},
                capture_output=True,
                text=True,
                timeout=60,
            )

        done = run()
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"digest posted to {CHANNEL}: 3 rows in 1 messages"
        (digest,) = to(CHANNEL)(standin)
        assert "<@U0BOB0001> · `bob`" in text_of(digest)
        refused = run(DIGEST_CHANNEL="")
        assert refused.returncode == 2
        assert refused.stderr.strip() == "error: DIGEST_CHANNEL is required for this command but is not set"
    with Store.open(database_url) as store:
        assert store.last_digest(CHANNEL).period_key.startswith("manual-")  # the scheduled one still goes out
