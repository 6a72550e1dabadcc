"""One typed, validated configuration read from the environment (and `.env`).

Environment variables win over `.env` (python-dotenv's ``override=False``). Every
problem is reported as a :class:`ConfigError` whose message is one line that names
the variable; secrets are never echoed back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from bot.models import ACCOUNT_ID, SCOPES, Scope

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"  # where HTTP mode takes Slack's signed requests (bot.server; bot.startup says it)
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
SECRET_SETTINGS = frozenset({"slack_bot_token", "slack_app_token", "slack_signing_secret", "aws_external_id"})
QUEUE_HOST = re.compile(
    r"^(?:sqs(?:-fips)?\.)?(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.(?:queue\.)?amazonaws\.com(?:\.cn)?$"
)


class ConfigError(ValueError):
    """A configuration value is missing or malformed (message: one line)."""


@dataclass(frozen=True)
class Config:
    """Everything the bot reads from its environment, already validated."""

    slack_bot_token: str | None = None
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    port: int = 3000
    digest_channel: str | None = None
    digest_cron: str | None = "0 9 * * 1-5"
    digest_timezone: str = "UTC"
    admin_user_ids: frozenset[str] = frozenset()
    admin_usergroup: str | None = None
    database_url: str = "sqlite:///mfa_bot.db"
    email_domain: str | None = None
    grace_period_days: int = 0
    nudge_cooldown_hours: int = 24
    recheck_interval_minutes: int = 60
    retention_days: int = 400
    claim_lease_seconds: int = 300
    tag_slack_user_id: str = "slack-user-id"
    tag_email: str = "email"
    tag_mfa_exempt: str = "mfa-exempt"
    tag_exemptions: bool = True  # TAG_EXEMPTIONS=off: only exemptions granted in Slack count
    aws_endpoint_url: str | None = None
    aws_account_ids: tuple[str, ...] = ()
    aws_role_name: str | None = None
    aws_external_id: str | None = None
    aws_organization: bool = False
    aws_max_concurrency: int = 8
    audit_processes: int | Literal["auto"] = "auto"  # AUDIT_PROCESSES: worker processes for many accounts
    account_channels: Mapping[str, str] = field(default_factory=dict)
    escalate_after_days: int = 7
    escalation_channel: str | None = None
    report_deadline_seconds: float = 60.0
    live_check_concurrency: int = 16
    security_hub_import: bool = False
    events_queue_url: str | None = None
    alert_channel: str | None = None
    mfa_scope: Scope = "console"
    remediation_file: str | None = None  # REMEDIATION_FILE: a team's own wording of the set-up steps

    @property
    def alerts_to(self) -> str | None:
        """Where real-time alerts go: ALERT_CHANNEL, else DIGEST_CHANNEL."""
        return self.alert_channel or self.digest_channel

    def __repr__(self) -> str:
        """Every setting, with tokens and secrets as '***' and DATABASE_URL's password masked."""
        from bot.dburl import mask_url

        def shown(name: str, value: object) -> str:
            if name in SECRET_SETTINGS and value:
                return "'***'"
            if name == "database_url":
                return repr(mask_url(str(value)))
            return repr(value)

        settings = ", ".join(f"{f.name}={shown(f.name, getattr(self, f.name))}" for f in fields(self))
        return f"Config({settings})"

    @property
    def socket_mode(self) -> bool:
        """True when an app-level token selects Socket Mode."""
        return bool(self.slack_app_token)

    def require(self, *names: str) -> None:
        """Raise ConfigError for the first named setting that is unset."""
        for name in names:
            if not getattr(self, name.lower()):
                raise ConfigError(f"{name.upper()} is required for this command but is not set")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw[:40]!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw[:40]!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw[:40]!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw[:40]!r}")


