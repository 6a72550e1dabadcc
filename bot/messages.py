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
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.commands import GRAMMAR, Usage
from bot.models import AccountFindings, AuditResult, Status, UserFinding
from bot.report import ACCEPTED_RISK, days_without_mfa, freshness_text, root_text, violation_title

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


# Bidirectional control characters (U+202A-U+202E, U+2066-U+2069) can make a name read as another
# ("Trojan Source"): removed from everything rendered.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def clean(text: object) -> str:
    """`text` as a string without bidi control characters."""
    return BIDI_CONTROLS.sub("", str(text))


def escape(text: object) -> str:
    """Escape text for Slack mrkdwn: `&`, `<`, `>` (user-supplied text can't form links or mentions); no bidi."""
    return clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in an ellipsis when cut (bidi controls removed).

    A cut never splits a `<…>` mention or link, nor an `&…;` escape: it goes back before it.
    """
    text = clean(text)
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):  # never leave half a mention or link (`<@U0…`)
        cut = cut[:opened]
    entity = cut.rfind("&")
    if entity != -1 and len(cut) - entity <= 5 and ";" not in cut[entity:]:  # nor half an escape (`&l…`)
        cut = cut[:entity]
    return cut + "…"


def mrkdwn(text: str) -> MarkdownTextObject:
    """A mrkdwn text object that Slack shows verbatim: URLs and names in data (tag values, reasons) are not
    turned into links or mentions; only the bot's own `<@U…>`, `<#C…>` and `<https://…>` forms are."""
    return MarkdownTextObject(text=clean(text), verbatim=True)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def code_safe(text: object) -> str:
    """Text that may sit inside inline code or a code block: escaped, no backtick to break out."""
    return escape(text).replace("`", "'")


def code(text: str) -> str:
    """Inline code for mrkdwn, escaped (IAM names cannot contain a backtick, but be safe)."""
    return f"`{code_safe(text)}`"


_MENTIONABLE = re.compile(r"[UW][A-Z0-9]{2,}")


def mention(slack_user_id: str) -> str:
    """`<@U…>` for a well-formed Slack user ID; anything else is shown escaped, never as a mention."""
    return f"<@{slack_user_id}>" if _MENTIONABLE.fullmatch(slack_user_id or "") else code(slack_user_id)


def person_text(user: UserFinding) -> str:
    """`<@U…>` when the identity chain found the person, else "no Slack person found"."""
    return mention(user.slack_user_id) if user.slack_user_id else f"_{NO_PERSON}_"


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


_IAM_USER_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")


def parse_user_value(value: str) -> tuple[str, str] | None:
    """(account_id, user_name) from a button value, or None unless a 12-digit id and an IAM user name."""
    account_id, sep, user_name = value.partition(":")
    if sep and _ACCOUNT_ID.fullmatch(account_id) and _IAM_USER_NAME.fullmatch(user_name):
        return account_id, user_name
    return None


