"""Pure renderers: findings in, Block Kit (slack_sdk.models.blocks) and plain text out. No I/O.

Slack's limits hold for any input: 50 blocks a message, 3,000 characters a section text,
2,000 a button value, 150 a header. When a list does not fit, the message shows its first rows,
then "…and N more", and the whole list goes into a CSV file (`Message.file`) that the caller
uploads. Nothing is cut silently: every status count in a header equals the number of distinct
rows delivered across the message and the file.

The row renderers (`violation_line`, `violation_row_blocks`, `user_value`) are shared with the
digest, which shows the same violation rows with buttons.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.commands import GRAMMAR, Usage
from bot.models import AccountFindings, AuditResult, Status, UserFinding
from bot.report import days_without_mfa, root_text

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_FIELD_CHARS = 2000
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_TEXT = 75
MAX_HEADER_CHARS = 150
MAX_LINE_CHARS = 600
DEFAULT_MAX_ROWS = 40  # rows listed in one message; past that, the CSV file carries the list
MAX_FALLBACK_CHARS = 3000

LISTED: tuple[tuple[Status, str], ...] = (
    ("violation", "Violations: console password, no MFA"),
    ("exempt", "Exempt"),
    ("grace", "In grace period"),
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
NO_PERSON = "no Slack person found"


@dataclass(frozen=True)
class CsvFile:
    """A file to upload next to a message: the whole list the message could not hold."""

    filename: str
    title: str
    content: str
    rows: int


@dataclass(frozen=True)
class Message:
    """A rendered message: blocks, the plain-text fallback, and maybe a CSV file to upload."""

    text: str
    blocks: list[Block] = field(default_factory=list)
    file: CsvFile | None = None

    def blocks_json(self) -> list[dict]:
        """The blocks as Slack's JSON dicts."""
        return [block.to_dict() for block in self.blocks]


# -- text helpers -------------------------------------------------------------------------------


