"""What one person sees about their own IAM users: `/mfa-check me`, the nudge DM, the DM after a re-check.

The set-up steps come from the remediation copy (`bot.messages.remediation`): one set of console
steps, named for the user and its account's sign-in URL, in both the DM and `me`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from slack_sdk.models.blocks import Block, ButtonElement, ContextBlock, HeaderBlock, PlainTextObject, SectionBlock

from bot import buttons
from bot.messages import remediation
from bot.messages.blocks import Message, mrkdwn
from bot.messages.remediation import mfa_serial, partition_of, signin_url
from bot.messages.text import (
    MAX_BLOCKS,
    MAX_HEADER_CHARS,
    MAX_SECTION_CHARS,
    STATUS_TEXT,
    code,
    devices_text,
    escape,
    link,
    mention,
    plural,
    truncate,
)
from bot.models import AuditResult, UserFinding
from bot.report import days_without_mfa

RECHECK_BUTTON = "I've set it up – re-check"
DM_HEADER_BLOCK = "mfa_dm_header"
DM_INTRO_BLOCK = "mfa_dm_intro"
DONE_ROW_BLOCK = "mfa_dm_done:"  # block_id prefix of a fixed row in an updated DM
STEPS_BLOCK = "mfa_dm_steps:"  # block_id prefix of one IAM user's own CLI steps, + its re-check button's value
THANKS_HEADER = "Thank you: MFA is on"
NEEDS_FIX = frozenset({"violation", "grace"})


def _section(text: str, accessory: ButtonElement | None = None, block_id: str | None = None) -> SectionBlock:
    return SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)), accessory=accessory, block_id=block_id)


def cli_steps(user: UserFinding) -> str:
    """The AWS CLI commands that give `user` a virtual MFA device, as a preformatted block."""
    return remediation.current().cli_steps(user.user_name, mfa_serial(user.account_id, user.user_name, user.arn))


def key_steps(user: UserFinding) -> str:
    """For a key-only user (MFA_SCOPE=all): MFA on the CLI with get-session-token, or a role instead."""
    return remediation.current().key_steps(user.user_name, mfa_serial(user.account_id, user.user_name, user.arn))


def fix_steps_blocks(user: UserFinding, alias: str | None = None) -> list[SectionBlock]:
    """Personal MFA set-up steps for one IAM user, two sections: console then CLI, or (key-only) CLI then
    how to use the access key with MFA."""
    copy = remediation.current()
    if not user.console_access:
        return [_section(f"{copy.cli_title(after_console=False)}\n{cli_steps(user)}"), _section(key_steps(user))]
    url = signin_url(user.account_id, alias, partition_of(user.arn))
    return [
        _section(copy.console_steps([(user.user_name, url)])),
        _section(f"{copy.cli_title(after_console=True)}\n{cli_steps(user)}"),
    ]


# -- /mfa-check me ------------------------------------------------------------------------------


def _own_status(user: UserFinding, account: str, now: datetime) -> str:
    status = STATUS_TEXT[user.status]
    if user.status == "violation" and not user.console_access:
        status = ":x: active access key *without MFA*"
    text = f"*{code(user.user_name)}* in {escape(account)}: {status}"
    if user.status == "compliant":
        text += f" ({devices_text(user)})"
    if user.status == "violation":
        days = days_without_mfa(user, now)
        text += "" if days is None else f" for {plural(days, 'day')}"
    if user.status in {"exempt", "grace"} and user.reason:
        text += f": {escape(user.reason)}"
    if user.status in NEEDS_FIX:
        text += "\nSet up MFA now, either way below:"
    return truncate(text, MAX_SECTION_CHARS)


def personal_message(findings: Sequence[UserFinding], result: AuditResult, max_blocks: int = MAX_BLOCKS) -> Message:
    """`/mfa-check me`: each of the caller's IAM users with their status, and fix steps where needed."""
    labels = {a.account_id: a.label for a in result.accounts}
    aliases = {a.account_id: a.alias for a in result.accounts}
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Your AWS console MFA"))]
    needs_fix = sum(1 for u in findings if u.status in NEEDS_FIX)
    for index, user in enumerate(findings):
        cost = 1 + (2 if user.status in NEEDS_FIX else 0)
        if len(blocks) + cost > max_blocks - 1:
            left = [u.user_name for u in findings[index:]]
            blocks.append(_section(f"_…and {plural(len(left), 'more IAM user')}: {escape(', '.join(left))}_"))
            break
        blocks.append(_section(_own_status(user, labels.get(user.account_id, user.account_id), result.generated_at)))
        if user.status in NEEDS_FIX:
            blocks += fix_steps_blocks(user, aliases.get(user.account_id))
    if needs_fix:
        text = f"{plural(needs_fix, 'IAM user')} of yours {'needs' if needs_fix == 1 else 'need'} MFA"
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
    return Message(text="No IAM user found for you", blocks=[_section(text)])