def violation_row_blocks(
    users: Sequence[UserFinding], now: datetime, action_id: str = "nudge", button_text: str = "Nudge"
) -> list[SectionBlock]:
    """One section per violation with a button (for the digest); the caller budgets the blocks."""
    return [
        SectionBlock(
            text=mrkdwn(violation_line(user, now)),
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
    return [SectionBlock(text=mrkdwn("\n".join(part))) for part in sections], shown


def _fixed_blocks(account: AccountFindings, last: bool) -> int:
    """Blocks an account needs at least: header, summary, error or one per listed status, context, divider."""
    lists = 1 if account.error else sum(1 for status, _ in LISTED if account.by_status(status))
    return 3 + lists + (0 if last else 1)


def audit_csv(result: AuditResult, statuses: Iterable[Status] = tuple(s for s, _ in LISTED)) -> str:
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
        where = escape(result.accounts[0].label) if len(result.accounts) == 1 else _plural(failed, "account")
        return truncate(f"MFA audit of {where} could NOT be completed: the result is unknown", MAX_FALLBACK_CHARS)
    counts = {status: sum(len(a.by_status(status)) for a in audited) for status, _ in LISTED}
    where = escape(audited[0].label) if len(audited) == 1 else _plural(len(audited), "account")
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
        blocks.append(SectionBlock(text=mrkdwn(truncate(note, MAX_SECTION_CHARS))))
    return Message(text=fallback_text(result), blocks=blocks, file=file)


# -- one person, one user -----------------------------------------------------------------------


def _partition(arn: str) -> str:
    parts = arn.split(":")
    return parts[1] if len(parts) > 1 and parts[1] else "aws"


_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_ACCOUNT_ALIAS = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]")


def signin_url(account_id: str, alias: str | None, partition: str = "aws") -> str | None:
    """The account's console sign-in URL (None outside the standard partitions or for a malformed id)."""
    host = {
        "aws": "signin.aws.amazon.com",
        "aws-us-gov": "signin.amazonaws-us-gov.com",
        "aws-cn": "signin.amazonaws.cn",
    }
    if partition not in host:
        return None
    if alias and _ACCOUNT_ALIAS.fullmatch(alias):
        return f"https://{alias}.{host[partition]}/console"
    return f"https://{account_id}.{host[partition]}/console" if _ACCOUNT_ID.fullmatch(account_id) else None


def link(url: str) -> str:
    """A URL the bot built itself, as an explicit mrkdwn link (texts are verbatim: nothing else is linked)."""
    return f"<{url}>"


def cli_steps(user: UserFinding) -> str:
    """The AWS CLI commands that give `user` a virtual MFA device, as a preformatted block."""
    name = code_safe(user.user_name)
    serial = f"arn:{code_safe(_partition(user.arn))}:iam::{code_safe(user.account_id)}:mfa/{name}"
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
    where = f" at {link(url)}" if url else ""
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
    """Personal MFA set-up steps for one IAM user, two sections: console then CLI, or (key-only) CLI then
    how to use the access key with MFA."""
    if not user.console_access:
        return [
            SectionBlock(text=mrkdwn(truncate("*With the AWS CLI*\n" + cli_steps(user), MAX_SECTION_CHARS))),
            SectionBlock(text=mrkdwn(truncate(key_steps(user), MAX_SECTION_CHARS))),
        ]
    return [
        SectionBlock(text=mrkdwn(truncate(console_steps(user, alias), MAX_SECTION_CHARS))),
        SectionBlock(text=mrkdwn(truncate("*Or with the AWS CLI*\n" + cli_steps(user), MAX_SECTION_CHARS))),
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
    status = STATUS_TEXT[user.status]
    if user.status == "violation" and not user.console_access:
        status = ":x: active access key *without MFA*"
    text = f"*{code(user.user_name)}* in {escape(account)}: {status}"
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
            blocks.append(SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS))))
            break
        blocks.append(
            SectionBlock(
                text=mrkdwn(_own_status(user, labels.get(user.account_id, user.account_id), now=result.generated_at))
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
        f"If you have one, ask an admin to link it: `/mfa-check link NAME @you` (you are {mention(caller_id)}). "
        "An `email` or `slack-user-id` tag on your IAM user works too."
    )
    return Message(
        text="No IAM user found for you", blocks=[SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)))]
    )


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
            + (f" ({_plural(days, 'day')} without MFA)" if user.status == "violation" and days is not None else ""),
            f"*MFA devices:* {_devices_text(user)}",
            f"*Slack person:* {person_text(user)}",
            *identity_lines(identities.get(user.arn)),
            f"*ARN:* {code(user.arn)}",
        ]
        blocks.append(SectionBlock(text=mrkdwn(truncate("\n".join(lines), MAX_SECTION_CHARS))))
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
    return Message(text="Usage of /mfa-check", blocks=[SectionBlock(text=mrkdwn(text))])


def usage_for(command: Usage, is_admin: bool) -> Message:
    """The usage message for a parse failure."""
    return usage_message(is_admin, command.error)


def text_message(text: str, fallback: str | None = None) -> Message:
    """A one-section message (answers, confirmations, refusals)."""
    return Message(
        text=truncate(fallback or text, MAX_FALLBACK_CHARS),
        blocks=[SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)))],
    )


REFUSAL = (
    ":no_entry: Only MFA-bot admins can do that. You can run `/mfa-check me` to see your own IAM users, "
    "or `/mfa-check help`."
)


def refusal_message() -> Message:
    """The answer to a non-admin asking for an admin command (names nothing)."""
    return text_message(REFUSAL, "Only admins can do that")


# -- the digest ---------------------------------------------------------------------------------
# The digest is rendered from a `DigestView` (plain data captured when it is posted) plus a
# `RowState` per row (nudges, fixed), so any process can re-render one of its messages later and
# chat.update it in place. Every row is one block, so the layout (which row goes in which message)
# depends on the view only, never on the states.

NUDGE_ACTION = "nudge"
NUDGE_ALL_ACTION = "nudge_all"
RECHECK_ACTION = "recheck"
RECHECK_BUTTON = "I've set it up – re-check"


@dataclass(frozen=True)
class DigestRow:
    """One violator as the digest lists it."""

    arn: str
    account_id: str
    account: str  # "alias (id)" or the id
    user_name: str
    slack_user_id: str | None
    days_open: int | None


@dataclass(frozen=True)
class RowState:
    """What happened to a row since the digest was posted: nudges so far, the last one, fixed."""

    nudges: int = 0
    nudged_by: str | None = None  # Slack user ID (or "scheduler")
    nudged_at: str | None = None  # "HH:MM" in DIGEST_TIMEZONE
    fixed_at: str | None = None  # "HH:MM" in DIGEST_TIMEZONE
    delivery_unknown: bool = False  # the last DM (nudged_by/nudged_at) may or may not have gone
    exempted_at: str | None = None  # "HH:MM": it became exempt (never shown as fixed)


@dataclass(frozen=True)
class OverdueRow:
    """A violation still open long after its first nudge (the digest's overdue section, escalations)."""

    arn: str
    account_id: str
    account: str  # "alias (id)" or the id
    user_name: str
    slack_user_id: str | None
    days: int  # whole days since the first nudge
    nudges: int  # DMs sent about it so far


@dataclass(frozen=True)
class DigestAccount:
    """One audited account in the digest header."""

    account_id: str
    label: str
    error: str | None
    root: str  # root MFA as text ("MFA on (hardware)", "MFA OFF", ...)
    root_off: bool  # root needs attention (MFA off with a password, or root access keys): a warning
    violations: int
    exempt: int = 0
    exempt_by_tag: int = 0  # of `exempt`: by the mfa-exempt tag, set outside Slack
    freshness: str | None = None  # "fresh through 07:30 UTC (report of 06:12 UTC + CloudTrail)", or why not


