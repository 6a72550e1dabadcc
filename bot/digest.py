"""The digest: a fresh recorded audit posted to DIGEST_CHANNEL, exactly once per channel and period.

Period keys: a scheduled digest's key is the date, in DIGEST_TIMEZONE, of the cron fire time it
stands for (`2026-11-27`), so every process due at that time, or catching up on it after a
restart, competes for the same `Store.claim_digest` and exactly one posts. A manual digest
(`python -m bot digest`, `/mfa-check digest`) gets its own key (`manual-20261127T093005Z`): it
never suppresses the scheduled one.

Claims are leases (CLAIM_LEASE_SECONDS): the holder renews its claims while it works
(`leases_kept`) and checks it still holds one right before posting; posting ends the lease. A
process that dies (SIGKILL, a dyno restart) between claiming and posting leaves its claims to
expire, and the scheduler's periodic check in any surviving or new process (`resume_expired`)
takes them over (decided by the database) and posts them: nothing is silently skipped. One
window stays: a process that dies after Slack accepted a message but before the store recorded
it leaves that message to be posted again by the taker.

Routing: DIGEST_CHANNEL gets every account. Each channel of ACCOUNT_CHANNELS also gets a digest
of its own account(s) (violators with Nudge buttons, root MFA, the error when the account could
not be audited, a "Nudge all" limited to those accounts), from the same audit run, under its own
claim of (channel, period). An account channel that is DIGEST_CHANNEL itself gets nothing more.

Overdue: open violations still open ESCALATE_AFTER_DAYS after their first nudge
(`bot.escalation`) have their own section; ESCALATION_CHANNEL, when set, is told about each
violation episode once (`escalate`).

Rows are updated in place later (nudged, fixed): the view the digest was rendered from is kept
in the audit trail (action `digest_posted`, its JSON in `detail`) and each row's message ts in
`Store.set_digest_rows`; `refresh_rows` re-renders the messages holding some ARNs from that
view plus the store's current state and chat.updates them, in DIGEST_CHANNEL and in the account
channels alike; the overdue section's lines too (nudges so far, fixed), in whichever message
holds that section. Only the latest digest of each channel is kept up to date.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from slack_sdk.web import WebClient

from bot.config import Config
from bot.escalation import Overdue, escalation_key, select_overdue
from bot.identity import IdentityChain, SlackDirectory, track_identities
from bot.messages.digest import (
    DigestAccount,
    DigestPart,
    DigestRow,
    DigestView,
    OverdueRow,
    RowState,
    digest_parts,
    escalation_parts,
)
from bot.models import AuditResult, arn_user
from bot.pacing import PacedSlack
from bot.report import days_without_mfa, freshness_text, root_text
from bot.service import UNKNOWN_ACCOUNT, failed_account, utc_now
from bot.slack import SLACK_ERRORS, slack_error
from bot.store.records import Changes

if TYPE_CHECKING:
    from bot.store import Store

logger = logging.getLogger(__name__)

SNAPSHOT_ACTION = "digest_posted"
SNAPSHOT_VERSION = 1
NOT_AUDITED = "not among the audited accounts (AWS_ACCOUNT_IDS or the AWS Organization): its result is unknown"


@dataclass
class Desk:
    """The edges the digest, nudges and re-checks share: config, store, paced Slack, identity, audits, clock.

    `fresh_audit` runs a new recorded audit (the digest); `recent_audit` may answer with one a few
    minutes old (nudges). `aliases` remembers account aliases seen in audits (for sign-in URLs);
    `key_only` the ARNs of key-only violators (MFA_SCOPE=all) the last audit found (for their DM steps).
    """

    config: Config
    store: Store
    slack: PacedSlack
    identity: IdentityChain
    fresh_audit: Callable[[], AuditResult]
    recent_audit: Callable[[], AuditResult]
    clock: Callable[[], datetime] = utc_now
    aliases: dict[str, str | None] = field(default_factory=dict)
    key_only: set[str] = field(default_factory=set)
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

    @property
    def lease(self) -> timedelta:
        """How long a claim holds without a renewal (CLAIM_LEASE_SECONDS)."""
        return timedelta(seconds=self.config.claim_lease_seconds)

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
                arns = {u.arn for u in account.users}
                self.key_only -= arns
                self.key_only |= {u.arn for u in account.by_status("violation") if not u.console_access}
        links = self.store.links()
        try:
            track_identities(self.store, self.identity, result, links, self.clock())
        except Exception:
            logger.exception("could not note who the IAM users resolve to")
        return self.identity.annotate(result, links)

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


# -- where it goes (pure) -----------------------------------------------------------------------


def account_routes(config: Config) -> dict[str, tuple[str, ...]]:
    """ACCOUNT_CHANNELS by channel: channel -> its account ids (sorted). DIGEST_CHANNEL is left out: it has them all."""
    routes: dict[str, list[str]] = {}
    for account_id, channel in config.account_channels.items():
        if channel != config.digest_channel:
            routes.setdefault(channel, []).append(account_id)
    return {channel: tuple(sorted(ids)) for channel, ids in sorted(routes.items())}


def digest_channels(config: Config) -> list[str]:
    """Every channel a digest goes to: DIGEST_CHANNEL first, then the account channels."""
    return [c for c in [config.digest_channel] if c] + list(account_routes(config))


def scoped_result(result: AuditResult, account_ids: Collection[str]) -> AuditResult:
    """The audit narrowed to `account_ids`; an account it does not hold is an error, never clean."""
    kept = [a for a in result.accounts if a.account_id in account_ids]
    why = next((a.error for a in result.accounts if a.account_id == UNKNOWN_ACCOUNT and a.error), None)
    for account_id in sorted(set(account_ids) - {a.account_id for a in kept}):
        kept.append(failed_account(account_id, why or NOT_AUDITED))
    kept.sort(key=lambda a: (a.error is None, a.label.lower()))
    return AuditResult(generated_at=result.generated_at, accounts=kept)


def scoped_changes(changes: Changes | None, account_ids: Collection[str]) -> Changes | None:
    """Episodes opened/closed since the previous digest, of `account_ids` only."""
    if changes is None:
        return None
    return Changes(
        new=[e for e in changes.new if e.account_id in account_ids],
        fixed=[e for e in changes.fixed if e.account_id in account_ids],
        exempted=[e for e in changes.exempted if e.account_id in account_ids],
    )


# -- what to post (pure) ------------------------------------------------------------------------


def overdue_rows(result: AuditResult, overdue: Iterable[Overdue], nudges: Mapping[str, int]) -> tuple[OverdueRow, ...]:
    """The overdue violations `result` still shows as violations (annotated: the person), in `overdue`'s order."""
    violators = {u.arn: (a, u) for a in result.accounts if not a.error for u in a.by_status("violation")}
    rows = []
    for item in overdue:
        if item.arn in violators:
            account, user = violators[item.arn]
            rows.append(
                OverdueRow(
                    item.arn,
                    user.account_id,
                    account.label,
                    user.user_name,
                    user.slack_user_id,
                    item.days,
                    nudges.get(item.arn, 0),
                )
            )
    return tuple(rows)