def escape(text: object) -> str:
    """Escape text for Slack mrkdwn: `&`, `<`, `>` (user-supplied text can't form links or mentions)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def code(text: str) -> str:
    """Inline code for mrkdwn, escaped (IAM names cannot contain a backtick, but be safe)."""
    safe = escape(text).replace("`", "'")
    return f"`{safe}`"


def person_text(user: UserFinding) -> str:
    """`<@U…>` when the identity chain found the person, else "no Slack person found"."""
    return f"<@{user.slack_user_id}>" if user.slack_user_id else f"_{NO_PERSON}_"


def _days_open(user: UserFinding, now: datetime) -> str:
    days = days_without_mfa(user, now)
    return "open for an unknown time" if days is None else f"open {_plural(days, 'day')}"


def violation_line(user: UserFinding, now: datetime) -> str:
    """One violation row: name, days open, the Slack person, the reason."""
    line = f"• {code(user.user_name)} · {_days_open(user, now)} · {person_text(user)} · {escape(user.reason or '')}"
    return truncate(line, MAX_LINE_CHARS)


def exempt_line(user: UserFinding, now: datetime) -> str:
    """One exempt row: name, the Slack person, the exemption (who, until when, why)."""
    return truncate(
        f"• {code(user.user_name)} · {person_text(user)} · {escape(user.reason or 'exempt')}", MAX_LINE_CHARS
    )


def grace_line(user: UserFinding, now: datetime) -> str:
    """One grace row: name, the Slack person, when the grace period ends."""
    ends = f"grace ends {user.grace_until:%Y-%m-%d}" if user.grace_until else escape(user.reason or "in grace")
    return truncate(f"• {code(user.user_name)} · {person_text(user)} · {ends}", MAX_LINE_CHARS)


LINE_RENDERERS = {"violation": violation_line, "exempt": exempt_line, "grace": grace_line}


def user_value(user: UserFinding) -> str:
    """A button value naming the account and IAM user: `ACCOUNT_ID:NAME` (IAM names have no colon)."""
    return truncate(f"{user.account_id}:{user.user_name}", MAX_BUTTON_VALUE)


def parse_user_value(value: str) -> tuple[str, str] | None:
    """(account_id, user_name) from a button value, or None when malformed."""
    account_id, sep, user_name = value.partition(":")
    return (account_id, user_name) if sep and account_id and user_name else None


def violation_row_blocks(
    users: Sequence[UserFinding], now: datetime, action_id: str = "nudge", button_text: str = "Nudge"
) -> list[SectionBlock]:
    """One section per violation with a button (for the digest); the caller budgets the blocks."""
    return [
        SectionBlock(
            text=MarkdownTextObject(text=violation_line(user, now)),
            accessory=ButtonElement(
                text=truncate(button_text, MAX_BUTTON_TEXT), action_id=action_id, value=user_value(user)
            ),
        )
        for user in users
    ]


def _counts(account: AccountFindings) -> dict[str, int]:
    return {status: len(account.by_status(status)) for status, _ in COUNTED}


def account_title(account: AccountFindings) -> str:
    """The header line for one account (plain text, at most 150 characters)."""
    return truncate(f"MFA audit · {account.label}", MAX_HEADER_CHARS)


def root_line(account: AccountFindings) -> str:
    """Root MFA, with a warning sign when it is off."""
    text = root_text(account.root)
    return f":warning: *Root user: {text}*" if account.root.mfa_enabled is False else f"Root user: {text}"


def summary_block(account: AccountFindings) -> SectionBlock:
    """Root MFA and the count per status (an account with an error gets no counts at all)."""
    if account.error:
        return SectionBlock(text=MarkdownTextObject(text=f"Root user: {root_text(account.root)}"))
    fields = [MarkdownTextObject(text=root_line(account))]
    counts = _counts(account)
    fields += [MarkdownTextObject(text=f"*{title}:* {counts[status]}") for status, title in COUNTED]
    return SectionBlock(fields=fields)


def error_block(account: AccountFindings) -> SectionBlock:
    """An account that could not be read, prominently: its result is unknown, not clean."""
    text = (
        f":rotating_light: *This account could not be audited:* {escape(account.error or 'unknown error')}\n"
        "Its result is *unknown*, not clean: fix the access and run `/mfa-check` again."
    )
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_CHARS)))


def context_block(account: AccountFindings, generated_at: datetime) -> ContextBlock:
    """When the audit ran and how old the credential report was."""
    text = f"Audited {generated_at:%Y-%m-%d %H:%M} UTC"
    if account.report_generated_at:
        text += f" · credential report from {account.report_generated_at:%Y-%m-%d %H:%M} UTC"
    text += " · users the report flags are re-checked live"
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def pack_lines(
    title: str, lines: Sequence[str], max_sections: int, max_lines: int, more_note: str = "see the CSV file"
) -> tuple[list[SectionBlock], int]:
    """Pack `title` and the first lines into at most `max_sections` sections of ≤ 3,000 characters.

    Returns the sections and how many lines they show. When some lines do not fit, the last
    section ends with "…and N more (see the CSV file)". At least one section is returned.
    """
    max_sections = max(1, max_sections)
    limit = MAX_SECTION_CHARS - 80  # every section keeps room for the "…and N more" line
    sections: list[list[str]] = [[truncate(title, limit)]]
    size = len(sections[0][0])
    shown = 0
    for line in lines[: max(0, max_lines)]:
        line = truncate(line, MAX_LINE_CHARS)
        if size + 1 + len(line) <= limit:
            sections[-1].append(line)
            size += 1 + len(line)
        elif len(sections) < max_sections:
            sections.append([line])
            size = len(line)
        else:
            break
        shown += 1
    hidden = len(lines) - shown
    if hidden:
        sections[-1].append(f"_…and {hidden} more ({more_note})_")
    return [SectionBlock(text=MarkdownTextObject(text="\n".join(part))) for part in sections], shown


def _fixed_blocks(account: AccountFindings, last: bool) -> int:
    """Blocks an account needs at least: header, summary, error or one per listed status, context, divider."""
    lists = 1 if account.error else sum(1 for status, _ in LISTED if account.by_status(status))
    return 3 + lists + (0 if last else 1)


def audit_csv(result: AuditResult) -> str:
    """Every listed row (violation, exempt, grace) of every account, plus one `error` row per failed account.

    Cells starting with = + - @ are prefixed with a quote so spreadsheets don't run them.
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
        for status, _ in LISTED:
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


def _safe_row(cells: Iterable[str]) -> list[str]:
    return ["'" + c if c[:1] in {"=", "+", "-", "@"} else c for c in cells]


