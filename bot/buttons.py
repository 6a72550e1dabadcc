"""Button action ids and the values the bot's buttons carry; pure (no Slack client, no store).

`nudge` and `recheck` name one IAM user (account id and user name); `nudge_all` names the digest's
scope (every account, or an account channel's accounts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.messages.text import MAX_BUTTON_VALUE, truncate

NUDGE_ACTION = "nudge"
NUDGE_ALL_ACTION = "nudge_all"
RECHECK_ACTION = "recheck"

_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_IAM_USER_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")


def user_value(account_id: str, user_name: str) -> str:
    """A button value naming the account and IAM user: `ACCOUNT_ID:NAME` (IAM names have no colon)."""
    return truncate(f"{account_id}:{user_name}", MAX_BUTTON_VALUE)


def parse_user_value(value: str) -> tuple[str, str] | None:
    """(account_id, user_name) from a button value, or None unless a 12-digit id and an IAM user name."""
    account_id, sep, user_name = value.partition(":")
    if sep and _ACCOUNT_ID.fullmatch(account_id) and _IAM_USER_NAME.fullmatch(user_name):
        return account_id, user_name
    return None


def nudge_all_value(scope: Sequence[str]) -> str:
    """The "Nudge all" button value: `all`, or `accounts:ID,ID` in an account channel's digest."""
    return "accounts:" + ",".join(scope) if scope else "all"


def parse_nudge_all_value(value: str) -> tuple[str, ...] | None:
    """The account ids a "Nudge all" is limited to; None: every account (`all`, or anything else)."""
    if not value.startswith("accounts:"):
        return None
    ids = tuple(i for i in value[len("accounts:") :].split(",") if i.isdigit() and len(i) == 12)
    return ids or None
