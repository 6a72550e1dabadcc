"""Buttons: "Nudge" and "Nudge all" in the digest, "I've set it up – re-check" in the nudge DM.

Each listener acks at once and hands the work to the job pool. Answers to the clicker are
ephemeral (response_url). Only admins may nudge; a refusal names no IAM user and goes to the
audit trail. Only the person the DM is for (by the identity chain) or an admin may re-check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import Ack, App

from bot.buttons import NUDGE_ACTION, NUDGE_ALL_ACTION, RECHECK_ACTION, parse_nudge, parse_nudge_all, parse_recheck
from bot.messages.blocks import REFUSAL, text_message
from bot.services import Services, report_failure
from bot.slack import Responder, make_responder

logger = logging.getLogger(__name__)

Job = Callable[[Services, Mapping[str, Any]], None]


def register(app: App) -> None:
    """Register the digest and DM button listeners."""
    app.action(NUDGE_ACTION)(on_nudge)
    app.action(NUDGE_ALL_ACTION)(on_nudge_all)
    app.action(RECHECK_ACTION)(on_recheck)


def on_nudge(ack: Ack, body: dict, context: dict, logger: Any) -> None:
    """A digest row's "Nudge" (admins): DM that IAM user's person their steps."""
    ack()
    _submit(context, run_nudge, body, logger)


def on_nudge_all(ack: Ack, body: dict, context: dict, logger: Any) -> None:
    """The digest's "Nudge all" (admins): queue one DM per person with violations."""
    ack()
    _submit(context, run_nudge_all, body, logger)


def on_recheck(ack: Ack, body: dict, context: dict, logger: Any) -> None:
    """The DM's re-check (its person or an admin): check that IAM user live now."""
    ack()
    _submit(context, run_recheck, body, logger)


def _submit(context: dict, job: Job, body: dict, log: Any) -> None:
    try:
        services: Services = context["services"]
        services.jobs.submit(_run_logged, job, services, dict(body))
    except Exception:
        log.exception("could not start the %s button", job.__name__)


def _run_logged(job: Job, services: Services, body: Mapping[str, Any]) -> None:
    try:
        job(services, body)
    except Exception as exc:
        text = report_failure(exc, f"the {job.__name__} button")
        try:
            _tell(_responder(body, services), text)
        except Exception:
            logger.exception("could not tell the clicker that the button failed")


def _responder(body: Mapping[str, Any], services: Services | None = None) -> Responder:
    """Where the answer goes: the response_url; for a button on the App Home, the top of the clicker's Home."""
    url = body.get("response_url")
    if url:
        return make_responder(str(url))
    on_home = (body.get("view") or {}).get("type") == "home"
    if on_home and services is not None and _clicker(body):
        return services.home.responder(_clicker(body))

    def nowhere(**message: Any) -> None:
        logger.warning("no response_url in the action payload: the answer cannot be delivered")

    return nowhere


def _tell(respond: Responder, text: str) -> None:
    message = text_message(text)
    respond(text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False)


def _clicker(body: Mapping[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def _value(body: Mapping[str, Any]) -> str:
    actions = body.get("actions") or [{}]
    return str(actions[0].get("value") or "")


def _admin_only(services: Services, body: Mapping[str, Any], action: str, respond: Responder) -> str | None:
    """The clicker when an admin; otherwise refuse (naming no IAM user, audit trail) and return None."""
    clicker = _clicker(body)
    if clicker and services.roles.is_admin(clicker):
        return clicker
    services.record(clicker or "unknown", f"refused:{action}", None, None, outcome="refused")
    _tell(respond, REFUSAL)
    return None


def run_nudge(services: Services, body: Mapping[str, Any]) -> None:
    """Nudge the person behind the clicked row, or say why not (cooldown: when and by whom)."""
    respond = _responder(body)
    clicker = _admin_only(services, body, "nudge", respond)
    if clicker is None:
        return
    target = parse_nudge(_value(body))
    if target is None:
        _tell(respond, "That button does not name an IAM user: nothing was sent.")
        return
    answer = services.nudger.nudge_user(clicker, target.account_id, target.user_name)
    _tell(respond, answer.text)


def run_nudge_all(services: Services, body: Mapping[str, Any]) -> None:
    """Queue a DM for every person with violations; they go out at Slack's pace."""
    respond = _responder(body)
    clicker = _admin_only(services, body, "nudge_all", respond)
    if clicker is None:
        return
    scope = parse_nudge_all(_value(body))  # an account channel's digest: its accounts only
    if scope is None:
        _tell(respond, "That button does not name a digest's accounts: nothing was sent.")
        return
    accounts = scope.accounts or None  # None: every account
    notify_url = str(body.get("response_url") or "") or None  # the "finished" notice goes there, kept with the batch
    queued = services.nudger.enqueue_all(clicker, notify_url=notify_url, accounts=accounts)
    _tell(respond, queued.text)


def run_recheck(services: Services, body: Mapping[str, Any]) -> None:
    """Re-check one IAM user live; fixed: the DM the bot sent is updated in place, else say what is missing.

    Only the IAM user the button names is read from the payload: the DM to update (channel, ts,
    blocks) comes from the store and the bot's own rendering, never from `message` or `container`.
    Pressed on the App Home, every answer shows at the top of the clicker's Home, published again.
    """
    respond = _responder(body, services)
    clicker = _clicker(body)
    target = parse_recheck(_value(body))
    if target is None:
        _tell(respond, "I cannot re-check this one: ask an admin to run `/mfa-check user NAME`.")
        return
    answer = services.rechecker.recheck(clicker, target.account_id, target.user_name)
    in_a_message = (body.get("container") or {}).get("type") == "message"
    if answer.outcome != "fixed" or not answer.dm_updated or not in_a_message:  # the Home shows it at its top
        _tell(respond, answer.text)