def fallback_text(result: AuditResult) -> str:
    """The plain-text notification: counts per status, failed accounts apart (no user names).

    Counts cover only the accounts that were read, so a failed account never reads as clean.
    """
    audited = [a for a in result.accounts if not a.error]
    failed = len(result.accounts) - len(audited)
    if not audited:
        where = result.accounts[0].label if len(result.accounts) == 1 else _plural(failed, "account")
        return truncate(f"MFA audit of {where} could NOT be completed: the result is unknown", MAX_FALLBACK_CHARS)
    counts = {status: sum(len(a.by_status(status)) for a in audited) for status, _ in LISTED}
    where = audited[0].label if len(audited) == 1 else _plural(len(audited), "account")
    text = (
        f"MFA audit of {where}: {_plural(counts['violation'], 'violation')}, "
        f"{counts['exempt']} exempt, {counts['grace']} in grace period"
    )
    if failed:
        text += f"; {_plural(failed, 'more account')} could NOT be audited"
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
        blocks.append(SectionBlock(text=MarkdownTextObject(text=":rotating_light: No account was audited.")))
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
            f":page_facing_up: The message shows the first rows; the whole list ({_plural(rows, 'row')}) "
            f"is in *{file.filename}*, sent to you as a DM."
        )
        if hidden_accounts:
            violations = sum(len(a.by_status("violation")) for a in hidden_accounts)
            failed = sum(1 for a in hidden_accounts if a.error)
            note = (
                f"*…and {_plural(len(hidden_accounts), 'more account')}* "
                f"({_plural(violations, 'violation')}, {failed} could not be audited): see the CSV file.\n" + note
            )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=truncate(note, MAX_SECTION_CHARS))))
    return Message(text=fallback_text(result), blocks=blocks, file=file)


# -- one person, one user -----------------------------------------------------------------------


def _partition(arn: str) -> str:
    parts = arn.split(":")
    return parts[1] if len(parts) > 1 and parts[1] else "aws"


def signin_url(account_id: str, alias: str | None, partition: str = "aws") -> str | None:
    """The account's console sign-in URL (None outside the standard partitions)."""
    host = {
        "aws": "signin.aws.amazon.com",
        "aws-us-gov": "signin.amazonaws-us-gov.com",
        "aws-cn": "signin.amazonaws.cn",
    }
    if partition not in host:
        return None
    return f"https://{alias or account_id}.{host[partition]}/console"


def cli_steps(user: UserFinding) -> str:
    """The AWS CLI commands that give `user` a virtual MFA device, as a preformatted block."""
    name = user.user_name
    serial = f"arn:{_partition(user.arn)}:iam::{user.account_id}:mfa/{name}"
    return (
        "```"
        f"aws iam create-virtual-mfa-device --virtual-mfa-device-name {name} "
        f"--outfile {name}-mfa.png --bootstrap-method QRCodePNG\n"
        f"# scan {name}-mfa.png with your authenticator app, then enter two consecutive codes:\n"
        f"aws iam enable-mfa-device --user-name {name} --serial-number {serial} "
        "--authentication-code1 123456 --authentication-code2 789012\n"
        f"aws iam list-mfa-devices --user-name {name}"
        "```"
    )


def console_steps(user: UserFinding, alias: str | None = None) -> str:
    """The console steps to assign an MFA device, mrkdwn."""
    url = signin_url(user.account_id, alias, _partition(user.arn))
    where = f" at {url}" if url else ""
    return (
        f"*In the AWS console*\n"
        f"1. Sign in as {code(user.user_name)}{where}.\n"
        "2. Open your name (top right) → *Security credentials* → *Multi-factor authentication (MFA)* "
        "→ *Assign MFA device*.\n"
        "3. Pick a passkey or security key (best), an authenticator app, or a hardware TOTP token, and follow "
        "the prompts (an app asks for two consecutive codes).\n"
        "4. Sign out and back in to check it asks for the code."
    )


def fix_steps_blocks(user: UserFinding, alias: str | None = None) -> list[SectionBlock]:
    """Personal MFA set-up steps (console, then CLI) for one IAM user: two sections."""
    return [
        SectionBlock(text=MarkdownTextObject(text=truncate(console_steps(user, alias), MAX_SECTION_CHARS))),
        SectionBlock(
            text=MarkdownTextObject(text=truncate("*Or with the AWS CLI*\n" + cli_steps(user), MAX_SECTION_CHARS))
        ),
    ]


def _devices_text(user: UserFinding) -> str:
    if not user.mfa_devices:
        return "none"
    return ", ".join(f"{d.type} ({code(d.serial)})" for d in user.mfa_devices)


STATUS_TEXT = {
    "violation": ":x: console password *without MFA*",
    "compliant": ":white_check_mark: MFA on",
    "no_console": ":white_check_mark: no console password: nothing to do",
    "exempt": ":large_yellow_circle: exempt",
    "grace": ":hourglass_flowing_sand: in the grace period",
}


