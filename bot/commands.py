"""The `/mfa-check` grammar as a pure parser: command text in, a typed command (or a usage error) out.

Slack escapes the command text (`should_escape: true`): `&`, `<`, `>` arrive as `&amp;`,
`&lt;`, `&gt;`, and a mention arrives as `<@U123>` or `<@U123|name>`. The parser accepts both
mention forms and a bare user ID, and unescapes free text (an exemption reason) so the store
keeps what the admin typed; renderers escape it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TEXT_CHARS = 1000
MAX_REASON_CHARS = 500
MIN_EXEMPT_DAYS, MAX_EXEMPT_DAYS = 1, 365
UNKNOWN_COMMAND = "I don't know that command"

# IAM user names: 1-64 of letters, digits and + = , . @ _ - (ASCII only). An optional
# `ACCOUNT_ID/` prefix picks one account when the same name exists in several.
_USER_REF = re.compile(r"^(?:(?P<account>\d{12})/)?(?P<name>[A-Za-z0-9+=,.@_-]{1,64})$")
_MENTION = re.compile(r"^<@(?P<id>[UW][A-Z0-9]{2,})(?:\|[^>]*)?>$")
_BARE_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_DAYS = re.compile(r"^(?P<n>\d{1,6})d?$", re.IGNORECASE)
# One account: a 12-digit id, or an account alias as IAM's CreateAccountAlias accepts it
# (lowercase letters, digits, single hyphens; 3-63 characters; no hyphen first or last).
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ACCOUNT_ALIAS = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
VERBS = frozenset({"help", "me", "digest", "user", "unexempt", "nudge", "exempt", "link"})


@dataclass(frozen=True)
class UserRef:
    """An IAM user named in a command; `account_id` only when the admin qualified the name."""

    name: str
    account_id: str | None = None

    def __str__(self) -> str:
        return f"{self.account_id}/{self.name}" if self.account_id else self.name


@dataclass(frozen=True)
class Audit:
    """(empty text): the full audit."""

    verb = "audit"


@dataclass(frozen=True)
class Me:
    """`me`: the caller's own IAM user(s) and how to fix them."""

    verb = "me"


@dataclass(frozen=True)
class Help:
    """`help`: the usage text."""

    verb = "help"


@dataclass(frozen=True)
class UserDetail:
    """`user NAME`: one user's detail."""

    user: UserRef
    verb = "user"


@dataclass(frozen=True)
class Exempt:
    """`exempt NAME DAYSd REASON…`: a time-limited exemption."""

    user: UserRef
    days: int
    reason: str
    verb = "exempt"


@dataclass(frozen=True)
class Unexempt:
    """`unexempt NAME`: end an exemption now."""

    user: UserRef
    verb = "unexempt"


@dataclass(frozen=True)
class Link:
    """`link NAME @person`: set the IAM user -> Slack person link."""

    user: UserRef
    slack_user_id: str
    verb = "link"


@dataclass(frozen=True)
class Nudge:
    """`nudge NAME` / `nudge all`: DM the person(s) their steps (`user` None: everyone)."""

    user: UserRef | None
    verb = "nudge"


@dataclass(frozen=True)
class Digest:
    """`digest`: post the digest now."""

    verb = "digest"


@dataclass(frozen=True)
class AccountAudit:
    """`ACCOUNT` (a 12-digit id or an account alias): audit that one account."""

    account: str
    verb = "account"


@dataclass(frozen=True)
class Usage:
    """The text did not parse: show the usage, with `error` saying what was wrong."""

    error: str
    verb = "usage"


Command = Audit | Me | Help | UserDetail | Exempt | Unexempt | Link | Nudge | Digest | AccountAudit | Usage

ADMIN_ONLY: tuple[type, ...] = (Audit, UserDetail, Exempt, Unexempt, Link, Nudge, Digest, AccountAudit)

# (form, who, what): the usage table, in the order help shows it.
GRAMMAR: tuple[tuple[str, str, str], ...] = (
    ("/mfa-check", "admins", "full audit, visible to you only"),
    ("/mfa-check ACCOUNT", "admins", "audit one account (its 12-digit id or its alias)"),
    ("/mfa-check me", "anyone", "your own IAM user(s) and how to fix them"),
    ("/mfa-check user NAME", "admins", "one IAM user's detail"),
    ("/mfa-check nudge NAME", "admins", "DM the person their MFA set-up steps"),
    ("/mfa-check nudge all", "admins", "DM every person with a violation"),
    (
        "/mfa-check exempt NAME DAYSd REASON…",
        "admins",
        f"exempt for {MIN_EXEMPT_DAYS}-{MAX_EXEMPT_DAYS} days, recorded",
    ),
    ("/mfa-check unexempt NAME", "admins", "end an exemption now"),
    ("/mfa-check link NAME @person", "admins", "link an IAM user to a Slack person"),
    ("/mfa-check digest", "admins", "post the digest now"),
    ("/mfa-check help", "anyone", "this help"),
)


