"""What `serve` says when it starts: one INFO line per fact, never a token, secret or password."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot.config import EVENTS_PATH, Config

logger = logging.getLogger("bot.startup")
MAX_LISTED_ACCOUNTS = 5


def _accounts(config: Config) -> str:
    if config.aws_organization:
        return f"every active account of the AWS Organization, through role {config.aws_role_name}"
    if config.aws_account_ids:
        ids = config.aws_account_ids
        listed = ", ".join(ids[:MAX_LISTED_ACCOUNTS]) + (f" and {len(ids) - MAX_LISTED_ACCOUNTS} more" if
                                                          len(ids) > MAX_LISTED_ACCOUNTS else "")  # fmt: skip
        return f"{len(ids)} listed ({listed}), through role {config.aws_role_name}"
    return "the AWS credentials' own account"


def _digest(config: Config, now: datetime) -> str:
    from bot.scheduler import digest_trigger

    if config.digest_cron is None:
        return "off (DIGEST_CRON=off)"
    if not config.digest_channel:
        return "off (DIGEST_CHANNEL is not set)"
    trigger = digest_trigger(config)
    when = trigger.get_next_fire_time(None, now) if trigger is not None else None
    routed = f", {len(config.account_channels)} account channel(s)" if config.account_channels else ""
    next_at = f"; next at {when.isoformat(timespec='minutes')}" if when else ""
    return f"{config.digest_cron} ({config.digest_timezone}) to {config.digest_channel}{routed}{next_at}"


def startup_facts(config: Config, now: datetime | None = None) -> list[str]:
    """The facts an operator checks first, one line each: mode, accounts, digest, events, database."""
    from bot.store import mask_url

    mode = "Socket Mode" if config.socket_mode else f"HTTP on port {config.port} (POST {EVENTS_PATH})"
    queue = config.events_queue_url
    return [
        f"mode: {mode}",
        f"accounts: {_accounts(config)}",
        f"digest: {_digest(config, now or datetime.now(UTC))}",
        f"events queue: {queue or 'off (EVENTS_QUEUE_URL is not set)'}",
        f"database: {mask_url(config.database_url)}",
        f"Security Hub import: {'on' if config.security_hub_import else 'off'}",
    ]


def log_startup(config: Config) -> None:
    """Log the startup facts at INFO."""
    for line in startup_facts(config):
        logger.info("%s", line)


def quiet_libraries(level: int) -> None:
    """Third-party chatter at WARNING (at least): AWS SDK, Alembic, APScheduler's job bookkeeping, uvicorn's
    start-up lines (`bot.startup` says the mode and port once)."""
    for noisy in ("botocore", "alembic", "apscheduler", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
