"""Nudges: the DM (pure), the cooldown, failures recorded, "Nudge all" through the outbox, 429s and restarts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from slack_sdk.web import WebClient

from bot.buttons import user_value
from bot.digest import post_scheduled_digest
from bot.messages.nudging import nudge_batch_done_text
from bot.messages.personal import nudge_dm
from bot.models import arn_user
from bot.nudges import INTERRUPTED, Nudger, NudgeWorker, targets_from_arns
from bot.pacing import DOCUMENTED_RATES, PER_CHANNEL, PacedSlack
from bot.slack import BoundedRateLimitRetryHandler
from bot.store import Store
from tests.slack_standin import ADMIN, MEMBERS, OTHER_ADMIN, Reply, SlackStandIn
from tests.workflow_helpers import ACCOUNT, OTHER_ACCOUNT, Clock, account, arn, make_services, result, violator


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(members=MEMBERS) as running:
        yield running


def dm_text(record) -> str:
    return json.dumps(record.payload.get("blocks", ""), ensure_ascii=False) + str(record.payload.get("text", ""))


# -- the DM (pure) ------------------------------------------------------------------------------


def test_the_dm_has_sign_in_url_console_and_cli_steps_permission_and_a_recheck_per_iam_user() -> None:
    users = targets_from_arns([arn("bob"), arn("bob", OTHER_ACCOUNT)])
    message = nudge_dm("U0BOB0001", users, {ACCOUNT: "acme"}, requested_by=ADMIN)
    text = json.dumps([b.to_dict() for b in message.blocks], ensure_ascii=False)
    assert "https://acme.signin.aws.amazon.com/console" in text  # alias
    assert f"https://{OTHER_ACCOUNT}.signin.aws.amazon.com/console" in text  # no alias known: the id
    assert "your name (top right) → *Security credentials*" in text and "*Assign MFA device*" in text
    assert "authenticator app" in text and "security key" in text and "hardware TOTP" in text
    assert "two consecutive codes" in text
    for command in ("aws iam create-virtual-mfa-device", "aws iam enable-mfa-device", "aws iam list-mfa-devices"):
        assert command in text
    for action in ("iam:CreateVirtualMFADevice", "iam:EnableMFADevice", "iam:ListMFADevices", "iam:ResyncMFADevice"):
        assert action in text
    buttons = [b.to_dict()["accessory"] for b in message.blocks if getattr(b, "accessory", None)]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("recheck", user_value(ACCOUNT, "bob")),
        ("recheck", user_value(OTHER_ACCOUNT, "bob")),
    ]
    assert f"<@{ADMIN}>" in text


def test_a_dm_for_many_iam_users_stays_within_slack_limits() -> None:
    users = targets_from_arns([arn(f"u{i}") for i in range(60)])
    message = nudge_dm("U1", users, {})
    dicts = [b.to_dict() for b in message.blocks]
    assert len(dicts) <= 50
    assert all(len(d.get("text", {}).get("text", "")) <= 3000 for d in dicts)
    assert "u59" in json.dumps(dicts)  # the ones without a button are still named


def test_arn_user_reads_paths() -> None:
    assert arn_user("arn:aws:iam::123456789012:user/team/ops/bob") == ("123456789012", "bob")


# -- one nudge ----------------------------------------------------------------------------------


def two_people():
    return result(
        account(
            [
                violator("bob", tags={"slack-user-id": "U0BOB0001"}),
                violator("bob-admin", tags={"slack-user-id": "U0BOB0001"}),
                violator("erin", tags={"email": "erin@example.com"}),
                violator("nobody"),
            ]
        )
    )


def test_a_nudge_dms_all_of_the_persons_iam_users_once_then_the_cooldown_says_when_and_by_whom(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    services = make_services(store, standin, two_people, clock=clock)
    nudger = Nudger(services)
    first = nudger.nudge_user(ADMIN, ACCOUNT, "bob")
    assert first.outcome == "sent" and "<@U0BOB0001>" in first.text
    assert not standin.calls("conversations.open")  # the user ID is the channel: Slack opens the DM
    (dm,) = standin.calls("chat.postMessage")
    assert dm.payload["channel"] == "U0BOB0001"
    assert "`bob`" in dm_text(dm) and "`bob-admin`" in dm_text(dm) and "erin" not in dm_text(dm)
    last = store.last_nudge("U0BOB0001")
    assert last.arns == (arn("bob"), arn("bob-admin"))
    assert last.channel == "D0BOB0001"  # the DM channel Slack answered with: what chat.update needs
    services.slack.update(last.channel, last.message_ts, "updated", [])  # a user ID here would be channel_not_found
    clock.advance(hours=2)
    second = nudger.nudge_user(OTHER_ADMIN, ACCOUNT, "bob-admin")
    assert second.outcome == "skipped_cooldown"
    assert "2026-11-27 09:00 UTC" in second.text and f"<@{ADMIN}>" in second.text
    assert len(standin.calls("chat.postMessage")) == 1  # no second DM
    trail = [(a.actor, a.outcome) for a in store.actions(action="nudge")]
    assert trail == [(OTHER_ADMIN, "skipped_cooldown"), (ADMIN, "sent")]
    clock.advance(hours=23)
    assert nudger.nudge_user(OTHER_ADMIN, ACCOUNT, "bob").outcome == "sent"  # the cooldown is over


def test_nobody_to_dm_and_not_violating_send_nothing(store: Store, standin: SlackStandIn) -> None:
    found = two_people()
    found.accounts[0].users.append(
        violator("carol").__class__(**{**violator("carol").__dict__, "status": "compliant", "reason": None})
    )
    services = make_services(store, standin, lambda: found)
    nudger = Nudger(services)
    assert nudger.nudge_user(ADMIN, ACCOUNT, "nobody").outcome == "no_person"
    assert nudger.nudge_user(ADMIN, ACCOUNT, "carol").outcome == "noop"
    assert nudger.nudge_user(ADMIN, ACCOUNT, "zed").outcome == "not_found"
    assert not standin.calls("chat.postMessage")


def test_a_dm_that_cannot_go_is_recorded_failed_and_the_window_given_back(store: Store, standin: SlackStandIn) -> None:
    services = make_services(store, standin, two_people)
    nudger = Nudger(services)
    standin.reply("chat.postMessage", Reply(body={"ok": False, "error": "is_archived"}))
    failed = nudger.nudge_user(ADMIN, ACCOUNT, "erin")
    assert failed.outcome == "failed" and "is_archived" in failed.text
    assert store.actions(action="nudge")[0].outcome == "failed"
    assert nudger.nudge_user(ADMIN, ACCOUNT, "erin").outcome == "sent"  # no cooldown after a failure


def test_429s_past_the_bounded_wait_are_recorded_as_failed_never_dropped(store: Store, standin: SlackStandIn) -> None:
    services = make_services(store, standin, two_people)
    client = WebClient(
        token="xoxb-test-token",
        base_url=standin.api_url,
        retry_handlers=[BoundedRateLimitRetryHandler(max_total_wait=1.0)],
    )
    services.slack = PacedSlack.scaled(client, 1000)
    standin.rate_limit("chat.postMessage", retry_after=1, times=5)
    answer = Nudger(services).nudge_user(ADMIN, ACCOUNT, "erin")
    assert answer.outcome == "failed" and "ratelimited" in answer.text
    assert len(standin.calls("chat.postMessage")) == 2  # one try, one retry after Retry-After, then the bound
    (logged,) = store.actions(action="nudge")
    assert logged.outcome == "failed" and "ratelimited" in (logged.detail or "")


def test_a_sent_nudge_shows_in_the_digest_row(store: Store, standin: SlackStandIn) -> None:
    services = make_services(store, standin, two_people)
    digest = post_scheduled_digest(services, services.clock())
    Nudger(services).nudge_user(ADMIN, ACCOUNT, "erin")
    (update,) = standin.calls("chat.update")
    assert update.payload["ts"] == digest.message_ts
    text = dm_text(update)
    assert f"`erin` in acme (123456789012) · open since today · 1 nudge · _nudged by <@{ADMIN}> at 09:00_" in text


# -- Nudge all: the outbox ----------------------------------------------------------------------


def many_people(count: int):
    def audit():
        users = [violator(f"p{i:03d}", tags={"slack-user-id": f"U{i:08d}"}) for i in range(count)]
        users.append(violator("p000-second", tags={"slack-user-id": "U00000000"}))  # one person, two users
        return result(account(users))

    return audit


def delivered_channels(standin: SlackStandIn) -> Counter[str]:
    return Counter(r.payload["channel"] for r in standin.accepted("chat.postMessage"))


def test_nudge_all_waits_out_429s_from_slacks_limiter_and_sends_each_dm_once(
    store: Store, standin: SlackStandIn
) -> None:
    # Slack's limits emulated 50x faster than documented (fractional Retry-After): 1 post a second
    # per channel, and a workspace-wide cap the bot is not told of (30/min, x50), lower than the rate
    # the bot ramps up to; random extra 429s stand for a busy workspace: waited out, nothing lost.
    standin.emulate_rate_limit(
        "chat.postMessage", PER_CHANNEL.per_second * 50, burst=3, integer_retry_after=False, per_channel=True
    )
    standin.emulate_rate_limit("chat.postMessage", 30 / 60 * 50, burst=1, integer_retry_after=False)
    standin.emulate_rate_limit(
        "chat.update", DOCUMENTED_RATES["chat.update"].per_second * 50, burst=3, integer_retry_after=False
    )
    standin.inject_429s("chat.postMessage", 0.1, retry_after=0.1)
    services = make_services(store, standin, many_people(30), speed=50)
    nudger = Nudger(services)
    queued = nudger.enqueue_all(ADMIN)
    assert (queued.people, queued.queued, queued.users) == (30, 30, 31)
    results = NudgeWorker(nudger, worker_id="w1").run_until_idle()
    assert [r.outcome for r in results] == ["sent"] * 30
    channels = delivered_channels(standin)
    assert len(channels) == 30 and max(channels.values()) == 1  # 30 DMs, no duplicates
    assert standin.rate_limited.get("chat.postMessage", 0) > 0  # 429s really happened
    assert not store.pending_nudges()
    assert len([a for a in store.actions(limit=100, action="nudge") if a.outcome == "sent"]) == 30


def test_nudge_all_resumes_after_a_restart_without_losing_or_repeating_a_dm(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    services = make_services(store, standin, many_people(10), clock=clock)
    nudger = Nudger(services, lease_seconds=60)
    told = standin.response_url()
    nudger.enqueue_all(ADMIN, notify_url=told)
    for _ in range(3):  # the first process sends three...
        assert nudger.work_one("host:1").outcome == "sent"
    crashed_idle = store.claim_pending_nudge("host:1", clock(), lease_seconds=60)  # ...leases a 4th, dies
    in_flight = store.claim_pending_nudge("host:1", clock(), lease_seconds=60)  # ...and a 5th mid-send:
    store.claim_nudge_window(
        in_flight.slack_user_id, timedelta(hours=24), clock(), f"{in_flight.requested_by}#outbox-{in_flight.id}"
    )
    standin.clear()
    clock.advance(seconds=61)  # the leases expire; a new process starts its worker
    restarted = Nudger(services, lease_seconds=60)
    results = NudgeWorker(restarted, worker_id="host:2").run_until_idle()
    outcomes = {r.slack_user_id: r.outcome for r in results}
    assert outcomes[crashed_idle.slack_user_id] == "sent"  # nothing had happened: sent now
    assert outcomes[in_flight.slack_user_id] == "unknown"  # maybe delivered: delivery unknown, not repeated
    assert len(results) == 7 and list(outcomes.values()).count("sent") == 6
    resent = delivered_channels(standin)
    assert in_flight.slack_user_id not in resent and max(resent.values()) == 1
    (log,) = [n for n in store.actions(limit=100, action="nudge") if n.target == in_flight.slack_user_id]
    assert INTERRUPTED in (log.detail or "")
    assert not store.pending_nudges()
    (notice,) = standin.posts_to(told)  # the whole batch, counted from the store by the restarted process
    assert notice.payload["text"] == "Nudge all finished: 9 sent, 0 skipped (cooldown), 0 failed, 1 delivery unknown."


def test_a_finished_batch_whose_notifier_died_is_told_once_by_another_process_as_a_dm_after_30_minutes(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    services = make_services(store, standin, many_people(2), clock=clock)
    nudger = Nudger(services)
    told = standin.response_url()
    batch = nudger.enqueue_all(ADMIN, notify_url=told)
    while (item := store.claim_pending_nudge("host:1", clock())) is not None:  # host:1 sends every DM...
        nudger.deliver(item.slack_user_id, item.arns, item.requested_by, item=item)
    assert store.claim_batch_notice(batch.batch_id, "host:1", clock(), services.lease)  # ...claims the notice, dies
    clock.advance(minutes=31)
    assert NudgeWorker(Nudger(services), worker_id="host:2").run_until_idle() == []
    assert NudgeWorker(Nudger(services), worker_id="host:3").run_until_idle() == []
    assert standin.posts_to(told) == []  # Slack no longer honours the response_url: a DM instead
    # a DM: the user ID as channel
    notices = [r for r in standin.accepted("chat.postMessage") if r.payload["channel"] == ADMIN]
    assert [n.payload["text"] for n in notices] == ["Nudge all finished: 2 sent, 0 skipped (cooldown), 0 failed."]


def test_a_second_nudge_all_skips_everyone_in_cooldown(store: Store, standin: SlackStandIn) -> None:
    clock = Clock()
    services = make_services(store, standin, many_people(5), clock=clock)
    nudger = Nudger(services)
    told = standin.response_url()
    nudger.enqueue_all(ADMIN, notify_url=told)
    NudgeWorker(nudger).run_until_idle()
    clock.advance(minutes=5)
    nudger.enqueue_all(OTHER_ADMIN, notify_url=told)
    results = NudgeWorker(nudger).run_until_idle()
    assert [r.outcome for r in results] == ["skipped_cooldown"] * 5
    assert len(standin.accepted("chat.postMessage")) == 5
    assert [answer.payload["text"] for answer in standin.posts_to(told)] == [
        "Nudge all finished: 5 sent, 0 skipped (cooldown), 0 failed.",
        "Nudge all finished: 0 sent, 5 skipped (cooldown), 0 failed.",
    ]


def test_the_worker_threads_deliver_what_is_queued_and_show_it_in_the_digest(
    store: Store, standin: SlackStandIn
) -> None:
    services = make_services(store, standin, many_people(5))
    post_scheduled_digest(services, services.clock())
    nudger = Nudger(services)
    worker = NudgeWorker(nudger, poll_seconds=5, flush_seconds=0.2)
    worker.start()
    try:
        nudger.enqueue_all(ADMIN)  # wakes the worker: no waiting for the poll
        standin.wait_for(lambda: len(delivered_channels(standin)) == 5, 4)
        standin.wait_for(lambda: [u for u in standin.calls("chat.update") if dm_text(u).count("_nudged by") == 6], 4)
    finally:
        worker.stop()
    assert not store.pending_nudges() and max(delivered_channels(standin).values()) == 1


# -- Slack's answer lost or unreadable (issue 10, items 7 and 8) ----------------------------------


def dms_to(standin: SlackStandIn, channel: str) -> list:
    return [p for p in standin.calls("chat.postMessage") if p.payload.get("channel") == channel]


def test_a_dm_whose_answer_timed_out_is_delivery_unknown_and_never_sent_twice_in_the_window(
    store: Store, standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.slack.WEB_API_TIMEOUT_SECONDS", 1)
    clock = Clock()
    services = make_services(store, standin, two_people, clock=clock)
    digest = post_scheduled_digest(services, clock())
    standin.reply("chat.postMessage", Reply(body={"ok": True, "channel": "D0ERIN001", "ts": "1.5"}, delay=2.5))
    nudger = Nudger(services)
    lost = nudger.nudge_user(ADMIN, ACCOUNT, "erin")
    assert lost.outcome == "unknown" and "delivery unknown" in lost.text and "timed out" in lost.text
    assert len(dms_to(standin, "U0ERIN001")) == 1  # Slack has it: it was delivered
    (logged,) = store.actions(action="nudge")
    assert logged.outcome == "unknown" and "timed out" in (logged.detail or "")
    assert store.last_nudge("U0ERIN001", ("sent", "unknown")).outcome == "unknown"
    row = standin.wait_for(lambda: [u for u in standin.calls("chat.update") if u.payload["ts"] == digest.message_ts])
    assert f"_DM by <@{ADMIN}> at 09:00: delivery unknown_" in dm_text(row[-1])

    clock.advance(hours=1)
    again = nudger.nudge_user(OTHER_ADMIN, ACCOUNT, "erin")  # the window stays claimed
    assert again.outcome == "skipped_cooldown" and "delivery unknown" in again.text
    assert len(dms_to(standin, "U0ERIN001")) == 1  # at most one DM per window
    clock.advance(hours=24)
    assert nudger.nudge_user(OTHER_ADMIN, ACCOUNT, "erin").outcome == "sent"


@pytest.mark.parametrize("body", [b"{x", b"<html>502 Bad Gateway</html>", b'{"ok": true}'])
def test_an_unreadable_answer_to_the_post_is_recorded_never_a_silently_wedged_window(
    store: Store, standin: SlackStandIn, body: bytes
) -> None:
    clock = Clock()
    services = make_services(store, standin, two_people, clock=clock)
    standin.reply("chat.postMessage", Reply(body=body))
    nudger = Nudger(services)
    answer = nudger.nudge_user(ADMIN, ACCOUNT, "erin")
    assert answer.outcome == "unknown"  # Slack may have posted it: never a second DM in the window
    (logged,) = store.actions(action="nudge")
    assert logged.outcome == "unknown" and logged.detail
    clock.advance(hours=1)
    skipped = nudger.nudge_user(ADMIN, ACCOUNT, "erin")
    assert skipped.outcome == "skipped_cooldown" and "delivery unknown" in skipped.text  # it says why


def test_a_resumed_nudge_all_item_in_flight_counts_as_delivery_unknown_in_the_summary() -> None:
    assert nudge_batch_done_text(2, 1, 0, 1) == (
        "Nudge all finished: 2 sent, 1 skipped (cooldown), 0 failed, 1 delivery unknown."
    )


def test_a_dm_that_slack_may_have_posted_is_never_retried_into_a_second_dm(store: Store, standin: SlackStandIn) -> None:
    services = make_services(store, standin, two_people)
    standin.reply("chat.postMessage", Reply(500, {"ok": False, "error": "internal_error"}))  # posted, then failed?
    answer = Nudger(services).nudge_user(ADMIN, ACCOUNT, "erin")
    assert answer.outcome == "unknown"
    assert len(dms_to(standin, "U0ERIN001")) == 1  # no automatic retry of a post Slack may have made
    standin.rate_limit("chat.postMessage", retry_after=0, times=1)  # a 429 posted nothing: waited out, retried
    services.clock.advance(hours=25)  # type: ignore[attr-defined]
    assert Nudger(services).nudge_user(ADMIN, ACCOUNT, "erin").outcome == "sent"


def test_a_key_only_violator_is_dmed_cli_mfa_steps_not_a_console_request() -> None:
    (ci,) = targets_from_arns([arn("ci")], key_only={arn("ci")})
    (bob,) = targets_from_arns([arn("bob")], key_only={arn("ci")})
    assert (ci.console_access, bob.console_access) == (False, True)
    text = json.dumps([b.to_dict() for b in nudge_dm("U1", [ci], {}).blocks])
    assert "aws sts get-session-token" in text and "console sign-in" not in text
