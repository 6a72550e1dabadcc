"""`/mfa-check`: ack at once, then do the work on the job pool and answer through response_url.

The listener only acks and hands over, so Slack's three seconds hold however long an audit
takes and however many run. Every answer is ephemeral (visible to the caller only). A
non-admin asking for an admin command is refused without naming any IAM user, and the refusal
goes to the audit trail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk.web import WebClient

from bot import commands as grammar
from bot.identity import slack_user_exists, user_email
from bot.messages.audit import IdentityNote, audit_message, usage_for, usage_message, user_detail_message
from bot.messages.blocks import CsvFile, Message, refusal_message, text_message
from bot.messages.personal import not_found_message, personal_message
from bot.messages.text import code, escape, truncate
from bot.models import AuditResult, UserFinding
from bot.services import Services, report_failure
from bot.slack import SLACK_ERRORS, Responder, make_responder, slack_error

logger = logging.getLogger(__name__)

COMMAND = "/mfa-check"


def register(app: App) -> None:
    """Register the `/mfa-check` listener."""
    app.command(COMMAND)(on_mfa_check)


def on_mfa_check(ack: Ack, command: dict, respond: Respond, client: WebClient, context: dict, logger: Any) -> None:
    """Ack within Slack's three seconds, then run the command on the job pool."""
    ack()
    asked_at = time.monotonic()
    try:
        services: Services = context["services"]
        responder = make_responder(respond.response_url) if respond.response_url else _no_response_url
        services.jobs.submit(_run_logged, services, client, dict(command), responder, asked_at)
    except Exception:
        logger.exception("could not start /mfa-check")


def _no_response_url(**message: Any) -> None:
    logger.warning("no response_url in the command payload: the answer cannot be delivered")


def _run_logged(
    services: Services, client: WebClient, payload: Mapping[str, Any], respond: Responder, asked_at: float
) -> None:
    try:
        run_command(services, client, payload, respond, asked_at)
    except Exception as exc:
        text = report_failure(exc, "/mfa-check")
        try:
            _answer(respond, text_message(text))
        except Exception:
            logger.exception("could not tell the caller that /mfa-check failed")


def _answer(respond: Responder, message: Message, replace: bool = False) -> None:
    respond(
        text=message.text,
        blocks=message.blocks,
        response_type="ephemeral",
        replace_original=True if replace else None,
    )


def run_command(
    services: Services,
    client: WebClient,
    payload: Mapping[str, Any],
    respond: Responder,
    asked_at: float | None = None,
) -> None:
    """Parse, check the role, do it, answer (ephemeral). Pure logic lives in bot.commands/bot.messages.

    `asked_at` (monotonic) is when Slack's request arrived: an audit running then answers it.
    """
    asked_at = time.monotonic() if asked_at is None else asked_at
    caller = str(payload.get("user_id") or "")
    command = grammar.parse(payload.get("text"))
    is_admin = bool(caller) and services.roles.is_admin(caller)
    if isinstance(command, grammar.Usage):
        _answer(respond, usage_for(command, is_admin))
        return
    if isinstance(command, grammar.Help):
        _answer(respond, usage_message(is_admin))
        return
    if isinstance(command, grammar.AccountAudit) and not is_admin:
        # To anyone else a lone word is no command: the usage, never an audit or a refusal naming it.
        _answer(respond, usage_message(is_admin, grammar.UNKNOWN_COMMAND))
        return
    if grammar.requires_admin(command) and not is_admin:
        detail = truncate(str(payload.get("text") or ""), 200)
        services.record(caller or "unknown", f"refused:{command.verb}", None, detail, outcome="refused")
        _answer(respond, refusal_message())
        return
    if isinstance(command, grammar.Me):
        _me(services, client, caller, respond, asked_at)
    elif isinstance(command, grammar.Audit):
        _audit(services, client, caller, respond, asked_at)
    elif isinstance(command, grammar.AccountAudit):
        _account_audit(services, client, caller, command, respond)
    elif isinstance(command, grammar.UserDetail):
        _user(services, command, respond, asked_at)
    elif isinstance(command, grammar.Exempt):
        _exempt(services, caller, command, respond, asked_at)
    elif isinstance(command, grammar.Unexempt):
        _unexempt(services, caller, command, respond, asked_at)
    elif isinstance(command, grammar.Link):
        _link(services, client, caller, command, respond, asked_at)
    elif isinstance(command, grammar.Nudge):
        _nudge(services, caller, command, respond, asked_at, str(payload.get("response_url") or "") or None)
    elif isinstance(command, grammar.Digest):
        _digest(services, caller, respond)


