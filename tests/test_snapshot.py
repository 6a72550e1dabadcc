"""The kept findings of an account: JSON and back, with plain data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.models import AccountFindings, MfaDevice, RootStatus, UserFinding
from bot.snapshot import SnapshotError, account_from_json, account_to_json

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def sample() -> AccountFindings:
    return AccountFindings(
        account_id="123456789012",
        alias="acme",
        error=None,
        report_generated_at=NOW - timedelta(hours=3),
        root=RootStatus(mfa_enabled=True, hardware=False),
        users=[
            UserFinding(
                account_id="123456789012",
                user_name="bob",
                arn="arn:aws:iam::123456789012:user/eng/bob",
                console_access=True,
                mfa_devices=(),
                status="violation",
                reason="console password, no MFA device",
                console_since=NOW - timedelta(days=4),
                checked_live=True,
                tags={"slack-user-id": "U0BOB0001", "email": "robert@example.com"},
                slack_user_id="U0BOB0001",
            ),
            UserFinding(
                account_id="123456789012",
                user_name="carol",
                arn="arn:aws:iam::123456789012:user/carol",
                console_access=True,
                mfa_devices=(
                    MfaDevice("arn:aws:iam::123456789012:u2f/user/carol/key", "fido", NOW - timedelta(days=9)),
                    MfaDevice("GAHT12345678", "hardware", None),
                ),
                status="compliant",
            ),
            UserFinding(
                account_id="123456789012",
                user_name="heidi",
                arn="arn:aws:iam::123456789012:user/heidi",
                console_access=True,
                mfa_devices=(),
                status="exempt",
                reason="break-glass",
                exempt_until=NOW + timedelta(days=3),
            ),
        ],
    )


def test_round_trip_keeps_every_field_but_the_slack_person() -> None:
    account = sample()
    back = account_from_json(account_to_json(account))

    assert back.root == account.root and back.report_generated_at == account.report_generated_at
    assert back.label == "acme (123456789012)"
    bob, carol, heidi = back.users
    assert bob.slack_user_id is None  # resolved again on read: links and the directory change
    assert bob.tags == {"slack-user-id": "U0BOB0001", "email": "robert@example.com"}
    assert (bob.console_since, bob.checked_live, bob.reason) == (NOW - timedelta(days=4), True, account.users[0].reason)
    assert carol.mfa_devices == account.users[1].mfa_devices and isinstance(carol.mfa_devices, tuple)
    assert heidi.exempt_until == NOW + timedelta(days=3) and heidi.exempt_until.tzinfo is not None
    assert [u.status for u in back.users] == ["violation", "compliant", "exempt"]


def test_fields_this_version_does_not_know_are_ignored_and_missing_ones_defaulted() -> None:
    data = json.loads(account_to_json(sample()))
    data["account"]["fresh_through"] = NOW.isoformat()  # written by a newer bot
    data["account"]["users"][0]["new_field"] = 1
    del data["account"]["users"][1]["grace_until"]

    back = account_from_json(json.dumps(data))

    assert [u.user_name for u in back.users] == ["bob", "carol", "heidi"]
    assert back.users[1].grace_until is None


@pytest.mark.parametrize(
    "text",
    ["", "not json", '{"v": 99, "account": {}}', '{"v": 1}', '{"v": 1, "account": {"account_id": "1"}}', "[]"],
)
def test_an_unreadable_snapshot_is_a_snapshot_error(text: str) -> None:
    with pytest.raises(SnapshotError):
        account_from_json(text)
