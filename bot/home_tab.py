"""The App Home's edges: gather one person's `HomePage` from the store (never AWS) and publish it.

The findings are those of the last successful audit of each account, kept in the store
(`Store.snapshots`, written by `bot.service.record_result`), so every process shows the same
Home, also after a restart. Re-checks since that audit show through the violation episodes: a
violation whose episode closed after the audit reads as fixed. Each visit is noted in the store
(`Store.note_home_opened`); after each audit, the Homes of the people who opened theirs within
RECENT_VISIT are published again (at most MAX_REFRESH, the latest visitors first).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.web import WebClient

from bot import home
from bot.config import Config
from bot.digest.view import overdue_rows
from bot.escalation import select_overdue
from bot.home import AccountLine, AdminHome, EndingExemption, HomePage, OwnUser
from bot.identity import IdentityChain, Roles, user_email
from bot.models import AccountFindings, AuditResult
from bot.report import days_without_mfa
from bot.service import UNKNOWN_ACCOUNT
from bot.slack import SLACK_ERRORS, slack_error
from bot.snapshot import SnapshotError, account_from_json

if TYPE_CHECKING:
    from bot.edges import Edges
    from bot.store import Episode, Scan, Store

logger = logging.getLogger(__name__)

RECENT_VISIT = timedelta(hours=1)  # whose Home is published again after an audit
MAX_REFRESH = 200  # at most this many Homes per audit (views.publish is Tier 4: 100+ a minute)
NOTICE_SECONDS = 120.0  # an answer shown on the Home stays through the refreshes that follow it


class HomeTab:
    """Builds and publishes Homes: `opened` (a visit), `publish` (with an answer), `refresh_recent`."""

    def __init__(self, services: Edges) -> None:
        self.config: Config = services.config
        self.store: Store = services.store
        self.client: WebClient = services.client
        self.identity: IdentityChain = services.identity
        self.roles: Roles = services.roles
        self.clock: Callable[[], datetime] = services.clock
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[datetime, datetime, AccountFindings]] = {}  # id -> saved, audited, findings
        self._notices: dict[str, tuple[float, str]] = {}  # person -> (monotonic time, text)

    # -- what the Home shows --------------------------------------------------------------------

    def kept(self) -> dict[str, tuple[datetime, AccountFindings]]:
        """account id -> (when audited, findings) of the last good audit of each account (decoded copies cached)."""
        times = self.store.snapshot_times()
        with self._lock:
            stale = [a for a, saved in times.items() if a not in self._kept or self._kept[a][0] != saved]
        loaded = {}
        for snapshot in self.store.snapshots(stale) if stale else []:
            try:
                findings = account_from_json(snapshot.findings)
            except SnapshotError as exc:
                logger.warning("the kept findings of account %s cannot be read: %s", snapshot.account_id, exc)
                continue
            loaded[snapshot.account_id] = (snapshot.saved_at, snapshot.audited_at, findings)
        with self._lock:
            self._kept.update(loaded)
            self._kept = {a: kept for a, kept in self._kept.items() if a in times}
            return {a: (audited, findings) for a, (_, audited, findings) in self._kept.items()}

    def page(self, slack_user_id: str, notice: str | None = None) -> HomePage:
        """One person's Home: their own IAM users, and the admin overview when they are an admin."""
        now = self.clock()
        kept = self.kept()
        accounts = sorted((findings for _, findings in kept.values()), key=lambda a: a.label.lower())
        audited_at = max((at for at, _ in kept.values()), default=None)
        result = AuditResult(generated_at=audited_at or now, accounts=accounts)
        episodes = {e.arn: e for e in self.store.open_episodes()}
        links = self.store.links()
        own: tuple[OwnUser, ...] = ()
        if accounts:
            email = user_email(self.client, slack_user_id)
            mine = self.identity.own_findings(result, slack_user_id, email, links)
            own = self._own(mine, kept, episodes, now)
        admin = self.admin(result, kept, episodes, links, now) if self.roles.is_admin(slack_user_id) else None
        return HomePage(
            slack_user_id=slack_user_id,
            now=now,
            audited_at=audited_at,
            own=own,
            accounts=tuple(a.label for a in accounts),
            admin=admin,
            notice=notice or self._notice(slack_user_id),
        )

    def _own(
        self,
        mine: list[Any],
        kept: dict[str, tuple[datetime, AccountFindings]],
        episodes: dict[str, Episode],
        now: datetime,
    ) -> tuple[OwnUser, ...]:
        oldest = min(at for at, _ in kept.values())
        fixed = {e.arn: e.fixed_at for e in self.store.changes_since(oldest).fixed if e.fixed_at}
        rows = []
        for finding in mine:
            audited, account = kept[finding.account_id]
            days = fixed_at = None
            episode = episodes.get(finding.arn)
            if finding.status == "violation":
                if episode is not None:
                    days = max(0, (now - episode.first_seen).days)
                elif finding.arn in fixed and fixed[finding.arn] > audited:
                    fixed_at = fixed[finding.arn]
                else:
                    days = days_without_mfa(finding, now)
            rows.append(OwnUser(finding, account.label, days, fixed_at, episode_open=episode is not None))
        return tuple(rows)

    def admin(
        self,
        result: AuditResult,
        kept: dict[str, tuple[datetime, AccountFindings]],
        episodes: dict[str, Episode],
        links: dict[str, str],
        now: datetime,
    ) -> AdminHome:
        """The admin overview from the kept findings, the latest scans, the episodes, nudges and exemptions."""
        store, config = self.store, self.config
        scans = store.latest_scans()
        last_audit_at = max((s.started_at for s in scans.values()), default=None)
        labels = {a.account_id: a.label for a in result.accounts}
        lines = [self._account_line(findings, audited, scans.get(a)) for a, (audited, findings) in kept.items()]
        for account_id, scan in scans.items():
            if account_id in kept or (account_id == UNKNOWN_ACCOUNT and scan.started_at != last_audit_at):
                continue
            lines.append(_scan_line(scan))
        lines.sort(key=lambda line: (line.error is None, line.label.lower()))
        digest = store.last_digest(config.digest_channel) if config.digest_channel else None
        digest_at = digest.posted_at if digest else None
        new: tuple[tuple[str, str], ...] = ()
        fixed: tuple[tuple[str, str], ...] = ()
        if digest_at is not None:
            changes = store.changes_since(digest_at)
            new = tuple((e.user_name, labels.get(e.account_id, e.account_id)) for e in changes.new)
            fixed = tuple((e.user_name, labels.get(e.account_id, e.account_id)) for e in changes.fixed)
        violators = {u.arn for u in result.violations}
        overdue = select_overdue(
            [e for e in episodes.values() if e.arn in violators], store.first_nudges(), now, config.escalate_after_days
        )
        rows: tuple = ()
        if overdue:
            wanted = {o.arn for o in overdue}
            narrowed = replace(
                result, accounts=[replace(a, users=[u for u in a.users if u.arn in wanted]) for a in result.accounts]
            )
            rows = overdue_rows(self.identity.annotate(narrowed, links), overdue, store.nudge_counts(wanted))
        soon = now + timedelta(days=home.ENDING_WITHIN_DAYS)
        ending = tuple(
            EndingExemption(e.user_name, labels.get(e.account_id, e.account_id), e.until, e.reason, e.granted_by)
            for e in sorted(store.active_exemptions(now).values(), key=lambda e: (e.until, e.user_name))
            if e.until <= soon
        )
        return AdminHome(
            accounts=tuple(lines),
            last_audit_at=last_audit_at,
            digest_channel=config.digest_channel,
            digest_at=digest_at,
            new=new,
            fixed=fixed,
            overdue=rows,
            overdue_after_days=config.escalate_after_days,
            ending=ending,
        )

    @staticmethod
    def _account_line(findings: AccountFindings, audited: datetime, scan: Scan | None) -> AccountLine:
        if scan is not None and scan.error is not None and scan.started_at > audited:
            return AccountLine.of(findings, audited, scan.error, scan.started_at)
        return AccountLine.of(findings, audited)

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, slack_user_id: str, notice: str | None = None) -> bool:
        """Publish this person's Home (with `notice`, the answer to a button, kept for NOTICE_SECONDS)."""
        if notice:
            with self._lock:
                self._notices[slack_user_id] = (time.monotonic(), notice)
        try:
            view = home.home_view(self.page(slack_user_id, notice))
            self.client.views_publish(user_id=slack_user_id, view=view)
        except SLACK_ERRORS as exc:
            logger.warning("an App Home could not be published: %s", slack_error(exc))
            return False
        return True

    def opened(self, slack_user_id: str) -> bool:
        """A visit: note it (for the refreshes after audits), then publish the Home."""
        self.store.note_home_opened(slack_user_id, self.clock())
        return self.publish(slack_user_id)

    def refresh_recent(self) -> int:
        """Publish again the Homes of the people who opened theirs within RECENT_VISIT; returns how many went."""
        people = self.store.recent_home_openers(self.clock() - RECENT_VISIT, MAX_REFRESH)
        published = sum(1 for person in people if self.publish(person))
        if people:
            logger.info("App Home refreshed for %d of %d recent visitors", published, len(people))
        return published

    def responder(self, slack_user_id: str) -> Callable[..., None]:
        """A Responder-like callable: each answer (`text=`) is shown at the top of the person's Home."""

        def respond(**message: Any) -> None:
            self.publish(slack_user_id, notice=str(message.get("text") or "") or None)

        return respond

    def _notice(self, slack_user_id: str) -> str | None:
        with self._lock:
            self._notices = {p: n for p, n in self._notices.items() if time.monotonic() - n[0] < NOTICE_SECONDS}
            kept = self._notices.get(slack_user_id)
        return kept[1] if kept else None


def _scan_line(scan: Scan) -> AccountLine:
    """An account known only from its latest scan (no findings kept: it has never been read, or not since)."""
    if scan.error is not None:
        return AccountLine(scan.account_id, scan.account_id, error=scan.error, failed_at=scan.started_at)
    return AccountLine(
        scan.account_id,
        scan.account_id,
        violations=scan.violation,
        exempt=scan.exempt,
        grace=scan.grace,
        audited_at=scan.started_at,
    )
