"""The audit service: the one entry point that handlers, the scheduler and the CLI call.

It wires the edges (boto3 session, clock, stored exemptions) to the pure rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bot import audit, aws
from bot.config import Config
from bot.models import AccountFindings, AuditPolicy, AuditResult, Exemption, RootStatus

UNKNOWN_ACCOUNT = "unknown"


def utc_now() -> datetime:
    """The clock edge."""
    return datetime.now(UTC)


def collect_options(config: Config) -> aws.CollectOptions:
    """Collection tunables from the configuration."""
    return aws.CollectOptions(
        report_deadline_seconds=config.report_deadline_seconds,
        live_check_concurrency=config.live_check_concurrency,
    )


def audit_policy(config: Config, now: datetime, exemptions: Mapping[str, Exemption] | None = None) -> AuditPolicy:
    """The rule's knobs for one run."""
    return AuditPolicy(
        now=now,
        grace_period_days=config.grace_period_days,
        tag_mfa_exempt=config.tag_mfa_exempt,
        exemptions=dict(exemptions or {}),
    )


def failed_account(account_id: str, error: str, alias: str | None = None) -> AccountFindings:
    """Findings for an account that could not be read: an error, never a pass."""
    return AccountFindings(
        account_id=account_id, alias=alias, error=error, report_generated_at=None, root=RootStatus(), users=[]
    )


def audit_current_account(
    config: Config,
    session: boto3.session.Session | None = None,
    now: datetime | None = None,
    exemptions: Mapping[str, Exemption] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> AccountFindings:
    """Audit the account of the credentials in use."""
    now = now or utc_now()
    try:
        session = session or aws.make_session()
        iam, sts = aws.clients_for(session, config.aws_endpoint_url, config.live_check_concurrency)
        account_id, partition = aws.account_identity(sts)
    except (ClientError, BotoCoreError) as exc:
        return failed_account(UNKNOWN_ACCOUNT, aws.describe_error(exc))
    kwargs: dict[str, Any] = {"sleep": sleep} if sleep else {}
    facts = aws.collect_account(iam, account_id, partition, collect_options(config), **kwargs)
    return audit.judge_account(facts, audit_policy(config, now, exemptions))


def run_audit(
    config: Config,
    session: boto3.session.Session | None = None,
    now: datetime | None = None,
    exemptions: Mapping[str, Exemption] | None = None,
) -> AuditResult:
    """Audit every configured account and return the findings."""
    now = now or utc_now()
    account = audit_current_account(config, session=session, now=now, exemptions=exemptions)
    return AuditResult(generated_at=now, accounts=[account])
