"""The digest's content, pure: period keys, where each digest goes, the view built from an audit, its JSON.

Nothing here reads the store, Slack or the clock: the posting side (`bot.digest.post`) passes
them in.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.config import Config
from bot.escalation import Overdue
from bot.messages.digest import DigestAccount, DigestRow, DigestView, OverdueRow
from bot.models import AuditResult
from bot.report import days_without_mfa, freshness_text, root_text
from bot.service import UNKNOWN_ACCOUNT, failed_account
from bot.store.records import Changes

SNAPSHOT_ACTION = "digest_posted"
SNAPSHOT_VERSION = 1
NOT_AUDITED = "not among the audited accounts (AWS_ACCOUNT_IDS or the AWS Organization): its result is unknown"


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
