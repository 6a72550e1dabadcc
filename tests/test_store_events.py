"""The store's real-time event claims: each CloudTrail eventID handled once, alerts once per key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from bot.store import Store

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ACCOUNT = "111122223333"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


def claim(store: Store, owner: str, at: datetime = T0, event_id: str = "ev-1"):
    return store.claim_event(event_id, ACCOUNT, "CreateLoginProfile", owner, at, lease_seconds=60)


def test_an_event_is_claimed_by_one_process_and_never_again_once_handled(store: Store) -> None:
    first = claim(store, "host:1")
    assert first.won and not first.handled and first.attempts == 1 and first.steps == ()
    other = claim(store, "host:2", T0 + timedelta(seconds=5))
    assert not other.won and not other.handled  # leased: leave the message, it comes back if host:1 fails

    store.event_step_done("ev-1", "opened")
    store.event_step_done("ev-1", "opened")
    store.event_step_done("ev-1", "dm")
    store.finish_event("ev-1", "opened", T0 + timedelta(seconds=1))

    for owner, at in (("host:1", T0), ("host:2", T0 + timedelta(days=3))):
        again = claim(store, owner, at)
        assert (again.won, again.handled, again.outcome) == (False, True, "opened")
    assert store.event_claim("ev-1").steps == ("opened", "dm")


def test_a_failed_attempt_is_retried_with_its_steps_by_the_same_or_after_the_lease_another(store: Store) -> None:
    assert claim(store, "host:1").won
    store.event_step_done("ev-1", "opened")
    assert not claim(store, "host:1", T0 + timedelta(seconds=5)).won  # a duplicate in the same process
    assert store.release_event("ev-1", "host:1", T0 + timedelta(seconds=9))  # the attempt failed
    retry = claim(store, "host:1", T0 + timedelta(seconds=10))  # the message came back
    assert retry.won and retry.attempts == 2 and retry.steps == ("opened",)
    assert not claim(store, "host:2", T0 + timedelta(seconds=20)).won
    taken = claim(store, "host:2", T0 + timedelta(seconds=131))  # host:1 died: its lease ran out
    assert taken.won and taken.attempts == 3 and taken.steps == ("opened",)
    assert store.release_event("ev-1", "host:2", T0 + timedelta(seconds=132))
    assert claim(store, "host:3", T0 + timedelta(seconds=133)).won  # released: anyone may retry at once


def test_many_processes_claiming_one_event_at_once_one_wins(store: Store) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: claim(store, f"host:{i}").won, range(16)))
    assert results.count(True) == 1


def test_an_alert_key_is_claimed_once_and_an_event_opens_an_episode_once(store: Store) -> None:
    assert store.claim_alert("login:1:2026-12-02", "ev-1", T0)
    assert not store.claim_alert("login:1:2026-12-02", "ev-2", T0)
    assert store.claim_alert("login:1:2026-12-03", "ev-3", T0 + timedelta(days=1))

    opened = store.open_episode(BOB, ACCOUNT, "bob", T0)
    assert opened is not None and opened.first_seen == T0 and opened.fixed_at is None
    assert store.open_episode(BOB, ACCOUNT, "bob", T0 + timedelta(seconds=1)) is None
    assert store.open_episode_of(ACCOUNT, "bob") == opened and store.open_episode_of(ACCOUNT, "alice") is None
    store.close_episode(BOB, T0 + timedelta(hours=1))
    assert store.open_episode_of(ACCOUNT, "bob") is None
    reopened = store.open_episode(BOB, ACCOUNT, "bob", T0 + timedelta(hours=2))
    assert reopened is not None and reopened.id != opened.id
