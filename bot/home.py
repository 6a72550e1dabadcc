"""The App Home tab, pure: plain data (`HomePage`) in, a Block Kit home view out. No I/O.

Everyone sees their own IAM users (status, account, days open, a re-check button on each open
violation), "all set" when nothing is left to do, and a link to the set-up steps. Admins also see,
below, each account's counts and root MFA, what changed since the last digest, the overdue
violations, exemptions ending within a week, when the last audit ran and how fresh it is, and
buttons to run an audit or post the digest now.

Slack's limits hold for any input: at most 100 blocks in a view, 3,000 characters a section;
a list that does not fit ends with "…and N more". Every piece of data is escaped, and texts are
verbatim (`bot.messages.blocks.mrkdwn`): only the bot's own links and mentions are live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.messages import remediation
from bot.messages.blocks import mrkdwn, pack_lines
from bot.messages.digest import OverdueRow, overdue_line
from bot.messages.personal import recheck_button
from bot.messages.text import MAX_SECTION_CHARS, STATUS_TEXT, code, escape, link, mention, open_for, truncate
from bot.models import AccountFindings, UserFinding
from bot.report import root_text

HOME_AUDIT_ACTION = "home_run_audit"
HOME_DIGEST_ACTION = "home_post_digest"
SETUP_LINK_ACTION = "home_setup_link"  # a link button: Slack still sends the click, acked and ignored
MAX_VIEW_BLOCKS = 100  # Slack's limit for a home view
MAX_OWN_ROWS = 20  # one section (with its button) per IAM user of the person; past that, "…and N more"
ENDING_WITHIN_DAYS = 7
SETUP_URL = remediation.current().setup_guide_url
NEEDS_MFA = frozenset({"violation", "grace", "exempt"})
_ORDER = {"violation": 0, "grace": 1, "exempt": 2, "compliant": 3, "no_console": 4}


@dataclass(frozen=True)
class OwnUser:
    """One IAM user of the person opening the Home, as the last audit (and re-checks since) left it."""

    finding: UserFinding
    account: str  # "alias (id)" or the id
    days_open: int | None = None  # a violation: whole days it has been open
    fixed_at: datetime | None = None  # a violation re-checked fixed after the audit
    episode_open: bool = False  # the store knows its open violation episode: the re-check button works

    @property
    def needs_mfa(self) -> bool:
        return self.finding.status in NEEDS_MFA and self.fixed_at is None

    @property
    def recheckable(self) -> bool:
        """A re-check button only where the re-check serves it: an open violation episode."""
        return self.finding.status == "violation" and self.episode_open and self.fixed_at is None


@dataclass(frozen=True)
class AccountLine:
    """One account in the admin overview: counts and root from its kept findings, and its latest scan."""

    account_id: str
    label: str
    violations: int = 0
    exempt: int = 0
    grace: int = 0
    root: str = "unknown"  # root MFA as text (`bot.report.root_text`)
    root_off: bool = False
    audited_at: datetime | None = None  # the audit its findings come from; None: never read
    report_at: datetime | None = None  # the credential report's GeneratedTime
    fresh_through: datetime | None = None  # changes after the report seen up to here (CloudTrail)
    cloudtrail_error: str | None = None  # CloudTrail could not be read: the report's time is all there is
    error: str | None = None  # its latest scan failed
    failed_at: datetime | None = None

    @classmethod
    def of(
        cls, findings: AccountFindings, audited: datetime, error: str | None = None, failed_at: datetime | None = None
    ) -> AccountLine:
        """The line of an account's kept findings (audited at `audited`); `error`: a later scan failed."""
        return cls(
            account_id=findings.account_id,
            label=findings.label,
            violations=len(findings.by_status("violation")),
            exempt=len(findings.by_status("exempt")),
            grace=len(findings.by_status("grace")),
            root=root_text(findings.root),
            root_off=findings.root.needs_attention,  # root without credentials is a neutral pass
            audited_at=audited,
            report_at=findings.report_generated_at,
            fresh_through=findings.fresh_through,
            cloudtrail_error=findings.cloudtrail_error,
            error=error,
            failed_at=failed_at if error else None,
        )


