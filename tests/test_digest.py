"""The digest: what it says (pure, no fakes), and how it is posted once, in a thread when long, and kept up to date."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.buttons import nudge_all_value, user_value
from bot.digest import (
    DigestOutcome,
    build_view,
    load_view,
    manual_period_key,
    post_digest,
    post_manual_digest,
    post_scheduled_digest,
    refresh_rows,
    resume_expired,
    scheduled_period_key,
    view_from_json,
    view_to_json,
)
from bot.messages.digest import DigestAccount, DigestRow, DigestView, RowState, digest_parts
from bot.models import RootStatus
from bot.store import Store, process_identity
from tests.slack_standin import MEMBERS, Reply, SlackStandIn, person
from tests.workflow_helpers import (
    ACCOUNT,
    CHANNEL,
    NOW,
    OTHER_ACCOUNT,
    Clock,
    account,
    arn,
    make_services,
    result,
    violator,
)


def blocks_text(blocks: list) -> str:
    return json.dumps([b if isinstance(b, dict) else b.to_dict() for b in blocks], ensure_ascii=False)


def payload_text(record) -> str:  # a recorded chat.postMessage / chat.update
    payload = record.payload
    return json.dumps(payload.get("blocks", ""), ensure_ascii=False) + str(payload.get("text", ""))


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(members=MEMBERS) as running:
        yield running


# -- what it says (pure) ------------------------------------------------------------------------


def test_view_lists_each_violator_with_person_account_days_and_sorts_longest_open_first() -> None:
    bob = dataclasses.replace(violator("bob", since_days=2), slack_user_id="U0BOB0001")
    found = result(account([bob, violator("ivan", since_days=9)]))
    first_seen = {arn("ivan"): NOW - timedelta(days=5)}
    view = build_view(found, first_seen, NOW, "UTC")
    assert [(r.user_name, r.days_open, r.slack_user_id) for r in view.rows] == [
        ("ivan", 5, None),  # from the episode's first_seen, not console_since
        ("bob", 2, "U0BOB0001"),  # no episode: from the console password's age
    ]
    assert view.rows[0].account == f"acme ({ACCOUNT})"
    assert view.new_since is None and view.title == "MFA digest · Fri 27 Nov 2026"
    text = blocks_text(digest_parts(view)[0].blocks)
    assert "_no Slack person found_ · `ivan` in acme (123456789012) · open 5 days" in text
    assert "<@U0BOB0001> · `bob` in acme (123456789012) · open 2 days · not nudged yet" in text


def test_nudge_buttons_only_for_rows_with_a_person_and_one_nudge_all() -> None:
    rows = (
        DigestRow(arn("bob"), ACCOUNT, "acme", "bob", "U0BOB0001", 1),
        DigestRow(arn("ivan"), ACCOUNT, "acme", "ivan", None, 1),
    )
    view = DigestView("MFA digest", (DigestAccount(ACCOUNT, "acme", None, "MFA on", False, 2),), rows, 0, 0)
    blocks = [b.to_dict() for b in digest_parts(view)[0].blocks]
    buttons = [b["accessory"] for b in blocks if b.get("accessory")]
    value = user_value(ACCOUNT, "bob")
    assert buttons == [{"type": "button", "action_id": "nudge", "value": value, "text": buttons[0]["text"]}]
    actions = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(a["action_id"], a["value"]) for a in actions] == [("nudge_all", nudge_all_value())]


def test_a_failed_account_is_an_error_never_clean_and_root_mfa_is_shown_per_account() -> None:
    found = result(
        account([], OTHER_ACCOUNT, alias=None, error="AccessDenied: sts:AssumeRole was denied"),
        account([], alias="acme", root=RootStatus(mfa_enabled=False)),
    )
    view = build_view(found, {}, NOW, "UTC")
    assert not view.all_clear
    (part,) = digest_parts(view)
    text = blocks_text(part.blocks)
    assert "could NOT be audited" in text and "AccessDenied: sts:AssumeRole was denied" in text
    assert "unknown*, not clean" in text
    assert "All clear" not in text and "all clear" not in part.text
    assert ":warning: *acme (123456789012): root MFA OFF*" in text
    assert "could NOT be audited" in part.text


def test_nobody_violating_is_a_short_all_clear_not_silence() -> None:
    view = build_view(result(account([])), {}, NOW, "UTC")
    (part,) = digest_parts(view)
    assert view.all_clear and part.text.endswith("all clear")
    assert "*All clear*" in blocks_text(part.blocks) and not part.arns


def test_a_long_digest_continues_in_the_thread_within_slack_limits_and_nothing_is_cut() -> None:
    rows = tuple(
        DigestRow(arn(f"user-{i:04d}"), ACCOUNT, "acme (123456789012)", f"user-{i:04d}", f"U{i:08d}", i % 30)
        for i in range(1000)
    )
    accounts = tuple(DigestAccount(f"{i:012d}", f"account-{i}", None, "MFA on (virtual)", False, 0) for i in range(300))
    view = DigestView("MFA digest", accounts, rows, 3, 1)
    parts = digest_parts(view, {rows[5].arn: RowState(nudges=2, nudged_by="U0ADMIN01", nudged_at="09:14")})
    assert len(parts) > 20
    listed = [a for p in parts for a in p.arns]
    assert sorted(listed) == sorted(r.arn for r in rows)  # every row once, none cut
    for part in parts:
        dicts = [b.to_dict() for b in part.blocks]
        assert len(dicts) <= 50
        for block in dicts:
            for text in [block.get("text", {}).get("text", "")] + [f["text"] for f in block.get("fields", [])]:
                assert len(text) <= 3000
            assert len(block.get("accessory", {}).get("value", "")) <= 2000
    all_text = "".join(blocks_text(p.blocks) for p in parts)
    assert all(f"account-{i}: root MFA on (virtual)" in all_text for i in range(300))  # all accounts' root
    assert "Continued in the thread" in blocks_text(parts[0].blocks)
    assert "_nudged by <@U0ADMIN01> at 09:14_" in all_text and "2 nudges" in all_text


def test_row_states_change_text_never_layout() -> None:
    rows = tuple(DigestRow(arn(f"u{i}"), ACCOUNT, "acme", f"u{i}", "U1", 1) for i in range(120))
    view = DigestView("MFA digest", (), rows, 0, 0)
    plain = digest_parts(view)
    states = {r.arn: RowState(nudges=9, nudged_by="U2", nudged_at="10:00", fixed_at="11:00") for r in rows}
    fixed = digest_parts(view, states)
    assert [p.arns for p in plain] == [p.arns for p in fixed]
    text = blocks_text(fixed[1].blocks)
    assert ":white_check_mark: *fixed* at 11:00" in text and '"action_id": "nudge"' not in text


def test_view_survives_json_and_period_keys() -> None:
    view = build_view(result(account([violator("bob")])), {}, NOW, "Europe/Berlin")
    assert view_from_json(view_to_json(view)) == view
    late = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    assert scheduled_period_key(late, "UTC") == "2026-11-27"
    assert scheduled_period_key(late, "Europe/Berlin") == "2026-11-28"  # the date where the digest is due
    assert manual_period_key(late) == "manual-20261127T233000Z"


# -- posting (store + stand-in) -----------------------------------------------------------------


def demo_result():
    return result(
        account(
            [violator("bob", tags={"slack-user-id": "U0BOB0001"}), violator("erin", tags={"email": "erin@example.com"})]
        ),
    )


def test_posted_once_per_period_with_rows_recorded_and_kept(store: Store, standin: SlackStandIn) -> None:
    services = make_services(store, standin, demo_result)
    first = post_scheduled_digest(services, NOW)
    again = post_scheduled_digest(services, NOW + timedelta(minutes=30))  # same day: same period
    assert first.ok and first.period_key == "2026-11-27" and first.rows == 2
    assert not again.posted and "already" in again.reason
    (post,) = standin.calls("chat.postMessage")
    assert post.payload["channel"] == CHANNEL
    text = payload_text(post)
    assert "<@U0BOB0001>" in text and "<@U0ERIN001>" in text  # slack-user-id tag, email tag
    assert store.digest_rows(CHANNEL, "2026-11-27") == dict.fromkeys([arn("bob"), arn("erin")], first.message_ts)
    assert load_view(store, CHANNEL, "2026-11-27") is not None
    assert store.last_digest(CHANNEL).message_ts == first.message_ts


def test_a_manual_digest_does_not_suppress_the_scheduled_one(store: Store, standin: SlackStandIn) -> None:
    clock = Clock()
    services = make_services(store, standin, demo_result, clock=clock)
    manual = post_manual_digest(services, "U0ADMIN01")
    clock.advance(minutes=1)
    scheduled = post_scheduled_digest(services, NOW)
    assert manual.ok and scheduled.ok and manual.period_key != scheduled.period_key
    assert len(standin.calls("chat.postMessage")) == 2
    top = standin.calls("chat.postMessage")[1]
    assert "*New since the last digest:* 0" in payload_text(top)  # counts against the manual one


def test_a_failed_post_releases_the_claim_and_is_recorded(store: Store, standin: SlackStandIn) -> None:
    services = make_services(store, standin, demo_result)
    standin.reply("chat.postMessage", Reply(body={"ok": False, "error": "not_in_channel"}))
    failed = post_scheduled_digest(services, NOW)
    assert not failed.posted and failed.reason == "not_in_channel"
    assert store.actions(action="digest")[0].outcome == "failed"
    retried = post_scheduled_digest(services, NOW)
    assert retried.ok  # the claim was given back


def test_long_digest_rows_continue_in_thread_and_a_fixed_row_is_updated_in_place(
    store: Store, standin: SlackStandIn
) -> None:
    users = [violator(f"user{i:03d}", tags={"slack-user-id": f"U{i:08d}"}) for i in range(120)]
    clock = Clock()
    services = make_services(store, standin, lambda: result(account(users)), clock=clock)
    outcome = post_digest(services, "2026-11-27", "test", "scheduler")
    posts = standin.calls("chat.postMessage")
    assert outcome.ok and outcome.messages == len(posts) == 3
    assert all(p.payload.get("thread_ts") == outcome.message_ts for p in posts[1:])
    rows = store.digest_rows(CHANNEL, "2026-11-27")
    assert len(rows) == 120 and len(set(rows.values())) == 3
    late = users[-1].arn
    clock.advance(minutes=62)
    store.close_episode(late, clock())
    assert refresh_rows(services, [late]) == 1
    (update,) = standin.calls("chat.update")
    assert update.payload["ts"] == rows[late] != outcome.message_ts
    assert ":white_check_mark: *fixed* at 10:02 · <@U00000119> · `user119`" in payload_text(update)
    assert (
        payload_text(update).count('"action_id": "nudge"') == len([a for a, ts in rows.items() if ts == rows[late]]) - 1
    )


def test_one_digest_for_5000_members_and_1000_violators_reads_users_list_5_times_no_lookups(
    store: Store,
) -> None:
    members = [person(f"U{i:08d}", f"person{i}@example.com") for i in range(4998)]
    members += [person("U9DELETED", "gone@example.com", deleted=True), person("U9BOT0001", "bot@x.com", is_bot=True)]
    assert len(members) == 5000
    users = [violator(f"person{i}", tags={"email": f"person{i}@example.com"}) for i in range(0, 2000, 2)]
    with SlackStandIn(members=members) as standin:
        services = make_services(store, standin, lambda: result(account(users)))
        outcome = post_scheduled_digest(services, NOW)
        assert outcome.ok and outcome.rows == 1000
        assert len(standin.calls("users.list")) <= 5
        assert standin.calls("users.list")[0].payload.get("limit") == "1000"
        assert not standin.calls("users.lookupByEmail")
        text = "".join(payload_text(p) for p in standin.calls("chat.postMessage"))
        assert all(f"<@U{i:08d}>" in text for i in range(0, 2000, 2))  # every violator found, none cut
        assert len(store.digest_rows(CHANNEL, outcome.period_key)) == 1000


def test_a_claim_left_by_a_dead_process_is_taken_over_after_its_lease_and_posted_once(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    services = make_services(store, standin, demo_result, clock=clock, claim_lease_seconds=60)
    key = scheduled_period_key(NOW, "UTC")
    assert store.claim_digest(CHANNEL, key, "dead-host:1", clock(), services.lease)  # then that process died
    assert resume_expired(services, NOW) is None  # its lease is still live: left alone
    assert not post_scheduled_digest(services, NOW).posted
    clock.advance(seconds=61)
    taken = resume_expired(services, NOW)
    assert isinstance(taken, DigestOutcome) and taken.ok and taken.period_key == key
    assert resume_expired(services, NOW) is None and len(standin.calls("chat.postMessage")) == 1
    assert store.last_digest(CHANNEL).posted_by == process_identity()


def test_an_account_channel_digest_left_by_a_dead_process_is_taken_over_alone(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    routed = "C0ACCOUNT"
    services = make_services(
        store, standin, demo_result, clock=clock, claim_lease_seconds=60, account_channels={ACCOUNT: routed}
    )
    key = scheduled_period_key(NOW, "UTC")
    assert store.claim_digest(routed, key, "dead-host:1", clock(), services.lease)  # then that process died
    first = post_scheduled_digest(services, NOW)
    assert first.ok and first.accounts == ()  # DIGEST_CHANNEL posted; the account channel is held by the dead
    clock.advance(seconds=61)
    taken = resume_expired(services, NOW)
    assert isinstance(taken, DigestOutcome) and not taken.posted  # DIGEST_CHANNEL: already posted
    (account,) = taken.accounts
    assert account.posted and account.channel == routed
    assert resume_expired(services, NOW) is None
    channels = [r.payload["channel"] for r in standin.calls("chat.postMessage")]
    assert sorted(channels) == sorted([CHANNEL, routed])  # each exactly once


def test_a_violation_that_becomes_exempt_by_tag_is_exempted_in_rows_and_history_and_counted_apart(
    store: Store, standin: SlackStandIn
) -> None:
    clock = Clock()
    bob = violator("bob", tags={"slack-user-id": "U0BOB0001"})
    erin = violator("erin", tags={"email": "erin@example.com"})
    now = {"bob": bob}
    services = make_services(store, standin, lambda: result(account([now["bob"], erin])), clock=clock)
    assert post_digest(services, "2026-11-27", "test", "scheduler").ok
    now["bob"] = dataclasses.replace(  # someone with iam:TagUser set mfa-exempt on bob
        bob,
        status="exempt",
        reason="exempt by tag, set outside Slack (mfa-exempt: vendor)",
        exempt_by_tag=True,
        tags={**bob.tags, "mfa-exempt": "vendor"},
    )
    clock.advance(minutes=30)
    services.fresh_audit()  # recorded: bob's episode closes as exempted, not fixed
    assert store.changes_since(NOW).fixed == [] and [e.arn for e in store.changes_since(NOW).exempted] == [bob.arn]
    trail = store.actions(action="tag_exemption")
    assert [(a.actor, a.target, a.detail) for a in trail] == [
        ("audit", bob.arn, "exempt by tag, set outside Slack (mfa-exempt: vendor)")
    ]
    services.fresh_audit()  # seen again: written the first time only
    assert len(store.actions(action="tag_exemption")) == 1
    assert refresh_rows(services, [bob.arn]) == 1
    (update,) = standin.calls("chat.update")
    row = payload_text(update)
    assert ":large_yellow_circle: *exempted* at 09:30 (not fixed) · <@U0BOB0001> · `bob`" in row
    assert "*fixed*" not in row

    clock.advance(days=1)
    standin.clear()
    assert post_digest(services, "2026-11-28", "test", "scheduler").ok
    (top,) = standin.calls("chat.postMessage")
    header = payload_text(top)
    assert "*Fixed since the last digest:* 0" in header
    assert "*Exempt:* *1 by tag, set outside Slack*" in header


def test_the_digest_header_shows_root_without_credentials_neutrally_and_how_fresh_each_account_is() -> None:
    no_credentials = RootStatus(mfa_enabled=False, password_present=False, access_keys_present=False)
    fresh = dataclasses.replace(account([], alias="acme", root=no_credentials), fresh_through=NOW)
    stale = dataclasses.replace(
        account([], OTHER_ACCOUNT, alias="dev", root=RootStatus(mfa_enabled=False, password_present=True)),
        cloudtrail_error="AccessDenied",
    )
    view = build_view(result(fresh, stale), {}, NOW, "UTC")
    (part,) = digest_parts(view)
    text = blocks_text(part.blocks)
    assert f"• acme ({ACCOUNT}): root no credentials (no password, no access keys): cannot sign in" in text
    assert f"fresh through {NOW:%H:%M} UTC (report of {NOW:%H:%M} UTC + CloudTrail)" in text
    assert f":warning: *dev ({OTHER_ACCOUNT}): root MFA OFF*" in text
    assert f"report of {NOW:%H:%M} UTC; CloudTrail not readable (AccessDenied)" in text
    assert text.count(":warning:") == 1
    assert view_from_json(view_to_json(view)) == view


def test_exempt_and_grace_are_accepted_risk_in_the_digest_not_all_clear() -> None:
    exempt = violator("heidi")
    exempt = dataclasses.replace(exempt, status="exempt", reason="tag mfa-exempt: vault")
    view = build_view(result(account([exempt])), {}, NOW, "UTC")
    (part,) = digest_parts(view)
    text = blocks_text(part.blocks)
    assert view.accepted_risk == 1
    assert "*All clear*" not in text and "No violation" in text and "exempt, so without MFA" in text
    grace = dataclasses.replace(violator("gina"), status="grace", reason="new console password")
    text = blocks_text(digest_parts(build_view(result(account([grace])), {}, NOW, "UTC"))[0].blocks)
    assert "*All clear*" not in text and "exempt or in grace: accepted risk, not compliant" in text
