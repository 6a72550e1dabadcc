"""Digest rows updated in place: each row's state now (nudged, fixed, exempted) and the chat.update of the
messages that list some ARNs, in DIGEST_CHANNEL and the account channels alike.

The view a digest was rendered from is kept in the audit trail (action `digest_posted`); only the
latest digest of each channel is kept up to date.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from bot.digest.view import SNAPSHOT_ACTION, account_routes, digest_channels, view_from_json
from bot.messages.digest import DigestPart, DigestView, RowState, digest_parts
from bot.models import arn_user
from bot.slack import SLACK_ERRORS, slack_error

if TYPE_CHECKING:
    from bot.edges import Edges
    from bot.store import Store

logger = logging.getLogger(__name__)


def row_states(services: Edges, view: DigestView, since: datetime, arns: Iterable[str]) -> dict[str, RowState]:
    """Each row's state now: nudges sent so far, the last nudge after `since`, fixed (no open episode)."""
    wanted = list(dict.fromkeys(arns))
    if not wanted:
        return {}
    store = services.store
    counts = store.nudge_counts(wanted)
    open_arns = {e.arn for e in store.open_episodes()}
    changes = store.changes_since(since)
    fixed_at = {e.arn: e.fixed_at for e in changes.fixed if e.fixed_at}
    exempted_at = {e.arn: e.fixed_at for e in changes.exempted if e.fixed_at}
    rows = {r.arn: r for r in view.rows}
    people = {person for a in wanted if a in rows and (person := rows[a].slack_user_id)}
    last_by_person = {person: store.last_nudge(person, ("sent", "unknown")) for person in people}
    states = {}
    for arn in wanted:
        row = rows.get(arn)
        nudged_by = nudged_at = None
        unknown = False
        last = last_by_person.get(row.slack_user_id) if row and row.slack_user_id else None
        if last is not None and arn in last.arns and last.at >= since:
            nudged_by, nudged_at, unknown = last.sent_by, services.hhmm(last.at), last.outcome == "unknown"
        fixed = exempted = None
        if arn in exempted_at and arn not in open_arns:  # exempt now: "exempted", never "fixed"
            exempted = services.hhmm(exempted_at[arn])
        elif arn not in open_arns:
            fixed = services.hhmm(fixed_at.get(arn) or services.clock())
        states[arn] = RowState(
            nudges=counts.get(arn, 0),
            nudged_by=nudged_by,
            nudged_at=nudged_at,
            fixed_at=fixed,
            delivery_unknown=unknown,
            exempted_at=exempted,
        )
    return states


def load_view(store: Store, channel: str, period_key: str) -> DigestView | None:
    """The view a digest was rendered from (from the audit trail), or None if it is not kept."""
    for action in store.actions(limit=1, action=SNAPSHOT_ACTION, target=f"{channel} {period_key}"):
        if action.detail:
            try:
                return view_from_json(action.detail)
            except (ValueError, KeyError, TypeError):
                logger.warning("the kept view of digest %s in %s is unreadable", period_key, channel)
    return None


def refresh_rows(services: Edges, arns: Iterable[str]) -> int:
    """chat.update the messages that list any of `arns`, in the latest digest of every digest channel.

    DIGEST_CHANNEL and each account channel (for its accounts' ARNs) are updated alike: each
    message is re-rendered from its kept view and the store's state now (fixed, nudged).
    Returns how many messages were updated.
    """
    wanted = set(arns)
    if not wanted:
        return 0
    routes = account_routes(services.config)
    updated = 0
    with services.refresh_lock:
        for channel in digest_channels(services.config):
            scope = routes.get(channel)
            mine = wanted if scope is None else {a for a in wanted if arn_user(a)[0] in scope}
            if mine:
                updated += _refresh_channel(services, channel, mine)
    return updated


def _refresh_channel(services: Edges, channel: str, wanted: set[str]) -> int:
    store = services.store
    digest = store.last_digest(channel)
    if digest is None or digest.message_ts is None:
        return 0
    rows = store.digest_rows(channel, digest.period_key)
    stale = {rows[arn] for arn in wanted if arn in rows}
    if not stale:
        return 0
    key = f"{channel} {digest.period_key}"
    view = services.views.get(key) or load_view(store, channel, digest.period_key)
    if view is None:
        return 0
    # only the latest digest of each channel is kept up to date
    services.views = {k: v for k, v in services.views.items() if not k.startswith(f"{channel} ")} | {key: view}
    updated = 0
    for part in digest_parts(view):
        ts = digest.message_ts if part.index == 0 else next((rows[a] for a in part.arns if a in rows), None)
        if ts is None or (ts not in stale and not wanted.intersection(part.overdue)):
            continue
        states = row_states(services, view, digest.claimed_at, part.arns + part.overdue)
        fresh: DigestPart = digest_parts(view, states)[part.index]
        try:
            services.slack.update(channel, ts, fresh.text, fresh.blocks)
            updated += 1
        except SLACK_ERRORS as exc:
            logger.warning("digest row update in %s failed (%s)", channel, slack_error(exc))
    return updated
