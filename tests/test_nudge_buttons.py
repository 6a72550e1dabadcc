"""The buttons and `/mfa-check nudge`, in process over real sockets: signed block_actions to the real WSGI app,
answers through the stand-in, IAM from moto's server seeded with the demo account, a SQLite store.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot.buttons import NudgeAllScope, parse_nudge, parse_nudge_all
from bot.config import Config
from bot.demo import demo_client
from bot.digest import post_manual_digest
from bot.nudges import NudgeWorker
from bot.pacing import PacedSlack
from bot.slack import make_web_client
from tests.fixtures_slack import ServedApp, served_production
from tests.slack_standin import ADMIN, NOBODY, SlackStandIn, action_body, post, sign
from tests.workflow_helpers import CHANNEL

ACCOUNT = "123456789012"


@pytest.fixture
def bot(slack_config: Config, slack_standin: SlackStandIn) -> Iterator[ServedApp]:
    """The production wiring with a digest channel, Slack calls paced 1000x faster than documented."""
    config = dataclasses.replace(slack_config, digest_channel=CHANNEL)
    with served_production(config, slack_standin, slack=PacedSlack.scaled(make_web_client(config), 1000)) as served:
        yield served


def click(bot: ServedApp, action_id: str, value: str, user: str, channel: str = CHANNEL, message: Any = None) -> str:
    """A signed button click; returns its response_url."""
    response_url = bot.standin.response_url()
    body = action_body(action_id, value, user, response_url, channel=channel, message=message)
    assert post(bot.url, "/slack/events", body, sign(body, bot.config.slack_signing_secret or "")).status == 200
    return response_url


def answer(bot: ServedApp, response_url: str) -> dict:
    (only,) = bot.answers(response_url)
    assert only["response_type"] == "ephemeral" and only.get("replace_original") is False
    return only


def digest_message(bot: ServedApp) -> dict:
    assert post_manual_digest(bot.services, "slack").ok
    (posted,) = bot.standin.calls("chat.postMessage")
    store = bot.services.store
    assert store is not None
    return {"ts": store.last_digest(CHANNEL).message_ts, "blocks": posted.payload["blocks"]}


def button_value(message: dict, action_id: str, user_name: str | None = None) -> str:
    """The value of a button of the posted message, as Slack hands it back on a click."""
    for block in message["blocks"]:
        for element in [block.get("accessory") or {}, *block.get("elements", [])]:
            if element.get("action_id") != action_id:
                continue
            target = parse_nudge(element["value"])
            if user_name is None or (target is not None and target.user_name == user_name):
                return str(element["value"])
    raise AssertionError(f"no {action_id} button for {user_name}")


def test_nudge_button_admin_dm_then_cooldown_non_admin_refused(bot: ServedApp) -> None:
    message = digest_message(bot)
    value = button_value(message, "nudge", "bob")
    assert json.loads(value) == {"v": 1, "a": ACCOUNT, "u": "bob"}
    sent = answer(bot, click(bot, "nudge", value, ADMIN, message=message))
    assert "DM sent to <@U0BOB0001>" in sent["text"]
    dms = [p for p in bot.standin.calls("chat.postMessage") if p.payload["channel"] == "U0BOB0001"]
    assert len(dms) == 1 and "aws iam enable-mfa-device" in json.dumps(dms[0].payload["blocks"])
    update = bot.standin.wait_for(lambda: bot.standin.calls("chat.update"))[0]
    assert update.payload["ts"] == message["ts"] and f"_nudged by <@{ADMIN}> at" in json.dumps(update.payload)

    refused = answer(bot, click(bot, "nudge", value, NOBODY, message=message))
    assert "Only MFA-bot admins" in refused["text"] and "bob" not in json.dumps(refused)
    again = answer(bot, click(bot, "nudge", f"{ACCOUNT}:bob", ADMIN, message=message))  # a button posted before
    assert "Skipped: <@U0BOB0001> was last nudged at" in again["text"] and f"by <@{ADMIN}>" in again["text"]
    assert len([p for p in bot.standin.calls("chat.postMessage") if p.payload["channel"] == "U0BOB0001"]) == 1
    store = bot.services.store
    assert store is not None
    assert [a.outcome for a in store.actions(action="refused:nudge")] == ["refused"]


def test_nudge_all_button_queues_and_the_worker_sends_one_dm_per_person(bot: ServedApp) -> None:
    message = digest_message(bot)
    value = button_value(message, "nudge_all")
    assert parse_nudge_all(value) == NudgeAllScope(())  # every account
    queued = answer(bot, click(bot, "nudge_all", value, ADMIN, message=message))
    assert "Queued 3 DMs (3 IAM users)" in queued["text"]
    assert bot.services.nudger is not None
    NudgeWorker(bot.services.nudger).run_until_idle()
    dms = sorted(p.payload["channel"] for p in bot.standin.calls("chat.postMessage") if p.payload["channel"][0] == "U")
    assert dms == ["U0BOB0001", "U0ERIN001", "U0IVAN001"]
    refused = answer(bot, click(bot, "nudge_all", "all", NOBODY, message=message))  # a button posted before
    assert "Only MFA-bot admins" in refused["text"]


HOSTILE = ['{"v":1,"a":"123456789012","u":"bob"', '{"v":2,"a":"123456789012","u":"bob"}', '{"v":1,"s":[1]}', "x" * 5000]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_button_value_the_bot_did_not_write_is_answered_in_one_line_and_changes_nothing(
    bot: ServedApp, value: str
) -> None:
    message = digest_message(bot)
    bot.standin.clear()
    nudge = answer(bot, click(bot, "nudge", value, ADMIN, message=message))
    assert nudge["text"] == "That button does not name an IAM user: nothing was sent."
    every = answer(bot, click(bot, "nudge_all", value, ADMIN, message=message))
    assert every["text"] == "That button does not name a digest's accounts: nothing was sent."
    recheck = answer(bot, click(bot, "recheck", value, ADMIN, "D0BOB0001", message=message))
    assert recheck["text"].startswith("I cannot re-check this one")
    assert bot.services.nudger is not None and NudgeWorker(bot.services.nudger).run_until_idle() == []
    assert not bot.standin.calls("chat.postMessage") and not bot.standin.calls("chat.update")


def test_slash_nudge_name_and_nudge_all_do_what_the_buttons_do(bot: ServedApp) -> None:
    _, url = bot.command("nudge erin")
    final = bot.final(url)
    assert "DM sent to <@U0ERIN001> about `erin` in acme-demo (123456789012)" in final["text"]
    _, url = bot.command("nudge all")
    text = json.dumps(bot.final(url))
    assert "Queued 3 DMs" in text  # the cooldown is decided when each DM goes
    assert bot.services.nudger is not None
    results = NudgeWorker(bot.services.nudger).run_until_idle()
    assert sorted((r.slack_user_id, r.outcome) for r in results) == [
        ("U0BOB0001", "sent"),
        ("U0ERIN001", "skipped_cooldown"),
        ("U0IVAN001", "sent"),
    ]
    done = bot.answers(url, count=3)[-1]
    assert done["text"] == "Nudge all finished: 2 sent, 1 skipped (cooldown), 0 failed."


def test_recheck_button_updates_the_stored_dm_never_what_the_payload_says(bot: ServedApp, demo_account: str) -> None:
    digest_message(bot)
    assert bot.services.nudger is not None and bot.services.store is not None
    bot.services.nudger.nudge_user(ADMIN, ACCOUNT, "bob")
    (dm,) = [p for p in bot.standin.calls("chat.postMessage") if p.payload["channel"] == "U0BOB0001"]
    stored = bot.services.store.last_dm(f"arn:aws:iam::{ACCOUNT}:user/bob")
    assert stored is not None and stored.channel and stored.message_ts
    dm_message = {"ts": "1700000000.000001", "blocks": dm.payload["blocks"]}
    missing = answer(bot, click(bot, "recheck", f"{ACCOUNT}:bob", "U0BOB0001", "D0BOB0001", dm_message))
    assert "still needs MFA: no MFA device is enabled" in missing["text"]
    iam = demo_client(demo_account)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-key")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName="bob", SerialNumber=serial, AuthenticationCode1="111111", AuthenticationCode2="222222"
    )
    bot.standin.clear()
    forged = {  # a payload may say anything about the message: another channel, ts and blocks
        "ts": "1700000000.000009",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "<!channel> forged"}}],
    }
    click(bot, "recheck", f"{ACCOUNT}:bob", "U0BOB0001", "C0EVIL001", forged)
    updates = bot.standin.wait_for(
        lambda: [u for u in bot.standin.calls("chat.update") if u.payload["channel"] == stored.channel]
    )
    text = json.dumps(updates[0].payload["blocks"], ensure_ascii=False)
    assert updates[0].payload["ts"] == stored.message_ts  # the DM the bot sent, from the store
    assert "*Thank you!* `bob`" in text and '"action_id": "recheck"' not in text and "nothing left to do" in text
    assert "Please turn on" not in text and "no MFA device" not in text and "aws iam" not in text
    assert "forged" not in text and not [
        u for u in bot.standin.calls("chat.update") if u.payload["channel"] == "C0EVIL001"
    ]
    digest_update = bot.standin.wait_for(
        lambda: [u for u in bot.standin.calls("chat.update") if u.payload["channel"] == CHANNEL]
    )
    assert "*fixed* at" in json.dumps(digest_update[-1].payload["blocks"])