@dataclass(frozen=True)
class DigestView:
    """Everything a digest shows, captured when it is posted."""

    title: str
    accounts: tuple[DigestAccount, ...]
    rows: tuple[DigestRow, ...]
    new_since: int | None = None  # None: the first digest in this channel
    fixed_since: int | None = None
    since: str | None = None  # when the previous digest went, for the header
    overdue: tuple[OverdueRow, ...] = ()
    overdue_after_days: int = 0  # ESCALATE_AFTER_DAYS when the view was built
    scope: tuple[str, ...] = ()  # the account ids of an account channel's digest; () = every account
    accepted_risk: int = 0  # exempt + grace users: accepted risk, never counted as compliant

    @property
    def failed(self) -> tuple[DigestAccount, ...]:
        return tuple(a for a in self.accounts if a.error)

    @property
    def all_clear(self) -> bool:
        return not self.rows and not self.failed and bool(self.accounts)


@dataclass(frozen=True)
class DigestPart:
    """One message of a digest: the top message (index 0) or a reply in its thread."""

    index: int
    text: str
    blocks: list[Block]
    arns: tuple[str, ...]  # the rows this message lists
    overdue: tuple[str, ...] = ()  # the overdue violations whose section (or a part of it) is in this message


def _pack_groups(sizes: Sequence[int], limit: int = MAX_SECTION_CHARS) -> list[list[int]]:
    """Line indexes grouped into as few sections as lines of these sizes need within `limit` characters."""
    groups: list[list[int]] = []
    size = 0
    for index, length in enumerate(sizes):
        if groups and size + 1 + length <= limit:
            groups[-1].append(index)
            size += 1 + length
        else:
            groups.append([index])
            size = length
    return groups


def _pack_all(lines: Sequence[str], limit: int = MAX_SECTION_CHARS) -> list[SectionBlock]:
    """Lines packed into as few sections of at most `limit` characters as they need; none dropped."""
    lines = [truncate(line, MAX_LINE_CHARS) for line in lines]
    groups = _pack_groups([len(line) for line in lines], limit)
    return [SectionBlock(text=mrkdwn("\n".join(lines[i] for i in group))) for group in groups]


def _open_for(days: int | None) -> str:
    if days is None:
        return "open for an unknown time"
    return "open since today" if days == 0 else f"open {_plural(days, 'day')}"


def digest_row_text(row: DigestRow, state: RowState = RowState()) -> str:
    """One violator: the person (or none found), the IAM user and account, days open, nudges."""
    person = mention(row.slack_user_id) if row.slack_user_id else f"_{NO_PERSON}_"
    where = f"{code(row.user_name)} in {escape(row.account)}"
    if state.exempted_at:
        return truncate(
            f":large_yellow_circle: *exempted* at {escape(state.exempted_at)} (not fixed) · {person} · {where}",
            MAX_LINE_CHARS,
        )
    if state.fixed_at:
        was = "" if row.days_open is None else f" · was open {_plural(row.days_open, 'day')}"
        return truncate(f":white_check_mark: *fixed* at {state.fixed_at} · {person} · {where}{was}", MAX_LINE_CHARS)
    nudges = "not nudged yet" if not state.nudges else _plural(state.nudges, "nudge")
    if state.delivery_unknown and not state.nudges:
        nudges = "no DM confirmed"
    text = f"{person} · {where} · {_open_for(row.days_open)} · {nudges}"
    if state.nudged_at:
        by = "the scheduler" if state.nudged_by in (None, "scheduler") else mention(state.nudged_by)
        if state.delivery_unknown:
            text += f" · _DM by {by} at {escape(state.nudged_at)}: delivery unknown_"
        else:
            text += f" · _nudged by {by} at {escape(state.nudged_at)}_"
    return truncate(text, MAX_LINE_CHARS)


def nudge_all_value(scope: Sequence[str]) -> str:
    """The "Nudge all" button value: `all`, or `accounts:ID,ID` in an account channel's digest."""
    return "accounts:" + ",".join(scope) if scope else "all"


def parse_nudge_all_value(value: str) -> tuple[str, ...] | None:
    """The account ids a "Nudge all" is limited to; None: every account (`all`, or anything else)."""
    if not value.startswith("accounts:"):
        return None
    ids = tuple(i for i in value[len("accounts:") :].split(",") if i.isdigit() and len(i) == 12)
    return ids or None


def overdue_line(row: OverdueRow, state: RowState | None = None) -> str:
    """One overdue violation: who, the IAM user and account, days since the first nudge, nudges so far.

    With its `state` now (the digest updated in place): the nudges sent since, or fixed and when.
    """
    person = mention(row.slack_user_id) if row.slack_user_id else f"_{NO_PERSON}_"
    where = f"{person} · {code(row.user_name)} in {escape(row.account)}"
    if state is not None and state.fixed_at:
        return truncate(f"• :white_check_mark: *fixed* at {state.fixed_at} · {where}", MAX_LINE_CHARS)
    nudges = max(row.nudges, state.nudges if state is not None else 0)
    return truncate(
        f"• {where} · {_plural(row.days, 'day')} since the first nudge · {_plural(nudges, 'nudge')} so far",
        MAX_LINE_CHARS,
    )


