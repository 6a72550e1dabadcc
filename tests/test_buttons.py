"""Typed button values (bot.buttons): one versioned JSON encoding, one parser per action.

Values the bot writes round-trip; values posted before the JSON encoding still parse; anything
else (bad JSON, another version, wrong types, huge) parses to None, never raises.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.buttons import (
    MAX_VALUE,
    NudgeAllScope,
    UserRef,
    nudge_all_value,
    parse_nudge,
    parse_nudge_all,
    parse_recheck,
    user_value,
)

ACCOUNT = "123456789012"
account_ids = st.from_regex(r"[0-9]{12}", fullmatch=True)
iam_names = st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,64}", fullmatch=True)
PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(account_ids, iam_names)
def test_a_user_value_round_trips_for_any_iam_name(account_id: str, name: str) -> None:
    value = user_value(account_id, name)
    assert len(value) <= MAX_VALUE
    assert json.loads(value) == {"v": 1, "a": account_id, "u": name}
    assert parse_nudge(value) == parse_recheck(value) == UserRef(account_id, name)


@PROPERTY
@given(st.lists(account_ids, max_size=200))
def test_a_scope_round_trips_or_has_no_value_when_too_long(scope: list[str]) -> None:
    value = nudge_all_value(scope)
    if value is None:
        assert len(scope) > 132
        return
    assert len(value) <= MAX_VALUE
    assert parse_nudge_all(value) == NudgeAllScope(tuple(scope))


def test_the_longest_scope_that_fits_is_132_accounts() -> None:
    ids = [f"{i:012d}" for i in range(133)]
    value = nudge_all_value(ids[:132])
    assert value is not None and len(value) <= MAX_VALUE
    assert nudge_all_value(ids) is None
    assert parse_nudge_all(nudge_all_value() or "") == NudgeAllScope(())  # every account


def test_names_with_every_legal_character_round_trip() -> None:
    for name in ("a+b=c,d.e@f_g-h", "x" * 64, "+=,.@_-", "bob.smith@example.com"):
        assert parse_recheck(user_value(ACCOUNT, name)) == UserRef(ACCOUNT, name)


def test_values_posted_before_the_json_encoding_keep_working() -> None:
    assert parse_nudge(f"{ACCOUNT}:bob") == parse_recheck(f"{ACCOUNT}:bob") == UserRef(ACCOUNT, "bob")
    assert parse_recheck(f"{ACCOUNT}:a+b=c,d.e@f_g-h") == UserRef(ACCOUNT, "a+b=c,d.e@f_g-h")
    assert parse_nudge_all("all") == NudgeAllScope(())
    assert parse_nudge_all(f"accounts:{ACCOUNT},210987654321") == NudgeAllScope((ACCOUNT, "210987654321"))


HOSTILE_USER_VALUES = [
    "",
    "<!here>:bob",
    f"{ACCOUNT}:<!channel>",
    "12345:bob",
    f"{ACCOUNT}:",
    f"{ACCOUNT}:a b",
    f"{ACCOUNT}:" + "x" * 65,
    '{"v":1,"a":"123456789012","u":"bob"',  # bad JSON
    '{"v":2,"a":"123456789012","u":"bob"}',  # another version
    '{"v":"1","a":"123456789012","u":"bob"}',
    '{"v":true,"a":"123456789012","u":"bob"}',
    '{"v":1.0,"a":"123456789012","u":"bob"}',
    '{"v":1,"a":123456789012,"u":"bob"}',  # wrong types
    '{"v":1,"a":"123456789012","u":["bob"]}',
    '{"v":1,"a":"123456789012","u":null}',
    '{"v":1,"a":"123456789012"}',  # a key missing, or one more
    '{"v":1,"a":"123456789012","u":"bob","x":1}',
    '{"v":1,"a":"1234567890123","u":"bob"}',
    '{"v":1,"a":"123456789012","u":"bob:<!here>"}',
    '["v",1]',
    "null",
    "[" * 100_000,  # deep nesting
    '{"v":1,"a":"123456789012","u":"' + "a" * 5000 + '"}',  # huge
    f"{ACCOUNT}:" + "a" * 1_000_000,
]


@pytest.mark.parametrize("value", HOSTILE_USER_VALUES)
def test_hostile_user_values_parse_to_none(value: str) -> None:
    assert parse_nudge(value) is None and parse_recheck(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "everyone",
        "accounts:",
        "accounts:12345",
        f"accounts:{ACCOUNT},<!here>",
        '{"v":1,"s":"123456789012"}',
        '{"v":1,"s":[123456789012]}',
        '{"v":2,"s":[]}',
        '{"v":1}',
        '{"v":1,"s":[],"a":"123456789012"}',
        '{"v":1,"s":[' + ",".join(['"123456789012"'] * 200) + "]}",  # over 2,000 characters
        "{" * 100_000,
    ],
)
def test_hostile_nudge_all_values_parse_to_none_never_to_every_account(value: str) -> None:
    assert parse_nudge_all(value) is None


@PROPERTY
@given(st.text(max_size=300))
def test_no_value_makes_a_parser_raise(value: str) -> None:
    for parse in (parse_nudge, parse_recheck, parse_nudge_all):
        parse(value)