# -- the nudge DM -------------------------------------------------------------------------------


def _user_label(user: UserFinding, aliases: Mapping[str, str | None]) -> str:
    alias = aliases.get(user.account_id)
    return f"{alias} ({user.account_id})" if alias else user.account_id


def recheck_button(user: UserFinding) -> ButtonElement:
    """The re-check button of one IAM user (value: account id + IAM user name)."""
    value = buttons.user_value(user.account_id, user.user_name)
    return ButtonElement(text=RECHECK_BUTTON, action_id=buttons.RECHECK_ACTION, value=value, style="primary")


def _hello(slack_user_id: str | None) -> str:
    return f"Hi {mention(slack_user_id)}, " if slack_user_id else "Hi, "


def dm_progress_header(remaining: int) -> str:
    """The header of a DM some of whose IAM users are fixed."""
    return truncate(f"Almost there: MFA still needed for {plural(remaining, 'IAM user')}", MAX_HEADER_CHARS)


def dm_progress_text(slack_user_id: str | None, remaining: Sequence[str], done: Sequence[str]) -> str:
    """The opening of a DM some of whose IAM users are fixed: thanks for those, the rest still needed."""
    names = ", ".join(code(name) for name in done)
    subject = ", ".join(code(name) for name in remaining)
    return truncate(
        f"{_hello(slack_user_id)}thank you: {names} {'is' if len(done) == 1 else 'are'} done, I checked it live. "
        f"Still needed: an MFA device for {subject}; when you are done, press *{RECHECK_BUTTON}* "
        "and I check again right away.",
        MAX_SECTION_CHARS,
    )


def _dm_header(users: Sequence[UserFinding]) -> str:
    if all(u.console_access for u in users):
        return "Please turn on MFA for your AWS console sign-in"
    return "Please turn on MFA for your AWS IAM user" + ("" if len(users) == 1 else "s")


def _dm_intro(slack_user_id: str | None, users: Sequence[UserFinding]) -> str:
    count = len(users)
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
        f"{_hello(slack_user_id)}{subject} of yours {what}. It takes two minutes; when you are done, press "
        f"*{RECHECK_BUTTON}* and I check again right away."
    )


def nudge_dm(
    slack_user_id: str | None,
    users: Sequence[UserFinding],
    aliases: Mapping[str, str | None],
    requested_by: str | None = None,
    max_blocks: int = MAX_BLOCKS,
) -> Message:
    """The personal DM: each IAM user of the person with its sign-in URL and re-check button, then the steps.

    Console steps are shown when a user has a console password; MFA-on-the-CLI steps for key-only users.
    """
    copy = remediation.current()
    count = len(users)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=_dm_header(users)), block_id=DM_HEADER_BLOCK),
        _section(_dm_intro(slack_user_id, users), block_id=DM_INTRO_BLOCK),
    ]
    key_only = [u for u in users if not u.console_access]
    console_shown = len(key_only) < count
    fixed_blocks = 3 + int(console_shown) + (1 if key_only else 0)  # CLI, permission, context (+ console, keys)
    per_user_cli = len(blocks) + 2 * count + fixed_blocks - 1 <= max_blocks
    room = max_blocks - len(blocks) - fixed_blocks - 1
    listed = users if count <= room else users[: room - 1]
    signins: list[tuple[str, str | None]] = []
    for user in listed:
        url = signin_url(user.account_id, aliases.get(user.account_id), partition_of(user.arn))
        text = f"*{code(user.user_name)}* in {escape(_user_label(user, aliases))}"
        if not user.console_access:
            text += "\nAccess key, no console password"
        else:
            signins.append((user.user_name, url))
            text += f"\nSign-in URL: {link(url)}" if url else ""
        blocks.append(_section(text, accessory=recheck_button(user)))
    if len(listed) < count:
        rest = ", ".join(u.user_name for u in users[len(listed) :])
        text = f"_…and {plural(count - len(listed), 'more IAM user')}: {escape(rest)} (see `/mfa-check me`)._"
        blocks.append(_section(text))
    if console_shown:
        signins += [(u.user_name, None) for u in users[len(listed) :] if u.console_access]
        blocks.append(_section(copy.console_steps(signins, recheck_button=RECHECK_BUTTON)))
    cli_title = copy.cli_title(after_console=console_shown)
    if per_user_cli:
        for user in users:
            title = cli_title + (f" (for {code(user.user_name)})" if count > 1 else "")
            block_id = _steps_block(recheck_button(user).value or "") if count > 1 else None
            blocks.append(_section(f"{title}\n{cli_steps(user)}", block_id=block_id))
    else:
        generic = copy.cli_steps("YOUR_USER", "arn:aws:iam::ACCOUNT_ID:mfa/YOUR_USER")
        blocks.append(_section(f"{cli_title}\n{generic}"))
    if key_only:
        blocks.append(_section("\n\n".join(key_steps(u) for u in key_only)))
    blocks.append(_section(copy.permission_note()))
    who = f" at the request of {mention(requested_by)}" if requested_by and requested_by != "scheduler" else ""
    blocks.append(ContextBlock(elements=[mrkdwn(f"Sent by MFA-bot{who}. Only you see this DM.")]))
    if console_shown:
        text = "Your AWS console sign-in needs MFA" + ("" if count == 1 else f" ({count} IAM users)")
    else:
        text = "Your AWS access key needs MFA" + ("" if count == 1 else f" ({count} IAM users)")
    return Message(text=text, blocks=blocks)