def _overdue_title(count: int, after_days: int) -> str:
    return f"*:alarm_clock: Overdue ({count})*: still open {_plural(after_days, 'day')} or more after the first nudge"


OVERDUE_LINE_GROWTH = 12  # characters an overdue line may gain once posted (more nudges): kept free


def overdue_blocks(
    rows: Sequence[OverdueRow], after_days: int, states: Mapping[str, RowState] | None = None
) -> list[SectionBlock]:
    """The digest's overdue section: a title line, then every row (packed, none dropped).

    Which rows share a section depends on the rows alone, never on `states`, so the section
    can be re-rendered in place (fixed, more nudges) with the same blocks.
    """
    title = _overdue_title(len(rows), after_days)
    sizes = [len(title), *(len(overdue_line(r)) + OVERDUE_LINE_GROWTH for r in rows)]
    states = states or {}
    lines = [title, *(overdue_line(r, states.get(r.arn)) for r in rows)]
    return [
        SectionBlock(text=mrkdwn(truncate("\n".join(lines[i] for i in group), MAX_SECTION_CHARS)))
        for group in _pack_groups(sizes)
    ]


ESCALATION_ROWS_PER_MESSAGE = 40  # 40 lines of at most 600 characters: at most 9 sections


def escalation_parts(rows: Sequence[OverdueRow], after_days: int, date: str) -> list[DigestPart]:
    """ESCALATION_CHANNEL's messages about newly overdue violations (each listed once), within Slack's limits."""
    chunks = [rows[i : i + ESCALATION_ROWS_PER_MESSAGE] for i in range(0, len(rows), ESCALATION_ROWS_PER_MESSAGE)]
    parts = []
    for index, chunk in enumerate(chunks):
        title = "MFA violations overdue" + (f" ({index + 1}/{len(chunks)})" if len(chunks) > 1 else "")
        blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=title))]
        blocks += overdue_blocks(chunk, after_days)
        note = f"Found by the MFA digest of {escape(date)}. Each violation is escalated once; it stays in the digest."
        blocks.append(ContextBlock(elements=[mrkdwn(note)]))
        text = truncate(
            f"{_plural(len(chunk), 'MFA violation')} still open {_plural(after_days, 'day')} after the first nudge",
            MAX_FALLBACK_CHARS,
        )
        parts.append(DigestPart(index=index, text=text, blocks=blocks, arns=tuple(r.arn for r in chunk)))
    return parts


def digest_row_block(row: DigestRow, state: RowState = RowState()) -> SectionBlock:
    """The row as a section; a Nudge button while it is open and has a Slack person."""
    button = None
    if row.slack_user_id and not state.fixed_at and not state.exempted_at:
        value = truncate(f"{row.account_id}:{row.user_name}", MAX_BUTTON_VALUE)
        button = ButtonElement(text="Nudge", action_id=NUDGE_ACTION, value=value)
    return SectionBlock(text=mrkdwn(digest_row_text(row, state)), accessory=button)


def exempt_counts(exempt: int, by_tag: int) -> str:
    """Exemptions granted in Slack and those by tag, set outside Slack, counted apart."""
    in_slack = exempt - by_tag
    parts = [f"{in_slack} granted in Slack"] if in_slack else []
    parts += [f"*{by_tag} by tag, set outside Slack*"] if by_tag else []
    return " · ".join(parts) or "0"


def _digest_summary(view: DigestView) -> SectionBlock:
    audited = len(view.accounts) - len(view.failed)
    accounts = f"{audited} audited"
    if view.failed:
        accounts += f", *{len(view.failed)} could NOT be audited*"
    exempt = sum(a.exempt for a in view.accounts if not a.error)
    by_tag = sum(a.exempt_by_tag for a in view.accounts if not a.error)
    if view.all_clear and exempt:  # accepted risk, never compliance
        text = (
            f":white_check_mark: *No violation* ({_plural(audited, 'account')} audited); exempt, so without MFA: "
            f"{exempt_counts(exempt, by_tag)}."
        )
        return SectionBlock(text=mrkdwn(text))
    if view.all_clear:
        if view.accepted_risk:
            text = (
                f":white_check_mark: *No violations* ({_plural(audited, 'account')} audited); "
                f"{_plural(view.accepted_risk, 'IAM user')} exempt or in grace: {ACCEPTED_RISK}."
            )
        else:
            text = (
                f":white_check_mark: *All clear*: every IAM user in scope has MFA "
                f"({_plural(audited, 'account')} audited)."
            )
        return SectionBlock(text=mrkdwn(text))
    first = view.new_since is None
    fields = [
        mrkdwn(f"*Accounts:* {accounts}"),
        mrkdwn(f"*Violations now:* {len(view.rows)}"),
        mrkdwn("*New since the last digest:* " + ("first digest" if first else str(view.new_since))),
        mrkdwn("*Fixed since the last digest:* " + ("first digest" if first else str(view.fixed_since))),
    ]
    exempt = sum(a.exempt for a in view.accounts if not a.error)
    by_tag = sum(a.exempt_by_tag for a in view.accounts if not a.error)
    if exempt:
        fields.append(mrkdwn(f"*Exempt:* {exempt_counts(exempt, by_tag)}"))
    if view.accepted_risk:
        fields.append(mrkdwn(f"*Exempt or in grace ({ACCEPTED_RISK}):* {view.accepted_risk}"))
    return SectionBlock(fields=fields)


