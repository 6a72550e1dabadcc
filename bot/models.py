"""Plain data passed between the layers: facts collected from AWS and findings judged from them.

Nothing here does I/O. `bot.aws` fills the facts, `bot.audit` turns facts into findings,
`bot.messages` and `bot.report` render findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

DeviceType = Literal["virtual", "fido", "hardware"]
Status = Literal["violation", "compliant", "no_console", "exempt", "grace"]
Scope = Literal["console", "all"]  # MFA_SCOPE: console passwords (IAM.5, CIS) or access keys too (IAM.19)
SCOPES: tuple[Scope, ...] = ("console", "all")
STATUSES: tuple[Status, ...] = ("violation", "exempt", "grace", "compliant", "no_console")
ACCOUNT_ID = re.compile(r"^\d{12}$")  # an AWS account ID: twelve digits


@dataclass(frozen=True)
class MfaDevice:
    """One enabled MFA device of an IAM user."""

    serial: str
    type: DeviceType
    enabled_at: datetime | None = None


@dataclass(frozen=True)
class AccessKeyUse:
    """One access key slot of a credential report row (`access_key_N_*` columns)."""

    number: int  # 1 or 2
    active: bool
    last_used: datetime | None = None  # None: never used (or unknown)


@dataclass(frozen=True)
class ReportRow:
    """One row of the IAM credential report, typed."""

    user: str
    arn: str
    user_creation_time: datetime | None
    password_enabled: bool | None  # None: "not_supported" (root) or unreadable
    password_last_changed: datetime | None
    mfa_active: bool
    access_keys: tuple[AccessKeyUse, ...] = ()

    @property
    def active_keys(self) -> tuple[AccessKeyUse, ...]:
        return tuple(k for k in self.access_keys if k.active)


@dataclass(frozen=True)
class IamUser:
    """A user as ListUsers returned it."""

    name: str
    arn: str
    user_id: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class LiveState:
    """What GetLoginProfile + ListMFADevices said about a user just now."""

    exists: bool = True
    console_since: datetime | None = None  # login profile creation; None: no console password
    password_reset_required: bool = False
    mfa_devices: tuple[MfaDevice, ...] = ()

    @property
    def console_access(self) -> bool:
        return self.exists and self.console_since is not None


@dataclass(frozen=True)
class RootStatus:
    """The root user, reported apart from IAM users (None: could not be read).

    `password_present` / `access_keys_present` come from GetAccountSummary
    (AccountPasswordPresent, AccountAccessKeysPresent); None when the summary lacks them.
    """

    mfa_enabled: bool | None = None
    hardware: bool | None = None
    password_present: bool | None = None
    access_keys_present: bool | None = None

    @property
    def no_credentials(self) -> bool:
        """No root password and no root access keys (e.g. centralized root access): root cannot sign in."""
        return self.password_present is False and self.access_keys_present is False

    @property
    def needs_attention(self) -> bool:
        """A warning: root access keys exist, or MFA is off while a password may exist."""
        if self.access_keys_present:
            return True
        return self.mfa_enabled is False and self.password_present is not False


@dataclass
class AccountFacts:
    """Everything collected from one account; `error` set means the audit of it failed."""

    account_id: str
    alias: str | None = None
    partition: str = "aws"
    error: str | None = None
    report_generated_at: datetime | None = None
    report_rows: dict[str, ReportRow] = field(default_factory=dict)
    users: list[IamUser] = field(default_factory=list)
    virtual_devices: dict[str, tuple[MfaDevice, ...]] = field(default_factory=dict)  # user ARN -> devices
    live: dict[str, LiveState] = field(default_factory=dict)  # user ARN -> live state
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # user ARN -> tags
    devices: dict[str, tuple[MfaDevice, ...]] = field(default_factory=dict)  # user ARN -> ListMFADevices now
    root: RootStatus = field(default_factory=RootStatus)
    fresh_through: datetime | None = None  # the newest moment the facts cover
    cloudtrail_error: str | None = None  # LookupEvents failed: its error code; the report alone was used
    changed_since_report: frozenset[str] = frozenset()  # user names CloudTrail names after the report
    pending_virtual_names: frozenset[str] = frozenset()  # virtual devices created, never enabled (by name)


@dataclass(frozen=True)
class Exemption:
    """A stored, time-limited exemption (the `mfa-exempt` tag has no end date)."""

    reason: str
    until: datetime | None = None
    granted_by: str | None = None


@dataclass(frozen=True)
class AuditPolicy:
    """The knobs of the rule: when it is, grace days, tag keys, stored exemptions."""

    now: datetime
    grace_period_days: int = 0
    tag_mfa_exempt: str = "mfa-exempt"
    scope: Scope = "console"
    exemptions: dict[str, Exemption] = field(default_factory=dict)  # user ARN -> exemption
    tag_exemptions: bool = True  # False: the mfa-exempt tag is ignored (TAG_EXEMPTIONS=off)


def arn_user(arn: str) -> tuple[str, str]:
    """(account id, IAM user name) of a user ARN (`arn:aws:iam::123456789012:user/path/name`)."""
    parts = arn.split(":", 5)
    account_id = parts[4] if len(parts) > 4 else ""
    resource = parts[5] if len(parts) > 5 else arn
    return account_id, resource.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class UserFinding:
    """The verdict on one IAM user."""

    account_id: str
    user_name: str
    arn: str
    console_access: bool
    mfa_devices: tuple[MfaDevice, ...]
    status: Status
    reason: str | None = None
    console_since: datetime | None = None  # when the console password appeared (live check)
    grace_until: datetime | None = None
    exempt_until: datetime | None = None
    checked_live: bool = False
    access_keys: tuple[AccessKeyUse, ...] = ()  # the active keys a key-only violation is about (MFA_SCOPE=all)
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    slack_user_id: str | None = None
    exempt_by_tag: bool = False  # exempt by the mfa-exempt tag, set outside Slack (not granted in Slack)


@dataclass
class AccountFindings:
    """The verdict on one account."""

    account_id: str
    alias: str | None
    error: str | None
    report_generated_at: datetime | None
    root: RootStatus
    users: list[UserFinding]
    security_hub_error: str | None = None  # SECURITY_HUB_IMPORT: why the import failed (the audit stands)
    fresh_through: datetime | None = None  # the newest moment its facts cover (None: unknown)
    cloudtrail_error: str | None = None  # set when CloudTrail could not be read: findings are as of the report

    def by_status(self, status: Status) -> list[UserFinding]:
        return [u for u in self.users if u.status == status]

    @property
    def label(self) -> str:
        """`alias (id)` or just the id."""
        return f"{self.alias} ({self.account_id})" if self.alias else self.account_id


@dataclass
class AuditResult:
    """One audit run over one or many accounts."""

    generated_at: datetime
    accounts: list[AccountFindings]
    peak_accounts_in_flight: int = 0  # never above AWS_MAX_CONCURRENCY

    def summary(self) -> dict[str, int]:
        counts = {status: 0 for status in ("violation", "compliant", "no_console", "exempt", "grace")}
        for account in self.accounts:
            for user in account.users:
                counts[user.status] += 1
        return counts

    @property
    def errors(self) -> list[AccountFindings]:
        return [a for a in self.accounts if a.error]

    @property
    def violations(self) -> list[UserFinding]:
        return [u for a in self.accounts for u in a.users if u.status == "violation"]


def violation_finding(arn: str, tags: dict[str, str] | None = None) -> UserFinding:
    """A violating user known only by its ARN (and tags): enough to name, resolve and render it."""
    account_id, user_name = arn_user(arn)
    return UserFinding(
        account_id=account_id,
        user_name=user_name,
        arn=arn,
        console_access=True,
        mfa_devices=(),
        status="violation",
        tags=dict(tags or {}),
    )


@dataclass(frozen=True)
class Episode:
    """One stretch of time an IAM user violated the rule; open while `fixed_at` is None."""

    id: int
    arn: str
    account_id: str
    user_name: str
    first_seen: datetime
    last_seen: datetime
    fixed_at: datetime | None
    closed_as: str | None = None  # "exempted": it became exempt, not fixed (None: fixed, or open)
