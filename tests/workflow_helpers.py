"""Builders shared by the digest, nudge and re-check tests: synthetic audits and Services on the stand-in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from bot.config import Config
from bot.models import AccountFindings, AuditResult, RootStatus, UserFinding
from bot.pacing import PacedSlack
from bot.service import record_result
from bot.services import Services, build_services
from bot.slack import make_web_client
from bot.store import Store
from tests.slack_standin import ADMIN, OTHER_ADMIN, SlackStandIn

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
CHANNEL = "C0DIGEST1"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # a Friday


def arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:user/{name}"


def violator(name: str, account: str = ACCOUNT, tags: dict[str, str] | None = None, since_days: int = 3) -> UserFinding:
    return UserFinding(
        account_id=account,
        user_name=name,
        arn=arn(name, account),
        console_access=True,
        mfa_devices=(),
        status="violation",
        reason="console password, no MFA device",
        console_since=NOW - timedelta(days=since_days),
        checked_live=True,
        tags=dict(tags or {}),
    )


def account(
    users: Sequence[UserFinding],
    account_id: str = ACCOUNT,
    alias: str | None = "acme",
    error: str | None = None,
    root: RootStatus | None = None,
) -> AccountFindings:
    return AccountFindings(
        account_id=account_id,
        alias=alias,
        error=error,
        report_generated_at=None if error else NOW,
        root=root or RootStatus(mfa_enabled=True, hardware=True),
        users=[] if error else list(users),
    )


def result(*accounts: AccountFindings, at: datetime = NOW) -> AuditResult:
    return AuditResult(generated_at=at, accounts=list(accounts))


def config_for(standin: SlackStandIn, **overrides: object) -> Config:
    values: dict[str, object] = {
        "slack_bot_token": "xoxb-test-token",
        "slack_api_url": standin.api_url,
        "digest_channel": CHANNEL,
        "admin_user_ids": frozenset({ADMIN, OTHER_ADMIN}),
        "email_domain": "example.com",
    }
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def recorded(
    store: Store, audit: Callable[[], AuditResult], clock: Callable[[], datetime]
) -> Callable[[], AuditResult]:
    """`audit` as the bot runs it: its result recorded (scans, episodes) before it is returned."""

    def run() -> AuditResult:
        found = audit()
        record_result(store, found, clock(), clock())
        return found

    return run


def make_services(
    store: Store,
    standin: SlackStandIn,
    audit: Callable[[], AuditResult],
    clock: Callable[[], datetime] | None = None,
    speed: float = 1000.0,
    **config: object,
) -> Services:
    """Services on the stand-in, pacing `speed` times Slack's documented rates, with a recorded `audit`.

    Every audit is a new one (`recent_seconds=0`): a test sees each change it makes at once.
    """
    clock = clock or Clock()
    cfg = config_for(standin, **config)
    client = make_web_client(cfg)
    return build_services(
        cfg,
        client,
        store,
        slack=PacedSlack.scaled(client, speed),
        run_audit=recorded(store, audit, clock),
        clock=clock,
        recent_seconds=0,
    )
