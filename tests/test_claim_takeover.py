"""A claim whose process dies is taken over: real `python -m bot serve` processes, SIGKILL, one database.

The first bot claims (today's digest, or an escalation) and is killed with SIGKILL while Slack
(the stand-in) holds its chat.postMessage unanswered. A second bot on the same database (SQLite,
and PostgreSQL when TEST_DATABASE_URL is set) finds the claim's lease expired and posts it,
exactly once. Leases are short here (CLAIM_LEASE_SECONDS) so the suite stays quick.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.demo import demo_client, seed_demo_account
from bot.service import utc_now
from bot.store import Store
from tests.bot_process import bot_env, due_now, serve_process
from tests.fixtures_aws import FAKE_AWS_ENV
from tests.slack_standin import ADMIN, MEMBERS, Recorded, SlackStandIn

LEASE_SECONDS = 3
CHANNEL = "C0DIGEST1"
ESCALATIONS = "C0ESCAL01"
ACCOUNT = "123456789012"


@pytest.fixture
def migrated_url(store_url: str, moto_url: str) -> str:
    """A database both processes share, migrated first; the demo account seeded in moto."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        seed_demo_account(demo_client(moto_url))
    Store.open(store_url).close()
    return store_url


@contextmanager
def serve(
    moto_url: str, standin: SlackStandIn, database_url: str, workdir: Path
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`python -m bot serve`, due for a digest this minute, with a short claim lease."""
    cron, zone = due_now()
    extra = {
        "DIGEST_CHANNEL": CHANNEL,
        "DIGEST_CRON": cron,
        "DIGEST_TIMEZONE": zone,
        "ESCALATION_CHANNEL": ESCALATIONS,
        "ESCALATE_AFTER_DAYS": "1",
        "RECHECK_INTERVAL_MINUTES": "0",
        "CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    env = bot_env(workdir, standin, moto_url, database_url, "claims-signing-secret", **extra)
    with serve_process(workdir, env) as (_, process, log_path):
        yield process, log_path


def posts_to(standin: SlackStandIn, channel: str) -> list[Recorded]:
    return [r for r in standin.accepted("chat.postMessage") if r.payload.get("channel") == channel]


def kill_when_stalled(standin: SlackStandIn, process: subprocess.Popen, channel: str) -> float:
    """SIGKILL the bot once its post to `channel` hangs (claimed, not posted); returns when it died."""
    standin.wait_for(lambda: [r for r in standin.stalled("chat.postMessage") if r.payload["channel"] == channel], 40)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    standin.unstall(answer_held=False)  # the dead bot's post never reaches the channel
    return time.monotonic()


def today() -> str:
    """The period key of the digest the bots are due for: today's date in their DIGEST_TIMEZONE."""
    return datetime.now(ZoneInfo(due_now()[1])).date().isoformat()


def holder_of(process: subprocess.Popen) -> str:
    return f"{socket.gethostname()}:{process.pid}"


def test_a_digest_claimed_by_a_killed_process_is_posted_once_by_another(
    moto_url: str, migrated_url: str, tmp_path: Path
) -> None:
    with SlackStandIn(members=MEMBERS) as standin:
        standin.stall("chat.postMessage", CHANNEL)
        with serve(moto_url, standin, migrated_url, tmp_path / "first") as (first, _):
            died = kill_when_stalled(standin, first, CHANNEL)
        with Store.open(migrated_url) as store:
            (left,) = store.expired_claims(utc_now() + timedelta(days=1), [(CHANNEL, today())])
            assert (left.holder, left.posted) == (holder_of(first), False)

        with serve(moto_url, standin, migrated_url, tmp_path / "second") as (second, log):
            (digest,) = standin.wait_for(lambda: posts_to(standin, CHANNEL), 30)
            took = time.monotonic() - died
            assert "<@U0BOB0001> · `bob`" in json.dumps(digest.payload["blocks"], ensure_ascii=False)
            time.sleep(LEASE_SECONDS)  # nothing else arrives late
            assert len(posts_to(standin, CHANNEL)) == 1
            assert "took over the unposted claim" in log.read_text()
        with Store.open(migrated_url) as store:
            posted = store.last_digest(CHANNEL)
            assert posted is not None and posted.posted_by == holder_of(second)
            assert posted.period_key == today() and posted.message_ts
    print(f"\ndigest posted {took:.1f} s after its claimant was killed (lease {LEASE_SECONDS} s)")


def test_an_escalation_claimed_by_a_killed_process_is_posted_once_by_another(
    moto_url: str, migrated_url: str, tmp_path: Path
) -> None:
    bob = demo_client(moto_url).get_user(UserName="bob")["User"]["Arn"]
    now = utc_now()
    with Store.open(migrated_url) as store:  # bob: open for 10 days, first nudged 5 days ago: overdue
        store.sync_episodes(ACCOUNT, [(bob, "bob")], now - timedelta(days=10))
        store.record_nudge("U0BOB0001", [bob], ADMIN, now - timedelta(days=5), "sent")
    with SlackStandIn(members=MEMBERS) as standin:
        standin.stall("chat.postMessage", ESCALATIONS)
        with serve(moto_url, standin, migrated_url, tmp_path / "first") as (first, _):
            died = kill_when_stalled(standin, first, ESCALATIONS)
        assert len(posts_to(standin, CHANNEL)) == 1  # the digest went before the escalation hung

        with serve(moto_url, standin, migrated_url, tmp_path / "second") as (_, log):
            (escalation,) = standin.wait_for(lambda: posts_to(standin, ESCALATIONS), 30)
            took = time.monotonic() - died
            text = json.dumps(escalation.payload["blocks"], ensure_ascii=False)
            assert "<@U0BOB0001>" in text and "`bob`" in text and "5 days since the first nudge" in text
            time.sleep(LEASE_SECONDS)
            assert len(posts_to(standin, ESCALATIONS)) == 1
            assert len(posts_to(standin, CHANNEL)) == 1  # and no second digest
            assert "took over the unposted claim" in log.read_text()
    with Store.open(migrated_url) as store:
        (escalated,) = store.actions(action="escalated")
        assert (escalated.target, escalated.outcome) == (bob, "ok")
        assert store.expired_claims(utc_now() + timedelta(days=1), escalation_channel=ESCALATIONS) == []
    print(f"\nescalation posted {took:.1f} s after its claimant was killed (lease {LEASE_SECONDS} s)")