def requires_admin(command: Command) -> bool:
    """True for the commands only admins may run."""
    return isinstance(command, ADMIN_ONLY)


def unescape(text: str) -> str:
    """Undo Slack's escaping of `&`, `<`, `>` in command text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_user_ref(token: str) -> UserRef | None:
    """An IAM user name (optionally `ACCOUNT_ID/NAME`), or None when it cannot be one."""
    match = _USER_REF.match(token)
    if match is None:
        return None
    return UserRef(name=match["name"], account_id=match["account"])


def parse_account(token: str) -> str | None:
    """An account named by its 12-digit id or its alias (not a verb), or None when it cannot be one."""
    if _ACCOUNT_ID.match(token) or (token not in VERBS and _ACCOUNT_ALIAS.match(token)):
        return token
    return None


def parse_slack_user(token: str) -> str | None:
    """A Slack user ID from `<@U123>`, `<@U123|name>` or a bare `U123`; None otherwise."""
    match = _MENTION.match(token)
    if match is not None:
        return match["id"]
    return token if _BARE_USER_ID.match(token) else None


def _user_arg(verb: str, args: list[str]) -> UserRef | Usage:
    if not args:
        return Usage(f"`{verb}` needs an IAM user name")
    user = parse_user_ref(args[0])
    if user is None:
        return Usage("that is not an IAM user name (letters, digits and + = , . @ _ - only, up to 64)")
    return user


def _exempt(args: list[str]) -> Command:
    user = _user_arg("exempt", args)
    if isinstance(user, Usage):
        return user
    if len(args) < 2:
        return Usage("`exempt` needs a number of days, like `30d`")
    days_match = _DAYS.match(args[1])
    if days_match is None:
        return Usage("`exempt` needs a number of days, like `30d`")
    days = int(days_match["n"])
    if not MIN_EXEMPT_DAYS <= days <= MAX_EXEMPT_DAYS:
        return Usage(f"an exemption lasts {MIN_EXEMPT_DAYS} to {MAX_EXEMPT_DAYS} days")
    reason = unescape(" ".join(args[2:])).strip()
    if not reason:
        return Usage("`exempt` needs a reason, so the record says why")
    if len(reason) > MAX_REASON_CHARS:
        return Usage(f"the reason is too long (at most {MAX_REASON_CHARS} characters)")
    return Exempt(user=user, days=days, reason=reason)


def _link(args: list[str]) -> Command:
    user = _user_arg("link", args)
    if isinstance(user, Usage):
        return user
    if len(args) != 2:
        return Usage("`link` needs an IAM user name and one @person")
    slack_user_id = parse_slack_user(args[1])
    if slack_user_id is None:
        return Usage("mention the person as @name (or give their Slack user ID, like U0123ABCD)")
    return Link(user=user, slack_user_id=slack_user_id)


def parse(text: str | None) -> Command:
    """Parse the `/mfa-check` text into a command; anything unparsable becomes `Usage`."""
    text = text or ""
    if len(text) > MAX_TEXT_CHARS:
        return Usage(f"that text is too long ({len(text)} characters)")
    args = text.split()
    if not args:
        return Audit()
    verb, rest = args[0].lower(), args[1:]
    if verb == "help" and not rest:
        return Help()
    if verb == "me" and not rest:
        return Me()
    if verb == "digest" and not rest:
        return Digest()
    if verb == "user":
        user = _user_arg(verb, rest)
        if isinstance(user, Usage):
            return user
        return UserDetail(user=user) if len(rest) == 1 else Usage("`user` takes one IAM user name")
    if verb == "unexempt":
        user = _user_arg(verb, rest)
        if isinstance(user, Usage):
            return user
        return Unexempt(user=user) if len(rest) == 1 else Usage("`unexempt` takes one IAM user name")
    if verb == "nudge":
        if len(rest) == 1 and rest[0].lower() == "all":
            return Nudge(user=None)
        user = _user_arg(verb, rest)
        if isinstance(user, Usage):
            return user
        return Nudge(user=user) if len(rest) == 1 else Usage("`nudge` takes one IAM user name, or `all`")
    if verb == "exempt":
        return _exempt(rest)
    if verb == "link":
        return _link(rest)
    if verb in {"help", "me", "digest"}:
        return Usage(f"`{verb}` takes no arguments")
    account = parse_account(args[0]) if not rest else None
    if account is not None:
        return AccountAudit(account=account)
    return Usage(UNKNOWN_COMMAND)
