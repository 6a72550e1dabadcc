"""The store against SQLite and PostgreSQL (see tests/fixtures_db.py for `store` and `store_url`)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot import models
from bot.store import ESCALATION_PREFIX, Store, StoreError, mask_url, migrate, normalize_url
from tests.fixtures_db import PG_ENV, pg_schema_url
from tests.store_rows import stored_scans

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"


def arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:user/{name}"


ALICE, BOB, CAROL = arn("alice"), arn("bob"), arn("carol")


# -- episodes ----------------------------------------------------------------------------------


def test_sync_episodes_opens_continues_and_closes(store: Store) -> None:
    first = store.sync_episodes(ACCOUNT, [(ALICE, "alice"), (BOB, "bob")], T0)
    assert [e.arn for e in first.opened] == [ALICE, BOB]
    assert first.continued == [] and first.closed == []

    later = T0 + timedelta(hours=6)
    second = store.sync_episodes(ACCOUNT, [(BOB, "bob"), (CAROL, "carol")], later)
    assert [e.arn for e in second.opened] == [CAROL]
    assert [(e.arn, e.first_seen, e.last_seen) for e in second.continued] == [(BOB, T0, later)]
    assert [(e.arn, e.fixed_at) for e in second.closed] == [(ALICE, later)]

    open_now = {e.arn: e for e in store.open_episodes()}
    assert set(open_now) == {BOB, CAROL}
    assert open_now[BOB].first_seen == T0 and open_now[BOB].fixed_at is None


def test_a_violation_that_became_exempt_is_closed_as_exempted_never_fixed(store: Store) -> None:
    store.sync_episodes(ACCOUNT, [(ALICE, "alice"), (BOB, "bob")], T0)
    later = T0 + timedelta(hours=1)
    changes = store.sync_episodes(ACCOUNT, [], later, exempted=[ALICE])
    assert {(e.arn, e.closed_as) for e in changes.closed} == {(ALICE, "exempted"), (BOB, None)}
    since = store.changes_since(T0)
    assert [e.arn for e in since.fixed] == [BOB] and [e.arn for e in since.exempted] == [ALICE]


def test_sync_episodes_only_touches_its_account(store: Store) -> None:
    dave = arn("dave", OTHER_ACCOUNT)
    store.sync_episodes(ACCOUNT, [(ALICE, "alice")], T0)
    store.sync_episodes(OTHER_ACCOUNT, [(dave, "dave")], T0)

    changes = store.sync_episodes(OTHER_ACCOUNT, [], T0 + timedelta(hours=1))

    assert [e.arn for e in changes.closed] == [dave]
    assert [e.arn for e in store.open_episodes()] == [ALICE]
    assert [e.arn for e in store.open_episodes(account_id=ACCOUNT)] == [ALICE]
    assert store.open_episodes(account_id=OTHER_ACCOUNT) == []


def test_failed_scan_leaves_episodes_open(store: Store) -> None:
    # The caller records a failed scan and does NOT call sync_episodes: nothing gets closed.
    store.sync_episodes(ACCOUNT, [(ALICE, "alice")], T0)
    store.record_scan(ACCOUNT, T0 + timedelta(hours=1), T0 + timedelta(hours=1), {}, error="AccessDenied")

    assert [e.arn for e in store.open_episodes(ACCOUNT)] == [ALICE]
    assert store.changes_since(T0).fixed == []


def test_close_episode_then_violating_again_opens_a_new_episode(store: Store) -> None:
    store.sync_episodes(ACCOUNT, [(ALICE, "alice")], T0)
    fixed_at = T0 + timedelta(minutes=5)

    closed = store.close_episode(ALICE, fixed_at)
    assert closed is not None and closed.fixed_at == fixed_at
    assert store.close_episode(ALICE, fixed_at) is None
    assert store.open_episodes() == []

    again = store.sync_episodes(ACCOUNT, [(ALICE, "alice")], T0 + timedelta(days=1))
    assert [e.first_seen for e in again.opened] == [T0 + timedelta(days=1)]
    assert again.opened[0].id != closed.id


def test_open_episodes_oldest_first(store: Store) -> None:
    store.sync_episodes(ACCOUNT, [(BOB, "bob")], T0)
    store.sync_episodes(ACCOUNT, [(BOB, "bob"), (ALICE, "alice")], T0 + timedelta(days=3))

    assert [(e.arn, e.first_seen) for e in store.open_episodes()] == [(BOB, T0), (ALICE, T0 + timedelta(days=3))]


def test_changes_since_lists_new_and_fixed_after_the_point(store: Store) -> None:
    store.sync_episodes(ACCOUNT, [(ALICE, "alice"), (BOB, "bob")], T0)
    digest_at = T0 + timedelta(days=1)
    store.sync_episodes(ACCOUNT, [(BOB, "bob"), (CAROL, "carol")], digest_at + timedelta(hours=1))

    changes = store.changes_since(digest_at)

    assert [e.arn for e in changes.new] == [CAROL]
    assert [e.arn for e in changes.fixed] == [ALICE]
    assert store.changes_since(digest_at + timedelta(hours=2)).new == []


# -- exemptions --------------------------------------------------------------------------------


def test_exemption_applies_until_it_expires(store: Store) -> None:
    until = T0 + timedelta(days=7)
    granted = store.grant_exemption(ALICE, ACCOUNT, "alice", "break-glass account", until, "UADMIN", T0)

    active = store.active_exemptions(T0 + timedelta(days=6))
    assert list(active) == [ALICE]
    assert (active[ALICE].reason, active[ALICE].until, active[ALICE].granted_by) == (
        "break-glass account",
        until,
        "UADMIN",
    )
    assert active[ALICE].granted_at == T0 and active[ALICE].id == granted.id
    assert active[ALICE].to_policy() == models.Exemption(reason="break-glass account", until=until, granted_by="UADMIN")
    assert store.active_exemptions(until) == {}


def test_revoke_exemption(store: Store) -> None:
    store.grant_exemption(ALICE, ACCOUNT, "alice", "travel", T0 + timedelta(days=7), "UADMIN", T0)

    assert store.revoke_exemption(ALICE, "UOTHER", T0 + timedelta(hours=1)) is True
    assert store.active_exemptions(T0 + timedelta(hours=2)) == {}
    assert store.revoke_exemption(ALICE, "UOTHER", T0 + timedelta(hours=3)) is False
    assert store.revoke_exemption(BOB, "UOTHER", T0) is False


def test_regrant_replaces_the_active_exemption(store: Store) -> None:
    store.grant_exemption(ALICE, ACCOUNT, "alice", "first", T0 + timedelta(days=7), "UADMIN", T0)
    store.grant_exemption(ALICE, ACCOUNT, "alice", "second", T0 + timedelta(days=2), "UADMIN", T0 + timedelta(hours=1))

    active = store.active_exemptions(T0 + timedelta(days=1))
    assert active[ALICE].reason == "second"
    assert store.active_exemptions(T0 + timedelta(days=3)) == {}  # the first one does not come back


def test_exemption_end_must_be_after_now(store: Store) -> None:
    with pytest.raises(ValueError, match="not after now"):
        store.grant_exemption(ALICE, ACCOUNT, "alice", "why", T0, "UADMIN", T0)
    with pytest.raises(ValueError):
        store.grant_exemption(ALICE, ACCOUNT, "alice", "why", T0 - timedelta(days=1), "UADMIN", T0)
    assert store.active_exemptions(T0 - timedelta(days=2)) == {}


# -- time --------------------------------------------------------------------------------------


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.sync_episodes(ACCOUNT, [(ALICE, "alice")], datetime(2026, 11, 2, 9, 0))


def test_times_come_back_as_utc_whatever_zone_went_in(store: Store) -> None:
    berlin_nine = datetime(2026, 11, 2, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    store.sync_episodes(ACCOUNT, [(ALICE, "alice")], berlin_nine)

    (episode,) = store.open_episodes()
    assert episode.first_seen == datetime(2026, 11, 2, 9, 0, 0, 123456, tzinfo=UTC)
    assert episode.first_seen.utcoffset() == timedelta(0)


# -- links -------------------------------------------------------------------------------------


def test_links(store: Store) -> None:
    store.set_link(ALICE, "U0ALICE", "UADMIN", T0)
    store.set_link(BOB, "U0WRONG", "UADMIN", T0)
    store.set_link(BOB, "U0ALICE", "UADMIN", T0 + timedelta(minutes=1))  # replaces

    assert store.links() == {ALICE: "U0ALICE", BOB: "U0ALICE"}


# -- nudges ------------------------------------------------------------------------------------


def test_nudge_counts_count_sent_dms_only(store: Store) -> None:
    store.record_nudge("U0ALICE", [ALICE, BOB], "UADMIN", T0, "sent", channel="D1", message_ts="1.1")
    store.record_nudge("U0ALICE", [ALICE], "scheduler", T0 + timedelta(days=1), "sent", channel="D1", message_ts="2.2")
    store.record_nudge("U0ALICE", [ALICE], "UADMIN", T0 + timedelta(days=1, hours=1), "skipped_cooldown")
    store.record_nudge("U0CAROL", [CAROL], "UADMIN", T0, "failed", error="user_not_found")

    assert store.nudge_counts([ALICE, BOB, CAROL, arn("nobody")]) == {ALICE: 2, BOB: 1, CAROL: 0, arn("nobody"): 0}
    assert store.nudge_counts([ALICE]) == {ALICE: 2}
    assert store.nudge_counts([]) == {}


def test_last_nudge_and_first_nudge_at(store: Store) -> None:
    store.record_nudge("U0ALICE", [ALICE], "UADMIN", T0, "sent", channel="D1", message_ts="1.1")
    store.record_nudge(
        "U0ALICE", [ALICE, BOB], "scheduler", T0 + timedelta(days=2), "sent", channel="D1", message_ts="2.2"
    )
    store.record_nudge("U0ALICE", [ALICE], "UADMIN", T0 + timedelta(days=3), "failed", error="ratelimited")

    last = store.last_nudge("U0ALICE")
    assert last is not None
    assert (last.at, last.sent_by, last.message_ts, last.arns) == (
        T0 + timedelta(days=2),
        "scheduler",
        "2.2",
        (ALICE, BOB),
    )
    assert store.last_nudge("U0NOBODY") is None
    assert store.first_nudge_at(ALICE) == T0
    assert store.first_nudge_at(ALICE, since=T0 + timedelta(days=1)) == T0 + timedelta(days=2)
    assert store.first_nudge_at(CAROL) is None


def test_first_nudges_of_open_episodes_in_one_query(store: Store) -> None:
    store.record_nudge("U0ALICE", [ALICE], "UADMIN", T0 - timedelta(days=9), "sent")  # an earlier episode's
    store.sync_episodes(ACCOUNT, [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")], T0)
    store.record_nudge("U0ALICE", [ALICE, BOB], "UADMIN", T0 + timedelta(days=1), "failed", error="x")
    store.record_nudge("U0ALICE", [ALICE, BOB], "UADMIN", T0 + timedelta(days=2), "sent")
    store.record_nudge("U0ALICE", [ALICE], "scheduler", T0 + timedelta(days=3), "sent")
    assert store.first_nudges() == {ALICE: T0 + timedelta(days=2), BOB: T0 + timedelta(days=2)}
    assert store.first_nudges()[ALICE] == store.first_nudge_at(ALICE, since=T0)
    store.sync_episodes(ACCOUNT, [(ALICE, "alice"), (CAROL, "carol")], T0 + timedelta(days=4))  # bob fixed
    assert store.first_nudges() == {ALICE: T0 + timedelta(days=2)}


def test_unknown_nudge_outcome_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="outcome"):
        store.record_nudge("U0ALICE", [ALICE], "UADMIN", T0, "delivered")


def test_nudge_window_one_winner_per_cooldown(store: Store) -> None:
    cooldown = timedelta(hours=24)
    first = store.claim_nudge_window("U0ALICE", cooldown, T0, "UADMIN")
    assert first.won

    again = store.claim_nudge_window("U0ALICE", cooldown, T0 + timedelta(hours=23), "USECOND")
    assert not again.won
    assert (again.claimed_at, again.claimed_by) == (T0, "UADMIN")

    assert store.claim_nudge_window("U0BOB", cooldown, T0 + timedelta(hours=1), "USECOND").won
    after = store.claim_nudge_window("U0ALICE", cooldown, T0 + timedelta(hours=24), "scheduler")
    assert after.won and after.claimed_by == "scheduler"


def test_release_nudge_window_after_a_failed_dm(store: Store) -> None:
    cooldown = timedelta(hours=24)
    claim = store.claim_nudge_window("U0ALICE", cooldown, T0, "UADMIN")
    lost = store.claim_nudge_window("U0ALICE", cooldown, T0 + timedelta(minutes=1), "UOTHER")

    assert store.release_nudge_window(lost) is False  # only the holder can release
    assert store.release_nudge_window(claim) is True
    assert store.release_nudge_window(claim) is False
    assert store.claim_nudge_window("U0ALICE", cooldown, T0 + timedelta(minutes=2), "UOTHER").won


def test_outbox_is_idempotent_per_batch_and_person(store: Store) -> None:
    items = [("U0ALICE", [ALICE]), ("U0BOB", [BOB, BOB]), ("U0ALICE", [CAROL])]
    assert store.enqueue_nudges("batch-1", items, "UADMIN", T0) == 2
    assert store.enqueue_nudges("batch-1", items, "UADMIN", T0 + timedelta(seconds=5)) == 0  # replayed click
    assert store.enqueue_nudges("batch-2", [("U0ALICE", [ALICE])], "UADMIN", T0) == 1

    pending = store.pending_nudges()
    assert [(i.batch_id, i.slack_user_id, i.arns) for i in pending] == [
        ("batch-1", "U0ALICE", (ALICE,)),
        ("batch-1", "U0BOB", (BOB,)),
        ("batch-2", "U0ALICE", (ALICE,)),
    ]
    assert len(store.pending_nudges(limit=1)) == 1


def test_outbox_lease_complete_and_reclaim_after_crash(store: Store) -> None:
    store.enqueue_nudges("batch-1", [("U0ALICE", [ALICE]), ("U0BOB", [BOB])], "UADMIN", T0)

    a = store.claim_pending_nudge("host:1", T0, lease_seconds=60)
    b = store.claim_pending_nudge("host:2", T0, lease_seconds=60)
    assert a is not None and b is not None
    assert (a.slack_user_id, a.lease_owner, a.attempts) == ("U0ALICE", "host:1", 1)
    assert b.slack_user_id == "U0BOB"
    assert store.claim_pending_nudge("host:3", T0 + timedelta(seconds=30)) is None  # both leased

    assert store.complete_nudge(a.id, "sent", None, T0 + timedelta(seconds=1), channel="D1", message_ts="1.1")
    assert not store.complete_nudge(a.id, "sent", None, T0 + timedelta(seconds=2))  # no second log row
    # host:2 crashed holding b: once the lease expires another worker takes it over
    retried = store.claim_pending_nudge("host:3", T0 + timedelta(seconds=61))
    assert retried is not None and (retried.id, retried.lease_owner, retried.attempts) == (b.id, "host:3", 2)
    assert store.complete_nudge(retried.id, "failed", "channel_not_found", T0 + timedelta(seconds=62))

    assert store.pending_nudges() == []
    assert store.nudge_counts([ALICE, BOB]) == {ALICE: 1, BOB: 0}
    last = store.last_nudge("U0ALICE")
    assert last is not None and (last.sent_by, last.message_ts, last.arns) == ("UADMIN", "1.1", (ALICE,))


# -- digests -----------------------------------------------------------------------------------


def test_digest_claim_once_per_channel_and_period(store: Store) -> None:
    assert store.claim_digest("C1", "2026-11-02", "host-a:1", T0) is True
    assert store.claim_digest("C1", "2026-11-02", "host-b:2", T0) is False
    assert store.claim_digest("C1", "2026-11-02", "host-a:1", T0) is False  # not even the winner twice
    assert store.claim_digest("C1", "2026-11-03", "host-b:2", T0) is True
    assert store.claim_digest("C2", "2026-11-02", "host-b:2", T0) is True


def test_release_digest_claim_only_by_claimant_and_before_posting(store: Store) -> None:
    store.claim_digest("C1", "2026-11-02", "host-a:1", T0)

    assert store.release_digest_claim("C1", "2026-11-02", "host-b:2") is False
    assert store.release_digest_claim("C1", "2026-11-02", "host-a:1") is True
    assert store.claim_digest("C1", "2026-11-02", "host-b:2", T0 + timedelta(minutes=1)) is True

    store.mark_digest_posted("C1", "2026-11-02", "100.1", T0 + timedelta(minutes=2))
    assert store.release_digest_claim("C1", "2026-11-02", "host-b:2") is False
    assert store.claim_digest("C1", "2026-11-02", "host-a:1", T0 + timedelta(minutes=3)) is False


def test_an_expired_unposted_claim_is_taken_over_once_and_a_live_or_posted_one_never(store: Store) -> None:
    lease = timedelta(seconds=30)
    assert store.claim_digest("C1", "2026-11-02", "host-a:1", T0, lease) is True
    assert store.holds_claim("C1", "2026-11-02", "host-a:1", T0 + timedelta(seconds=29))
    assert store.claim_digest("C1", "2026-11-02", "host-b:2", T0 + timedelta(seconds=29), lease) is False  # live
    assert store.expired_claims(T0 + timedelta(seconds=29), [("C1", "2026-11-02")]) == []

    later = T0 + timedelta(seconds=31)  # host-a died: its lease ran out, nothing was posted
    (stale,) = store.expired_claims(later, [("C1", "2026-11-02"), ("C1", "2026-11-03")])
    assert (stale.holder, stale.lease_until, stale.posted) == ("host-a:1", T0 + lease, False)
    assert not store.holds_claim("C1", "2026-11-02", "host-a:1", later)
    assert store.claim_digest("C1", "2026-11-02", "host-b:2", later, lease) is True  # the takeover
    assert store.claim_digest("C1", "2026-11-02", "host-c:3", later, lease) is False  # once
    assert store.release_digest_claim("C1", "2026-11-02", "host-a:1") is False  # no longer its claim
    assert store.holds_claim("C1", "2026-11-02", "host-b:2", later)

    store.mark_digest_posted("C1", "2026-11-02", "100.1", later)
    posted = store.last_digest("C1")
    assert posted is not None and (posted.posted_by, posted.holder, posted.lease_until) == ("host-b:2", None, None)
    assert store.claim_digest("C1", "2026-11-02", "host-c:3", later + timedelta(days=1), lease) is False
    assert store.expired_claims(later + timedelta(days=1), [("C1", "2026-11-02")]) == []
    store.mark_digest_posted("C1", "2026-11-02", "999.9", later)  # a late second mark keeps the first
    assert store.last_digest("C1").message_ts == "100.1"


def test_a_renewed_lease_is_not_taken_over(store: Store) -> None:
    lease = timedelta(seconds=30)
    store.claim_digest("C1", "2026-11-02", "host-a:1", T0, lease)
    store.claim_digest("C2", "2026-11-02", "host-b:2", T0, lease)
    assert store.renew_claims("host-a:1", T0 + timedelta(seconds=25), lease) == 1  # only its own
    later = T0 + timedelta(seconds=40)
    assert store.claim_digest("C1", "2026-11-02", "host-z:9", later, lease) is False
    assert store.claim_digest("C2", "2026-11-02", "host-z:9", later, lease) is True


def test_expired_escalation_claims_of_open_episodes_only(store: Store) -> None:
    opened = store.sync_episodes(ACCOUNT, [(ALICE, "alice"), (BOB, "bob")], T0).opened
    for episode in opened:
        store.claim_digest("CESC", f"{ESCALATION_PREFIX}{episode.id}:x", "host-a:1", T0, episode_id=episode.id)
    store.close_episode(ALICE, T0 + timedelta(minutes=1))
    stale = store.expired_claims(T0 + timedelta(hours=1), escalation_channel="CESC")
    assert [c.episode_id for c in stale] == [next(e.id for e in opened if e.arn == BOB)]
    assert store.expired_claims(T0 + timedelta(hours=1), escalation_channel="COTHER") == []


def test_a_batch_notice_is_due_once_its_last_dm_is_done_and_goes_once(store: Store) -> None:
    store.enqueue_nudges("b1", [("U0A", [ALICE]), ("U0B", [BOB])], "UADMIN", T0, response_url="https://r/1")
    assert store.finished_batches(T0) == [] and store.claim_batch_notice("b1", "host-a:1", T0) is None
    for outcome in ("sent", "skipped_cooldown"):
        item = store.claim_pending_nudge("w", T0)
        assert item is not None
        store.complete_nudge(item.id, outcome, None, T0)
    assert store.finished_batches(T0) == ["b1"]
    claimed = store.claim_batch_notice("b1", "host-a:1", T0, timedelta(seconds=30))
    assert claimed is not None
    batch, counts = claimed
    assert (batch.requested_by, batch.response_url, counts) == (
        "UADMIN",
        "https://r/1",
        {"sent": 1, "skipped_cooldown": 1},
    )
    assert store.finished_batches(T0 + timedelta(seconds=10)) == []  # held
    assert store.claim_batch_notice("b1", "host-b:2", T0 + timedelta(seconds=10)) is None
    assert store.claim_batch_notice("b1", "host-b:2", T0 + timedelta(seconds=31)) is not None  # host-a died
    store.finish_batch_notice("b1", T0 + timedelta(seconds=32))
    assert store.finished_batches(T0 + timedelta(days=1)) == []
    assert store.claim_batch_notice("b1", "host-c:3", T0 + timedelta(days=1)) is None


def test_last_digest_and_digest_rows(store: Store) -> None:
    assert store.last_digest("C1") is None
    store.claim_digest("C1", "2026-11-02", "host-a:1", T0)
    store.mark_digest_posted("C1", "2026-11-02", "100.1", T0 + timedelta(seconds=3), thread_ts="100.1")
    store.set_digest_rows("C1", "2026-11-02", {ALICE: "100.2", BOB: "100.2"})
    store.set_digest_rows("C1", "2026-11-02", {BOB: "100.3"})
    store.claim_digest("C1", "2026-11-03", "host-a:1", T0 + timedelta(days=1))  # claimed, never posted

    last = store.last_digest("C1")
    assert last is not None
    assert (last.period_key, last.message_ts, last.thread_ts, last.posted_by) == (
        "2026-11-02",
        "100.1",
        "100.1",
        "host-a:1",
    )
    assert last.posted_at == T0 + timedelta(seconds=3)
    assert store.last_digest("C2") is None
    # an escalation claimed and posted in the same channel later is not a digest
    store.claim_digest("C1", f"{ESCALATION_PREFIX}7:20261102T090000Z", "host-a:1", T0 + timedelta(days=2))
    store.mark_digest_posted("C1", f"{ESCALATION_PREFIX}7:20261102T090000Z", "300.1", T0 + timedelta(days=2))
    assert store.last_digest("C1") == last
    assert store.digest_rows("C1", "2026-11-02") == {ALICE: "100.2", BOB: "100.3"}
    assert store.digest_rows("C1", "2026-11-03") == {}
    with pytest.raises(LookupError):
        store.set_digest_rows("C9", "2026-11-02", {ALICE: "1.1"})
    with pytest.raises(LookupError):
        store.mark_digest_posted("C9", "2026-11-02", "1.1", T0)


# -- scans, audit trail, retention -------------------------------------------------------------


def test_scans(store: Store) -> None:
    store.record_scan(ACCOUNT, T0, T0 + timedelta(seconds=4), {"violation": 2, "compliant": 5, "grace": 1})
    store.record_scan(OTHER_ACCOUNT, T0 + timedelta(hours=1), None, {}, error="report throttled")

    latest, oldest = stored_scans(store)
    assert (latest.account_id, latest.error, latest.violation, latest.finished_at) == (
        OTHER_ACCOUNT,
        "report throttled",
        0,
        None,
    )
    assert (oldest.violation, oldest.compliant, oldest.no_console, oldest.exempt, oldest.grace) == (2, 5, 0, 0, 1)
    assert [s.account_id for s in stored_scans(store, account_id=ACCOUNT)] == [ACCOUNT]
    with pytest.raises(ValueError, match="unknown"):
        store.record_scan(ACCOUNT, T0, T0, {"violations": 1})


def test_latest_scan_of_each_account(store: Store) -> None:
    store.record_scan(ACCOUNT, T0, T0, {"violation": 2})
    store.record_scan(OTHER_ACCOUNT, T0, T0, {"violation": 1})
    store.record_scan(ACCOUNT, T0 + timedelta(hours=1), None, {}, error="throttled")

    latest = store.latest_scans()

    assert sorted(latest) == [ACCOUNT, OTHER_ACCOUNT]
    assert (latest[ACCOUNT].error, latest[ACCOUNT].started_at) == ("throttled", T0 + timedelta(hours=1))
    assert latest[OTHER_ACCOUNT].violation == 1


def test_snapshots_are_kept_one_per_account_and_replaced(store: Store) -> None:
    store.save_snapshot(ACCOUNT, T0, '{"first": 1}', T0 + timedelta(seconds=5))
    store.save_snapshot(OTHER_ACCOUNT, T0, '{"other": 1}', T0 + timedelta(seconds=6))
    store.save_snapshot(ACCOUNT, T0 + timedelta(hours=1), '{"second": 1}', T0 + timedelta(hours=1, seconds=5))

    assert store.snapshot_times() == {
        ACCOUNT: T0 + timedelta(hours=1, seconds=5),
        OTHER_ACCOUNT: T0 + timedelta(seconds=6),
    }
    mine, other = store.snapshots()
    assert (mine.account_id, mine.audited_at, mine.findings) == (ACCOUNT, T0 + timedelta(hours=1), '{"second": 1}')
    assert other.findings == '{"other": 1}'
    assert [s.account_id for s in store.snapshots([OTHER_ACCOUNT])] == [OTHER_ACCOUNT]
    big = "x" * 3_000_000  # a 10,000-user account is a few megabytes of JSON
    store.save_snapshot(ACCOUNT, T0, big, T0)
    assert store.snapshots([ACCOUNT])[0].findings == big


def test_recent_home_openers_latest_first_within_the_window(store: Store) -> None:
    store.note_home_opened("U0OLD", T0)
    store.note_home_opened("U0A", T0 + timedelta(minutes=50))
    store.note_home_opened("U0B", T0 + timedelta(minutes=55))
    store.note_home_opened("U0OLD", T0 + timedelta(minutes=10))  # a second visit moves the time

    since = T0 + timedelta(minutes=5)
    assert store.recent_home_openers(since, limit=10) == ["U0B", "U0A", "U0OLD"]
    assert store.recent_home_openers(since, limit=2) == ["U0B", "U0A"]
    assert store.recent_home_openers(T0 + timedelta(hours=1), limit=10) == []


def test_audit_trail(store: Store) -> None:
    store.record_action("UADMIN", "exempt", ALICE, "7d: break-glass", T0)
    store.record_action("UNOBODY", "nudge", "all", "not an admin", T0 + timedelta(minutes=1), outcome="refused")
    store.record_action("UADMIN", "link", BOB, "U0BOB", T0 + timedelta(minutes=2))

    assert [(a.action, a.outcome) for a in store.actions()] == [("link", "ok"), ("nudge", "refused"), ("exempt", "ok")]
    assert [a.target for a in store.actions(limit=1)] == [BOB]
    (exempt,) = store.actions(action="exempt")
    assert (exempt.actor, exempt.detail, exempt.at) == ("UADMIN", "7d: break-glass", T0)
    assert [a.action for a in store.actions(target=BOB)] == ["link"]
    assert store.actions(action="exempt", target=BOB) == []


def test_prune_deletes_old_history_and_keeps_current_state(store: Store) -> None:
    old, now = T0, T0 + timedelta(days=400)
    store.record_scan(ACCOUNT, old, old, {"violation": 1})
    store.record_scan(ACCOUNT, now, now, {"violation": 1})
    opened = store.sync_episodes(ACCOUNT, [(ALICE, "alice"), (BOB, "bob")], old).opened
    store.sync_episodes(ACCOUNT, [(BOB, "bob")], old + timedelta(days=1))  # alice fixed long ago; bob still open
    for episode in opened:  # both escalated long ago: bob's claim stays while his episode is open
        key = f"{ESCALATION_PREFIX}{episode.id}:x"
        store.claim_digest("C9", key, "host:1", old, episode_id=episode.id)
        store.mark_digest_posted("C9", key, "9.1", old)
    store.grant_exemption(CAROL, ACCOUNT, "carol", "expired", old + timedelta(days=2), "UADMIN", old)
    store.grant_exemption(BOB, ACCOUNT, "bob", "current", now + timedelta(days=2), "UADMIN", old)
    store.record_nudge("U0BOB", [BOB], "UADMIN", old, "sent")
    store.record_nudge("U0BOB", [BOB], "UADMIN", now, "sent")
    store.claim_digest("C1", "old", "host:1", old)
    store.mark_digest_posted("C1", "old", "1.1", old)
    store.set_digest_rows("C1", "old", {BOB: "1.1"})
    store.record_action("UADMIN", "exempt", BOB, None, old)
    store.record_action("UADMIN", "link", BOB, None, now)
    store.enqueue_nudges("b", [("U0BOB", [BOB]), ("U0CAROL", [CAROL])], "UADMIN", old)
    done = store.claim_pending_nudge("w", old)
    assert done is not None
    store.complete_nudge(done.id, "sent", None, old)
    store.enqueue_nudges("finished", [("U0DAN", [CAROL])], "UADMIN", old, response_url="https://hooks/x")
    item = next(i for i in store.pending_nudges() if i.batch_id == "finished")
    store.complete_nudge(item.id, "sent", None, old)
    assert store.claim_batch_notice("finished", "host:1", old) is not None
    store.finish_batch_notice("finished", old)
    store.set_link(BOB, "U0BOB", "UADMIN", old)
    store.save_snapshot(OTHER_ACCOUNT, old, "{}", old)  # an account no longer audited
    store.save_snapshot(ACCOUNT, now, "{}", now)
    store.note_home_opened("U0GONE", old)
    store.note_home_opened("U0BOB", now)
    for event_id, at in (("old-event", old), ("new-event", now)):
        store.claim_event(event_id, ACCOUNT, "CreateLoginProfile", "host:1", at, 60)
        store.finish_event(event_id, "opened", at)
        store.claim_alert(f"login:{event_id}", event_id, at)
    store.claim_event("unfinished", ACCOUNT, "CreateLoginProfile", "host:1", old, 60)

    counts = store.prune(30, now)

    assert counts == {
        "scans": 1,
        "episodes": 1,
        "exemptions": 1,
        "nudges": 3,
        "nudge_outbox": 2,
        "nudge_batches": 1,
        "digests": 2,
        "actions": 1,
        "account_snapshots": 1,
        "home_openers": 1,
        "event_claims": 1,
        "alert_claims": 1,
    }
    assert store.event_claim("old-event") is None and store.event_claim("new-event").handled
    assert store.event_claim("unfinished") is not None  # never handled: kept
    assert [s.started_at for s in stored_scans(store)] == [now]
    assert [e.arn for e in store.open_episodes()] == [BOB]
    assert list(store.active_exemptions(now)) == [BOB]
    assert store.nudge_counts([BOB]) == {BOB: 1}
    assert store.last_digest("C1") is None
    bob_episode = next(e for e in opened if e.arn == BOB)
    assert store.claim_digest("C9", f"{ESCALATION_PREFIX}{bob_episode.id}:x", "host:2", now) is False  # not twice
    assert [a.action for a in store.actions()] == ["link"]
    assert [i.slack_user_id for i in store.pending_nudges()] == ["U0CAROL"]
    bob_episode = next(e for e in opened if e.arn == BOB)
    assert store.claim_digest("C9", f"{ESCALATION_PREFIX}{bob_episode.id}:x", "host:2", now) is False  # not twice
    assert store.links() == {BOB: "U0BOB"}
    assert list(store.snapshot_times()) == [ACCOUNT]
    assert store.recent_home_openers(old - timedelta(days=1), 10) == ["U0BOB"]
    assert store.prune(30, now) == dict.fromkeys(counts, 0)
    with pytest.raises(ValueError):
        store.prune(0, now)


def test_data_survives_reopening(store_url: str) -> None:
    with Store.open(store_url) as first:
        first.set_link(ALICE, "U0ALICE", "UADMIN", T0)
    with Store.open(store_url) as second:
        assert second.links() == {ALICE: "U0ALICE"}


# -- URLs and errors ---------------------------------------------------------------------------


def test_heroku_style_urls_are_rewritten() -> None:
    assert normalize_url("postgres://app:pw@db.example:5432/mfa") == "postgresql+psycopg://app:pw@db.example:5432/mfa"
    assert normalize_url("postgresql://app@db/mfa") == "postgresql+psycopg://app@db/mfa"
    assert normalize_url("postgresql+psycopg://app@db/mfa") == "postgresql+psycopg://app@db/mfa"
    assert normalize_url(" sqlite:///mfa_bot.db ") == "sqlite:///mfa_bot.db"


def test_postgres_scheme_opens(pg_admin_engine: Engine) -> None:
    with pg_schema_url(pg_admin_engine, os.environ[PG_ENV]) as url:
        for prefix in ("postgres://", "postgresql://"):
            with Store.open(prefix + url.removeprefix("postgresql+psycopg://")) as opened:
                opened.set_link(ALICE, "U0ALICE", prefix, T0)
                assert opened.links() == {ALICE: "U0ALICE"}


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://app:s3cr%40t@db:5432/mfa", "postgresql+psycopg://app:***@db:5432/mfa"),
        ("postgres://app:hunter2@db/mfa", "postgres://app:***@db/mfa"),
        (
            "postgresql+psycopg://db/mfa?user=app&password=hunter2&sslmode=require",
            "postgresql+psycopg://db/mfa?user=app&password=***&sslmode=require",
        ),
        ("postgres://app:p@ss:w/rd@db/mfa", "postgres://app:***@db/mfa"),
        ("postgresql://app:hunter2@db:notaport/mfa", "postgresql://app:***@db:notaport/mfa"),
        ("postgresql://app@db/mfa", "postgresql://app@db/mfa"),
        ("sqlite:///mfa_bot.db", "sqlite:///mfa_bot.db"),
        ("sqlite:////var/lib/mfa@bot.db", "sqlite:////var/lib/mfa@bot.db"),
        ("app:hunter2@db/mfa", "app:***@db/mfa"),
        ("app:p@ss:w/rd@db:5432/mfa", "app:***@db:5432/mfa"),
        (
            "postgresql://db/mfa?sslpassword=hunter2&sslmode=require",
            "postgresql://db/mfa?sslpassword=***&sslmode=require",
        ),
        ("postgresql://db/mfa?sslmode=require&PASSWORD=p@ss:w", "postgresql://db/mfa?sslmode=require&PASSWORD=***"),
        ("postgresql://app:one@db/mfa?password=two", "postgresql://app:***@db/mfa?password=***"),
        ("host=db user=app password=hunter2 port=5432", "host=db user=app password=*** port=5432"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_corrupt_sqlite_file_is_a_one_line_store_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database\n" * 200)

    with pytest.raises(StoreError) as caught:
        Store.open(f"sqlite:///{path}")

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot open DATABASE_URL sqlite:///{path}: ")
    assert "not a database" in message


def test_unreachable_postgresql_is_a_store_error_with_password_masked() -> None:
    url = "postgresql://mfa_app:Sup3r-Secret@127.0.0.1:1/mfa"

    with pytest.raises(StoreError) as caught:
        Store.open(url)

    message = str(caught.value)
    assert "\n" not in message
    assert "Sup3r-Secret" not in message
    assert message.startswith("cannot open DATABASE_URL postgresql+psycopg://mfa_app:***@127.0.0.1:1/mfa: ")
    assert "refused" in message.lower()


def test_migrate_reports_unreachable_database_as_store_error() -> None:
    with pytest.raises(StoreError, match=r"^cannot migrate DATABASE_URL postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/x"):
        migrate("postgres://u:pw@127.0.0.1:1/x")


@pytest.mark.parametrize("url", ["mysql://app:hunter2@db/mfa", "no-scheme-at-all"])
def test_unsupported_url_is_a_store_error(url: str) -> None:
    with pytest.raises(StoreError, match="DATABASE_URL") as caught:
        Store.open(url)
    assert "hunter2" not in str(caught.value)


def test_sqlite_connections_use_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    opened = Store.open(f"sqlite:///{tmp_path / 'wal.db'}")
    with opened, opened.engine.connect() as first, opened.engine.connect() as second:  # two DBAPI connections
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_one_store_is_shared_by_threads(store: Store) -> None:
    def work(n: int) -> bool:
        store.record_action(f"U{n}", "nudge", ALICE, None, T0 + timedelta(seconds=n))
        return store.claim_digest("C1", "2026-11-02", f"thread-{n}", T0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(work, range(16)))

    assert won.count(True) == 1
    assert len(store.actions(limit=100)) == 16


def test_in_memory_sqlite_for_quick_tests() -> None:
    with Store.open("sqlite://") as memory:
        memory.set_link(ALICE, "U0ALICE", "UADMIN", T0)
        assert memory.links() == {ALICE: "U0ALICE"}


def test_store_error_scrubs_query_passwords_from_the_driver_message() -> None:
    from bot.store.db import store_error

    url = "postgresql+psycopg://db/mfa?sslpassword=hunter2&password=s3cret"
    error = store_error(url, RuntimeError("connection failed: bad sslpassword hunter2 (password s3cret)"))
    assert "hunter2" not in str(error) and "s3cret" not in str(error)


def test_a_new_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    old_umask = os.umask(0o022)  # a usual umask would leave it world-readable
    try:
        with Store.open(f"sqlite:///{path}") as store:
            store.record_action("U1", "test", None, None, datetime.now(UTC))
    finally:
        os.umask(old_umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir() if p.name.startswith("bot.db")}
    assert modes["bot.db"] == 0o600 and set(modes.values()) == {0o600}, modes
