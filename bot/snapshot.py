"""One account's findings as JSON and back, so any process can rebuild the last audit without AWS.

`bot.service.record_result` keeps each successfully audited account this way in the store
(`Store.save_snapshot`); the App Home reads it back. Pure. The codec follows the dataclasses of
`bot.models` by their type hints, so a field added there is kept too; a field a newer bot wrote
and this one does not know is ignored, and a missing one takes its default.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from datetime import datetime
from typing import Any

from bot.models import AccountFindings

VERSION = 1


class SnapshotError(ValueError):
    """A kept snapshot that cannot be read back (written by an incompatible version, or damaged)."""


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass (None for any other class), worked out once per class."""
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
    return _FIELD_NAMES[cls]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float):  # most values: no dataclass check per value
        return value
    names = _field_names(type(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        return _build(kinds[0], data) if len(kinds) == 1 else data
    if hint is datetime:
        return datetime.fromisoformat(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        known = {f.name for f in dataclasses.fields(hint) if f.init}
        return hint(**{key: _build(hints[key], item) for key, item in data.items() if key in known})
    if origin is tuple:
        return tuple(_build(args[0], item) for item in data)
    if origin is list:
        return [_build(args[0], item) for item in data]
    if origin is dict:
        return {key: _build(args[1], item) for key, item in data.items()}
    return data


def account_to_json(account: AccountFindings) -> str:
    """The account's findings (every user, root, report time; Slack people are not kept) as JSON."""
    plain = _plain(account)
    for user in plain["users"]:
        user["slack_user_id"] = None  # resolved again on read: links and the directory change
    return json.dumps({"v": VERSION, "account": plain}, separators=(",", ":"))


def account_from_json(text: str) -> AccountFindings:
    """The inverse of `account_to_json`; SnapshotError when it cannot be read."""
    try:
        data = json.loads(text)
        if data.get("v") != VERSION:
            raise SnapshotError(f"snapshot version {data.get('v')!r} is not {VERSION}")
        account = _build(AccountFindings, data["account"])
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"unreadable snapshot: {type(exc).__name__}") from None
    if not isinstance(account, AccountFindings):
        raise SnapshotError("unreadable snapshot: not an account")
    return account
