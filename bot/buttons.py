"""Button action ids and the values the bot's buttons carry: one small versioned JSON encoding; pure.

Values are compact JSON objects with a version, so they can change later without breaking the
buttons already posted in Slack:
- `nudge` and `recheck`: `{"v":1,"a":"123456789012","u":"alice"}` (account id, IAM user name);
- `nudge_all`: `{"v":1,"s":["123456789012",…]}`, the digest's accounts (an account channel's
  digest), or `{"v":1,"s":[]}` for every account.

One parse function per action returns a typed value (a frozen dataclass) or None. None for
anything that is not a value this bot wrote: bad JSON, another version, wrong types or keys, an
account id that is not 12 digits, a user name that is not an IAM name, more than Slack's 2,000
characters. The handler then answers one line and changes nothing.

Buttons posted before the JSON encoding keep working: `ACCOUNT_ID:NAME` for `nudge`/`recheck`
(IAM names have no colon), and `all` / `accounts:ID,ID` for `nudge_all`.

Slack caps a button value at 2,000 characters. A user value is at most 110 (a 12-digit id and a
64-character name). A scope fits 2,000 characters up to 132 accounts; a longer scope has no
value (`nudge_all_value` returns None) and the digest shows no "Nudge all" button rather than one
that would nudge more, or fewer, accounts than the digest lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

NUDGE_ACTION = "nudge"
NUDGE_ALL_ACTION = "nudge_all"
RECHECK_ACTION = "recheck"

VERSION = 1
MAX_VALUE = 2000  # Slack's limit for a button value

_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_IAM_USER_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
_LEGACY_SCOPE = "accounts:"


@dataclass(frozen=True)
class UserRef:
    """The IAM user a `nudge` or `recheck` button names."""

    account_id: str
    user_name: str


@dataclass(frozen=True)
class NudgeAllScope:
    """The accounts a "Nudge all" button covers; `accounts=()`: every account."""

    accounts: tuple[str, ...] = ()


def _dumps(data: dict[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"))


def user_value(account_id: str, user_name: str) -> str:
    """The value of a `nudge` or `recheck` button naming one IAM user."""
    return _dumps({"v": VERSION, "a": account_id, "u": user_name})


def nudge_all_value(scope: Sequence[str] = ()) -> str | None:
    """The "Nudge all" value for `scope` (account ids; empty: every account); None when over 2,000 characters."""
    value = _dumps({"v": VERSION, "s": list(scope)})
    return value if len(value) <= MAX_VALUE else None


def _is_account(value: object) -> bool:
    return isinstance(value, str) and _ACCOUNT_ID.fullmatch(value) is not None


def _object(value: str, keys: set[str]) -> dict | None:
    """The JSON object of a value with exactly `keys` and this version, else None (never raises)."""
    if not isinstance(value, str) or len(value) > MAX_VALUE or not value.startswith("{"):
        return None
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != keys:
        return None
    version = data["v"]
    return data if type(version) is int and version == VERSION else None


def _user(value: str) -> UserRef | None:
    data = _object(value, {"v", "a", "u"})
    if data is not None:
        account_id, user_name = data["a"], data["u"]
    elif isinstance(value, str) and not value.startswith("{"):  # before the JSON encoding: ACCOUNT_ID:NAME
        account_id, _, user_name = value.partition(":")
    else:
        return None
    if _is_account(account_id) and isinstance(user_name, str) and _IAM_USER_NAME.fullmatch(user_name):
        return UserRef(account_id, user_name)
    return None


def parse_nudge(value: str) -> UserRef | None:
    """The IAM user a `nudge` button names, or None."""
    return _user(value)


def parse_recheck(value: str) -> UserRef | None:
    """The IAM user a `recheck` button names, or None."""
    return _user(value)


def parse_nudge_all(value: str) -> NudgeAllScope | None:
    """The accounts a "Nudge all" button covers, or None for a value this bot did not write."""
    data = _object(value, {"v", "s"})
    if data is not None:
        scope = data["s"]
        if isinstance(scope, list) and all(_is_account(a) for a in scope):
            return NudgeAllScope(tuple(scope))
        return None
    if value == "all":  # before the JSON encoding
        return NudgeAllScope()
    if isinstance(value, str) and value.startswith(_LEGACY_SCOPE) and len(value) <= MAX_VALUE:
        ids = value[len(_LEGACY_SCOPE) :].split(",")
        return NudgeAllScope(tuple(ids)) if all(_is_account(i) for i in ids) else None
    return None
