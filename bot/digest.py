"""The digest: a fresh recorded audit posted to DIGEST_CHANNEL, exactly once per channel and period.

Period keys: a scheduled digest's key is the date, in DIGEST_TIMEZONE, of the cron fire time it
stands for (`2026-11-27`), so every process due at that time, or catching up on it after a
restart, competes for the same `Store.claim_digest` and exactly one posts. A manual digest
(`python -m bot digest`, `/mfa-check digest`) gets its own key (`manual-20261127T093005Z`): it
never suppresses the scheduled one.

Rows are updated in place later (nudged, fixed): the view the digest was rendered from is kept
in the audit trail (action `digest_posted`, its JSON in `detail`) and each row's message ts in
`Store.set_digest_rows`; `refresh_rows` re-renders the messages holding some ARNs from that
view plus the store's current state and chat.updates them. Only the latest digest of the
channel is kept up to date.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import WebClient

from bot import messages
from bot.config import Config
from bot.identity import IdentityChain, SlackDirectory
from bot.messages import DigestAccount, DigestPart, DigestRow, DigestView, RowState
from bot.models import AuditResult
from bot.pacing import PacedSlack
from bot.report import days_without_mfa, root_text
from bot.service import utc_now

if TYPE_CHECKING:
    from bot.store import Changes, Store

logger = logging.getLogger(__name__)

SNAPSHOT_ACTION = "digest_posted"
SNAPSHOT_VERSION = 1


def slack_error(exc: BaseException) -> str:
    """A Slack failure in a few words (the API's error code, or the exception type); never a token."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    return type(exc).__name__


SLACK_ERRORS = (SlackApiError, SlackClientError, OSError)


@dataclass
class Desk:
    """The edges the digest, nudges and re-checks share: config, store, paced Slack, identity, audits, clock.

    `fresh_audit` runs a new recorded audit (the digest); `recent_audit` may answer with one a few
    minutes old (nudges). `aliases` remembers account aliases seen in audits (for sign-in URLs).
    """

    config: Config
    store: Store
    slack: PacedSlack
    identity: IdentityChain
    fresh_audit: Callable[[], AuditResult]
    recent_audit: Callable[[], AuditResult]
    clock: Callable[[], datetime] = utc_now
    aliases: dict[str, str | None] = field(default_factory=dict)
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    views: dict[str, DigestView] = field(default_factory=dict)  # kept views by "channel period" (immutable)

    @classmethod
    def create(
        cls,
        config: Config,
        client: WebClient,
        store: Store,
        slack: PacedSlack | None = None,
        identity: IdentityChain | None = None,
        fresh_audit: Callable[[], AuditResult] | None = None,
        recent_audit: Callable[[], AuditResult] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> Desk:
        """Production wiring; anything not given is built from `config` (audits: recorded, from AWS)."""
        from bot import service

        def audit() -> AuditResult:
            return service.run_recorded_audit(config, store, clock=clock)

        return cls(
            config=config,
            store=store,
            slack=slack or PacedSlack(client),
            identity=identity
            or IdentityChain(
                directory=SlackDirectory(client),
                email_domain=config.email_domain,
                tag_slack_user_id=config.tag_slack_user_id,
                tag_email=config.tag_email,
            ),
            fresh_audit=fresh_audit or audit,
            recent_audit=recent_audit or fresh_audit or audit,
            clock=clock,
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.digest_timezone)

    def hhmm(self, when: datetime) -> str:
        """A time of day in DIGEST_TIMEZONE, for rows and answers."""
        return f"{when.astimezone(self.tz):%H:%M}"

    def when(self, when: datetime) -> str:
        """Date and time in DIGEST_TIMEZONE, with the zone."""
        return f"{when.astimezone(self.tz):%Y-%m-%d %H:%M} {self.config.digest_timezone}"

    def annotated(self, result: AuditResult) -> AuditResult:
        """The result with each user's Slack person filled (identity chain); aliases remembered."""
        for account in result.accounts:
            if account.error is None:
                self.aliases[account.account_id] = account.alias
        return self.identity.annotate(result, self.store.links())

    def record(self, actor: str, action: str, target: str | None, detail: str | None, outcome: str = "ok") -> None:
        """Audit trail; a failure to write it is logged, never raised."""
        try:
            self.store.record_action(actor, action, target, detail, self.clock(), outcome=outcome)
        except Exception:
            logger.exception("could not write the audit trail entry %s/%s", action, outcome)


# -- period keys --------------------------------------------------------------------------------


def scheduled_period_key(fire_time: datetime, timezone: str) -> str:
    """The period of a scheduled digest: the date of its cron fire time in DIGEST_TIMEZONE."""
    return fire_time.astimezone(ZoneInfo(timezone)).date().isoformat()


def manual_period_key(now: datetime) -> str:
    """A manual digest's own period (to the second, so a double submit posts once)."""
    return f"manual-{now.astimezone(ZoneInfo('UTC')):%Y%m%dT%H%M%SZ}"


# -- what to post (pure) ------------------------------------------------------------------------


def build_view(
    result: AuditResult,
    first_seen: Mapping[str, datetime],
    now: datetime,
    timezone: str,
    changes: Changes | None = None,
    previous_at: datetime | None = None,
) -> DigestView:
    """The digest's content from an annotated audit and the open episodes' first_seen (by ARN).

    `changes` (episodes opened/closed since the previous digest) is None for the first digest.
    Rows: longest open first, then account and user name.
    """
    zone = ZoneInfo(timezone)
    accounts = tuple(
        DigestAccount(
            account_id=a.account_id,
            label=a.label,
            error=a.error,
            root=root_text(a.root),
            root_off=a.error is None and a.root.mfa_enabled is False,
            violations=len(a.by_status("violation")),
        )
        for a in result.accounts
    )
    rows = []
    for account in result.accounts:
        if account.error:
            continue
        for user in account.by_status("violation"):
            since = first_seen.get(user.arn)
            days = max(0, (now - since).days) if since else days_without_mfa(user, now)
            rows.append(DigestRow(user.arn, user.account_id, account.label, user.user_name, user.slack_user_id, days))
    rows.sort(key=lambda r: (-(r.days_open if r.days_open is not None else -1), r.account.lower(), r.user_name.lower()))
    return DigestView(
        title=f"MFA digest · {now.astimezone(zone):%a %d %b %Y}",
        accounts=accounts,
        rows=tuple(rows),
        new_since=None if changes is None else len(changes.new),
        fixed_since=None if changes is None else len(changes.fixed),
        since=None if previous_at is None else f"{previous_at.astimezone(zone):%Y-%m-%d %H:%M}",
    )


def view_to_json(view: DigestView) -> str:
    """The view as JSON (kept in the audit trail so any process can re-render the digest)."""
    return json.dumps({"v": SNAPSHOT_VERSION, "view": dataclasses.asdict(view)}, separators=(",", ":"))


def view_from_json(text: str) -> DigestView:
    """The inverse of `view_to_json`."""
    data = json.loads(text)["view"]
    return DigestView(
        title=data["title"],
        accounts=tuple(DigestAccount(**a) for a in data["accounts"]),
        rows=tuple(DigestRow(**r) for r in data["rows"]),
        new_since=data["new_since"],
        fixed_since=data["fixed_since"],
        since=data["since"],
    )


# -- posting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestOutcome:
    """What a digest attempt did: posted (and where), or why not."""

    posted: bool
    period_key: str
    reason: str = ""
    message_ts: str | None = None
    messages: int = 0
    rows: int = 0
    failed_parts: int = 0
    retry: bool = False  # not posted, and the claim was given back: trying again later may post

    @property
    def ok(self) -> bool:
        return self.posted and not self.failed_parts


def row_states(desk: Desk, view: DigestView, since: datetime, arns: Iterable[str]) -> dict[str, RowState]:
    """Each row's state now: nudges sent so far, the last nudge after `since`, fixed (no open episode)."""
    wanted = list(dict.fromkeys(arns))
    if not wanted:
        return {}
    store = desk.store
    counts = store.nudge_counts(wanted)
    open_arns = {e.arn for e in store.open_episodes()}
    fixed_at = {e.arn: e.fixed_at for e in store.changes_since(since).fixed if e.fixed_at}
    rows = {r.arn: r for r in view.rows}
    last_by_person = {}
    for person in {rows[a].slack_user_id for a in wanted if a in rows and rows[a].slack_user_id}:
        last_by_person[person] = store.last_nudge(person)
    states = {}
    for arn in wanted:
        row = rows.get(arn)
        nudged_by = nudged_at = None
        last = last_by_person.get(row.slack_user_id) if row and row.slack_user_id else None
        if last is not None and arn in last.arns and last.at >= since:
            nudged_by, nudged_at = last.sent_by, desk.hhmm(last.at)
        fixed = None
        if arn not in open_arns:
            fixed = desk.hhmm(fixed_at.get(arn) or desk.clock())
        states[arn] = RowState(nudges=counts.get(arn, 0), nudged_by=nudged_by, nudged_at=nudged_at, fixed_at=fixed)
    return states


def compose(desk: Desk, requested_at: datetime) -> DigestView:
    """Run the fresh recorded audit and turn it (with the store's history) into the digest view."""
    channel = desk.config.digest_channel or ""
    previous = desk.store.last_digest(channel)
    result = desk.annotated(desk.fresh_audit())
    first_seen = {e.arn: e.first_seen for e in desk.store.open_episodes()}
    previous_at = previous.posted_at if previous else None
    changes = desk.store.changes_since(previous_at) if previous_at else None
    return build_view(result, first_seen, requested_at, desk.config.digest_timezone, changes, previous_at)


def post_digest(desk: Desk, period_key: str, posted_by: str, requested_by: str) -> DigestOutcome:
    """Claim (channel, period_key), audit, post the digest (long lists continue in its thread), record it.

    Exactly one caller per (channel, period_key) ever posts, across processes. A failure before
    the top message is posted gives the claim back, so a retry may post.
    """
    config = desk.config
    config.require("DIGEST_CHANNEL")
    channel = config.digest_channel or ""
    store = desk.store
    now = desk.clock()
    if not store.claim_digest(channel, period_key, posted_by, now):
        logger.info("digest %s for %s: already claimed by another run", period_key, channel)
        return DigestOutcome(False, period_key, reason="already posted or being posted by another process")
    top_ts: str | None = None
    try:
        view = compose(desk, now)
        states = row_states(desk, view, now, [r.arn for r in view.rows])
        parts = messages.digest_parts(view, states)
        _, top_ts = desk.slack.post(channel, parts[0].text, parts[0].blocks)
    except Exception as exc:
        store.release_digest_claim(channel, period_key, posted_by)
        error = slack_error(exc) if isinstance(exc, SLACK_ERRORS) else f"{type(exc).__name__}: {exc}"
        logger.exception("digest %s could not be posted: %s", period_key, error)
        desk.record(requested_by, "digest", channel, f"{period_key}: {error}", outcome="failed")
        return DigestOutcome(False, period_key, reason=error, retry=True)
    store.mark_digest_posted(channel, period_key, top_ts, desk.clock(), thread_ts=top_ts if len(parts) > 1 else None)
    desk.record(requested_by, SNAPSHOT_ACTION, f"{channel} {period_key}", view_to_json(view))
    store.set_digest_rows(channel, period_key, dict.fromkeys(parts[0].arns, top_ts))
    failed = 0
    for part in parts[1:]:
        try:
            _, ts = desk.slack.post(channel, part.text, part.blocks, thread_ts=top_ts)
        except SLACK_ERRORS as exc:
            failed += 1
            logger.error(
                "digest %s: thread message %d could not be posted (%s)", period_key, part.index + 1, slack_error(exc)
            )
            continue
        store.set_digest_rows(channel, period_key, dict.fromkeys(part.arns, ts))
    detail = f"{period_key}: {len(view.rows)} rows in {len(parts)} messages"
    if failed:
        detail += f"; {failed} thread messages could NOT be posted"
    desk.record(requested_by, "digest", channel, detail, outcome="failed" if failed else "ok")
    logger.info("digest %s posted to %s: %d rows, %d messages", period_key, channel, len(view.rows), len(parts))
    return DigestOutcome(
        True, period_key, message_ts=top_ts, messages=len(parts), rows=len(view.rows), failed_parts=failed
    )


def post_scheduled_digest(desk: Desk, fire_time: datetime) -> DigestOutcome:
    """The scheduled digest standing for `fire_time` (its period: that date in DIGEST_TIMEZONE)."""
    from bot.store import SCHEDULER, process_identity

    key = scheduled_period_key(fire_time, desk.config.digest_timezone)
    return post_digest(desk, key, process_identity(), SCHEDULER)


def post_manual_digest(desk: Desk, requested_by: str) -> DigestOutcome:
    """A digest now, under its own period key (never suppresses the scheduled one)."""
    from bot.store import process_identity

    return post_digest(desk, manual_period_key(desk.clock()), process_identity(), requested_by)


def post_digest_now(config: Config) -> int:
    """`python -m bot digest`: post one digest now; 0 when posted, 1 when it could not be."""
    from bot.slack import make_web_client
    from bot.store import Store

    config.require("SLACK_BOT_TOKEN", "DIGEST_CHANNEL")
    with Store.open(config.database_url) as store:
        desk = Desk.create(config, make_web_client(config), store)
        outcome = post_manual_digest(desk, "cli")
    if outcome.posted:
        print(f"digest posted to {config.digest_channel}: {outcome.rows} rows in {outcome.messages} messages")
        if outcome.failed_parts:
            print(f"error: {outcome.failed_parts} thread messages could not be posted")
            return 1
        return 0
    print(f"error: the digest was not posted: {outcome.reason}")
    return 1


# -- rows updated in place ----------------------------------------------------------------------


def load_view(store: Store, channel: str, period_key: str) -> DigestView | None:
    """The view a digest was rendered from (from the audit trail), or None if it is not kept.

    Only the newest few kept views are read: rows are updated in the channel's latest digest.
    """
    target = f"{channel} {period_key}"
    for action in store.actions(limit=10, action=SNAPSHOT_ACTION):
        if action.target == target and action.detail:
            try:
                return view_from_json(action.detail)
            except (ValueError, KeyError, TypeError):
                logger.warning("the kept view of digest %s is unreadable", period_key)
                return None
    return None


def refresh_rows(desk: Desk, arns: Iterable[str]) -> int:
    """chat.update the messages of the channel's latest digest that list any of `arns`; returns how many.

    Each message is re-rendered from the kept view and the store's state now (fixed, nudged).
    """
    channel = desk.config.digest_channel
    wanted = set(arns)
    if not channel or not wanted:
        return 0
    with desk.refresh_lock:
        store = desk.store
        digest = store.last_digest(channel)
        if digest is None or digest.message_ts is None:
            return 0
        rows = store.digest_rows(channel, digest.period_key)
        stale = {rows[arn] for arn in wanted if arn in rows}
        if not stale:
            return 0
        key = f"{channel} {digest.period_key}"
        view = desk.views.get(key) or load_view(store, channel, digest.period_key)
        if view is None:
            return 0
        desk.views = {key: view}  # only the latest digest is kept up to date
        updated = 0
        for part in messages.digest_parts(view):
            ts = digest.message_ts if part.index == 0 else next((rows[a] for a in part.arns if a in rows), None)
            if ts is None or ts not in stale:
                continue
            states = row_states(desk, view, digest.claimed_at, part.arns)
            fresh: DigestPart = messages.digest_parts(view, states)[part.index]
            try:
                desk.slack.update(channel, ts, fresh.text, fresh.blocks)
                updated += 1
            except SLACK_ERRORS as exc:
                logger.warning("digest row update failed (%s)", slack_error(exc))
        return updated