def _digest_lead(view: DigestView) -> list[Block]:
    """The blocks that open the top message: header, counts, and "Nudge all" when anyone can be nudged."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=truncate(view.title, MAX_HEADER_CHARS))),
        _digest_summary(view),
    ]
    people = {r.slack_user_id for r in view.rows if r.slack_user_id}
    value = nudge_all_value(view.scope)
    if people and len(value) <= MAX_BUTTON_VALUE:
        confirm = ConfirmObject(
            title="Nudge everyone?",
            text=f"DM {_plural(len(people), 'person', 'people')} their MFA set-up steps "
            "(people nudged recently are skipped).",
            confirm="Nudge all",
            deny="Cancel",
        )
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text="Nudge all", action_id=NUDGE_ALL_ACTION, value=value, style="primary", confirm=confirm
                    )
                ]
            )
        )
    return blocks


def _digest_flow(view: DigestView, states: Mapping[str, RowState]) -> list[tuple[Block, str | None, bool]]:
    """Every block after the lead, in order, each with the ARN of the row it shows (if it is one)
    and whether it belongs to the overdue section."""
    flow: list[tuple[Block, str | None, bool]] = []
    for account in view.failed:
        text = (
            f":rotating_light: *{escape(account.label)} could not be audited:* {escape(account.error or 'unknown')}\n"
            "Its result is *unknown*, not clean."
        )
        flow.append((SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS))), None, False))
    root_lines = []
    for account in view.accounts:
        if account.error:
            continue
        line = f"{escape(account.label)}: root {escape(account.root)}"
        line = f":warning: *{line}*" if account.root_off else f"• {line}"
        if account.freshness:
            line += f" · _{escape(account.freshness)}_"
        root_lines.append(line)
    if root_lines:
        root_lines[0] = "*Root user and freshness of the findings*\n" + root_lines[0]
        flow += [(block, None, False) for block in _pack_all(root_lines)]
    if view.overdue:
        flow += [(block, None, True) for block in overdue_blocks(view.overdue, view.overdue_after_days, states)]
    if view.rows:
        flow.append((SectionBlock(text=mrkdwn(f"*Violations ({len(view.rows)})*")), None, False))
    flow += [(digest_row_block(row, states.get(row.arn, RowState())), row.arn, False) for row in view.rows]
    return flow


def digest_layout(view: DigestView) -> list[int]:
    """How many flow blocks each message holds: the top message first, then thread replies (≤ 50 blocks each)."""
    lead = len(_digest_lead(view))
    total = len(_digest_flow(view, {}))
    if lead + total <= MAX_BLOCKS:
        return [total]
    counts = [MAX_BLOCKS - lead - 1]  # one block kept for "continued in the thread"
    left = total - counts[0]
    while left > 0:
        counts.append(min(MAX_BLOCKS, left))
        left -= counts[-1]
    return counts


def _digest_text(view: DigestView) -> str:
    if view.all_clear:
        return f"{view.title}: all clear"
    text = f"{view.title}: {_plural(len(view.rows), 'violation')}"
    if view.new_since is not None:
        text += f" ({view.new_since} new, {view.fixed_since} fixed since the last digest)"
    if view.overdue:
        text += f"; {len(view.overdue)} overdue"
    if view.failed:
        text += f"; {_plural(len(view.failed), 'account')} could NOT be audited"
    return truncate(text, MAX_FALLBACK_CHARS)


def digest_parts(view: DigestView, states: Mapping[str, RowState] | None = None) -> list[DigestPart]:
    """The whole digest: the top message, then the thread replies that continue a long list."""
    states = states or {}
    flow = _digest_flow(view, states)
    layout = digest_layout(view)
    parts: list[DigestPart] = []
    start = 0
    for index, count in enumerate(layout):
        chunk = flow[start : start + count]
        start += count
        blocks = [block for block, _, _ in chunk]
        arns = tuple(arn for _, arn, _ in chunk if arn is not None)
        overdue = tuple(o.arn for o in view.overdue) if any(section for _, _, section in chunk) else ()
        if index == 0:
            blocks = _digest_lead(view) + blocks
            if len(layout) > 1:
                rest = sum(1 for _, arn, _ in flow[count:] if arn is not None)
                note = f":thread: Continued in the thread: {_plural(rest, 'more row')}."
                blocks.append(ContextBlock(elements=[mrkdwn(note)]))
            text = _digest_text(view)
        else:
            text = truncate(f"{view.title} (continued, {index + 1}/{len(layout)})", MAX_FALLBACK_CHARS)
        parts.append(DigestPart(index=index, text=text, blocks=blocks, arns=arns, overdue=overdue))
    return parts


# -- the nudge DM -------------------------------------------------------------------------------

SELF_MANAGE_MFA_ACTIONS = (
    "iam:CreateVirtualMFADevice",
    "iam:EnableMFADevice",
    "iam:ListMFADevices",
    "iam:ResyncMFADevice",
)


def dm_console_steps() -> str:
    """The console steps to assign an MFA device to one's own IAM user, mrkdwn."""
    return (
        "*In the AWS console*\n"
        "1. Sign in as your IAM user at the sign-in URL above.\n"
        "2. Open *IAM* → *Users* → your user → *Security credentials*.\n"
        "3. Under *Multi-factor authentication (MFA)* choose *Assign MFA device*.\n"
        "4. Pick an *authenticator app*, a *security key* (passkey/FIDO) or a *hardware TOTP token* and follow "
        "the prompts; an app or token asks for *two consecutive codes*.\n"
        f"5. Press *{RECHECK_BUTTON}* above."
    )


