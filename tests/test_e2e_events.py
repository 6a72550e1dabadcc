"""Real time end to end: `python -m bot serve` (HTTP) polling moto's SQS, moto's IAM, the Slack stand-in.

Events go into the queue exactly as EventBridge delivers them. A console password created in IAM
plus its event: the DM and the alert within seconds; the same event again: still one DM, one
alert; a poison message: to the dead-letter queue, logged once, the bot alive and healthy; MFA
enabled plus its event: the episode closed, the digest row updated in place, a thank-you DM.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bot.demo import demo_client, seed_demo_account
from bot.store import Store
from tests.bot_process import bot_env, serve_process, wait_until
from tests.eventbridge import body, create_queues, iam_call, queue_depth
from tests.fixtures_aws import FAKE_AWS_ENV
from tests.slack_standin import MEMBERS, SlackStandIn, get, person
from tests.test_e2e_digest import SECRET, due_now, text_of, to

DIGEST = "C0DIGEST1"
ALERTS = "C0ALERTS1"
ACCOUNT = "123456789012"


def test_events_reach_slack_once_within_seconds_and_poison_goes_to_the_dlq(moto_url: str, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        seed_demo_account(demo_client(moto_url))
        queue_url, dlq_url = create_queues(moto_url, max_receive=2)
    iam, sqs = demo_client(moto_url), demo_client(moto_url, "sqs")
    database_url = f"sqlite:///{tmp_path / 'bot.db'}"
    cron, zone = due_now()
    extra = {
        "DIGEST_CHANNEL": DIGEST,
        "DIGEST_CRON": cron,
        "DIGEST_TIMEZONE": zone,
        "RECHECK_INTERVAL_MINUTES": "0",
        "EVENTS_QUEUE_URL": queue_url,
        "ALERT_CHANNEL": ALERTS,
    }
    with SlackStandIn(members=[*MEMBERS, person("U0FRANK01", "frank@example.com", "frank")]) as standin:
        env = bot_env(tmp_path / "bot", standin, moto_url, database_url, SECRET, **extra)
        with serve_process(tmp_path / "bot", env) as (url, process, log):
            (digest,) = standin.wait_for(lambda: to(DIGEST)(standin), 30)  # the catch-up digest lists bob
            # the stand-in answers before the bot records the post: bob's row is found from the store (step 4)
            with Store.open(database_url) as store:

                def recorded() -> dict[str, str] | None:
                    posted = store.last_digest(DIGEST)
                    return posted and posted.message_ts and store.digest_rows(DIGEST, posted.period_key)

                wait_until(recorded, 20, "the digest and its rows recorded")

            # 1. frank gets a console password: the DM and the alert within seconds
            iam.create_login_profile(UserName="frank", Password="Demo-Password-1!")
            created = body(iam_call("CreateLoginProfile", "frank", event_id="e2e-frank"))
            sent_at = time.monotonic()
            sqs.send_message(QueueUrl=queue_url, MessageBody=created)
            (dm,) = standin.wait_for(lambda: to("U0FRANK01")(standin), 15)
            (alert,) = standin.wait_for(lambda: to(ALERTS)(standin), 15)
            latency = time.monotonic() - sent_at
            assert "Please turn on MFA" in text_of(dm)
            assert "New MFA violation" in text_of(alert) and "`frank` in acme-demo (123456789012)" in text_of(alert)
            assert '"action_id": "nudge"' in text_of(alert) and "platform-admin" in text_of(alert)

            # 2. the same event delivered again: nothing twice
            sqs.send_message(QueueUrl=queue_url, MessageBody=created)
            wait_until(
                lambda: json.loads(get(url, "/healthz").body)["events_queue"]["handled"] >= 2, 15, "2 events handled"
            )
            assert len(to("U0FRANK01")(standin)) == 1 and len(to(ALERTS)(standin)) == 1

            # 3. a poison message: to the dead-letter queue, logged once, the bot alive
            sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=json.dumps(
                    {"detail-type": "AWS API Call via CloudTrail", "detail": {"eventID": "e2e-bad"}}
                ),
            )
            wait_until(lambda: queue_depth(sqs, dlq_url) == 1, 20, "the poison message in the DLQ")
            assert process.poll() is None
            health = get(url, "/healthz")
            assert health.status == 200 and json.loads(health.body)["events_queue"]["ok"] is True
            assert log.read_text().count("e2e-bad") == 1

            # 4. bob enables MFA: the episode closes, his digest row says fixed
            serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-phone")["VirtualMFADevice"]["SerialNumber"]
            iam.enable_mfa_device(
                UserName="bob", SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
            )
            sqs.send_message(
                QueueUrl=queue_url, MessageBody=body(iam_call("EnableMFADevice", "bob", serialNumber=serial))
            )
            fixed = standin.wait_for(
                lambda: [u for u in to(DIGEST, "chat.update")(standin) if "*fixed* at" in text_of(u)], 20
            )
            assert "<@U0BOB0001> · `bob`" in text_of(fixed[-1])
            wait_until(lambda: queue_depth(sqs, queue_url) == 0, 10, "an empty queue")  # deleted once handled
            assert "xoxb-test-token" not in log.read_text()
    with Store.open(database_url) as store:
        assert {e.user_name for e in store.open_episodes()} == {"erin", "ivan", "frank"}
        assert store.event_claim("e2e-frank").handled
    assert len(to(DIGEST)(standin)) == 1 and "bob" in text_of(digest)
    print(f"\nevent visible -> DM and alert: {latency:.2f} s")


def test_an_unreachable_queue_is_logged_once_and_reported_while_serve_keeps_serving(
    moto_url: str, tmp_path: Path
) -> None:
    missing = f"{moto_url}/{ACCOUNT}/no-such-queue"
    extra = {
        "DIGEST_CHANNEL": DIGEST,
        "DIGEST_CRON": "off",
        "RECHECK_INTERVAL_MINUTES": "0",
        "EVENTS_QUEUE_URL": missing,
    }
    with SlackStandIn(members=MEMBERS) as standin:
        env = bot_env(tmp_path / "bot", standin, moto_url, f"sqlite:///{tmp_path / 'bot.db'}", SECRET, **extra)
        with serve_process(tmp_path / "bot", env) as (url, process, log):
            health = wait_until(
                lambda: json.loads(get(url, "/healthz").body)["events_queue"]["error"], 15, "a queue error"
            )
            assert "NonExistentQueue" in health
            time.sleep(3.5)  # a few retries with backoff (1 s, 2 s)
            response = get(url, "/healthz")
            assert response.status == 200 and json.loads(response.body)["ok"] is True  # Slack is still served
            assert process.poll() is None
            assert log.read_text().count("cannot be read") == 1
