"""Property-based tests (hypothesis): the `/mfa-check` parser and every renderer, on any text, IAM name and tag value.

For any input: no exception, Slack's limits held (slack_sdk's own validators plus the counts the
project keeps to), no `<!`, `<@` or `<http` that came from data (only the bot's own well-formed
mentions, channel links and sign-in URLs), and no bidi control character anywhere rendered.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ContextBlock, HeaderBlock, SectionBlock

from bot import commands
from bot.buttons import user_value
from bot.digest import build_view
from bot.escalation import Overdue
from bot.messages.audit import (
    account_title,
    audit_csv,
    audit_message,
    exempt_line,
    fallback_text,
    grace_line,
    usage_for,
    usage_message,
    user_detail_message,
    violation_line,
)
from bot.messages.blocks import Message, text_message
from bot.messages.digest import DigestRow, RowState, digest_parts, digest_row_block, escalation_parts
from bot.messages.nudging import (
    nudge_all_queued_text,
    nudge_batch_done_text,
    nudge_failed_text,
    nudge_sent_text,
    nudge_skipped_text,
)
from bot.messages.personal import (
    dm_after_recheck,
    fix_steps_blocks,
    not_found_message,
    nudge_dm,
    personal_message,
    recheck_missing,
    recheck_thanks,
)
from bot.messages.text import (
    MAX_BLOCKS,
    MAX_BUTTON_VALUE,
    MAX_FALLBACK_CHARS,
    MAX_FIELD_CHARS,
    MAX_HEADER_CHARS,
    MAX_LINE_CHARS,
    MAX_SECTION_CHARS,
)
from bot.models import AccountFindings, AuditResult, MfaDevice, RootStatus, UserFinding

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = [
    "<!channel>",
    "<!here|here>",
    "<@U0ADMIN01>",
    "<@W0ADMIN01|admin>",
    "<http://evil.example|click>",
    "<https://evil.example>",
    "<#C0DIGEST1>",
    "https://evil.example/login",
    "www.evil.example",
    "&",
    "&lt;",
    "<",
    ">",
    "`",
    "```",
    "*",
    "_",
    "~",
    ":",
    "|",
    "/",
    "\n",
    "\t",
    "\r",
    "=",
    "+",
    "-",
    "@",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
    " ",
    "x" * 700,
]
texts = st.lists(st.one_of(st.text(max_size=25), st.sampled_from(NASTY)), max_size=8).map("".join)
names = texts  # any IAM name, however impossible for IAM
slack_ids = st.one_of(st.none(), st.sampled_from(["U0BOB0001", "W0ERIN001"]), texts)
account_ids = st.one_of(st.from_regex(r"\d{12}", fullmatch=True), texts)
statuses = st.sampled_from(["violation", "compliant", "no_console", "exempt", "grace"])

BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
OWN_FORMS = re.compile(
    r"<@[UW][A-Z0-9]{2,}>|<#C[A-Z0-9]{2,}>"
    r"|<https://[a-z0-9-]+\.signin\.(?:aws\.amazon\.com|amazonaws-us-gov\.com|amazonaws\.cn)/console>"
)


@st.composite
def findings(draw: Any, account_id: str | None = None) -> UserFinding:
    status = draw(statuses)
    account = account_id if account_id is not None else draw(account_ids)
    name = draw(names)
    devices = (MfaDevice(draw(texts), "virtual"),) if status == "compliant" else ()
    return UserFinding(
        account_id=account,
        user_name=name,
        arn=draw(st.one_of(st.just(f"arn:aws:iam::{account}:user/{name}"), texts)),
        console_access=status != "no_console",
        mfa_devices=devices,
        status=status,
        reason=draw(st.one_of(st.none(), texts)),
        console_since=draw(st.one_of(st.none(), st.just(NOW - timedelta(days=3)))),
        grace_until=NOW + timedelta(days=2) if status == "grace" else None,
        tags=draw(st.dictionaries(texts, texts, max_size=3)),
        slack_user_id=draw(slack_ids),
    )


@st.composite
def accounts(draw: Any) -> AccountFindings:
    account_id = draw(account_ids)
    error = draw(st.one_of(st.none(), texts))
    users = [] if error is not None else draw(st.lists(findings(account_id), max_size=6))
    return AccountFindings(
        account_id=account_id,
        alias=draw(st.one_of(st.none(), texts)),
        error=error,
        report_generated_at=NOW,
        root=RootStatus(mfa_enabled=draw(st.one_of(st.none(), st.booleans())), hardware=None),
        users=users,
    )


audits = st.lists(accounts(), min_size=0, max_size=3).map(lambda a: AuditResult(generated_at=NOW, accounts=a))


def shown_strings(node: Any, plain: bool | None = None) -> list[str]:
    """Every string Slack shows (button values, action and block ids are handed back to the bot, not shown).

    `plain`: only those of plain_text objects (True), only the others (False), or all (None).
    Slack parses no mention or link in plain_text: there `<` is just a character.
    """
    if isinstance(node, dict):
        if node.get("type") == "plain_text":
            return [node["text"]] if plain is not False else []
        hidden = {"value", "action_id", "block_id", "type"}
        return [s for k, v in node.items() if k not in hidden for s in shown_strings(v, plain)]
    if isinstance(node, list):
        return [s for item in node for s in shown_strings(item, plain)]
    return [node] if isinstance(node, str) and plain is not True else []


def assert_safe_text(text: str) -> None:
    assert not BIDI.search(text), text
    data_only = OWN_FORMS.sub("", text)
    for form in ("<!", "<@", "<http"):
        assert form not in data_only, text


def assert_slack_message(message: Message, data_text: bool = True) -> None:
    """Slack's limits, validated by slack_sdk and by the project's own counts; safe text throughout."""
    assert len(message.blocks) <= MAX_BLOCKS
    assert len(message.text) <= MAX_FALLBACK_CHARS
    for block in message.blocks:
        block.validate_json()
        if isinstance(block, SectionBlock):
            assert block.text is not None or block.fields
            if block.text is not None:
                assert 0 < len(block.text.text) <= MAX_SECTION_CHARS
            assert len(block.fields or []) <= 10
            assert all(0 < len(f.text) <= MAX_FIELD_CHARS for f in block.fields or [])
            if isinstance(block.accessory, ButtonElement):
                assert len(block.accessory.value or "") <= MAX_BUTTON_VALUE
        if isinstance(block, HeaderBlock):
            assert 0 < len(block.text.text) <= MAX_HEADER_CHARS
        if isinstance(block, ContextBlock):
            assert 0 < len(block.elements) <= 10
        if isinstance(block, ActionsBlock):
            assert all(len(e.value or "") <= MAX_BUTTON_VALUE for e in block.elements)
    payload = json.loads(json.dumps(message.blocks_json()))
    for text in shown_strings(payload, plain=True):
        assert not BIDI.search(text), text
    for text in [message.text, *shown_strings(payload, plain=False)]:  # mrkdwn: mentions and links are parsed
        assert not BIDI.search(text), text
        if data_text:
            assert_safe_text(text)


def assert_safe_csv(content: str) -> None:
    assert not BIDI.search(content)
    for row in list(csv.reader(io.StringIO(content)))[1:]:
        for cell in row:
            assert cell[:1] not in {"=", "+", "-", "@", "\t", "\r"}, row


@PROPERTY
@given(texts)
def test_the_parser_answers_any_text_with_a_command_or_a_usage(text: str) -> None:
    command = commands.parse(text)
    assert isinstance(command, commands.Command)
    for is_admin in (True, False):
        if isinstance(command, commands.Usage):
            assert_slack_message(usage_for(command, is_admin))
        assert_slack_message(usage_message(is_admin))


@PROPERTY
@given(texts)
def test_the_parser_takes_anything_after_a_verb(text: str) -> None:
    for verb in ("user", "exempt", "link", "nudge", "unexempt", "me", "digest", "help"):
        command = commands.parse(f"{verb} {text}")
        assert isinstance(command, commands.Command)
        if isinstance(command, commands.Usage):
            assert_slack_message(usage_for(command, True))


@PROPERTY
@given(audits)
def test_the_audit_renderers_hold_for_any_audit(audit: AuditResult) -> None:
    message = audit_message(audit)
    assert_slack_message(message)
    assert_safe_text(fallback_text(audit))
    assert_safe_csv(audit_csv(audit))
    if message.file is not None:
        assert_safe_csv(message.file.content)
    users = [u for a in audit.accounts for u in a.users]
    assert_slack_message(personal_message(users, audit))
    assert_slack_message(not_found_message(audit, "U0BOB0001"))
    assert_slack_message(user_detail_message(users, audit))
    for account in audit.accounts:
        title = account_title(account)  # plain_text: only the length and bidi matter
        assert 0 < len(title) <= MAX_HEADER_CHARS and not BIDI.search(title)
    for user in users:
        for line in (
            violation_line(user, NOW),
            exempt_line(user, NOW),
            grace_line(user, NOW),
        ):
            assert len(line) <= MAX_LINE_CHARS
            assert_safe_text(line)
        for block in fix_steps_blocks(user, user.tags.get("alias")):
            assert_slack_message(Message(text="steps", blocks=[block]))
    rows = [DigestRow(u.arn, u.account_id, u.account_id, u.user_name, u.slack_user_id, 3) for u in users[:40]]
    assert_slack_message(Message(text="rows", blocks=[digest_row_block(row) for row in rows]))


@PROPERTY
@given(st.lists(findings(), max_size=30), st.dictionaries(account_ids, st.one_of(st.none(), texts)), slack_ids)
def test_the_nudge_dm_holds_for_any_iam_users(users: list[UserFinding], aliases: dict, requested_by: Any) -> None:
    person = "U0BOB0001"
    dm = nudge_dm(person, users, aliases, requested_by if isinstance(requested_by, str) else None)
    assert_slack_message(dm)
    for user in users[:3]:
        value = user_value(user.account_id, user.user_name)
        thanks = recheck_thanks(user.user_name, user.account_id)
        assert_safe_text(thanks)
        updated = dm_after_recheck(dm.blocks_json(), value, thanks)
        assert len(updated) <= MAX_BLOCKS
        for text in shown_strings(updated):
            assert_safe_text(text)


@PROPERTY
@given(names, texts, texts, slack_ids, st.lists(st.tuples(names, texts), max_size=5))
def test_the_answers_about_nudges_and_rechecks_hold(
    name: str, account: str, error: str, by: Any, pairs: list[tuple[str, str]]
) -> None:
    person = "U0ERIN001"
    by = by if isinstance(by, str) else ""
    answers = [
        recheck_thanks(name, account),
        recheck_missing(name, account, "no MFA device is enabled, and it has a console password."),
        nudge_sent_text(person, pairs),
        nudge_skipped_text(person, error[:40], by, 24),
        nudge_failed_text(person, error),
        nudge_all_queued_text(3, 4, [f"{n} ({a})" for n, a in pairs], 1.2),
        nudge_batch_done_text(1, 2, 3),
    ]
    for text in answers:
        assert_safe_text(text)
        assert_slack_message(text_message(text))


@PROPERTY
@given(audits)
def test_the_digest_and_escalations_hold_for_any_audit(audit: AuditResult) -> None:
    violators = [u for a in audit.accounts if not a.error for u in a.by_status("violation")]
    first_seen = {u.arn: NOW - timedelta(days=9) for u in violators}
    overdue = [
        Overdue(i, u.arn, u.account_id, u.user_name, NOW - timedelta(days=9), NOW - timedelta(days=8), 8)
        for i, u in enumerate(violators[:5])
    ]
    view = build_view(audit, first_seen, NOW, "UTC", overdue=overdue, overdue_after_days=7)
    states = {
        r.arn: RowState(
            nudges=i, nudged_by="U0ADMIN01", nudged_at="09:00", fixed_at="10:00" if i % 2 else None
        )
        for i, r in enumerate(view.rows)
    }
    for part in digest_parts(view, states):
        assert_slack_message(Message(text=part.text, blocks=part.blocks))
    for part in escalation_parts(view.overdue, 7, "2026-11-27"):
        assert_slack_message(Message(text=part.text, blocks=part.blocks))