def permission_note() -> str:
    """The IAM permission a person needs to manage their own MFA device."""
    actions = ", ".join(f"`{a}`" for a in SELF_MANAGE_MFA_ACTIONS)
    return (
        f"*If a step says AccessDenied*: your IAM user needs {actions} on itself "
        "(`user/${aws:username}`, and `iam:CreateVirtualMFADevice` on `mfa/*`), as in AWS's example policy "
        "that lets IAM users manage their own MFA device. Ask your AWS admins for it."
    )


def _user_label(user: UserFinding, aliases: Mapping[str, str | None]) -> str:
    alias = aliases.get(user.account_id)
    return f"{alias} ({user.account_id})" if alias else user.account_id


def recheck_button(user: UserFinding) -> ButtonElement:
    """The re-check button of one IAM user (value: account id + IAM user name)."""
    return ButtonElement(text=RECHECK_BUTTON, action_id=RECHECK_ACTION, value=user_value(user), style="primary")


DM_HEADER_BLOCK = "mfa_dm_header"
DM_INTRO_BLOCK = "mfa_dm_intro"


def key_steps(user: UserFinding) -> str:
    """For a key-only user (MFA_SCOPE=all): MFA on the CLI with get-session-token, or a role instead."""
    serial = f"arn:{code_safe(_partition(user.arn))}:iam::{code_safe(user.account_id)}:mfa/{code_safe(user.user_name)}"
    return (
        f"*Access keys of {code(user.user_name)}: use them with MFA*\n"
        "Once the device is on (CLI steps), get temporary credentials with a code from it and use those:\n"
        f"```aws sts get-session-token --serial-number {serial} --token-code 123456```\n"
        "Better for a workload (CI, a server, a script): move it to an IAM role (instance profile, OIDC "
        "for CI) and delete the access key."
    )


def dm_progress_header(remaining: int) -> str:
    """The header of a DM some of whose IAM users are fixed."""
    return truncate(f"Almost there: MFA still needed for {_plural(remaining, 'IAM user')}", MAX_HEADER_CHARS)


def dm_progress_text(slack_user_id: str | None, remaining: Sequence[str], done: Sequence[str]) -> str:
    """The opening of a DM some of whose IAM users are fixed: thanks for those, the rest still needed."""
    hello = f"Hi {mention(slack_user_id)}, " if slack_user_id else "Hi, "
    names = ", ".join(code(name) for name in done)
    subject = code(remaining[0]) if len(remaining) == 1 else ", ".join(code(name) for name in remaining)
    return truncate(
        f"{hello}thank you: {names} {'is' if len(done) == 1 else 'are'} done, I checked it live. "
        f"Still needed: an MFA device for {subject}; when you are done, press *{RECHECK_BUTTON}* "
        "and I check again right away.",
        MAX_SECTION_CHARS,
    )


def dm_header_text(users: Sequence[UserFinding], done: int = 0) -> str:
    """The DM's header: what is asked, or (some fixed) what is still needed."""
    if done:
        return dm_progress_header(len(users))
    if all(u.console_access for u in users):
        return "Please turn on MFA for your AWS console sign-in"
    return "Please turn on MFA for your AWS IAM user" + ("" if len(users) == 1 else "s")


def dm_intro_text(slack_user_id: str | None, users: Sequence[UserFinding], done: Sequence[str] = ()) -> str:
    """The DM's opening: whom it is for, what each IAM user lacks; with `done` (their names), thanks first."""
    if done:
        return dm_progress_text(slack_user_id, [u.user_name for u in users], done)
    count = len(users)
    hello = f"Hi {mention(slack_user_id)}, " if slack_user_id else "Hi, "
    subject = "this IAM user" if count == 1 else f"these {count} IAM users"
    has = "has" if count == 1 else "have"
    console = sum(1 for u in users if u.console_access)
    if console == count:
        what = f"can sign in to the AWS console with a password but {has} no MFA device"
    elif console == 0:
        what = f"{has} an active access key but no MFA device (MFA is required for access keys too)"
    else:
        what = f"can sign in to the AWS console or {has} an active access key, but no MFA device"
    return (
        f"{hello}{subject} of yours {what}. It takes two minutes; when you are done, press "
        f"*{RECHECK_BUTTON}* and I check again right away."
    )