def _auditing(services: Services, respond: Responder, asked_at: float) -> AuditResult:
    """Say "Auditing <account>…", then run (or join) the audit."""
    last = services.shared_audit.last
    where = ", ".join(a.label for a in last.accounts) if last and last.accounts else "the AWS account"
    _answer(respond, text_message(f":hourglass_flowing_sand: Auditing {escape(where)}…"))
    return services.shared_audit(asked_at)


def _audit(services: Services, client: WebClient, caller: str, respond: Responder, asked_at: float) -> None:
    result = services.annotated(_auditing(services, respond, asked_at))
    message = audit_message(result)
    _answer(respond, message, replace=True)
    if message.file is not None:
        _send_file(client, caller, message.file, respond)


def _account_audit(
    services: Services, client: WebClient, caller: str, command: grammar.AccountAudit, respond: Responder
) -> None:
    """`/mfa-check ACCOUNT`: audit (and record) that one account; an unknown one changes nothing."""
    wanted = escape(command.account)
    if services.account_audit is None:
        _answer(respond, text_message("Auditing one account is not available here: nothing was audited."))
        return
    _answer(respond, text_message(f":hourglass_flowing_sand: Auditing {wanted}…"))
    result = services.audit_account(command.account)
    if not result.accounts:
        _answer(respond, text_message(f"no configured account {wanted}"), replace=True)
        return
    message = audit_message(services.annotated(result))
    _answer(respond, message, replace=True)
    if message.file is not None:
        _send_file(client, caller, message.file, respond)


def _send_file(client: WebClient, caller: str, file: CsvFile, respond: Responder) -> None:
    """Upload the CSV to the caller's DM with the bot; say so if it cannot go."""
    try:
        channel = client.conversations_open(users=caller)["channel"]["id"]
        client.files_upload_v2(
            channel=channel,
            content=file.content,
            filename=file.filename,
            title=file.title,
            initial_comment=f"The whole MFA audit list: {file.rows} rows.",
        )
    except SLACK_ERRORS as exc:
        error = slack_error(exc)
        logger.warning("could not upload %s: %s", file.filename, error)
        _answer(
            respond,
            text_message(
                f":warning: The CSV file with the whole list could not be sent ({escape(error)}). "
                "Run `python -m bot check --json` for the full list."
            ),
        )


def _me(services: Services, client: WebClient, caller: str, respond: Responder, asked_at: float) -> None:
    result = _auditing(services, respond, asked_at)
    links = services.links()
    own = services.identity.own_findings(result, caller, user_email(client, caller), links)
    own = [u if u.slack_user_id else _with_person(u, caller) for u in own]
    message = personal_message(own, result) if own else not_found_message(result, caller)
    _answer(respond, message, replace=True)


def _with_person(user: UserFinding, slack_user_id: str) -> UserFinding:
    from dataclasses import replace

    return replace(user, slack_user_id=slack_user_id)


def _matches(result: AuditResult, ref: grammar.UserRef) -> list[UserFinding]:
    """Users named `ref` (IAM names are case-insensitive), in its account when qualified."""
    name = ref.name.lower()
    return [
        u
        for a in result.accounts
        if ref.account_id is None or a.account_id == ref.account_id
        for u in a.users
        if u.user_name.lower() == name
    ]


def _one_user(result: AuditResult, ref: grammar.UserRef, respond: Responder) -> UserFinding | None:
    """The single user `ref` names, or None after answering why not (nothing changed)."""
    found = _matches(result, ref)
    if not found:
        failed = f" ({len(result.errors)} account(s) could not be read)" if result.errors else ""
        text = f"No IAM user {code(str(ref))} in the audited accounts{failed}. Nothing changed."
        _answer(respond, text_message(text), replace=True)
        return None
    if len(found) > 1:
        where = ", ".join(f"`{u.account_id}/{u.user_name}`" for u in found)
        text = f"{code(ref.name)} exists in several accounts: name one of {where}. Nothing changed."
        _answer(respond, text_message(text), replace=True)
        return None
    return found[0]


def _user(services: Services, command: grammar.UserDetail, respond: Responder, asked_at: float) -> None:
    result = services.annotated(_auditing(services, respond, asked_at))
    found = _matches(result, command.user)
    if not found:
        _one_user(result, command.user, respond)
        return
    links = services.links()
    people = {u.arn: services.identity.resolve_source(u, links)[1] for u in found}
    known = services.store.identities([u.arn for u in found])
    notes = {
        u.arn: IdentityNote(
            source=people.get(u.arn),
            previous=known[u.arn].previous_slack_user_id if u.arn in known else None,
            previous_source=known[u.arn].previous_source if u.arn in known else None,
            changed_at=known[u.arn].changed_at if u.arn in known else None,
        )
        for u in found
    }
    _answer(respond, user_detail_message(found, result, notes), replace=True)