@dataclass(frozen=True)
class EndingExemption:
    """An exemption granted from Slack that ends soon."""

    user_name: str
    account: str
    until: datetime
    reason: str
    granted_by: str


@dataclass(frozen=True)
class AdminHome:
    """What admins see below their own users."""

    accounts: tuple[AccountLine, ...] = ()
    last_audit_at: datetime | None = None
    digest_channel: str | None = None
    digest_at: datetime | None = None  # the last digest posted there; None: none yet
    new: tuple[tuple[str, str], ...] = ()  # (IAM user, account) violations opened since the last digest
    fixed: tuple[tuple[str, str], ...] = ()  # ... and closed since
    overdue: tuple[OverdueRow, ...] = ()
    overdue_after_days: int = 0
    ending: tuple[EndingExemption, ...] = ()


@dataclass(frozen=True)
class HomePage:
    """Everything one person's Home shows. `audited_at` None: no audit has been recorded yet."""

    slack_user_id: str
    now: datetime
    audited_at: datetime | None
    own: tuple[OwnUser, ...] = ()
    accounts: tuple[str, ...] = ()  # labels of the audited accounts
    admin: AdminHome | None = None
    notice: str | None = None  # the answer to a button pressed on the Home (mrkdwn, escaped by the caller)


# -- text ---------------------------------------------------------------------------------------


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def when(at: datetime) -> str:
    """`2026-11-27 09:00 UTC`."""
    return f"{at:%Y-%m-%d %H:%M} UTC"