def nudge_dm(
    slack_user_id: str | None,
    users: Sequence[UserFinding],
    aliases: Mapping[str, str | None],
    requested_by: str | None = None,
    max_blocks: int = MAX_BLOCKS,
    done: Sequence[UserFinding] = (),
) -> Message:
    """The personal DM: each IAM user of the person with its sign-in URL and re-check button, then the steps.

    `done`: IAM users of the same DM already fixed (a re-check found MFA on): thanked, not asked again.
    Console steps are shown when a user has a console password; MFA-on-the-CLI steps for key-only users.
    """
    count = len(users)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=dm_header_text(users, len(done))), block_id=DM_HEADER_BLOCK)
    ]
    intro = dm_intro_text(slack_user_id, users, [u.user_name for u in done])
    blocks.append(SectionBlock(text=mrkdwn(truncate(intro, MAX_SECTION_CHARS)), block_id=DM_INTRO_BLOCK))
    key_only = [u for u in users if not u.console_access]
    console_steps_shown = len(key_only) < count
    fixed_blocks = 3 + int(console_steps_shown) + (1 if key_only else 0)  # CLI, permission, context (+ console, keys)
    per_user_cli = len(blocks) + 2 * count + fixed_blocks - 1 <= max_blocks
    room = max_blocks - len(blocks) - fixed_blocks - 1
    listed = users if count <= room else users[: room - 1]
    for user in listed:
        url = signin_url(user.account_id, aliases.get(user.account_id), _partition(user.arn))
        text = f"*{code(user.user_name)}* in {escape(_user_label(user, aliases))}"
        if not user.console_access:
            text += "\nAccess key, no console password"
        elif url:
            text += f"\nSign-in URL: {link(url)}"
        blocks.append(SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)), accessory=recheck_button(user)))
    if len(listed) < count:
        rest = ", ".join(u.user_name for u in users[len(listed) :])
        text = f"_…and {_plural(count - len(listed), 'more IAM user')}: {escape(rest)} (see `/mfa-check me`)._"
        blocks.append(SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS))))
    if console_steps_shown:
        blocks.append(SectionBlock(text=mrkdwn(dm_console_steps())))
    cli_title = "*Or with the AWS CLI*" if console_steps_shown else "*With the AWS CLI*"
    if per_user_cli:
        for user in users:
            title = cli_title + (f" (for {code(user.user_name)})" if count > 1 else "")
            blocks.append(SectionBlock(text=mrkdwn(truncate(f"{title}\n{cli_steps(user)}", MAX_SECTION_CHARS))))
    else:
        generic = UserFinding(
            account_id="ACCOUNT_ID",
            user_name="YOUR_USER",
            arn="",
            console_access=True,
            mfa_devices=(),
            status="violation",
        )
        blocks.append(SectionBlock(text=mrkdwn(f"{cli_title}\n" + cli_steps(generic))))
    if key_only:
        text = "\n\n".join(key_steps(u) for u in key_only)
        blocks.append(SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS))))
    blocks.append(SectionBlock(text=mrkdwn(permission_note())))
    who = f" at the request of {mention(requested_by)}" if requested_by and requested_by != "scheduler" else ""
    blocks.append(ContextBlock(elements=[mrkdwn(f"Sent by MFA-bot{who}. Only you see this DM.")]))
    if done:
        text = f"MFA still needed for {_plural(count, 'IAM user')} ({len(done)} done)"
    elif console_steps_shown:
        text = "Your AWS console sign-in needs MFA" + ("" if count == 1 else f" ({count} IAM users)")
    else:
        text = "Your AWS access key needs MFA" + ("" if count == 1 else f" ({count} IAM users)")
    return Message(text=text, blocks=blocks)


THANKS_HEADER = "Thank you: MFA is on"


def dm_all_fixed(done: Sequence[str]) -> Message:
    """The DM once every IAM user in it is fixed: a short thank-you, no request, no steps.

    `done`: one mrkdwn line per fixed IAM user.
    """
    lines = "\n".join(done) if done else "Every IAM user in this message is fixed."
    text = f"*Thank you!* I checked it live just now: nothing left to do.\n{lines}"
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=THANKS_HEADER), block_id=DM_HEADER_BLOCK),
        SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)), block_id=DM_INTRO_BLOCK),
    ]
    return Message(text=THANKS_HEADER, blocks=blocks)


def done_line(user_name: str, account: str) -> str:
    """One fixed IAM user in an updated DM."""
    return f":white_check_mark: {code(user_name)} in {escape(account)}: MFA is on"


def dm_after_fix(
    slack_user_id: str | None,
    fixed: Sequence[UserFinding],
    remaining: Sequence[UserFinding],
    aliases: Mapping[str, str | None],
    requested_by: str | None = None,
) -> Message:
    """The DM rebuilt after a re-check, from which of its IAM users are fixed and which remain; pure.

    Every one fixed: a short thank-you. Some: the DM thanks for those and asks only for the rest.
    """
    if not remaining:
        return dm_all_fixed([done_line(u.user_name, _user_label(u, aliases)) for u in fixed])
    return nudge_dm(slack_user_id, remaining, aliases, requested_by, done=fixed)


# -- re-check answers ---------------------------------------------------------------------------


def recheck_thanks(user_name: str, account: str) -> str:
    """The DM row once a re-check found MFA on (or the console password gone)."""
    return (
        f":white_check_mark: *Thank you!* {code(user_name)} in {escape(account)} is fixed: I checked it live just now."
    )


def recheck_missing(user_name: str, account: str, missing: str) -> str:
    """Still not fixed: exactly what is missing (`missing` is trusted mrkdwn from bot.recheck)."""
    return truncate(f":x: {code(user_name)} in {escape(account)} still needs MFA: {missing}", MAX_SECTION_CHARS)


DONE_ROW_BLOCK = "mfa_dm_done:"  # block_id prefix of a fixed row in an updated DM


