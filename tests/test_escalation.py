"""Escalation: which violations are overdue (pure, plain data), the overdue section and the escalation
message (pure), and, against moto's IAM and the Slack stand-in with the clock driven: an overdue
violation listed in the digest and posted to ESCALATION_CHANNEL once per episode, never again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.digest import build_view, post_manual_digest, post_scheduled_digest, refresh_rows
from bot.escalation import Overdue, escalation_key, select_overdue
from bot.messages.digest import OverdueRow, RowState, digest_parts, escalation_parts, overdue_blocks
from bot.nudges import Nudger
from bot.pacing import PacedSlack
from bot.services import Services, build_services
from bot.slack import make_web_client
from bot.store import Episode, Store
from tests.slack_standin import ADMIN, MEMBERS, Recorded, Reply, SlackStandIn
from tests.workflow_helpers import (
    ACCOUNT,
    CHANNEL,
    NOW,
    Clock,
    account,
    arn,
    config_for,
    make_services,
    result,
    violator,
)

ESCALATIONS = "C0ESCALAT"


def episode(name: str, first_seen: datetime, episode_id: int = 1, fixed_at: datetime | None = None) -> Episode:
    return Episode(episode_id, arn(name), ACCOUNT, name, first_seen, first_seen, fixed_at)


def text_of(record: Recorded) -> str:
    return json.dumps(record.payload.get("blocks", []), ensure_ascii=False) + str(record.payload.get("text", ""))


def posts(standin: SlackStandIn, channel: str) -> list[Recorded]:
    return [r for r in standin.accepted("chat.postMessage") if r.payload.get("channel") == channel]


# -- pure ---------------------------------------------------------------------------------------


def test_overdue_is_a_pure_function_of_episodes_first_nudges_now_and_days() -> None:
    opened = NOW - timedelta(days=30)
    episodes = [
        episode("due", opened, 1),  # first nudged exactly 7 days ago: overdue
        episode("long", opened, 2),  # 20 days ago: overdue, listed first
        episode("early", opened, 3),  # a second short of 7 days: not yet
        episode("never", opened, 4),  # never nudged: not overdue, however old
        episode("old-episode", NOW - timedelta(days=2), 5),  # nudged only about an earlier episode
        episode("fixed", opened, 6, fixed_at=NOW - timedelta(days=1)),
    ]
    first = {
        arn("due"): NOW - timedelta(days=7),
        arn("long"): NOW - timedelta(days=20),
        arn("early"): NOW - timedelta(days=7) + timedelta(seconds=1),
        arn("old-episode"): NOW - timedelta(days=9),
        arn("fixed"): NOW - timedelta(days=20),
    }
    found = select_overdue(episodes, first, NOW, 7)
    assert [(o.user_name, o.days, o.episode_id) for o in found] == [("long", 20, 2), ("due", 7, 1)]
    assert found[1] == Overdue(1, arn("due"), ACCOUNT, "due", opened, NOW - timedelta(days=7), 7)
    assert [o.user_name for o in select_overdue(episodes, first, NOW, 8)] == ["long"]
    assert select_overdue(episodes, {}, NOW, 1) == []


def test_the_escalation_key_is_one_per_episode_and_fits_the_claim() -> None:
    item = Overdue(987654321, arn("x" * 64), ACCOUNT, "x" * 64, NOW, NOW, 9)
    key = escalation_key(item)
    assert key == "escalation:987654321:20261127T090000Z" and len(key) <= 64
    reopened = dataclasses.replace(item, episode_id=987654400, first_seen=NOW + timedelta(days=3))
    assert escalation_key(reopened) != key  # the same IAM user violating again: a new escalation


def test_the_overdue_section_names_who_where_how_long_and_how_many_nudges() -> None:
    bob = dataclasses.replace(violator("bob"), slack_user_id="U0BOB0001")
    found = result(account([bob, violator("ivan")]))
    overdue = [Overdue(1, arn("bob"), ACCOUNT, "bob", NOW - timedelta(days=12), NOW - timedelta(days=9), 9)]
    view = build_view(found, {}, NOW, "UTC", overdue=overdue, nudges={arn("bob"): 3}, overdue_after_days=7)
    assert view.overdue == (OverdueRow(arn("bob"), ACCOUNT, f"acme ({ACCOUNT})", "bob", "U0BOB0001", 9, 3),)
    (part,) = digest_parts(view)
    text = json.dumps([b.to_dict() for b in part.blocks], ensure_ascii=False)
    assert "*:alarm_clock: Overdue (1)*: still open 7 days or more after the first nudge" in text
    assert f"<@U0BOB0001> · `bob` in acme ({ACCOUNT}) · 9 days since the first nudge · 3 nudges so far" in text
    assert "1 overdue" in part.text
    assert text.index("Overdue (1)") < text.index("*Violations (2)*")
    # an overdue ARN the audit no longer shows as a violation is not listed
    assert build_view(result(account([])), {}, NOW, "UTC", overdue=overdue).overdue == ()


def test_the_overdue_section_updates_in_place_with_the_same_layout() -> None:
    rows = [OverdueRow(arn(f"u{i}"), ACCOUNT, "acme " * 60, f"u{i}" * 30, f"U{i:08d}", 8, 9) for i in range(30)]
    posted = overdue_blocks(rows, 7)
    states = {r.arn: RowState(nudges=100) for r in rows}  # more nudges since: longer lines
    states[arn("u3")] = RowState(nudges=12, fixed_at="10:02")
    now = overdue_blocks(rows, 7, states)
    assert len(now) == len(posted) and all(len(b.text.text) <= 3000 for b in now)
    text = "\n".join(b.text.text for b in now)
    assert "9 nudges so far" not in text and text.count("100 nudges so far") == 29
    assert f"• :white_check_mark: *fixed* at 10:02 · <@U00000003> · `{'u3' * 30}` in" in text


def test_escalation_messages_stay_within_slack_limits_and_list_each_row_once() -> None:
    rows = [OverdueRow(arn(f"u{i}"), ACCOUNT, "acme", f"u{i}" * 20, f"U{i:08d}", 8, 2) for i in range(101)]
    parts = escalation_parts(rows, 7, "2026-11-27")
    assert len(parts) == 3 and [len(p.arns) for p in parts] == [40, 40, 21]
    assert sorted(a for p in parts for a in p.arns) == sorted(r.arn for r in rows)
    for part in parts:
        dicts = [b.to_dict() for b in part.blocks]
        assert len(dicts) <= 50
        assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in dicts)
    assert parts[0].text == "40 MFA violations still open 7 days after the first nudge"


# -- against moto's IAM and the stand-in, the clock driven --------------------------------------


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(members=MEMBERS) as running:
        yield running


def demo_services(store: Store, standin: SlackStandIn, moto: str, clock: Clock) -> Services:
    """Services as `serve` wires them: the recorded audit of the demo account in moto, the clock given."""
    config = config_for(standin, aws_endpoint_url=moto, escalation_channel=ESCALATIONS, escalate_after_days=7)
    client = make_web_client(config)
    return build_services(config, client, store, PacedSlack.scaled(client, 1000), clock=clock, recent_seconds=0)


def test_a_violation_nudged_long_ago_is_overdue_in_the_digest_and_escalated_once(
    demo_account: str, store: Store, standin: SlackStandIn
) -> None:
    clock = Clock(datetime.now(UTC))
    services = demo_services(store, standin, demo_account, clock)
    assert post_scheduled_digest(services, clock()).escalated == 0  # day 0: bob, erin, ivan open
    assert Nudger(services).nudge_user(ADMIN, ACCOUNT, "bob").outcome == "sent"

    clock.advance(days=6, hours=23)  # not yet ESCALATE_AFTER_DAYS after the nudge
    quiet = post_scheduled_digest(services, clock())
    assert quiet.posted and quiet.escalated == 0 and not posts(standin, ESCALATIONS)
    assert "Overdue" not in text_of(posts(standin, CHANNEL)[-1])

    clock.advance(days=1, hours=1)  # 8 days after the first nudge
    due = post_scheduled_digest(services, clock())
    assert due.posted and due.escalated == 1
    digest = text_of(posts(standin, CHANNEL)[-1])
    assert "*:alarm_clock: Overdue (1)*: still open 7 days or more after the first nudge" in digest
    bob_line = f"<@U0BOB0001> · `bob` in acme-demo ({ACCOUNT}) · 8 days since the first nudge · 1 nudge so far"
    assert bob_line in digest
    (escalation,) = posts(standin, ESCALATIONS)
    assert bob_line in text_of(escalation) and "erin" not in text_of(escalation)  # never nudged: not overdue
    (trail,) = store.actions(action="escalated")
    (bob,) = [e for e in store.open_episodes() if e.user_name == "bob"]
    assert trail.target == bob.arn and trail.outcome == "ok" and bob.first_seen.isoformat() in (trail.detail or "")

    clock.advance(days=1)  # the next digest, and a manual one from another process: listed, not posted again
    later = post_scheduled_digest(services, clock())
    other = post_manual_digest(demo_services(store, standin, demo_account, clock), ADMIN)
    assert later.escalated == other.escalated == 0
    assert "9 days since the first nudge · 1 nudge so far" in text_of(posts(standin, CHANNEL)[-1])
    assert len(posts(standin, ESCALATIONS)) == 1 and len(store.actions(action="escalated")) == 1
    assert store.last_digest(ESCALATIONS) is None  # an escalation is not a digest

    assert store.close_episode(bob.arn, clock()) is not None  # bob fixes it: his overdue line says so, in place
    assert refresh_rows(services, [bob.arn]) == 1
    updated = text_of(standin.calls("chat.update")[-1])
    assert f"• :white_check_mark: *fixed* at {services.hhmm(clock())} · <@U0BOB0001> · `bob`" in updated
    assert "9 days since the first nudge" not in updated and "*:alarm_clock: Overdue (1)*" in updated


def test_an_escalation_that_cannot_be_posted_is_given_back_and_posted_by_the_next_digest(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    bob = violator("bob", tags={"slack-user-id": "U0BOB0001"})
    services = make_services(
        store, standin, lambda: result(account([bob])), clock=clock, escalation_channel=ESCALATIONS
    )
    post_manual_digest(services, ADMIN)  # opens bob's episode
    store.record_nudge("U0BOB0001", [bob.arn], ADMIN, clock(), "sent")
    clock.advance(days=7)
    standin.reply(
        "chat.postMessage",
        Reply(body={"ok": True, "channel": CHANNEL, "ts": "9.000001"}),  # the digest
        Reply(body={"ok": False, "error": "not_in_channel"}),  # the escalation
    )
    failed = post_manual_digest(services, ADMIN)
    assert failed.posted and failed.escalated == 0
    assert [(a.target, a.outcome) for a in store.actions(action="escalated")] == [(ESCALATIONS, "failed")]
    clock.advance(minutes=10)
    retried = post_manual_digest(services, ADMIN)
    assert retried.escalated == 1 and len(posts(standin, ESCALATIONS)) == 2  # refused once, then posted
    assert [a.outcome for a in store.actions(action="escalated")] == ["ok", "failed"]


def test_an_overdue_line_in_the_top_message_updates_when_its_row_is_in_the_thread(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    late = violator("zz-bob", tags={"slack-user-id": "U0BOB0001"})  # sorts last: its row goes in the thread
    everyone = [violator(f"u{i:03d}") for i in range(60)] + [late]
    services = make_services(store, standin, lambda: result(account(everyone)), clock=clock)
    post_manual_digest(services, ADMIN)  # opens the episodes
    store.record_nudge("U0BOB0001", [late.arn], ADMIN, clock(), "sent")
    clock.advance(days=8)
    digest = post_manual_digest(services, ADMIN)
    assert digest.ok and digest.messages > 1
    assert store.digest_rows(CHANNEL, digest.period_key)[late.arn] != digest.message_ts

    store.close_episode(late.arn, clock())
    assert refresh_rows(services, [late.arn]) == 2  # its row in the thread, its overdue line in the top message
    (top,) = [u for u in standin.calls("chat.update") if u.payload["ts"] == digest.message_ts]
    assert "• :white_check_mark: *fixed* at" in text_of(top) and "`zz-bob`" in text_of(top)