def ago(at: datetime, now: datetime) -> str:
    """How long ago `at` was, in the largest whole unit: `just now`, `12 min ago`, `3 h ago`, `2 days ago`."""
    seconds = (now - at).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{_plural(int(seconds // 86400), 'day')} ago"


def own_line(user: OwnUser, now: datetime) -> str:
    """One IAM user of the person: name, account, status, days open or until when."""
    finding = user.finding
    text = f"*{code(finding.user_name)}* in {escape(user.account)}: "
    if user.fixed_at is not None:
        return truncate(text + f":white_check_mark: fixed (checked live {when(user.fixed_at)})", MAX_SECTION_CHARS)
    text += STATUS_TEXT[finding.status]
    if finding.status == "violation":
        text += f" · {open_for(user.days_open)}"
    elif finding.status == "grace" and finding.grace_until is not None:
        text += f" until {finding.grace_until:%Y-%m-%d}"
    elif finding.status == "exempt" and finding.exempt_until is not None:
        text += f" until {finding.exempt_until:%Y-%m-%d}"
    elif finding.status == "compliant" and finding.mfa_devices:
        text += f" ({escape(', '.join(sorted({d.type for d in finding.mfa_devices})))})"
    if finding.status in {"grace", "exempt"} and finding.reason:
        text += f": {escape(finding.reason)}"
    return truncate(text, MAX_SECTION_CHARS)


def account_line(account: AccountLine, now: datetime) -> str:
    """One account for admins: counts, root, when audited and how fresh; a failed latest scan first."""
    label = f"*{escape(account.label)}*"
    parts = []
    if account.error:
        failed = f" at {when(account.failed_at)}" if account.failed_at else ""
        parts.append(f":rotating_light: {label}: the latest audit{failed} *failed*: {escape(account.error)}")
        if account.audited_at is None:
            return "• " + " · ".join(parts) + " · its result is *unknown*"
        parts.append(f"last good audit {ago(account.audited_at, now)}")
    else:
        parts.append(label)
    root = f"root {escape(account.root)}"
    parts += [
        _plural(account.violations, "violation"),
        f"{account.exempt} exempt",
        f"{account.grace} in grace",
        f":warning: *{root}*" if account.root_off else root,
    ]
    if account.report_at is not None:
        parts.append(f"credential report {ago(account.report_at, now)}")
    if account.cloudtrail_error:
        parts.append(f"CloudTrail not readable ({escape(account.cloudtrail_error)})")
    elif account.fresh_through is not None:
        parts.append(f"changes seen through {ago(account.fresh_through, now)}")
    return "• " + " · ".join(parts)


def ending_line(item: EndingExemption, now: datetime) -> str:
    """An exemption ending soon: who, where, when, why, granted by whom."""
    return (
        f"• {code(item.user_name)} in {escape(item.account)} · ends {when(item.until)} "
        f"({_in(item.until, now)}) · {escape(item.reason)} · granted by {mention(item.granted_by)}"
    )


def _in(at: datetime, now: datetime) -> str:
    hours = max(0, int((at - now).total_seconds() // 3600))
    return f"in {hours} h" if hours < 48 else f"in {hours // 24} days"


# -- blocks -------------------------------------------------------------------------------------


def _section(text: str, accessory: ButtonElement | None = None) -> SectionBlock:
    return SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)), accessory=accessory)


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[mrkdwn(truncate(text, MAX_SECTION_CHARS))])


def personal_blocks(page: HomePage) -> list[Block]:
    """The person's own IAM users (at most MAX_OWN_ROWS sections, then "…and N more"), "all set", set-up steps."""
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="Your AWS console MFA"))]
    if page.notice:
        blocks.append(_section(page.notice))
    if page.audited_at is None:
        blocks.append(
            _section(
                "No audit has been recorded yet, so I cannot show your IAM users. "
                "It appears here after the next audit (the daily digest, or an admin's `/mfa-check`)."
            )
        )
    elif not page.own:
        accounts = ", ".join(page.accounts) or "the audited accounts"
        blocks.append(
            _section(
                f"I found no IAM user of yours in {escape(accounts)}.\n"
                "If you have one, ask an admin to link it: "
                f"`/mfa-check link NAME @you` (you are <@{page.slack_user_id}>). "
                "An `email` or `slack-user-id` tag on your IAM user works too."
            )
        )
    else:
        own = sorted(page.own, key=lambda u: (not u.needs_mfa, _ORDER[u.finding.status], u.finding.user_name.lower()))
        for user in own[:MAX_OWN_ROWS]:
            button = recheck_button(user.finding) if user.recheckable else None
            blocks.append(_section(own_line(user, page.now), button))
        if len(own) > MAX_OWN_ROWS:
            rest = own[MAX_OWN_ROWS:]
            waiting = sum(1 for u in rest if u.needs_mfa)
            text = f"_…and {_plural(len(rest), 'more IAM user')}"
            text += f" ({waiting} without MFA)" if waiting else ""
            blocks.append(_section(text + ": `/mfa-check me` lists them all._"))
        if not any(u.needs_mfa for u in own):
            every = "Your IAM user has" if len(own) == 1 else f"All {len(own)} of your IAM users have"
            blocks.append(_section(f":white_check_mark: *All set.* {every} MFA or no console password."))
    if page.audited_at is not None:
        blocks.append(_context(f"From the audit of {when(page.audited_at)} ({ago(page.audited_at, page.now)})."))
    steps = (
        "*Setting up MFA:* `/mfa-check me` shows your own step-by-step instructions (console and CLI); "
        f"AWS's guide: {link(SETUP_URL)}."
    )
    blocks.append(_section(steps, ButtonElement(text="Set-up steps", url=SETUP_URL, action_id=SETUP_LINK_ACTION)))
    return blocks


