"""The one service container: what the listeners, the scheduler and the workflows share, built once.

`Services` holds the edges (config, store, paced Slack, roles, identity chain, the recorded
audit, the clock, the job pool) and the little state the workflows share (account aliases,
key-only violators, kept digest views), both from `bot.edges.Edges`, and the workflows
themselves (`nudger`, `rechecker`, `home`), which are built with it. `build_services` is the
production wiring; tests pass their own audit, clock or pacing to it. Listeners find the
container in Bolt's `context["services"]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from slack_sdk.web import WebClient

from bot.config import Config
from bot.digest.post import DigestOutcome, post_manual_digest
from bot.digest.rows import refresh_rows
from bot.edges import RECENT_AUDIT_SECONDS, Edges
from bot.home_tab import HomeTab
from bot.identity import IdentityChain, Roles
from bot.models import AuditResult
from bot.nudges import Nudger
from bot.pacing import PacedSlack
from bot.recheck import Rechecker
from bot.service import run_recorded_audit, utc_now
from bot.slack import make_web_client

if TYPE_CHECKING:
    from bot.store import Store

logger = logging.getLogger(__name__)

FAILED_TEXT = ":warning: Something went wrong; the error is in the bot's log."
DATABASE_UNREACHABLE_TEXT = (
    ":warning: The database is unreachable, so nothing was done. Try again in a few minutes; "
    "the bot's log has the details."
)


def report_failure(exc: BaseException, what: str) -> str:
    """Log a failed command or button (one line when the database is unreachable) and return what to tell the person."""
    from bot.store.db import is_unreachable

    if is_unreachable(exc):
        logger.error("%s failed: the database is unreachable (%s)", what, type(exc).__name__)
        return DATABASE_UNREACHABLE_TEXT
    logger.exception("%s failed", what)
    return FAILED_TEXT


@dataclass
class Services(Edges):
    """The one service container: the edges (`Edges`) and the workflows built with them, once.

    Listeners find it in Bolt's `context["services"]`; the scheduler and the event poller get the
    same object. `nudger`, `rechecker` and `home` serve the buttons, the slash command, the
    scheduler and the App Home alike.
    """

    nudger: Nudger = field(init=False)
    rechecker: Rechecker = field(init=False)
    home: HomeTab = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.nudger = Nudger(self)
        self.rechecker = Rechecker(self)
        self.home = HomeTab(self)

    def audited(self, result: AuditResult) -> AuditResult:
        """Call after each recorded audit: the App Homes opened lately are published again (on the job pool)."""
        try:
            self.jobs.submit(_refresh_homes, self.home)
        except RuntimeError:  # the pool is shutting down
            logger.info("no App Home refresh: the bot is stopping")
        return result

    def refresh_digest_rows(self, arns: Iterable[str]) -> int:
        """chat.update the digest messages that list any of `arns` (`bot.digest.rows.refresh_rows`)."""
        return refresh_rows(self, arns)

    def post_manual_digest(self, requested_by: str) -> DigestOutcome:
        """Post a digest now under its own manual period key (`bot.digest.post.post_manual_digest`)."""
        return post_manual_digest(self, requested_by)


def _refresh_homes(home: HomeTab) -> None:
    try:
        home.refresh_recent()
    except Exception:
        logger.exception("could not refresh the App Homes after an audit")


def build_services(
    config: Config,
    client: WebClient,
    store: Store,
    slack: PacedSlack | None = None,
    *,
    run_audit: Callable[[], AuditResult] | None = None,
    account_audit: Callable[[str], AuditResult] | None = None,
    clock: Callable[[], datetime] = utc_now,
    identity: IdentityChain | None = None,
    roles: Roles | None = None,
    recent_seconds: float = RECENT_AUDIT_SECONDS,
) -> Services:
    """Production wiring: the recorded audit (stored exemptions honoured, scans kept), directory, roles.

    `slack`: the paced Web API calls the workflows make (default: Slack's documented rates).
    Anything else given replaces its production part (tests: an audit, a clock, a directory).
    """

    def audit() -> AuditResult:
        return run_recorded_audit(config, store, clock=clock)

    def audit_one(account: str) -> AuditResult:
        return run_recorded_audit(config, store, only=account, clock=clock)

    return Services(
        config=config,
        store=store,
        slack=slack or PacedSlack(client),
        roles=roles or Roles(config.admin_user_ids, client=client, usergroup=config.admin_usergroup),
        identity=identity or IdentityChain.from_config(config, client),
        run_audit=run_audit or audit,
        account_audit=account_audit or (None if run_audit else audit_one),
        clock=clock,
        recent_seconds=recent_seconds,
    )


def post_digest_now(config: Config) -> int:
    """`python -m bot digest`: post one digest now; 0 when posted (everywhere), 1 when it could not be."""
    from bot.store import Store

    config.require("SLACK_BOT_TOKEN", "DIGEST_CHANNEL")
    with Store.open(config.database_url) as store:
        services = build_services(config, make_web_client(config), store)
        try:
            outcome = services.post_manual_digest("cli")
        finally:
            services.jobs.shutdown(wait=True)  # the App Home refresh after the audit, before the store closes
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
