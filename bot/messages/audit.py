"""`/mfa-check` replies: the audit table (within Slack's limits) and its CSV, one user's detail, usage.

When a list does not fit, the message shows its first rows, then "…and N more", and the whole
list goes into a CSV file (`Message.file`) that the caller uploads. Nothing is cut silently: every
status count in a header equals the number of distinct rows delivered across the message and the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, PlainTextObject, SectionBlock

from bot.commands import GRAMMAR, Usage
from bot.messages.blocks import CsvFile, Message, mrkdwn, pack_lines
from bot.messages.text import (
    MAX_BLOCKS,
    MAX_FALLBACK_CHARS,
    MAX_HEADER_CHARS,
    MAX_LINE_CHARS,
    MAX_SECTION_CHARS,
    STATUS_TEXT,
    clean,
    code,
    devices_text,
    escape,
    mention,
    open_for,
    person,
    plural,
    truncate,
)
from bot.models import AccountFindings, AuditResult, Status, UserFinding
from bot.report import ACCEPTED_RISK, days_without_mfa, freshness_text, root_text, violation_title

DEFAULT_MAX_ROWS = 40  # rows listed in one message; past that, the CSV file carries the list


LISTED: tuple[tuple[Status, str], ...] = (
    ("violation", "Violations: console password, no MFA"),
    ("exempt", f"Exempt ({ACCEPTED_RISK})"),
    ("grace", f"In grace period ({ACCEPTED_RISK})"),
)
COUNTED: tuple[tuple[Status, str], ...] = (
    ("violation", "Violations"),
    ("exempt", "Exempt"),
    ("grace", "Grace period"),
    ("compliant", "Compliant"),
    ("no_console", "No console password"),
)
CSV_COLUMNS = (
    "account_id",
    "account_alias",
    "user_name",
    "arn",
    "status",
    "days_without_mfa",
    "reason",
    "slack_user_id",
)


def violation_line(user: UserFinding, now: datetime) -> str:
    """One violation row: name, days open, the Slack person, the reason."""
    days = open_for(days_without_mfa(user, now))
    line = f"• {code(user.user_name)} · {days} · {person(user.slack_user_id)} · {escape(user.reason or '')}"
    return truncate(line, MAX_LINE_CHARS)


def exempt_line(user: UserFinding, now: datetime) -> str:
    """One exempt row: name, the Slack person, the exemption (who, until when, why)."""
    return truncate(
        f"• {code(user.user_name)} · {person(user.slack_user_id)} · {escape(user.reason or 'exempt')}", MAX_LINE_CHARS
    )


def grace_line(user: UserFinding, now: datetime) -> str:
    """One grace row: name, the Slack person, when the grace period ends."""
    ends = f"grace ends {user.grace_until:%Y-%m-%d}" if user.grace_until else escape(user.reason or "in grace")
    return truncate(f"• {code(user.user_name)} · {person(user.slack_user_id)} · {ends}", MAX_LINE_CHARS)


LINE_RENDERERS = {"violation": violation_line, "exempt": exempt_line, "grace": grace_line}


def _counts(account: AccountFindings) -> dict[str, int]:
    return {status: len(account.by_status(status)) for status, _ in COUNTED}


def account_title(account: AccountFindings) -> str:
    """The header line for one account (plain text, at most 150 characters)."""
    return truncate(f"MFA audit · {account.label}", MAX_HEADER_CHARS)


def root_line(account: AccountFindings) -> str:
    """Root, with a warning sign when it needs attention (MFA off with a password, root access keys).

    A root without password and access keys cannot sign in: shown neutrally, never as a warning.
    """
    text = root_text(account.root)
    return f":warning: *Root user: {text}*" if account.root.needs_attention else f"Root user: {text}"


def summary_block(account: AccountFindings) -> SectionBlock:
    """Root MFA and the count per status (an account with an error gets no counts at all)."""
    if account.error:
        return SectionBlock(text=mrkdwn(f"Root user: {root_text(account.root)}"))
    fields = [mrkdwn(root_line(account))]
    counts = _counts(account)
    fields += [mrkdwn(f"*{title}:* {counts[status]}") for status, title in COUNTED]
    return SectionBlock(fields=fields)


def error_block(account: AccountFindings) -> SectionBlock:
    """An account that could not be read, prominently: its result is unknown, not clean."""
    text = (
        f":rotating_light: *This account could not be audited:* {escape(account.error or 'unknown error')}\n"
        "Its result is *unknown*, not clean: fix the access and run `/mfa-check` again."
    )
    return SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)))


def context_block(account: AccountFindings, generated_at: datetime) -> ContextBlock:
    """When the audit ran and how fresh its findings are (report time, CloudTrail since, or why not)."""
    text = f"Audited {generated_at:%Y-%m-%d %H:%M} UTC"
    freshness = freshness_text(account)
    if freshness:
        text += f" · {escape(freshness)}"
    text += " · users the report flags are re-checked live"
    return ContextBlock(elements=[mrkdwn(text)])


def _fixed_blocks(account: AccountFindings, last: bool) -> int:
    """Blocks an account needs at least: header, summary, error or one per listed status, context, divider."""
    lists = 1 if account.error else sum(1 for status, _ in LISTED if account.by_status(status))
    return 3 + lists + (0 if last else 1)


LISTED_STATUSES: tuple[Status, ...] = tuple(status for status, _ in LISTED)


def audit_csv(result: AuditResult, statuses: Iterable[Status] = LISTED_STATUSES) -> str:
    """Every row of `statuses` (default: the listed violation, exempt, grace) of every account,
    plus one `error` row per failed account.

    Cells starting with = + - @, a tab or a carriage return are prefixed with a quote so spreadsheets
    don't run them.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for account in result.accounts:
        if account.error:
            writer.writerow(
                _safe_row([account.account_id, account.alias or "", "", "", "error", "", account.error, ""])
            )
            continue
        for status in statuses:
            for user in account.by_status(status):
                days = days_without_mfa(user, result.generated_at) if status == "violation" else None
                writer.writerow(
                    _safe_row(
                        [
                            account.account_id,
                            account.alias or "",
                            user.user_name,
                            user.arn,
                            status,
                            "" if days is None else str(days),
                            user.reason or "",
                            user.slack_user_id or "",
                        ]
                    )
                )
    return out.getvalue()


