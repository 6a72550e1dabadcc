"""Posting the digest: claim (channel, period), audit once, post every claimed channel, record, escalate.

Also the scheduler's takeover of claims a stopped process left (`resume_expired`) and the
scheduled and manual entry points.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.digest.escalate import escalate
from bot.digest.rows import row_states
from bot.digest.run import AuditRun, audit_run, error_text, leases_kept
from bot.digest.view import (
    SNAPSHOT_ACTION,
    account_routes,
    build_view,
    digest_channels,
    manual_period_key,
    scheduled_period_key,
    scoped_changes,
    scoped_result,
    view_to_json,
)
from bot.messages.digest import DigestView, digest_parts
from bot.slack import SLACK_ERRORS, slack_error

if TYPE_CHECKING:
    from bot.edges import Edges

logger = logging.getLogger(__name__)

ALREADY = "already posted or being posted by another process"
LOST = "this process lost its claim (its lease expired): another process posts it"


@dataclass(frozen=True)
class DigestOutcome:
    """What a digest attempt did in one channel: posted (and where), or why not.

    The outcome of DIGEST_CHANNEL also carries those of the account channels (`accounts`) and
    how many overdue violations were escalated by this run (`escalated`).
    """

    posted: bool
    period_key: str
    reason: str = ""
    message_ts: str | None = None
    messages: int = 0
    rows: int = 0
    failed_parts: int = 0
    retry: bool = False  # not posted, and the claim was given back: trying again later may post
    channel: str = ""
    accounts: tuple[DigestOutcome, ...] = ()
    escalated: int = 0

    @property
    def ok(self) -> bool:
        """Posted, whole, and so was every account channel this run claimed."""
        return self.posted and not self.failed_parts and all(a.posted and not a.failed_parts for a in self.accounts)

    @property
    def failed_channels(self) -> tuple[str, ...]:
        """Account channels this run claimed but could not post to (or only in part)."""
        return tuple(a.channel for a in self.accounts if not a.posted or a.failed_parts)


def channel_view(services: Edges, run: AuditRun, channel: str, now: datetime, scope: Sequence[str] = ()) -> DigestView:
    """The digest of one channel from the run: every account, or (account channel) those of `scope`."""
    previous = services.store.last_digest(channel)
    previous_at = previous.posted_at if previous else None
    changes = services.store.changes_since(previous_at) if previous_at else None
    result = run.result
    if scope:
        result, changes = scoped_result(result, scope), scoped_changes(changes, scope)
    return build_view(
        result,
        run.first_seen,
        now,
        services.config.digest_timezone,
        changes,
        previous_at,
        overdue=run.overdue,
        nudges=run.nudges,
        overdue_after_days=services.config.escalate_after_days,
        scope=scope,
    )


def post_digest(services: Edges, period_key: str, posted_by: str, requested_by: str) -> DigestOutcome:
    """Claim (channel, period_key) for DIGEST_CHANNEL and each account channel, audit once, post, escalate.

    Exactly one caller per (channel, period_key) ever posts, across processes; every channel this
    caller claimed gets its digest from the same audit. A channel whose top message could not be
    posted gives its claim back (`retry`), so a later run posts it (from that run's audit).
    Newly overdue violations then go to ESCALATION_CHANNEL, once per episode (`escalate`).
    """
    config = services.config
    config.require("DIGEST_CHANNEL")
    main = config.digest_channel or ""
    routes = account_routes(config)
    store = services.store
    now = services.clock()
    won = [
        channel
        for channel in (main, *routes)
        if store.claim_digest(channel, period_key, posted_by, now, services.lease)
    ]
    if not won:
        logger.info("digest %s for %s: already claimed by another run", period_key, main)
        return DigestOutcome(False, period_key, reason=ALREADY, channel=main)
    logger.info("digest %s claimed by %s for %s", period_key, posted_by, ", ".join(won))
    with leases_kept(services, posted_by):
        try:
            run = audit_run(services, now)
        except Exception as exc:
            for channel in won:
                store.release_digest_claim(channel, period_key, posted_by)
            error = error_text(exc)
            logger.exception("digest %s could not be composed: %s", period_key, error)
            services.record(requested_by, "digest", main, f"{period_key}: {error}", outcome="failed")
            return DigestOutcome(False, period_key, reason=error, retry=True, channel=main)
        outcomes = {
            channel: post_channel(
                services, run, channel, routes.get(channel, ()), period_key, posted_by, requested_by, now
            )
            for channel in won
        }
        escalated = escalate(services, run, posted_by, requested_by)
    top = outcomes.get(main) or DigestOutcome(False, period_key, reason=ALREADY, channel=main)
    accounts = tuple(outcomes[channel] for channel in won if channel != main)
    return dataclasses.replace(
        top, accounts=accounts, escalated=escalated, retry=top.retry or any(a.retry for a in accounts)
    )


def post_channel(
    services: Edges,
    run: AuditRun,
    channel: str,
    scope: Sequence[str],
    period_key: str,
    posted_by: str,
    requested_by: str,
    now: datetime,
) -> DigestOutcome:
    """Post the claimed digest of one channel (long lists continue in its thread) and record it."""
    store = services.store
    try:
        view = channel_view(services, run, channel, now, scope)
        states = row_states(services, view, now, [r.arn for r in view.rows])
        parts = digest_parts(view, states)
        if not store.holds_claim(channel, period_key, posted_by, services.clock()):
            logger.error(
                "digest %s for %s: this process lost its claim (lease expired): not posted", period_key, channel
            )
            return DigestOutcome(False, period_key, reason=LOST, channel=channel)
        _, top_ts = services.slack.post(channel, parts[0].text, parts[0].blocks)
    except Exception as exc:
        store.release_digest_claim(channel, period_key, posted_by)
        error = error_text(exc)
        logger.exception("digest %s could not be posted to %s: %s", period_key, channel, error)
        services.record(requested_by, "digest", channel, f"{period_key}: {error}", outcome="failed")
        return DigestOutcome(False, period_key, reason=error, retry=True, channel=channel)
    store.mark_digest_posted(
        channel, period_key, top_ts, services.clock(), thread_ts=top_ts if len(parts) > 1 else None
    )
    services.record(requested_by, SNAPSHOT_ACTION, f"{channel} {period_key}", view_to_json(view))
    store.set_digest_rows(channel, period_key, dict.fromkeys(parts[0].arns, top_ts))
    failed = 0
    for part in parts[1:]:
        try:
            _, ts = services.slack.post(channel, part.text, part.blocks, thread_ts=top_ts)
        except SLACK_ERRORS as exc:
            failed += 1
            logger.error(
                "digest %s: thread message %d in %s could not be posted (%s)",
                period_key,
                part.index + 1,
                channel,
                slack_error(exc),
            )
            continue
        store.set_digest_rows(channel, period_key, dict.fromkeys(part.arns, ts))
    detail = f"{period_key}: {len(view.rows)} rows in {len(parts)} messages"
    if failed:
        detail += f"; {failed} thread messages could NOT be posted"
    services.record(requested_by, "digest", channel, detail, outcome="failed" if failed else "ok")
    logger.info("digest %s posted to %s: %d rows, %d messages", period_key, channel, len(view.rows), len(parts))
    return DigestOutcome(
        True,
        period_key,
        message_ts=top_ts,
        messages=len(parts),
        rows=len(view.rows),
        failed_parts=failed,
        channel=channel,
    )


def resume_expired(services: Edges, fire_time: datetime | None) -> DigestOutcome | int | None:
    """Take over and post what a dead process claimed and never posted (the scheduler's periodic check).

    Looks (a read) for expired, unposted claims of the digest of `fire_time` (the latest due one
    today, None if none) in any digest channel, and of escalations of still open episodes. The
    digest's takeover is `post_digest` (which escalates too); escalations alone get a fresh audit
    and `escalate`. None when nothing was left behind.
    """
    from bot.store import SCHEDULER, process_identity

    config = services.config
    key = scheduled_period_key(fire_time, config.digest_timezone) if fire_time and config.digest_channel else None
    pairs = [(channel, key) for channel in digest_channels(config)] if key else []
    stale = services.store.expired_claims(services.clock(), pairs, config.escalation_channel)
    if not stale:
        return None
    holder = process_identity()
    logger.warning("%d claims left unposted by a stopped process: taking them over", len(stale))
    if key and any(claim.period_key == key for claim in stale):
        return post_digest(services, key, holder, SCHEDULER)
    with leases_kept(services, holder):
        return escalate(services, audit_run(services, services.clock()), holder, SCHEDULER)


def post_scheduled_digest(services: Edges, fire_time: datetime) -> DigestOutcome:
    """The scheduled digest standing for `fire_time` (its period: that date in DIGEST_TIMEZONE)."""
    from bot.store import SCHEDULER, process_identity

    key = scheduled_period_key(fire_time, services.config.digest_timezone)
    return post_digest(services, key, process_identity(), SCHEDULER)


def post_manual_digest(services: Edges, requested_by: str) -> DigestOutcome:
    """A digest now, under its own period key (never suppresses the scheduled one)."""
    from bot.store import process_identity

    return post_digest(services, manual_period_key(services.clock()), process_identity(), requested_by)
