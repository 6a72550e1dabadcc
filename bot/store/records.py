"""Plain, frozen records the store returns (all datetimes timezone-aware UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot import models
from bot.models import Episode  # a domain record (bot.escalation reads it); the store returns it


@dataclass(frozen=True)
class Scan:
    """One audit run of one account; `error` set means the account could not be read."""

    id: int
    account_id: str
    started_at: datetime
    finished_at: datetime | None
    violation: int
    compliant: int
    no_console: int
    exempt: int
    grace: int
    error: str | None


@dataclass(frozen=True)
class EpisodeChanges:
    """What `Store.sync_episodes` did: episodes opened, still open (last_seen bumped), closed."""

    opened: list[Episode] = field(default_factory=list)
    continued: list[Episode] = field(default_factory=list)
    closed: list[Episode] = field(default_factory=list)


@dataclass(frozen=True)
class Changes:
    """Episodes opened (`new`) and closed (`fixed`, or `exempted`) after a point in time; one may be in both."""

    new: list[Episode]
    fixed: list[Episode]
    exempted: list[Episode] = field(default_factory=list)  # closed because they became exempt, not fixed


@dataclass(frozen=True)
class StoredExemption:
    """A time-limited exemption granted from Slack; applies while not revoked and until > now."""

    id: int
    arn: str
    account_id: str
    user_name: str
    reason: str
    until: datetime
    granted_by: str
    granted_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None

    def to_policy(self) -> models.Exemption:
        """The form `bot.models.AuditPolicy.exemptions` takes."""
        return models.Exemption(reason=self.reason, until=self.until, granted_by=self.granted_by)


@dataclass(frozen=True)
class Nudge:
    """One DM attempt: outcome is "sent", "failed", "skipped_cooldown" or "unknown" (may have gone)."""

    id: int
    slack_user_id: str
    sent_by: str
    at: datetime
    outcome: str
    error: str | None
    channel: str | None
    message_ts: str | None
    arns: tuple[str, ...] = ()


@dataclass(frozen=True)
class NudgeClaim:
    """The outcome of `Store.claim_nudge_window`: who holds the person's window, since when.

    When `won`, the caller holds it (claimed_by/claimed_at are its own); otherwise they name
    the earlier nudge that is still within the cooldown.
    """

    won: bool
    slack_user_id: str
    claimed_at: datetime
    claimed_by: str


@dataclass(frozen=True)
class OutboxItem:
    """One queued DM of a "Nudge all" batch."""

    id: int
    batch_id: str
    slack_user_id: str
    arns: tuple[str, ...]
    requested_by: str
    created_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    attempts: int
    completed_at: datetime | None
    outcome: str | None
    error: str | None


@dataclass(frozen=True)
class Digest:
    """One digest claim; posted once `message_ts` is set."""

    id: int
    channel: str
    period_key: str
    posted_by: str
    claimed_at: datetime
    posted_at: datetime | None
    message_ts: str | None
    thread_ts: str | None
    holder: str | None = None  # the process holding the lease (None once posted)
    lease_until: datetime | None = None
    episode_id: int | None = None  # an escalation claim's violation episode

    @property
    def posted(self) -> bool:
        """Posted: the lease is over for good, nobody takes it over."""
        return self.posted_at is not None


@dataclass(frozen=True)
class NudgeBatch:
    """A "Nudge all" batch: who asked, where its "finished" notice goes, and whether it went."""

    batch_id: str
    requested_by: str
    created_at: datetime
    response_url: str | None
    notice_holder: str | None
    notice_lease_until: datetime | None
    notified_at: datetime | None


@dataclass(frozen=True)
class IdentityChange:
    """The Slack person an IAM user resolves to, and the one before it (None: never changed)."""

    arn: str
    slack_user_id: str
    source: str
    previous_slack_user_id: str | None = None
    previous_source: str | None = None
    changed_at: datetime | None = None

    @property
    def detail(self) -> str:
        """For the audit trail: `U0OLD (email tag) -> U0NEW (slack-user-id tag)`."""
        return f"{self.previous_slack_user_id} ({self.previous_source}) -> {self.slack_user_id} ({self.source})"


@dataclass(frozen=True)
class Action:
    """One audit-trail entry: who did what to whom, and whether it was allowed."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    outcome: str


@dataclass(frozen=True)
class Snapshot:
    """The last successful audit of one account: its findings as JSON (`bot.snapshot` reads them)."""

    account_id: str
    audited_at: datetime
    saved_at: datetime
    findings: str


@dataclass(frozen=True)
class EventClaim:
    """The outcome of `Store.claim_event` for one CloudTrail eventID.

    `won`: this process holds it now (`steps` lists what an earlier attempt already did).
    Otherwise `handled` says whether it is done (delete the message) or another process holds
    its lease (leave the message; it comes back if that process fails).
    """

    event_id: str
    won: bool
    handled: bool
    attempts: int = 0
    steps: tuple[str, ...] = ()
    outcome: str | None = None