CSV_FORMULA_STARTS = frozenset({"=", "+", "-", "@", "\t", "\r"})


def _safe_row(cells: Iterable[str]) -> list[str]:
    cells = [clean(c) for c in cells]
    return ["'" + c if c[:1] in CSV_FORMULA_STARTS else c for c in cells]


def fallback_text(result: AuditResult) -> str:
    """The plain-text notification: counts per status, failed accounts apart (no user names).

    Counts cover only the accounts that were read, so a failed account never reads as clean.
    """
    audited = [a for a in result.accounts if not a.error]
    failed = len(result.accounts) - len(audited)
    if not audited:
        where = escape(result.accounts[0].label) if len(result.accounts) == 1 else plural(failed, "account")
        return truncate(f"MFA audit of {where} could NOT be completed: the result is unknown", MAX_FALLBACK_CHARS)
    counts = {status: sum(len(a.by_status(status)) for a in audited) for status, _ in LISTED}
    where = escape(audited[0].label) if len(audited) == 1 else plural(len(audited), "account")
    text = (
        f"MFA audit of {where}: {plural(counts['violation'], 'violation')}, "
        f"{counts['exempt']} exempt, {counts['grace']} in grace period"
    )
    if failed:
        text += f"; {plural(failed, 'more account')} could NOT be audited"
    return truncate(text, MAX_FALLBACK_CHARS)


def audit_message(result: AuditResult, max_rows: int = DEFAULT_MAX_ROWS, max_blocks: int = MAX_BLOCKS) -> Message:
    """The full audit as one message within Slack's limits, plus the CSV file when rows were left out."""
    now = result.generated_at
    budget = max_blocks - 1  # one block kept for the trailer (file note, accounts left out)
    accounts = result.accounts
    shown_accounts: list[AccountFindings] = []
    used = 0
    for index, account in enumerate(accounts):
        cost = _fixed_blocks(account, last=index == len(accounts) - 1)
        if used + cost > budget:
            break
        shown_accounts.append(account)
        used += cost
    hidden_accounts = accounts[len(shown_accounts) :]
    spare = budget - used
    rows_left = max_rows
    truncated = bool(hidden_accounts)
    blocks: list[Block] = []
    if not accounts:
        blocks.append(SectionBlock(text=mrkdwn(":rotating_light: No account was audited.")))
    for index, account in enumerate(shown_accounts):
        blocks += [HeaderBlock(text=PlainTextObject(text=account_title(account))), summary_block(account)]
        if account.error:
            blocks.append(error_block(account))
        else:
            for status, title in LISTED:
                users = account.by_status(status)
                if not users:
                    continue
                lines = [LINE_RENDERERS[status](user, now) for user in users]
                if status == "violation":
                    title = f"Violations: {violation_title(users)}"
                sections, shown = pack_lines(f"*{title} ({len(users)})*", lines, 1 + spare, rows_left)
                blocks += sections
                spare -= len(sections) - 1
                rows_left -= shown
                truncated = truncated or shown < len(users)
        blocks.append(context_block(account, now))
        if index < len(shown_accounts) - 1 or hidden_accounts:
            blocks.append(DividerBlock())
    file = None
    if truncated:
        content = audit_csv(result)
        rows = content.count("\n") - 1
        stamp = f"{now:%Y%m%d-%H%M}"
        file = CsvFile(
            filename=f"mfa-audit-{stamp}.csv", title=f"MFA audit {stamp} (all rows)", content=content, rows=rows
        )
        note = (
            f":page_facing_up: The message shows the first rows; the whole list ({plural(rows, 'row')}) "
            f"is in *{file.filename}*, sent to you as a DM."
        )
        if hidden_accounts:
            violations = sum(len(a.by_status("violation")) for a in hidden_accounts)
            failed = sum(1 for a in hidden_accounts if a.error)
            note = (
                f"*…and {plural(len(hidden_accounts), 'more account')}* "
                f"({plural(violations, 'violation')}, {failed} could not be audited): see the CSV file.\n" + note
            )
        blocks.append(SectionBlock(text=mrkdwn(truncate(note, MAX_SECTION_CHARS))))
    return Message(text=fallback_text(result), blocks=blocks, file=file)