def _exempt(services: Services, caller: str, command: grammar.Exempt, respond: Responder, asked_at: float) -> None:
    user = _one_user(_auditing(services, respond, asked_at), command.user, respond)
    if user is None:
        return
    now = services.clock()
    until = now + timedelta(days=command.days)
    services.store.grant_exemption(user.arn, user.account_id, user.user_name, command.reason, until, caller, now)
    services.record(caller, "exempt", user.arn, f"{command.days}d: {command.reason}")
    text = (
        f":large_yellow_circle: {code(user.user_name)} ({user.account_id}) is exempt until "
        f"{until:%Y-%m-%d %H:%M} UTC, granted by <@{caller}>: {escape(command.reason)}"
    )
    _answer(respond, text_message(text), replace=True)


def _unexempt(services: Services, caller: str, command: grammar.Unexempt, respond: Responder, asked_at: float) -> None:
    user = _one_user(_auditing(services, respond, asked_at), command.user, respond)
    if user is None:
        return
    ended = services.store.revoke_exemption(user.arn, caller, services.clock())
    services.record(caller, "unexempt", user.arn, None, outcome="ok" if ended else "noop")
    text = (
        f"The exemption of {code(user.user_name)} ({user.account_id}) has ended."
        if ended
        else f"{code(user.user_name)} ({user.account_id}) had no exemption from Slack: nothing changed."
    )
    _answer(respond, text_message(text), replace=True)


def _link(
    services: Services, client: WebClient, caller: str, command: grammar.Link, respond: Responder, asked_at: float
) -> None:
    if slack_user_exists(client, command.slack_user_id) is False:
        _answer(respond, text_message(f"There is no Slack person <@{command.slack_user_id}>: nothing changed."))
        return
    user = _one_user(_auditing(services, respond, asked_at), command.user, respond)
    if user is None:
        return
    services.store.set_link(user.arn, command.slack_user_id, caller, services.clock())
    services.record(caller, "link", user.arn, command.slack_user_id)
    text = f":link: {code(user.user_name)} ({user.account_id}) is now linked to <@{command.slack_user_id}>."
    _answer(respond, text_message(text), replace=True)


def _nudge(
    services: Services,
    caller: str,
    command: grammar.Nudge,
    respond: Responder,
    asked_at: float,
    response_url: str | None = None,
) -> None:
    """`nudge NAME` / `nudge all`: the same as the digest's buttons, on the audit this command ran."""
    result = _auditing(services, respond, asked_at)
    if command.user is None:
        queued = services.nudger.enqueue_all(caller, result, notify_url=response_url)
        _answer(respond, text_message(queued.text), replace=True)
        return
    user = _one_user(result, command.user, respond)
    if user is None:
        return
    answer = services.nudger.nudge_finding(caller, user, result)
    _answer(respond, text_message(answer.text), replace=True)


def _digest(services: Services, caller: str, respond: Responder) -> None:
    """A manual digest (its own period: the scheduled one still goes out)."""
    config = services.config
    if not config.digest_channel:
        _answer(respond, text_message("DIGEST_CHANNEL is not set: nothing was posted."))
        return
    _answer(respond, text_message(":hourglass_flowing_sand: Posting the digest…"))
    outcome = services.post_manual_digest(caller)
    accounts = "".join(f", <#{a.channel}>" for a in outcome.accounts if a.posted)
    if outcome.ok:
        text = f"The digest was posted to <#{config.digest_channel}> ({outcome.rows} rows){accounts}."
    elif outcome.posted:
        problems = [f"{outcome.failed_parts} thread messages could not be"] if outcome.failed_parts else []
        problems += [f"<#{channel}> did not get (all of) its digest" for channel in outcome.failed_channels]
        where = f"<#{config.digest_channel}>{accounts}"
        text = f":warning: The digest was posted to {where}, but {'; '.join(problems)}."
    else:
        text = f":warning: The digest could not be posted ({escape(outcome.reason)})."
    if outcome.escalated:
        text += f"\n{outcome.escalated} overdue violation(s) escalated to <#{config.escalation_channel}>."
    _answer(respond, text_message(text), replace=True)