def _str(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    return raw or None


def _prefixed(env: Mapping[str, str], name: str, prefix: str) -> str | None:
    value = _str(env, name)
    if value is not None and not value.startswith(prefix):
        # Never echo the value: it is a secret.
        raise ConfigError(f"{name} must start with {prefix!r}")
    return value


def _csv(env: Mapping[str, str], name: str) -> list[str]:
    return [part.strip() for part in env.get(name, "").split(",") if part.strip()]


def _admins(env: Mapping[str, str]) -> frozenset[str]:
    ids = _csv(env, "ADMIN_USER_IDS")
    for user_id in ids:
        if not SLACK_USER_ID.match(user_id):
            raise ConfigError(f"ADMIN_USER_IDS: {user_id[:40]!r} is not a Slack user ID (like U0123ABCD)")
    return frozenset(ids)


def _channel(env: Mapping[str, str], name: str) -> str | None:
    value = _str(env, name)
    if value is not None and not SLACK_CHANNEL_ID.match(value):
        raise ConfigError(f"{name} must be a channel ID (like C0123ABCD), got {value[:40]!r}")
    return value


def _account_ids(env: Mapping[str, str]) -> tuple[str, ...]:
    ids = _csv(env, "AWS_ACCOUNT_IDS")
    for account_id in ids:
        if not ACCOUNT_ID.match(account_id):
            raise ConfigError(f"AWS_ACCOUNT_IDS: {account_id[:40]!r} is not a 12-digit account ID")
    return tuple(dict.fromkeys(ids))


def _account_channels(env: Mapping[str, str]) -> dict[str, str]:
    routes: dict[str, str] = {}
    for pair in _csv(env, "ACCOUNT_CHANNELS"):
        account_id, _, channel = pair.partition(":")
        account_id, channel = account_id.strip(), channel.strip()
        if not ACCOUNT_ID.match(account_id) or not SLACK_CHANNEL_ID.match(channel):
            raise ConfigError(
                f"ACCOUNT_CHANNELS: {pair[:60]!r} is not ACCOUNT_ID:CHANNEL_ID (like 123456789012:C0123ABCD)"
            )
        routes[account_id] = channel
    return routes


def queue_region(url: str) -> str | None:
    """The AWS region of an SQS queue URL (`https://sqs.REGION.amazonaws.com/...`); None when the host names none."""
    host = urlsplit(url).hostname or ""
    match = QUEUE_HOST.match(host)
    return match["region"] if match else None


def _queue_url(env: Mapping[str, str]) -> str | None:
    url = _str(env, "EVENTS_QUEUE_URL")
    if url is None:
        return None
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme not in ("http", "https") or not parts.hostname or len(path) != 2 or not ACCOUNT_ID.match(path[0]):
        raise ConfigError(
            "EVENTS_QUEUE_URL must be an SQS queue URL like "
            f"https://sqs.us-east-1.amazonaws.com/123456789012/mfa-bot-events, got {url[:80]!r}"
        )
    return url


def _audit_processes(env: Mapping[str, str]) -> int | Literal["auto"]:
    raw = env.get("AUDIT_PROCESSES", "").strip().lower()
    if not raw or raw == "auto":
        return "auto"
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"AUDIT_PROCESSES must be auto or a whole number, got {raw[:40]!r}") from None
    if value < 0:
        raise ConfigError(f"AUDIT_PROCESSES must be auto or at least 0, got {value}")
    return value


def _scope(env: Mapping[str, str]) -> Scope:
    raw = env.get("MFA_SCOPE", "").strip().lower() or "console"
    if raw not in SCOPES:
        raise ConfigError(f"MFA_SCOPE must be console or all, got {raw[:40]!r}")
    return raw


def _digest_cron(env: Mapping[str, str]) -> str | None:
    raw = env.get("DIGEST_CRON", "").strip()
    if not raw:
        return "0 9 * * 1-5"
    if raw.lower() == "off":
        return None
    return raw


def _database_url(env: Mapping[str, str]) -> str:
    from bot.dburl import DatabaseUrlError, check_url

    url = _str(env, "DATABASE_URL") or "sqlite:///mfa_bot.db"
    try:
        check_url(url)  # no I/O, no SQLAlchemy: the shape only, so a typo is found before any network call
    except DatabaseUrlError as exc:
        raise ConfigError(str(exc)) from None
    return url


def _remediation_file(env: Mapping[str, str]) -> str | None:
    """REMEDIATION_FILE: a TOML file in bot/messages/remediation.toml's shape (read and checked at startup)."""
    path = _str(env, "REMEDIATION_FILE")
    if path and not Path(path).is_file():
        raise ConfigError(f"REMEDIATION_FILE {path[:200]!r} is not a file")
    return path