def _own_status(user: UserFinding, account: str, now: datetime) -> str:
    text = f"*{code(user.user_name)}* in {escape(account)}: {STATUS_TEXT[user.status]}"
    if user.status == "compliant":
        text += f" ({_devices_text(user)})"
    if user.status == "violation":
        days = days_without_mfa(user, now)
        text += "" if days is None else f" for {_plural(days, 'day')}"
    if user.status in {"exempt", "grace"} and user.reason:
        text += f": {escape(user.reason)}"
    if user.status in {"violation", "grace"}:
        text += "\nSet up MFA now, either way below:"
    return truncate(text, MAX_SECTION_CHARS)


def personal_message(findings: Sequence[UserFinding], result: AuditResult, max_blocks: int = MAX_BLOCKS) -> Message:
    """`/mfa-check me`: each of the caller's IAM users with their status, and fix steps where needed."""
    labels = {a.account_id: a.label for a in result.accounts}
    aliases = {a.account_id: a.alias for a in result.accounts}
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Your AWS console MFA"))]
    needs_fix = sum(1 for u in findings if u.status in {"violation", "grace"})
    for index, user in enumerate(findings):
        cost = 1 + (2 if user.status in {"violation", "grace"} else 0)
        if len(blocks) + cost > max_blocks - 1:
            left = [u.user_name for u in findings[index:]]
            text = f"_…and {_plural(len(left), 'more IAM user')}: {escape(', '.join(left))}_"
            blocks.append(SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_CHARS))))
            break
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=_own_status(user, labels.get(user.account_id, user.account_id), now=result.generated_at)
                )
            )
        )
        if user.status in {"violation", "grace"}:
            blocks += fix_steps_blocks(user, aliases.get(user.account_id))
    if needs_fix:
        text = f"{_plural(needs_fix, 'IAM user')} of yours {'needs' if needs_fix == 1 else 'need'} MFA"
    else:
        text = "Your IAM user is fine" if len(findings) == 1 else f"Your {len(findings)} IAM users are fine"
    return Message(text=text, blocks=blocks)


def not_found_message(result: AuditResult, caller_id: str) -> Message:
    """`/mfa-check me` when no IAM user leads to the caller: say so, and how an admin links them."""
    accounts = ", ".join(a.label for a in result.accounts) or "the audited accounts"
    text = (
        f"I found no IAM user of yours in {escape(accounts)}.\n"
        f"If you have one, ask an admin to link it: `/mfa-check link NAME @you` (you are <@{caller_id}>). "
        "An `email` or `slack-user-id` tag on your IAM user works too."
    )
    return Message(text="No IAM user found for you", blocks=[SectionBlock(text=MarkdownTextObject(text=text))])


def user_detail_message(findings: Sequence[UserFinding], result: AuditResult) -> Message:
    """`/mfa-check user NAME`: status, reason, devices, console password and the Slack person."""
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
            + (f" ({_plural(days, 'day')} without MFA)" if user.status == "violation" and days is not None else ""),
            f"*MFA devices:* {_devices_text(user)}",
            f"*Slack person:* {person_text(user)}",
            f"*ARN:* {code(user.arn)}",
        ]
        blocks.append(SectionBlock(text=MarkdownTextObject(text=truncate("\n".join(lines), MAX_SECTION_CHARS))))
        blocks.append(DividerBlock())
    return Message(text=f"IAM user detail ({_plural(len(findings), 'match', 'matches')})", blocks=blocks[:-1])


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
    return Message(text="Usage of /mfa-check", blocks=[SectionBlock(text=MarkdownTextObject(text=text))])


def usage_for(command: Usage, is_admin: bool) -> Message:
    """The usage message for a parse failure."""
    return usage_message(is_admin, command.error)


def text_message(text: str, fallback: str | None = None) -> Message:
    """A one-section message (answers, confirmations, refusals)."""
    return Message(
        text=truncate(fallback or text, MAX_FALLBACK_CHARS),
        blocks=[SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_CHARS)))],
    )


REFUSAL = (
    ":no_entry: Only MFA-bot admins can do that. You can run `/mfa-check me` to see your own IAM users, "
    "or `/mfa-check help`."
)


def refusal_message() -> Message:
    """The answer to a non-admin asking for an admin command (names nothing)."""
    return text_message(REFUSAL, "Only admins can do that")
