"""Real-time events through moto's SQS (over HTTP), moto's IAM and the Slack stand-in, in this process.

Each test sends events shaped exactly as EventBridge delivers them and runs the poller's long polls
(`poll_once`) until the queue is empty; the end-to-end run of the same thing inside
`python -m bot serve` is tests/test_e2e_events.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.buttons import user_value
from bot.config import Config
from bot.demo import demo_client
from bot.event_handler import EventHandler
from bot.event_queue import QueuePoller, sqs_client
from bot.pacing import PacedSlack
from bot.services import Services, build_services
from bot.slack import make_web_client
from bot.store import Store
from tests.eventbridge import ADMIN_ARN, body, console_login, create_queues, iam_call, queue_depth
from tests.slack_standin import ADMIN, MEMBERS, Reply, SlackStandIn, person

ACCOUNT = "123456789012"
ALERTS = "C0ALERTS1"
DIGEST = "C0DIGEST1"
FRANK = "U0FRANK01"


@dataclass
class Realtime:
    """The bot's real-time side wired to moto (IAM + SQS), the stand-in and a SQLite store."""

    iam: Any
    sqs: Any
    queue_url: str
    dlq_url: str
    standin: SlackStandIn
    store: Store
    services: Services
    handler: EventHandler
    poller: QueuePoller

    def send(self, event: dict[str, Any], times: int = 1) -> None:
        for _ in range(times):
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body(event))

    def drain(self, max_polls: int = 10) -> None:
        """Long-poll (1 s) until a poll brings nothing."""
        for _ in range(max_polls):
            if self.poller.poll_once() == 0:
                return
        raise AssertionError("the queue did not drain")

    def posts(self, channel: str, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        return [r.payload for r in self.standin.accepted(method) if r.payload.get("channel") == channel]

    def left_in(self, url: str) -> int:
        return queue_depth(self.sqs, url)


def text_of(payload: dict[str, Any]) -> str:
    return json.dumps(payload.get("blocks", []), ensure_ascii=False)


@pytest.fixture
def realtime(demo_account: str, tmp_path: Path) -> Iterator[Realtime]:
    queue_url, dlq_url = create_queues(demo_account)
    with SlackStandIn(members=[*MEMBERS, person(FRANK, "frank@example.com", "frank")]) as standin:
        config = Config(
            slack_bot_token="xoxb-test-token",
            slack_api_url=standin.api_url,
            digest_channel=DIGEST,
            alert_channel=ALERTS,
            admin_user_ids=frozenset({ADMIN}),
            database_url=f"sqlite:///{tmp_path / 'bot.db'}",
            email_domain="example.com",
            aws_endpoint_url=demo_account,
            events_queue_url=queue_url,
        )
        client = make_web_client(config)
        store = Store.open(config.database_url)
        services = build_services(config, client, store, slack=PacedSlack.scaled(client, 1000))
        handler = EventHandler(services)
        poller = QueuePoller(
            handler.handle, queue_url, sqs_client(config), wait_seconds=1, retry_delay=lambda n: 0, in_progress_delay=0
        )
        yield Realtime(
            demo_client(demo_account), demo_client(demo_account, "sqs"), queue_url, dlq_url, standin, store,
            services, handler, poller,
        )  # fmt: skip
        poller.stop()
        services.jobs.shutdown(wait=True)
        store.close()


def test_a_new_console_password_without_mfa_dms_the_person_and_alerts_once(realtime: Realtime) -> None:
    rt = realtime
    rt.iam.create_login_profile(UserName="frank", Password="Demo-Password-1!")
    created = iam_call("CreateLoginProfile", "frank", event_id="ev-frank-1", passwordResetRequired=False)
    rt.send(created, times=2)  # SQS at least once: the same event twice

    rt.drain()

    (dm,) = rt.posts("U0FRANK01")
    assert "Please turn on MFA" in text_of(dm) and json.dumps(user_value(ACCOUNT, "frank")) in text_of(dm)
    (alert,) = rt.posts(ALERTS)
    text = text_of(alert)
    assert "New MFA violation" in text and "`frank` in acme-demo (123456789012) · <@U0FRANK01>" in text
    assert "a console password was created by `" + ADMIN_ARN + "`" in text
    assert '"action_id": "nudge"' in text and f'"value": {json.dumps(user_value(ACCOUNT, "frank"))}' in text
    assert "DM sent with the set-up steps" in text and "ev-frank-1" in text
    assert [e.user_name for e in rt.store.open_episodes() if e.user_name == "frank"] == ["frank"]
    assert rt.store.event_claim("ev-frank-1").handled
    assert rt.left_in(rt.queue_url) == 0 and rt.left_in(rt.dlq_url) == 0
    assert rt.poller.health()["ok"] and rt.poller.counts["opened"] == 1 and rt.poller.counts["duplicate"] == 1

    # a later event about the same open violation: nothing new (no second DM, no second alert)
    rt.send(iam_call("DeactivateMFADevice", "frank", event_id="ev-frank-2"))
    rt.drain()
    assert len(rt.posts("U0FRANK01")) == 1 and len(rt.posts(ALERTS)) == 1


def test_mfa_removed_then_enabled_opens_then_closes_with_thanks(realtime: Realtime) -> None:
    rt = realtime
    (device,) = rt.iam.list_mfa_devices(UserName="alice")["MFADevices"]
    rt.iam.deactivate_mfa_device(UserName="alice", SerialNumber=device["SerialNumber"])
    rt.send(iam_call("DeactivateMFADevice", "alice", serialNumber=device["SerialNumber"]))
    rt.drain()
    (alert,) = rt.posts(ALERTS)
    assert "an MFA device was deactivated" in text_of(alert) and "<@U0ALICE01>" in text_of(alert)
    assert len(rt.posts("U0ALICE01")) == 1

    rt.iam.enable_mfa_device(
        UserName="alice",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    rt.send(iam_call("EnableMFADevice", "alice", serialNumber=device["SerialNumber"]))
    rt.drain()
    assert all(e.user_name != "alice" for e in rt.store.open_episodes())
    thanks = rt.posts("U0ALICE01")[-1]
    assert "*Thank you!* `alice`" in text_of(thanks)
    assert len(rt.posts(ALERTS)) == 1  # a fix is no alert: the digest row says it


def test_console_sign_ins_without_mfa_alert_once_per_episode_per_day(realtime: Realtime) -> None:
    rt = realtime
    rt.send(console_login("bob", event_id="login-1", source_ip="203.0.113.50"))
    rt.drain()
    (first,) = rt.posts(ALERTS)  # bob violates, no episode yet: the violation alert carries the sign-in
    assert "New MFA violation" in text_of(first) and "`203.0.113.50`" in text_of(first)
    assert "without MFA*" in text_of(first)
    for n in range(2, 4):
        rt.send(console_login("bob", event_id=f"login-{n}"))
    rt.drain()
    assert len(rt.posts(ALERTS)) == 1  # the same day: no more

    rt.send(console_login("erin", event_id="login-erin"))
    rt.store.open_episode(f"arn:aws:iam::{ACCOUNT}:user/erin", ACCOUNT, "erin", rt.services.clock())
    rt.drain()
    (erin,) = [p for p in rt.posts(ALERTS) if "erin" in text_of(p)]
    assert "Console sign-in without MFA" in text_of(erin) and "Violation open since" in text_of(erin)


def test_an_exemption_tag_set_outside_slack_is_recorded_with_who_and_said_in_the_channel(realtime: Realtime) -> None:
    rt = realtime
    rt.store.open_episode(f"arn:aws:iam::{ACCOUNT}:user/ivan", ACCOUNT, "ivan", rt.services.clock())
    rt.iam.tag_user(UserName="ivan", Tags=[{"Key": "mfa-exempt", "Value": "kiosk account"}])
    role = "arn:aws:sts::123456789012:assumed-role/SecurityAdmin/jane"
    rt.send(iam_call("TagUser", "ivan", actor_arn=role, tags=[{"key": "mfa-exempt", "value": "kiosk account"}]))
    rt.drain()
    (entry,) = rt.store.actions(action="exemption_tag_added")
    assert entry.actor == role and "kiosk account" in entry.detail and entry.target.endswith(":user/ivan")
    (alert,) = rt.posts(ALERTS)
    assert "Exemption changed outside Slack" in text_of(alert) and "kiosk account" in text_of(alert)
    assert role in text_of(alert)
    assert all(e.user_name != "ivan" for e in rt.store.open_episodes())  # exempt now: closed, no thanks
    assert rt.posts("U0IVAN001") == []

    rt.iam.untag_user(UserName="ivan", TagKeys=["mfa-exempt"])
    rt.send(iam_call("UntagUser", "ivan", actor_arn=role, tagKeys=["mfa-exempt"]))
    rt.drain()
    assert [a.action for a in rt.store.actions(action="exemption_tag_removed")] == ["exemption_tag_removed"]
    texts = [text_of(p) for p in rt.posts(ALERTS)]
    assert any("*removed*" in t for t in texts) and any("New MFA violation" in t and "ivan" in t for t in texts)


def test_poison_goes_to_the_dlq_logged_once_and_other_accounts_are_dropped(
    realtime: Realtime, caplog: pytest.LogCaptureFixture
) -> None:
    rt = realtime
    caplog.set_level(logging.INFO, logger="bot.event_queue")
    caplog.set_level(logging.INFO, logger="bot.event_handler")
    poison = iam_call("CreateLoginProfile", "frank", event_id="ev-poison")
    del poison["account"], poison["detail"]["recipientAccountId"]
    rt.send(poison)
    rt.send(iam_call("CreateLoginProfile", "someone", account="999988887777", event_id="ev-elsewhere"))
    rt.drain()
    assert rt.left_in(rt.queue_url) == 0
    dead = rt.sqs.receive_message(QueueUrl=rt.dlq_url, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"])["detail"]["eventID"] for m in dead] == ["ev-poison"]
    assert len([r for r in caplog.records if "ev-poison" in r.getMessage()]) == 1
    dropped = [r.getMessage() for r in caplog.records if "ev-elsewhere" in r.getMessage()]
    assert len(dropped) == 1 and "999988887777" in dropped[0] and "dropped" in dropped[0]
    assert rt.posts(ALERTS) == [] and rt.store.event_claim("ev-elsewhere").outcome == "unconfigured"


def test_a_failure_leaves_the_event_in_the_queue_and_the_retry_finishes_it_once(realtime: Realtime) -> None:
    rt = realtime
    rt.iam.create_login_profile(UserName="frank", Password="Demo-Password-1!")
    dm_ok = Reply(body={"ok": True, "channel": "D0FRANK01", "ts": "1.000001"})  # then Slack fails the alert once
    rt.standin.reply("chat.postMessage", dm_ok, Reply(body={"ok": False, "error": "channel_not_found"}))
    rt.send(iam_call("CreateLoginProfile", "frank", event_id="ev-retry"))
    rt.drain()
    claim = rt.store.event_claim("ev-retry")
    assert claim.handled and claim.attempts == 2 and claim.steps[:2] == ("opened", "dm")
    assert len(rt.posts(ALERTS)) == 2  # the failed one, then the retry's
    assert len(rt.posts("U0FRANK01")) == 1  # the DM was not sent again
    assert rt.left_in(rt.queue_url) == 0


def test_the_queue_unreachable_is_logged_once_reported_and_recovers(
    realtime: Realtime, caplog: pytest.LogCaptureFixture
) -> None:
    rt = realtime
    caplog.set_level(logging.INFO, logger="bot.event_queue")
    caplog.set_level(logging.INFO, logger="bot.event_handler")
    missing = rt.queue_url.rsplit("/", 1)[0] + "/not-there"
    poller = QueuePoller(rt.handler.handle, missing, rt.poller.sqs, wait_seconds=1)
    for _ in range(3):
        assert poller.poll_once() == 0
    health = poller.health()
    assert not health["ok"] and "NonExistentQueue" in health["error"]
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 1
    rt.sqs.create_queue(QueueName="not-there")
    assert poller.poll_once() == 0
    assert poller.health()["ok"] and any("reachable again" in r.getMessage() for r in caplog.records)
    poller.stop()
