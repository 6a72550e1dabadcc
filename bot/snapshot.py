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

from bot.models import AccountFindings, UserFinding

VERSION = 1


class SnapshotError(ValueError):
    """A kept snapshot that cannot be read back (written by an incompatible version, or damaged)."""


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass (None for any other class), worked out once per class."""
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
    return _FIELD_NAMES[cls]


def _plain_fields(value: Any) -> Any:
    """One level of `value` in JSON terms, for the encoder's `default`: a dataclass as a dict of its
    fields (a user's Slack person left out: resolved again on read, as links and the directory
    change), a datetime in ISO 8601. The encoder (C) walks the rest itself."""
    names = _field_names(type(value))
    if names is not None:
        fields = {name: getattr(value, name) for name in names}
        if isinstance(value, UserFinding):
            fields["slack_user_id"] = None
        return fields
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not kept in a snapshot")


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
    return json.dumps({"v": VERSION, "account": account}, separators=(",", ":"), default=_plain_fields)


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
