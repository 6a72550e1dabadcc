"""Shared text helpers for every surface: escaping, cutting, code, mentions, plurals, days open.

Pure strings (no Block Kit import), so the remediation copy and the CLI formats can use them cheaply.
"""

from __future__ import annotations

import re

from bot.models import Status, UserFinding

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_FIELD_CHARS = 2000
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_TEXT = 75
MAX_HEADER_CHARS = 150
MAX_LINE_CHARS = 600
MAX_FALLBACK_CHARS = 3000

NO_PERSON = "no Slack person found"

STATUS_TEXT: dict[Status, str] = {
    "violation": ":x: console password *without MFA*",
    "compliant": ":white_check_mark: MFA on",
    "no_console": ":white_check_mark: no console password: nothing to do",
    "exempt": ":large_yellow_circle: exempt",
    "grace": ":hourglass_flowing_sand: in the grace period",
}

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


def plural(n: int, word: str, plural_form: str | None = None) -> str:
    """`1 day`, `2 days` (or the given plural form)."""
    return f"{n} {word if n == 1 else (plural_form or word + 's')}"


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


def person(slack_user_id: str | None) -> str:
    """`<@U…>` when the identity chain found the person, else "no Slack person found"."""
    return mention(slack_user_id) if slack_user_id else f"_{NO_PERSON}_"


def link(url: str) -> str:
    """A URL the bot built itself, as an explicit mrkdwn link (texts are verbatim: nothing else is linked)."""
    return f"<{url}>"


def open_for(days: int | None) -> str:
    """How long a violation has been open: `open since today`, `open 3 days`, or unknown."""
    if days is None:
        return "open for an unknown time"
    return "open since today" if days == 0 else f"open {plural(days, 'day')}"


def devices_text(user: UserFinding) -> str:
    """The user's enabled MFA devices, `virtual (`serial`)`, or `none`."""
    if not user.mfa_devices:
        return "none"
    return ", ".join(f"{d.type} ({code(d.serial)})" for d in user.mfa_devices)