def build_view(
    result: AuditResult,
    first_seen: Mapping[str, datetime],
    now: datetime,
    timezone: str,
    changes: Changes | None = None,
    previous_at: datetime | None = None,
    overdue: Sequence[Overdue] = (),
    nudges: Mapping[str, int] | None = None,
    overdue_after_days: int = 0,
    scope: Sequence[str] = (),
) -> DigestView:
    """The digest's content from an annotated audit and the open episodes' first_seen (by ARN).

    `changes` (episodes opened/closed since the previous digest) is None for the first digest.
    Rows: longest open first, then account and user name. `overdue` (`bot.escalation`) with the
    nudge counts by ARN make the overdue section. `scope`: the account ids of an account
    channel's digest (`result` already narrowed to them), named in its title.
    """
    zone = ZoneInfo(timezone)
    accounts = tuple(
        DigestAccount(
            account_id=a.account_id,
            label=a.label,
            error=a.error,
            root=root_text(a.root),
            root_off=a.error is None and a.root.needs_attention,
            violations=len(a.by_status("violation")),
            exempt=len(a.by_status("exempt")),
            exempt_by_tag=sum(1 for u in a.by_status("exempt") if u.exempt_by_tag),
            freshness=freshness_text(a),
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
    subject = ""
    if scope:
        subject = f"{accounts[0].label} · " if len(accounts) == 1 else f"{len(accounts)} accounts · "
    return DigestView(
        title=f"MFA digest · {subject}{now.astimezone(zone):%a %d %b %Y}",
        accounts=accounts,
        rows=tuple(rows),
        new_since=None if changes is None else len(changes.new),
        fixed_since=None if changes is None else len(changes.fixed),
        since=None if previous_at is None else f"{previous_at.astimezone(zone):%Y-%m-%d %H:%M}",
        overdue=overdue_rows(result, overdue, nudges or {}),
        overdue_after_days=overdue_after_days,
        scope=tuple(scope),
        accepted_risk=sum(len(a.by_status("exempt")) + len(a.by_status("grace")) for a in result.accounts),
    )


def view_to_json(view: DigestView) -> str:
    """The view as JSON (kept in the audit trail so any process can re-render the digest)."""
    return json.dumps({"v": SNAPSHOT_VERSION, "view": dataclasses.asdict(view)}, separators=(",", ":"))


def view_from_json(text: str) -> DigestView:
    """The inverse of `view_to_json` (views kept before the overdue section and scope read as without them)."""
    data = json.loads(text)["view"]
    return DigestView(
        title=data["title"],
        accounts=tuple(DigestAccount(**a) for a in data["accounts"]),
        rows=tuple(DigestRow(**r) for r in data["rows"]),
        new_since=data["new_since"],
        fixed_since=data["fixed_since"],
        since=data["since"],
        overdue=tuple(OverdueRow(**o) for o in data.get("overdue", ())),
        overdue_after_days=data.get("overdue_after_days", 0),
        scope=tuple(data.get("scope", ())),
        accepted_risk=data.get("accepted_risk", 0),
    )


# -- leases -------------------------------------------------------------------------------------


@contextmanager
def leases_kept(desk: Desk, holder: str) -> Iterator[None]:
    """Renew every unposted claim of `holder` every third of the lease while the block runs (a heartbeat).

    A long audit or a slow Slack never lets a live holder's claim expire; only a dead one's does.
    """
    stop = threading.Event()
    every = desk.lease.total_seconds() / 3

    def beat() -> None:
        while not stop.wait(every):
            try:
                desk.store.renew_claims(holder, desk.clock(), desk.lease)
            except Exception:
                logger.exception("could not renew the claims of %s", holder)

    thread = threading.Thread(target=beat, name="claim-leases", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(every + 5)


# -- posting ------------------------------------------------------------------------------------

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


def row_states(desk: Desk, view: DigestView, since: datetime, arns: Iterable[str]) -> dict[str, RowState]:
    """Each row's state now: nudges sent so far, the last nudge after `since`, fixed (no open episode)."""
    wanted = list(dict.fromkeys(arns))
    if not wanted:
        return {}
    store = desk.store
    counts = store.nudge_counts(wanted)
    open_arns = {e.arn for e in store.open_episodes()}
    changes = store.changes_since(since)
    fixed_at = {e.arn: e.fixed_at for e in changes.fixed if e.fixed_at}
    exempted_at = {e.arn: e.fixed_at for e in changes.exempted if e.fixed_at}
    rows = {r.arn: r for r in view.rows}
    last_by_person = {}
    for person in {rows[a].slack_user_id for a in wanted if a in rows and rows[a].slack_user_id}:
        last_by_person[person] = store.last_nudge(person, ("sent", "unknown"))
    states = {}
    for arn in wanted:
        row = rows.get(arn)
        nudged_by = nudged_at = None
        unknown = False
        last = last_by_person.get(row.slack_user_id) if row and row.slack_user_id else None
        if last is not None and arn in last.arns and last.at >= since:
            nudged_by, nudged_at, unknown = last.sent_by, desk.hhmm(last.at), last.outcome == "unknown"
        fixed = exempted = None
        if arn in exempted_at and arn not in open_arns:  # exempt now: "exempted", never "fixed"
            exempted = desk.hhmm(exempted_at[arn])
        elif arn not in open_arns:
            fixed = desk.hhmm(fixed_at.get(arn) or desk.clock())
        states[arn] = RowState(
            nudges=counts.get(arn, 0),
            nudged_by=nudged_by,
            nudged_at=nudged_at,
            fixed_at=fixed,
            delivery_unknown=unknown,
            exempted_at=exempted,
        )
    return states


@dataclass(frozen=True)
class AuditRun:
    """One fresh audit (annotated) and the history every channel's digest of this run is built from."""

    result: AuditResult
    first_seen: dict[str, datetime]  # open episodes by ARN
    overdue: list[Overdue]
    nudges: dict[str, int]  # DMs sent so far, for the overdue ARNs


def audit_run(desk: Desk, now: datetime) -> AuditRun:
    """Run the fresh recorded audit, then read the open episodes and their first nudges."""
    result = desk.annotated(desk.fresh_audit())
    store = desk.store
    episodes = store.open_episodes()
    violators = {u.arn for u in result.violations}
    overdue = select_overdue(
        [e for e in episodes if e.arn in violators], store.first_nudges(), now, desk.config.escalate_after_days
    )
    nudges = store.nudge_counts([o.arn for o in overdue]) if overdue else {}
    return AuditRun(result, {e.arn: e.first_seen for e in episodes}, overdue, nudges)


def channel_view(desk: Desk, run: AuditRun, channel: str, now: datetime, scope: Sequence[str] = ()) -> DigestView:
    """The digest of one channel from the run: every account, or (account channel) those of `scope`."""
    previous = desk.store.last_digest(channel)
    previous_at = previous.posted_at if previous else None
    changes = desk.store.changes_since(previous_at) if previous_at else None
    result = run.result
    if scope:
        result, changes = scoped_result(result, scope), scoped_changes(changes, scope)
    return build_view(
        result,
        run.first_seen,
        now,
        desk.config.digest_timezone,
        changes,
        previous_at,
        overdue=run.overdue,
        nudges=run.nudges,
        overdue_after_days=desk.config.escalate_after_days,
        scope=scope,
    )


def _error_text(exc: BaseException) -> str:
    return slack_error(exc) if isinstance(exc, SLACK_ERRORS) else f"{type(exc).__name__}: {exc}"


def post_digest(desk: Desk, period_key: str, posted_by: str, requested_by: str) -> DigestOutcome:
    """Claim (channel, period_key) for DIGEST_CHANNEL and each account channel, audit once, post, escalate.

    Exactly one caller per (channel, period_key) ever posts, across processes; every channel this
    caller claimed gets its digest from the same audit. A channel whose top message could not be
    posted gives its claim back (`retry`), so a later run posts it (from that run's audit).
    Newly overdue violations then go to ESCALATION_CHANNEL, once per episode (`escalate`).
    """
    config = desk.config
    config.require("DIGEST_CHANNEL")
    main = config.digest_channel or ""
    routes = account_routes(config)
    store = desk.store
    now = desk.clock()
    won = [
        channel for channel in (main, *routes) if store.claim_digest(channel, period_key, posted_by, now, desk.lease)
    ]
    if not won:
        logger.info("digest %s for %s: already claimed by another run", period_key, main)
        return DigestOutcome(False, period_key, reason=ALREADY, channel=main)
    logger.info("digest %s claimed by %s for %s", period_key, posted_by, ", ".join(won))
    with leases_kept(desk, posted_by):
        try:
            run = audit_run(desk, now)
        except Exception as exc:
            for channel in won:
                store.release_digest_claim(channel, period_key, posted_by)
            error = _error_text(exc)
            logger.exception("digest %s could not be composed: %s", period_key, error)
            desk.record(requested_by, "digest", main, f"{period_key}: {error}", outcome="failed")
            return DigestOutcome(False, period_key, reason=error, retry=True, channel=main)
        outcomes = {
            channel: post_channel(desk, run, channel, routes.get(channel, ()), period_key, posted_by, requested_by, now)
            for channel in won
        }
        escalated = escalate(desk, run, posted_by, requested_by)
    top = outcomes.get(main) or DigestOutcome(False, period_key, reason=ALREADY, channel=main)
    accounts = tuple(outcomes[channel] for channel in won if channel != main)
    return dataclasses.replace(
        top, accounts=accounts, escalated=escalated, retry=top.retry or any(a.retry for a in accounts)
    )


def post_channel(
    desk: Desk,
    run: AuditRun,
    channel: str,
    scope: Sequence[str],
    period_key: str,
    posted_by: str,
    requested_by: str,
    now: datetime,
) -> DigestOutcome:
    """Post the claimed digest of one channel (long lists continue in its thread) and record it."""
    store = desk.store
    try:
        view = channel_view(desk, run, channel, now, scope)
        states = row_states(desk, view, now, [r.arn for r in view.rows])
        parts = digest_parts(view, states)
        if not store.holds_claim(channel, period_key, posted_by, desk.clock()):
            logger.error(
                "digest %s for %s: this process lost its claim (lease expired): not posted", period_key, channel
            )
            return DigestOutcome(False, period_key, reason=LOST, channel=channel)
        _, top_ts = desk.slack.post(channel, parts[0].text, parts[0].blocks)
    except Exception as exc:
        store.release_digest_claim(channel, period_key, posted_by)
        error = _error_text(exc)
        logger.exception("digest %s could not be posted to %s: %s", period_key, channel, error)
        desk.record(requested_by, "digest", channel, f"{period_key}: {error}", outcome="failed")
        return DigestOutcome(False, period_key, reason=error, retry=True, channel=channel)
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
    desk.record(requested_by, "digest", channel, detail, outcome="failed" if failed else "ok")
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


def escalate(desk: Desk, run: AuditRun, posted_by: str, requested_by: str) -> int:
    """Post each overdue violation of the run to ESCALATION_CHANNEL once per episode; returns how many went.

    Each episode is claimed first (`Store.claim_digest(ESCALATION_CHANNEL, escalation_key(...))`,
    decided by the database), so across runs and processes exactly one post names it. A message
    that cannot be posted gives its claims back: the next digest tries again. Each escalation is
    in the audit trail (action `escalated`, target the ARN).
    """
    channel = desk.config.escalation_channel
    if not channel:
        return 0
    store, now = desk.store, desk.clock()
    items = {o.arn: o for o in run.overdue}
    _drop_stale_escalations(desk, channel, {o.episode_id for o in run.overdue}, posted_by, now)
    if not items:
        return 0
    won = {
        arn
        for arn, item in items.items()
        if store.claim_digest(channel, escalation_key(item), posted_by, now, desk.lease, episode_id=item.episode_id)
    }
    won = {arn for arn in won if store.holds_claim(channel, escalation_key(items[arn]), posted_by, desk.clock())}
    rows = [row for row in overdue_rows(run.result, run.overdue, run.nudges) if row.arn in won]
    date = f"{now.astimezone(desk.tz):%Y-%m-%d}"
    sent = 0
    for part in escalation_parts(rows, desk.config.escalate_after_days, date):
        try:
            _, ts = desk.slack.post(channel, part.text, part.blocks)
        except Exception as exc:
            for arn in part.arns:
                store.release_digest_claim(channel, escalation_key(items[arn]), posted_by)
            error = _error_text(exc)
            logger.error("%d overdue violations could not be escalated to %s (%s)", len(part.arns), channel, error)
            desk.record(requested_by, "escalated", channel, f"{len(part.arns)} not posted: {error}", outcome="failed")
            continue
        for arn in part.arns:
            item = items[arn]
            store.mark_digest_posted(channel, escalation_key(item), ts, desk.clock())
            detail = (
                f"episode first seen {item.first_seen.isoformat()}, first nudge {item.first_nudge.isoformat()}, "
                f"{item.days} days ago; posted to {channel} {ts}"
            )
            desk.record(requested_by, "escalated", arn, detail)
        sent += len(part.arns)
    if sent:
        logger.info("%d overdue violations escalated to %s", sent, channel)
    return sent


def _drop_stale_escalations(desk: Desk, channel: str, overdue: set[int], holder: str, now: datetime) -> None:
    """Expired, unposted escalation claims of episodes this run does not find overdue: taken over and let go."""
    for claim in desk.store.expired_claims(now, escalation_channel=channel):
        if claim.episode_id in overdue:
            continue
        if desk.store.claim_digest(channel, claim.period_key, holder, now, desk.lease, episode_id=claim.episode_id):
            desk.store.release_digest_claim(channel, claim.period_key, holder)


def resume_expired(desk: Desk, fire_time: datetime | None) -> DigestOutcome | int | None:
    """Take over and post what a dead process claimed and never posted (the scheduler's periodic check).

    Looks (a read) for expired, unposted claims of the digest of `fire_time` (the latest due one
    today, None if none) in any digest channel, and of escalations of still open episodes. The
    digest's takeover is `post_digest` (which escalates too); escalations alone get a fresh audit
    and `escalate`. None when nothing was left behind.
    """
    from bot.store import SCHEDULER, process_identity

    config = desk.config
    key = scheduled_period_key(fire_time, config.digest_timezone) if fire_time and config.digest_channel else None
    pairs = [(channel, key) for channel in digest_channels(config)] if key else []
    stale = desk.store.expired_claims(desk.clock(), pairs, config.escalation_channel)
    if not stale:
        return None
    holder = process_identity()
    logger.warning("%d claims left unposted by a stopped process: taking them over", len(stale))
    if key and any(claim.period_key == key for claim in stale):
        return post_digest(desk, key, holder, SCHEDULER)
    with leases_kept(desk, holder):
        return escalate(desk, audit_run(desk, desk.clock()), holder, SCHEDULER)


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
    """`python -m bot digest`: post one digest now; 0 when posted (everywhere), 1 when it could not be."""
    from bot.slack import make_web_client
    from bot.store import Store

    config.require("SLACK_BOT_TOKEN", "DIGEST_CHANNEL")
    with Store.open(config.database_url) as store:
        desk = Desk.create(config, make_web_client(config), store)
        outcome = post_manual_digest(desk, "cli")
    if outcome.posted:
        print(f"digest posted to {config.digest_channel}: {outcome.rows} rows in {outcome.messages} messages")
        for account in outcome.accounts:
            if account.posted:
                print(f"account digest posted to {account.channel}: {account.rows} rows")
        if outcome.escalated:
            print(f"{outcome.escalated} overdue violations escalated to {config.escalation_channel}")
        if outcome.failed_parts:
            print(f"error: {outcome.failed_parts} thread messages could not be posted")
        if outcome.failed_channels:
            print(f"error: the digest could not be posted (in full) to {', '.join(outcome.failed_channels)}")
        return 0 if outcome.ok else 1
    print(f"error: the digest was not posted: {outcome.reason}")
    return 1


# -- rows updated in place ----------------------------------------------------------------------


def load_view(store: Store, channel: str, period_key: str) -> DigestView | None:
    """The view a digest was rendered from (from the audit trail), or None if it is not kept."""
    for action in store.actions(limit=1, action=SNAPSHOT_ACTION, target=f"{channel} {period_key}"):
        if action.detail:
            try:
                return view_from_json(action.detail)
            except (ValueError, KeyError, TypeError):
                logger.warning("the kept view of digest %s in %s is unreadable", period_key, channel)
    return None


def refresh_rows(desk: Desk, arns: Iterable[str]) -> int:
    """chat.update the messages that list any of `arns`, in the latest digest of every digest channel.

    DIGEST_CHANNEL and each account channel (for its accounts' ARNs) are updated alike: each
    message is re-rendered from its kept view and the store's state now (fixed, nudged).
    Returns how many messages were updated.
    """
    wanted = set(arns)
    if not wanted:
        return 0
    routes = account_routes(desk.config)
    updated = 0
    with desk.refresh_lock:
        for channel in digest_channels(desk.config):
            scope = routes.get(channel)
            mine = wanted if scope is None else {a for a in wanted if arn_user(a)[0] in scope}
            if mine:
                updated += _refresh_channel(desk, channel, mine)
    return updated


def _refresh_channel(desk: Desk, channel: str, wanted: set[str]) -> int:
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
    # only the latest digest of each channel is kept up to date
    desk.views = {k: v for k, v in desk.views.items() if not k.startswith(f"{channel} ")} | {key: view}
    updated = 0
    for part in digest_parts(view):
        ts = digest.message_ts if part.index == 0 else next((rows[a] for a in part.arns if a in rows), None)
        if ts is None or (ts not in stale and not wanted.intersection(part.overdue)):
            continue
        states = row_states(desk, view, digest.claimed_at, part.arns + part.overdue)
        fresh: DigestPart = digest_parts(view, states)[part.index]
        try:
            desk.slack.update(channel, ts, fresh.text, fresh.blocks)
            updated += 1
        except SLACK_ERRORS as exc:
            logger.warning("digest row update in %s failed (%s)", channel, slack_error(exc))
    return updated
