"""The lower half of the service container: the edges and the state every workflow shares.

`bot.services.Services` extends `Edges` with the workflows (nudges, re-checks, the App Home) and is
the one object built at run time. The workflows (`bot.digest`, `bot.nudges`, `bot.recheck`,
`bot.home_tab`) take that object typed as `Edges`, the part they use, so nothing they import
leads back to them: the import graph has no cycle, not even through type hints. What the digest does
for the other workflows (`refresh_digest_rows`) is a method `Services` provides, so nudges, re-check
and the event handler do not import the digest either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from slack_sdk.web import WebClient

from bot.config import Config
from bot.identity import IdentityChain, Roles, track_identities
from bot.models import AuditResult
from bot.pacing import PacedSlack
from bot.service import utc_now

if TYPE_CHECKING:
    from bot.messages.digest import DigestView
    from bot.store import Store

logger = logging.getLogger(__name__)

JOB_THREADS = 8  # the work after the ack (audits, store writes, messages)
RECENT_AUDIT_SECONDS = 300  # a nudge may use an audit this old (a re-check button corrects the rest)


class SharedAudit:
    """Run the audit once for everyone who asks while it runs (single flight).

    Fifty admins typing `/mfa-check` in the same ten seconds cause one audit, not fifty. A
    request that was made while an audit ran (`asked_at`, on the monotonic clock) is answered
    by that audit even if its job starts only after the audit ended (the job pool queues), so
    queued requests do not start audits of their own. `last` keeps the latest result.
    """

    def __init__(self, audit: Callable[[], AuditResult], clock: Callable[[], float] = time.monotonic) -> None:
        self._audit = audit
        self._clock = clock
        self._lock = threading.Lock()
        self._running: Future[AuditResult] | None = None
        self._finished_at: float | None = None
        self.last: AuditResult | None = None

    def __call__(self, asked_at: float | None = None) -> AuditResult:
        with self._lock:
            if (
                asked_at is not None
                and self.last is not None
                and self._finished_at is not None
                and self._finished_at >= asked_at
            ):
                return self.last
            future = self._running
            owner = future is None
            if future is None:
                future = self._running = Future()
        if not owner:
            return future.result()
        try:
            result = self._audit()
        except BaseException as exc:
            with self._lock:
                self._running = None
            future.set_exception(exc)
            raise
        with self._lock:
            self.last, self._finished_at, self._running = result, self._clock(), None
        future.set_result(result)
        return result


@dataclass
class Edges:
    """The edges and the state every workflow shares, passed in rather than looked up.

    `run_audit` runs the recorded audit over every configured account (`audit()` adds the App Home
    refresh); `account_audit` audits the one account with that id or alias (no accounts in the
    result: none is configured; None: not offered). `recent_seconds`: how old an audit a nudge may
    use (0: always a new one). `aliases` remembers account aliases seen in audits (for sign-in URLs);
    `key_only` the ARNs of key-only violators (MFA_SCOPE=all) the last audit found (for their DM steps);
    `views` the digest views kept by "channel period" (immutable).
    """

    config: Config
    store: Store
    slack: PacedSlack
    roles: Roles
    identity: IdentityChain
    run_audit: Callable[[], AuditResult]
    account_audit: Callable[[str], AuditResult] | None = None
    clock: Callable[[], datetime] = utc_now
    jobs: Executor = field(default_factory=lambda: ThreadPoolExecutor(JOB_THREADS, thread_name_prefix="mfa-job"))
    recent_seconds: float = RECENT_AUDIT_SECONDS
    aliases: dict[str, str | None] = field(default_factory=dict)
    key_only: set[str] = field(default_factory=set)
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    views: dict[str, DigestView] = field(default_factory=dict)
    shared_audit: SharedAudit = field(init=False)

    def __post_init__(self) -> None:
        self.shared_audit = SharedAudit(self.audit)

    # -- audits -------------------------------------------------------------------------------

    def audit(self) -> AuditResult:
        """A new recorded audit of every account; the App Homes opened lately are published again."""
        return self.audited(self.run_audit())

    def audit_account(self, account: str) -> AuditResult:
        """A new recorded audit of one account (by id or alias); call only when `account_audit` is set."""
        if self.account_audit is None:
            raise RuntimeError("auditing one account is not offered here")
        return self.audited(self.account_audit(account))

    def fresh_audit(self) -> AuditResult:
        """A new audit (joining one that is running: single flight), as the digest needs."""
        return self.shared_audit(time.monotonic())

    def recent_audit(self) -> AuditResult:
        """The last audit when it is at most `recent_seconds` old, else a new one (single flight)."""
        last = self.shared_audit.last
        if (
            last is not None
            and self.recent_seconds > 0
            and (self.clock() - last.generated_at).total_seconds() <= self.recent_seconds
        ):
            return last
        return self.shared_audit(time.monotonic())

    def audited(self, result: AuditResult) -> AuditResult:
        """Called after each recorded audit with its result (`bot.services.Services` refreshes the App Homes)."""
        return result

    def refresh_digest_rows(self, arns: Iterable[str]) -> int:
        """chat.update the digest messages that list any of `arns`; how many were updated.

        `bot.services.Services` does it (`bot.digest.rows.refresh_rows`), so the workflows that
        call it (nudges, re-check, events) need not import the digest.
        """
        raise NotImplementedError("bot.services.Services updates the digest rows")

    def annotated(self, result: AuditResult) -> AuditResult:
        """The result with each user's Slack person filled (identity chain); aliases and key-only users remembered.

        A person who changed since the last audit is noted in the store (`track_identities`).
        """
        for account in result.accounts:
            if account.error is None:
                self.aliases[account.account_id] = account.alias
                self.key_only -= {u.arn for u in account.users}
                self.key_only |= {u.arn for u in account.by_status("violation") if not u.console_access}
        links = self.store.links()
        try:
            track_identities(self.store, self.identity, result, links, self.clock())
        except Exception:
            logger.exception("could not note who the IAM users resolve to")
        return self.identity.annotate(result, links)

    # -- the edges ------------------------------------------------------------------------------

    @property
    def client(self) -> WebClient:
        """The Slack Web API client (unpaced: the listeners' own calls)."""
        return self.slack.client

    def links(self) -> dict[str, str]:
        """Stored IAM ARN -> Slack ID links."""
        return self.store.links()

    def record(self, actor: str, action: str, target: str | None, detail: str | None, outcome: str = "ok") -> None:
        """Write to the audit trail; a failure is logged, never raised."""
        try:
            self.store.record_action(actor, action, target, detail, self.clock(), outcome=outcome)
        except Exception:
            logger.exception("could not write the audit trail entry %s/%s", action, outcome)

    @property
    def tz(self) -> ZoneInfo:
        """DIGEST_TIMEZONE."""
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