# -- re-check answers and the DM after a re-check -----------------------------------------------


def recheck_thanks(user_name: str, account: str) -> str:
    """The DM row once a re-check found MFA on (or the console password gone)."""
    return (
        f":white_check_mark: *Thank you!* {code(user_name)} in {escape(account)} is fixed: I checked it live just now."
    )


def recheck_missing(user_name: str, account: str, missing: str) -> str:
    """Still not fixed: exactly what is missing (`missing` is trusted mrkdwn from bot.recheck)."""
    return truncate(f":x: {code(user_name)} in {escape(account)} still needs MFA: {missing}", MAX_SECTION_CHARS)


def dm_all_fixed(done: Sequence[str]) -> Message:
    """The DM once every IAM user in it is fixed: a short thank-you, no request, no steps.

    `done`: one mrkdwn line per fixed IAM user.
    """
    lines = "\n".join(done) if done else "Every IAM user in this message is fixed."
    text = f"*Thank you!* I checked it live just now: nothing left to do.\n{lines}"
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=THANKS_HEADER), block_id=DM_HEADER_BLOCK),
        _section(text, block_id=DM_INTRO_BLOCK),
    ]
    return Message(text=THANKS_HEADER, blocks=blocks)


def _steps_block(value: str) -> str | None:
    block_id = STEPS_BLOCK + value
    return block_id if len(block_id) <= 255 else None  # Slack's limit for a block_id


def dm_after_recheck(blocks: Sequence[Mapping], value: str, thanks: str) -> list[dict]:
    """The DM's blocks (as Slack sent them) after the row `value` was found fixed; pure.

    The fixed row becomes `thanks`, and its own CLI steps go. None left: the whole DM becomes a
    short thank-you (no request, no steps). Some left: the header and opening say which are done
    and which remain; the rows and steps of the remaining ones stay as they were.
    """
    updated: list[dict] = []
    done: list[str] = []
    fixed_steps = {_steps_block(str((b.get("accessory") or {}).get("value", ""))) for b in blocks if _is_row(b, value)}
    for index, block in enumerate(blocks):
        if block.get("block_id") is not None and block.get("block_id") in fixed_steps:
            continue
        if _is_row(block, value):
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
        if (b.get("accessory") or {}).get("action_id") == buttons.RECHECK_ACTION
    ]
    if not remaining:
        return dm_all_fixed(done).blocks_json()
    names = [ref.user_name for ref in map(buttons.parse_recheck, remaining) if ref]
    done_names = [m.group(1) for m in (re.search(r"`([^`]+)`", line) for line in done) if m]
    recipient = _dm_recipient(blocks)
    for index, block in enumerate(updated[:2]):
        if block.get("type") == "header":
            updated[index] = {**block, "text": {"type": "plain_text", "text": dm_progress_header(len(names))}}
        elif block.get("type") == "section" and not block.get("accessory"):
            text = dm_progress_text(recipient, names, done_names)
            updated[index] = {**block, "text": mrkdwn(text).to_dict()}
    return updated[:MAX_BLOCKS]


def _is_row(block: Mapping, value: str) -> bool:
    """Whether `block` is the DM row whose re-check button names the IAM user `value` names (in any encoding)."""
    accessory = block.get("accessory") or {}
    if accessory.get("action_id") != buttons.RECHECK_ACTION:
        return False
    own = str(accessory.get("value", ""))
    named = buttons.parse_recheck(own)
    return own == value or (named is not None and named == buttons.parse_recheck(value))


def _dm_recipient(blocks: Sequence[Mapping]) -> str | None:
    """The person a DM greets (`Hi <@U…>`), from its opening section."""
    for block in blocks[:3]:
        found = re.search(r"Hi <@([UW][A-Z0-9]+)>", str((block.get("text") or {}).get("text", "")))
        if found:
            return found.group(1)
    return None