def load_config(environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env") -> Config:
    """Read and validate the configuration; environment variables win over `.env`."""
    env: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    env.update(os.environ if environ is None else environ)

    database_url = _database_url(env)
    slack_api_url = _str(env, "SLACK_API_URL") or DEFAULT_SLACK_API_URL
    if not slack_api_url.endswith("/"):
        slack_api_url += "/"
    if not slack_api_url.startswith(("http://", "https://")):
        raise ConfigError(f"SLACK_API_URL must be an http(s) URL, got {slack_api_url[:60]!r}")

    organization = _bool(env, "AWS_ORGANIZATION", False)
    account_ids = _account_ids(env)
    role_name = _str(env, "AWS_ROLE_NAME")
    if (organization or account_ids) and not role_name:
        raise ConfigError("AWS_ROLE_NAME is required with AWS_ACCOUNT_IDS or AWS_ORGANIZATION=true")
    if organization and account_ids:
        raise ConfigError("set either AWS_ACCOUNT_IDS or AWS_ORGANIZATION=true, not both")

    digest_channel = _channel(env, "DIGEST_CHANNEL")
    account_channels = _account_channels(env)
    escalation_channel = _channel(env, "ESCALATION_CHANNEL")
    if (account_channels or escalation_channel) and not digest_channel:
        raise ConfigError("ACCOUNT_CHANNELS and ESCALATION_CHANNEL work with the digest: set DIGEST_CHANNEL too")

    events_queue_url = _queue_url(env)
    alert_channel = _channel(env, "ALERT_CHANNEL")
    if events_queue_url and not (alert_channel or digest_channel):
        raise ConfigError("EVENTS_QUEUE_URL sends alerts to a channel: set ALERT_CHANNEL or DIGEST_CHANNEL")

    timezone = _str(env, "DIGEST_TIMEZONE") or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"DIGEST_TIMEZONE must be an IANA zone like Europe/Berlin, got {timezone[:60]!r}") from None
    return Config(
        slack_bot_token=_prefixed(env, "SLACK_BOT_TOKEN", "xoxb-"),
        slack_app_token=_prefixed(env, "SLACK_APP_TOKEN", "xapp-"),
        slack_signing_secret=_str(env, "SLACK_SIGNING_SECRET"),
        slack_api_url=slack_api_url,
        port=_int(env, "PORT", 3000, minimum=1),
        digest_channel=digest_channel,
        digest_cron=_digest_cron(env),
        digest_timezone=timezone,
        admin_user_ids=_admins(env),
        admin_usergroup=_str(env, "ADMIN_USERGROUP"),
        database_url=database_url,
        email_domain=(_str(env, "EMAIL_DOMAIN") or "").lstrip("@") or None,
        grace_period_days=_int(env, "GRACE_PERIOD_DAYS", 0),
        nudge_cooldown_hours=_int(env, "NUDGE_COOLDOWN_HOURS", 24),
        recheck_interval_minutes=_int(env, "RECHECK_INTERVAL_MINUTES", 60),
        retention_days=_int(env, "RETENTION_DAYS", 400, minimum=1),
        claim_lease_seconds=_int(env, "CLAIM_LEASE_SECONDS", 300, minimum=1),
        tag_slack_user_id=_str(env, "TAG_SLACK_USER_ID") or "slack-user-id",
        tag_email=_str(env, "TAG_EMAIL") or "email",
        tag_mfa_exempt=_str(env, "TAG_MFA_EXEMPT") or "mfa-exempt",
        tag_exemptions=_bool(env, "TAG_EXEMPTIONS", True),
        aws_endpoint_url=_str(env, "AWS_ENDPOINT_URL"),
        aws_account_ids=account_ids,
        aws_role_name=role_name,
        aws_external_id=_str(env, "AWS_EXTERNAL_ID"),
        aws_organization=organization,
        aws_max_concurrency=_int(env, "AWS_MAX_CONCURRENCY", 8, minimum=1),
        audit_processes=_audit_processes(env),
        account_channels=account_channels,
        escalate_after_days=_int(env, "ESCALATE_AFTER_DAYS", 7, minimum=1),
        escalation_channel=escalation_channel,
        report_deadline_seconds=_float(env, "REPORT_DEADLINE_SECONDS", 60.0),
        live_check_concurrency=_int(env, "LIVE_CHECK_CONCURRENCY", 16, minimum=1),
        security_hub_import=_bool(env, "SECURITY_HUB_IMPORT", False),
        remediation_file=_remediation_file(env),
        events_queue_url=events_queue_url,
        alert_channel=alert_channel,
        mfa_scope=_scope(env),
    )
