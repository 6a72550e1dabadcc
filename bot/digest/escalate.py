"""Escalation: each overdue violation posted to ESCALATION_CHANNEL once per episode, claimed first."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from bot.digest.run import AuditRun, error_text
from bot.digest.view import overdue_rows
from bot.escalation import escalation_key
from bot.messages.digest import escalation_parts

if TYPE_CHECKING:
    from bot.edges import Edges

logger = logging.getLogger(__name__)


def escalate(services: Edges, run: AuditRun, posted_by: str, requested_by: str) -> int:
    """Post each overdue violation of the run to ESCALATION_CHANNEL once per episode; returns how many went.

    Each episode is claimed first (`Store.claim_digest(ESCALATION_CHANNEL, escalation_key(...))`,
    decided by the database), so across runs and processes exactly one post names it. A message
    that cannot be posted gives its claims back: the next digest tries again. Each escalation is
    in the audit trail (action `escalated`, target the ARN).
    """
    channel = services.config.escalation_channel
    if not channel:
        return 0
    store, now = services.store, services.clock()
    items = {o.arn: o for o in run.overdue}
    _drop_stale_escalations(services, channel, {o.episode_id for o in run.overdue}, posted_by, now)
    if not items:
        return 0
    won = {
        arn
        for arn, item in items.items()
        if store.claim_digest(channel, escalation_key(item), posted_by, now, services.lease, episode_id=item.episode_id)
    }
    won = {arn for arn in won if store.holds_claim(channel, escalation_key(items[arn]), posted_by, services.clock())}
    rows = [row for row in overdue_rows(run.result, run.overdue, run.nudges) if row.arn in won]
    date = f"{now.astimezone(services.tz):%Y-%m-%d}"
    sent = 0
    for part in escalation_parts(rows, services.config.escalate_after_days, date):
        try:
            _, ts = services.slack.post(channel, part.text, part.blocks)
        except Exception as exc:
            for arn in part.arns:
                store.release_digest_claim(channel, escalation_key(items[arn]), posted_by)
            error = error_text(exc)
            logger.error("%d overdue violations could not be escalated to %s (%s)", len(part.arns), channel, error)
            services.record(
                requested_by, "escalated", channel, f"{len(part.arns)} not posted: {error}", outcome="failed"
            )
            continue
        for arn in part.arns:
            item = items[arn]
            store.mark_digest_posted(channel, escalation_key(item), ts, services.clock())
            detail = (
                f"episode first seen {item.first_seen.isoformat()}, first nudge {item.first_nudge.isoformat()}, "
                f"{item.days} days ago; posted to {channel} {ts}"
            )
            services.record(requested_by, "escalated", arn, detail)
        sent += len(part.arns)
    if sent:
        logger.info("%d overdue violations escalated to %s", sent, channel)
    return sent


def _drop_stale_escalations(services: Edges, channel: str, overdue: set[int], holder: str, now: datetime) -> None:
    """Expired, unposted escalation claims of episodes this run does not find overdue: taken over and let go."""
    for claim in services.store.expired_claims(now, escalation_channel=channel):
        if claim.episode_id in overdue:
            continue
        if services.store.claim_digest(
            channel, claim.period_key, holder, now, services.lease, episode_id=claim.episode_id
        ):
            services.store.release_digest_claim(channel, claim.period_key, holder)
