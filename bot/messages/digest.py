"""The digest: rendered from a `DigestView` (plain data captured when it is posted) plus a `RowState`
per row (nudges, fixed), so any process can re-render one of its messages later and chat.update it
in place. Every row is one block, so the layout (which row goes in which message) depends on the
view only, never on the states. Also the overdue section and ESCALATION_CHANNEL's messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    PlainTextObject,
    SectionBlock,
)

from bot import buttons
from bot.messages.blocks import mrkdwn, pack_lines
from bot.messages.text import (
    MAX_BLOCKS,
    MAX_FALLBACK_CHARS,
    MAX_HEADER_CHARS,
    MAX_LINE_CHARS,
    MAX_SECTION_CHARS,
    code,
    escape,
    mention,
    open_for,
    person,
    plural,
    truncate,
)
from bot.report import ACCEPTED_RISK


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


def digest_row_text(row: DigestRow, state: RowState = RowState()) -> str:
    """One violator: the person (or none found), the IAM user and account, days open, nudges."""
    who = person(row.slack_user_id)
    where = f"{code(row.user_name)} in {escape(row.account)}"
    if state.exempted_at:
        return truncate(
            f":large_yellow_circle: *exempted* at {escape(state.exempted_at)} (not fixed) · {who} · {where}",
            MAX_LINE_CHARS,
        )
    if state.fixed_at:
        was = "" if row.days_open is None else f" · was open {plural(row.days_open, 'day')}"
        return truncate(f":white_check_mark: *fixed* at {state.fixed_at} · {who} · {where}{was}", MAX_LINE_CHARS)
    nudges = "not nudged yet" if not state.nudges else plural(state.nudges, "nudge")
    if state.delivery_unknown and not state.nudges:
        nudges = "no DM confirmed"
    text = f"{who} · {where} · {open_for(row.days_open)} · {nudges}"
    if state.nudged_at:
        by = "the scheduler" if state.nudged_by in (None, "scheduler") else mention(state.nudged_by)
        if state.delivery_unknown:
            text += f" · _DM by {by} at {escape(state.nudged_at)}: delivery unknown_"
        else:
            text += f" · _nudged by {by} at {escape(state.nudged_at)}_"
    return truncate(text, MAX_LINE_CHARS)


def overdue_line(row: OverdueRow, state: RowState | None = None) -> str:
    """One overdue violation: who, the IAM user and account, days since the first nudge, nudges so far.

    With its `state` now (the digest updated in place): the nudges sent since, or fixed and when.
    """
    where = f"{person(row.slack_user_id)} · {code(row.user_name)} in {escape(row.account)}"
    if state is not None and state.fixed_at:
        return truncate(f"• :white_check_mark: *fixed* at {state.fixed_at} · {where}", MAX_LINE_CHARS)
    nudges = max(row.nudges, state.nudges if state is not None else 0)
    return truncate(
        f"• {where} · {plural(row.days, 'day')} since the first nudge · {plural(nudges, 'nudge')} so far",
        MAX_LINE_CHARS,
    )


def _overdue_title(count: int, after_days: int) -> str:
    return f"*:alarm_clock: Overdue ({count})*: still open {plural(after_days, 'day')} or more after the first nudge"


OVERDUE_LINE_GROWTH = 12  # characters an overdue line may gain once posted (more nudges): kept free


def overdue_blocks(
    rows: Sequence[OverdueRow], after_days: int, states: Mapping[str, RowState] | None = None
) -> list[SectionBlock]:
    """The digest's overdue section: a title line, then every row (packed, none dropped).

    Which rows share a section depends on the rows alone, never on `states`, so the section
    can be re-rendered in place (fixed, more nudges) with the same blocks.
    """
    states = states or {}
    lines = [overdue_line(r, states.get(r.arn)) for r in rows]
    sizes = [len(overdue_line(r)) + OVERDUE_LINE_GROWTH for r in rows]
    sections, _ = pack_lines(_overdue_title(len(rows), after_days), lines, sizes=sizes)
    return sections


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
            f"{plural(len(chunk), 'MFA violation')} still open {plural(after_days, 'day')} after the first nudge",
            MAX_FALLBACK_CHARS,
        )
        parts.append(DigestPart(index=index, text=text, blocks=blocks, arns=tuple(r.arn for r in chunk)))
    return parts


def digest_row_block(row: DigestRow, state: RowState = RowState()) -> SectionBlock:
    """The row as a section; a Nudge button while it is open and has a Slack person."""
    button = None
    if row.slack_user_id and not state.fixed_at and not state.exempted_at:
        value = buttons.user_value(row.account_id, row.user_name)
        button = ButtonElement(text="Nudge", action_id=buttons.NUDGE_ACTION, value=value)
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
            f":white_check_mark: *No violation* ({plural(audited, 'account')} audited); exempt, so without MFA: "
            f"{exempt_counts(exempt, by_tag)}."
        )
        return SectionBlock(text=mrkdwn(text))
    if view.all_clear:
        if view.accepted_risk:
            text = (
                f":white_check_mark: *No violations* ({plural(audited, 'account')} audited); "
                f"{plural(view.accepted_risk, 'IAM user')} exempt or in grace: {ACCEPTED_RISK}."
            )
        else:
            text = (
                f":white_check_mark: *All clear*: every IAM user in scope has MFA "
                f"({plural(audited, 'account')} audited)."
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
    value = buttons.nudge_all_value(view.scope)
    if people and value is not None:  # a scope too long for a button value: no "Nudge all" button
        confirm = ConfirmObject(
            title="Nudge everyone?",
            text=f"DM {plural(len(people), 'person', 'people')} their MFA set-up steps "
            "(people nudged recently are skipped).",
            confirm="Nudge all",
            deny="Cancel",
        )
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text="Nudge all",
                        action_id=buttons.NUDGE_ALL_ACTION,
                        value=value,
                        style="primary",
                        confirm=confirm,
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
        sections, _ = pack_lines("*Root user and freshness of the findings*", root_lines)
        flow += [(block, None, False) for block in sections]
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
    text = f"{view.title}: {plural(len(view.rows), 'violation')}"
    if view.new_since is not None:
        text += f" ({view.new_since} new, {view.fixed_since} fixed since the last digest)"
    if view.overdue:
        text += f"; {len(view.overdue)} overdue"
    if view.failed:
        text += f"; {plural(len(view.failed), 'account')} could NOT be audited"
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
                note = f":thread: Continued in the thread: {plural(rest, 'more row')}."
                blocks.append(ContextBlock(elements=[mrkdwn(note)]))
            text = _digest_text(view)
        else:
            text = truncate(f"{view.title} (continued, {index + 1}/{len(layout)})", MAX_FALLBACK_CHARS)
        parts.append(DigestPart(index=index, text=text, blocks=blocks, arns=arns, overdue=overdue))
    return parts
