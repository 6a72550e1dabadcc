"""The App Home tab: `app_home_opened` publishes the person's Home; its admin buttons run an audit or post the digest.

Every listener acks at once (Bolt acks events itself) and hands the work to the job pool. The
Home is built from the last recorded audit: opening it never calls AWS. The buttons act through
the same services as `/mfa-check` (the single-flight recorded audit) and `/mfa-check digest`;
a non-admin pressing one (an old or forged view) is refused, the refusal recorded in the audit
trail. Answers appear at the top of the clicker's Home (a Home has no response_url). The
re-check buttons on the Home are the DM's `recheck` buttons, served by `handlers.actions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import Ack, App

from bot import home
from bot.home_tab import HomeTab
from bot.messages.blocks import REFUSAL
from bot.services import Services
from handlers.commands import run_command

logger = logging.getLogger(__name__)

Job = Callable[..., None]


def register(app: App) -> None:
    """Register the App Home listeners."""
    app.event("app_home_opened")(on_home_opened)
    app.action(home.HOME_AUDIT_ACTION)(on_run_audit)
    app.action(home.HOME_DIGEST_ACTION)(on_post_digest)
    app.action(home.SETUP_LINK_ACTION)(on_setup_link)


def on_home_opened(event: dict, context: dict, logger: Any) -> None:
    """The Home tab was opened: publish it (the Messages tab opening the same event is ignored)."""
    user = str(event.get("user") or "")
    if event.get("tab") != "home" or not user:
        return
    _submit(context, run_home_opened, logger, user)


def on_run_audit(ack: Ack, body: dict, context: dict, logger: Any) -> None:
    """The "Run audit now" button (admins): the audit `/mfa-check` runs; the Home shows the result."""
    ack()
    _submit(context, run_audit, logger, dict(body), time.monotonic())


def on_post_digest(ack: Ack, body: dict, context: dict, logger: Any) -> None:
    """The "Post digest now" button (admins): what `/mfa-check digest` does; the Home says how it went."""
    ack()
    _submit(context, run_post_digest, logger, dict(body))


def on_setup_link(ack: Ack) -> None:
    """The set-up steps button only opens its link: nothing to do but ack."""
    ack()


def _submit(context: dict, job: Job, log: Any, *args: Any) -> None:
    try:
        services: Services = context["services"]
        services.jobs.submit(_run_logged, job, services, *args)
    except Exception:
        log.exception("could not start %s", job.__name__)


def _run_logged(job: Job, services: Services, *args: Any) -> None:
    try:
        job(services, *args)
    except Exception:
        logger.exception("%s failed", job.__name__)


def run_home_opened(services: Services, user: str) -> None:
    """Note the visit and publish the person's Home."""
    services.home.opened(user)


def _clicker(body: Mapping[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def _admin_home(services: Services, body: Mapping[str, Any], action: str) -> tuple[str, HomeTab] | None:
    """(clicker, Home) when the clicker is an admin; otherwise refuse (audit trail, the Home says so) and None."""
    clicker = _clicker(body)
    tab = services.home
    if clicker and services.roles.is_admin(clicker):
        return clicker, tab
    services.record(clicker or "unknown", f"refused:{action}", None, None, outcome="refused")
    if clicker:
        tab.publish(clicker, notice=REFUSAL)
    return None


def run_audit(services: Services, body: Mapping[str, Any], asked_at: float) -> None:
    """Run (or join) the recorded audit, then show its outcome on the clicker's Home."""
    admin = _admin_home(services, body, home.HOME_AUDIT_ACTION)
    if admin is None:
        return
    clicker, tab = admin
    tab.publish(clicker, notice=":hourglass_flowing_sand: Auditing every account…")
    try:
        result = services.shared_audit(asked_at)
    except Exception:
        logger.exception("the audit started from the App Home failed")
        tab.publish(clicker, notice=":warning: The audit failed; the error is in the bot's log.")
        return
    violations = len(result.violations)
    text = (
        f":white_check_mark: Audit finished {home.when(result.generated_at)}: "
        f"{violations} violation{'' if violations == 1 else 's'} in {len(result.accounts)} account(s)"
    )
    if result.errors:
        text = f":warning: {text[len(':white_check_mark: ') :]}; *{len(result.errors)} could NOT be audited*"
    tab.publish(clicker, notice=text + ".")


def run_post_digest(services: Services, body: Mapping[str, Any]) -> None:
    """`/mfa-check digest` on the clicker's behalf; its answers appear on their Home."""
    admin = _admin_home(services, body, home.HOME_DIGEST_ACTION)
    if admin is None:
        return
    clicker, tab = admin
    run_command(services, tab.client, {"user_id": clicker, "text": "digest"}, tab.responder(clicker))