def dm_after_recheck(blocks: Sequence[Mapping], value: str, thanks: str) -> list[dict]:
    """The DM's blocks (as Slack sent them) after the row `value` was found fixed; pure.

    The fixed row becomes `thanks`. None left: the whole DM becomes a short thank-you (no request,
    no steps). Some left: the header and opening say which are done and which remain; the rows and
    steps of the remaining ones stay as they were.
    """
    updated: list[dict] = []
    done: list[str] = []
    for index, block in enumerate(blocks):
        accessory = block.get("accessory") or {}
        if accessory.get("action_id") == RECHECK_ACTION and accessory.get("value") == value:
            block = {
                "type": "section",
                "block_id": truncate(f"{DONE_ROW_BLOCK}{index}", 255),
                "text": mrkdwn(truncate(thanks, MAX_SECTION_CHARS)).to_dict(),
            }
        if str(block.get("block_id", "")).startswith(DONE_ROW_BLOCK):
            done.append(str((block.get("text") or {}).get("text", "")))
        updated.append(dict(block))
    remaining = [
        (b.get("accessory") or {}).get("value", "")
        for b in updated
        if (b.get("accessory") or {}).get("action_id") == RECHECK_ACTION
    ]
    if not remaining:
        return Message(text=THANKS_HEADER, blocks=dm_all_fixed(done).blocks).blocks_json()
    names = [parsed[1] for parsed in map(parse_user_value, remaining) if parsed]
    done_names = [m.group(1) for m in (re.search(r"`([^`]+)`", line) for line in done) if m]
    recipient = _dm_recipient(blocks)
    for index, block in enumerate(updated[:2]):
        if block.get("type") == "header":
            updated[index] = {**block, "text": {"type": "plain_text", "text": dm_progress_header(len(names))}}
        elif block.get("type") == "section" and not block.get("accessory"):
            text = dm_progress_text(recipient, names, done_names)
            updated[index] = {**block, "text": mrkdwn(text).to_dict()}
    return updated[:MAX_BLOCKS]


def _dm_recipient(blocks: Sequence[Mapping]) -> str | None:
    """The person a DM greets (`Hi <@U…>`), from its opening section."""
    for block in blocks[:3]:
        found = re.search(r"Hi <@([UW][A-Z0-9]+)>", str((block.get("text") or {}).get("text", "")))
        if found:
            return found.group(1)
    return None


# -- answers to admins about nudges -------------------------------------------------------------


def nudge_sent_text(slack_user_id: str, users: Sequence[tuple[str, str]]) -> str:
    """A nudge went: to whom, about which IAM users ((user_name, account) pairs)."""
    names = ", ".join(f"{code(name)} in {escape(account)}" for name, account in users)
    return truncate(f":incoming_envelope: DM sent to {mention(slack_user_id)} about {names}.", MAX_SECTION_CHARS)


def nudge_skipped_text(
    slack_user_id: str, last_at: str, last_by: str, cooldown_hours: int, delivery_unknown: bool = False
) -> str:
    """A nudge was skipped: the person was nudged within the cooldown (when, by whom, maybe delivery unknown)."""
    by = "the scheduler" if last_by in ("", "scheduler") else mention(last_by)
    unknown = " (delivery unknown: Slack's answer to that DM was lost)" if delivery_unknown else ""
    return (
        f":hourglass: Skipped: {mention(slack_user_id)} was last nudged at {escape(last_at)} by {by}{unknown}; "
        f"one DM per person every {_plural(cooldown_hours, 'hour')}."
    )


def nudge_unknown_text(slack_user_id: str, error: str, cooldown_hours: int) -> str:
    """A DM may have gone but Slack's answer was lost: recorded as delivery unknown, never sent twice."""
    return (
        f":grey_question: The DM to {mention(slack_user_id)} may have gone, but Slack's answer was lost "
        f"({escape(error)}). It is recorded as *delivery unknown*; no second DM goes within "
        f"{_plural(cooldown_hours, 'hour')}."
    )


def nudge_failed_text(slack_user_id: str, error: str) -> str:
    """A DM could not go after the retries; recorded as failed."""
    return (
        f":warning: The DM to {mention(slack_user_id)} could not be sent ({escape(error)}); it is recorded as failed."
    )


def nudge_all_queued_text(people: int, users: int, no_person: Sequence[str], seconds_per_dm: float) -> str:
    """ "Nudge all" was queued: how many, how long, and who could not be matched to a Slack person."""
    if not people:
        text = "Nobody to nudge: no violator has a Slack person."
    else:
        minutes = max(1, round(people * seconds_per_dm / 60))
        text = (
            f":outbox_tray: Queued {_plural(people, 'DM')} ({_plural(users, 'IAM user')}); they go out at Slack's "
            f"pace, about {minutes} min. People nudged within the cooldown are skipped."
        )
    if no_person:
        names = escape(", ".join(no_person))
        text += f"\nNo Slack person found for {names}: link them with `/mfa-check link NAME @person`."
    return truncate(text, MAX_SECTION_CHARS)


def nudge_batch_done_text(sent: int, skipped: int, failed: int, unknown: int = 0) -> str:
    """The summary of a finished "Nudge all"."""
    text = f"Nudge all finished: {sent} sent, {skipped} skipped (cooldown), {failed} failed"
    return text + (f", {unknown} delivery unknown." if unknown else ".")