def admin_blocks(admin: AdminHome, now: datetime) -> list[Block]:
    """The admin overview: buttons, freshness, accounts, since the last digest, overdue, exemptions ending."""
    blocks: list[Block] = [DividerBlock(), HeaderBlock(text=PlainTextObject(text="All accounts (admins)"))]
    confirm = ConfirmObject(
        title="Post the digest now?",
        text="The digest goes to its channel(s) now; the scheduled one still goes out.",
        confirm="Post it",
        deny="Cancel",
    )
    blocks.append(
        ActionsBlock(
            elements=[
                ButtonElement(text="Run audit now", action_id=HOME_AUDIT_ACTION, value="audit", style="primary"),
                ButtonElement(text="Post digest now", action_id=HOME_DIGEST_ACTION, value="digest", confirm=confirm),
            ]
        )
    )
    if admin.last_audit_at is None:
        blocks.append(_context("No audit has run yet."))
    else:
        blocks.append(_context(f"Last audit: {when(admin.last_audit_at)} ({ago(admin.last_audit_at, now)})."))
    if admin.accounts:
        lines = [account_line(a, now) for a in admin.accounts]
        sections, _ = pack_lines(f"*Accounts ({len(lines)})*", lines, 6, len(lines), "`/mfa-check` audits them all")
        blocks += sections
    blocks += _since_digest_blocks(admin, now)
    if admin.overdue:
        lines = [overdue_line(row) for row in admin.overdue]
        title = (
            f"*:alarm_clock: Overdue ({len(lines)})*: still open {_plural(admin.overdue_after_days, 'day')} "
            "or more after the first nudge"
        )
        sections, _ = pack_lines(title, lines, 4, len(lines), "the digest lists them all")
        blocks += sections
    else:
        blocks.append(_section("*:alarm_clock: Overdue:* none."))
    if admin.ending:
        lines = [ending_line(item, now) for item in admin.ending]
        title = f"*Exemptions ending within {ENDING_WITHIN_DAYS} days ({len(lines)})*"
        sections, _ = pack_lines(title, lines, 3, len(lines), "`/mfa-check` lists every exemption")
        blocks += sections
    else:
        blocks.append(_section(f"*Exemptions ending within {ENDING_WITHIN_DAYS} days:* none."))
    return blocks


def _names(users: Sequence[tuple[str, str]], limit: int = 1200) -> str:
    """`user` (account), … up to about `limit` characters, then "…and N more"."""
    shown: list[str] = []
    size = 0
    for name, account in users:
        item = f"{code(name)} ({escape(account)})"
        if shown and size + len(item) + 2 > limit:
            break
        shown.append(truncate(item, limit))
        size += len(item) + 2
    text = ", ".join(shown)
    if len(shown) < len(users):
        text += f" _…and {len(users) - len(shown)} more_"
    return text


def _since_digest_blocks(admin: AdminHome, now: datetime) -> list[Block]:
    if not admin.digest_channel:
        return [_section("*Since the last digest:* DIGEST_CHANNEL is not set, so there is no digest to compare with.")]
    if admin.digest_at is None:
        channel = escape(admin.digest_channel)
        return [_section(f"*Since the last digest:* no digest has been posted to <#{channel}> yet.")]
    text = f"*Since the last digest* ({when(admin.digest_at)}, {ago(admin.digest_at, now)}): "
    text += f"{len(admin.new)} new, {len(admin.fixed)} fixed."
    if admin.new:
        text += f"\n*New:* {_names(admin.new)}"
    if admin.fixed:
        text += f"\n*Fixed:* {_names(admin.fixed)}"
    return [_section(text)]


def home_blocks(page: HomePage) -> list[Block]:
    """Every block of the Home, at most MAX_VIEW_BLOCKS."""
    blocks = personal_blocks(page)
    if page.admin is not None:
        blocks += admin_blocks(page.admin, page.now)
    if len(blocks) > MAX_VIEW_BLOCKS:  # the budgets above keep far below; never send what Slack refuses
        blocks = [*blocks[: MAX_VIEW_BLOCKS - 1], _context("_…the rest does not fit the Home: use `/mfa-check`._")]
    return blocks


def home_view(page: HomePage) -> View:
    """The home view to publish for `page.slack_user_id`."""
    return View(type="home", blocks=home_blocks(page))