@dataclass(frozen=True)
class IdentityNote:
    """How an IAM user's Slack person was found, and the person before the last change (admins only)."""

    source: str | None = None  # "link set in Slack", "slack-user-id tag", "email tag", "name + EMAIL_DOMAIN"
    previous: str | None = None
    previous_source: str | None = None
    changed_at: datetime | None = None


def identity_lines(note: IdentityNote | None) -> list[str]:
    """The detail's lines about where the Slack person comes from and when it last changed."""
    if note is None:
        return []
    lines = [f"*Found by:* {escape(note.source)}"] if note.source else []
    if note.changed_at is not None and note.previous:
        was = f"{mention(note.previous)} ({escape(note.previous_source or 'unknown')})"
        lines.append(f":warning: *Slack person changed* {note.changed_at:%Y-%m-%d %H:%M} UTC: was {was}")
    return lines


def user_detail_message(
    findings: Sequence[UserFinding], result: AuditResult, identities: Mapping[str, IdentityNote] | None = None
) -> Message:
    """`/mfa-check user NAME`: status, reason, devices, console password, the Slack person and how it was found."""
    identities = identities or {}
    labels = {a.account_id: a.label for a in result.accounts}
    blocks: list[Block] = []
    for user in findings[: (MAX_BLOCKS - 1) // 2]:
        days = days_without_mfa(user, result.generated_at)
        lines = [
            f"*{code(user.user_name)}* in {escape(labels.get(user.account_id, user.account_id))}",
            f"*Status:* {STATUS_TEXT[user.status]}" + (f": {escape(user.reason)}" if user.reason else ""),
            "*Console password:* "
            + (
                ("yes" + (f", since {user.console_since:%Y-%m-%d}" if user.console_since else ""))
                if user.console_access
                else "no"
            )
            + (f" ({plural(days, 'day')} without MFA)" if user.status == "violation" and days is not None else ""),
            f"*MFA devices:* {devices_text(user)}",
            f"*Slack person:* {person(user.slack_user_id)}",
            *identity_lines(identities.get(user.arn)),
            f"*ARN:* {code(user.arn)}",
        ]
        blocks.append(SectionBlock(text=mrkdwn(truncate("\n".join(lines), MAX_SECTION_CHARS))))
        blocks.append(DividerBlock())
    return Message(text=f"IAM user detail ({plural(len(findings), 'match', 'matches')})", blocks=blocks[:-1])


def usage_message(is_admin: bool, error: str | None = None) -> Message:
    """The grammar (all of it for admins; `me` and `help` for everyone else), with the parse error."""
    rows = [(form, who, what) for form, who, what in GRAMMAR if is_admin or who == "anyone"]
    lines = [
        f"• `{form}`: {what}" + ("" if who == "anyone" or not is_admin else " _(admins)_") for form, who, what in rows
    ]
    text = ""
    if error:
        text += f":warning: {escape(error)}\n"
    text += "*Usage*\n" + "\n".join(lines)
    if is_admin:
        text += "\nNAME is an IAM user name; write `ACCOUNT_ID/NAME` when it exists in several accounts."
    return Message(text="Usage of /mfa-check", blocks=[SectionBlock(text=mrkdwn(text))])


def usage_for(command: Usage, is_admin: bool) -> Message:
    """The usage message for a parse failure."""
    return usage_message(is_admin, command.error)
