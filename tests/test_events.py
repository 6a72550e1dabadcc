"""Real-time events, the pure part: EventBridge envelopes parsed, plans decided (plain data, no fakes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.events import BadEvent, IgnoredEvent, Plan, decide, parse_event
from tests.eventbridge import ADMIN_ARN, body, console_login, iam_call

AT = datetime(2026, 12, 2, 9, 30, 5, tzinfo=UTC)


def test_an_api_call_names_the_user_the_account_what_changed_and_who_did_it():
    event = parse_event(body(iam_call("CreateLoginProfile", "bob", event_id="e-1", at=AT, passwordResetRequired=True)))
    assert (event.event_id, event.name, event.account_id, event.user_name) == (
        "e-1",
        "CreateLoginProfile",
        "123456789012",
        "bob",
    )
    assert event.actor == ADMIN_ARN and event.at == AT and event.error is None
    assert event.what_changed() == "a console password was created"


def test_an_assumed_role_actor_is_its_session_arn_and_a_failed_call_is_an_error():
    role = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_abc/jane@example.com"
    event = parse_event(body(iam_call("DeactivateMFADevice", "bob", actor_arn=role, error_code="AccessDenied")))
    assert event.actor == role and event.error == "AccessDenied"
    assert decide(event, "violation", False, "mfa-exempt") == Plan()  # nothing changed in IAM


def test_tag_events_carry_the_keys_and_say_when_the_exemption_tag_changed():
    tagged = parse_event(body(iam_call("TagUser", "heidi", tags=[{"key": "mfa-exempt", "value": "break-glass"}])))
    assert tagged.tags_added == {"mfa-exempt": "break-glass"} and tagged.exemption_change("mfa-exempt") == "added"
    assert tagged.what_changed() == "tags were added: mfa-exempt"
    untagged = parse_event(body(iam_call("UntagUser", "heidi", tagKeys=["team", "mfa-exempt"])))
    assert untagged.tags_removed == ("team", "mfa-exempt") and untagged.exemption_change("mfa-exempt") == "removed"
    other = parse_event(body(iam_call("TagUser", "heidi", tags=[{"key": "team", "value": "x"}])))
    assert other.exemption_change("mfa-exempt") is None


def test_a_console_login_without_mfa_has_its_time_and_source_ip():
    event = parse_event(body(console_login("bob", event_id="e-2", at=AT, source_ip="203.0.113.9")))
    assert (event.name, event.user_name, event.source_ip, event.at) == ("ConsoleLogin", "bob", "203.0.113.9", AT)
    assert event.actor == "arn:aws:iam::123456789012:user/bob" and event.is_login
    failed = parse_event(body(console_login("bob", outcome="Failure")))
    assert failed.error == "sign-in Failure"


def test_a_deleted_virtual_device_is_about_the_user_it_was_named_after():
    event = parse_event(
        body(iam_call("DeleteVirtualMFADevice", "x", serialNumber="arn:aws:iam::123456789012:mfa/bob")).replace(
            '"userName": "x", ', ""
        )
    )
    assert event.user_name == "bob"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        (json.dumps({"Records": []}), "not an EventBridge event"),
        (json.dumps({"detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "x"}}), "no detail.eventID"),
        (json.dumps({"detail-type": "AWS API Call via CloudTrail", "detail": {"eventID": "e"}}), "no detail.eventName"),
        (body(iam_call("CreateLoginProfile", "bob", account="12")), "no 12-digit account"),
    ],
)
def test_malformed_messages_are_bad_events_in_one_line(text, reason):
    with pytest.raises(BadEvent) as caught:
        parse_event(text)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_well_formed_events_the_bot_has_nothing_to_do_with_are_ignored_with_their_id():
    for event in (
        iam_call("CreateAccessKey", "bob", event_id="e-3"),
        console_login("bob", event_id="e-3", mfa_used="Yes"),
    ):
        with pytest.raises(IgnoredEvent) as caught:
            parse_event(body(event))
        assert caught.value.event_id == "e-3"
    root = console_login("bob", event_id="e-4")
    root["detail"]["userIdentity"] = {"type": "Root", "arn": "arn:aws:iam::123456789012:root"}
    with pytest.raises(IgnoredEvent):
        parse_event(body(root))


def test_plans_follow_the_live_status_and_the_open_episode():
    created = parse_event(body(iam_call("CreateLoginProfile", "bob")))
    assert decide(created, "violation", False, "mfa-exempt") == Plan(open_episode=True)
    assert decide(created, "violation", True, "mfa-exempt").nothing  # already open: the DM went then
    assert decide(created, "grace", False, "mfa-exempt").nothing
    enabled = parse_event(body(iam_call("EnableMFADevice", "bob")))
    assert decide(enabled, "compliant", True, "mfa-exempt") == Plan(close_episode=True, thank=True)
    assert decide(enabled, "compliant", False, "mfa-exempt").nothing
    deleted = parse_event(body(iam_call("DeleteUser", "bob")))
    assert decide(deleted, None, True, "mfa-exempt") == Plan(close_episode=True, thank=True)
    login = parse_event(body(console_login("bob")))
    assert decide(login, "violation", True, "mfa-exempt") == Plan(login_alert=True)
    assert decide(login, "violation", False, "mfa-exempt") == Plan(open_episode=True, login_alert=True)
    exempted = parse_event(body(iam_call("TagUser", "bob", tags=[{"key": "mfa-exempt", "value": "vault"}])))
    assert decide(exempted, "exempt", True, "mfa-exempt") == Plan(close_episode=True, exemption="added")
    unexempted = parse_event(body(iam_call("UntagUser", "bob", tagKeys=["mfa-exempt"])))
    assert decide(unexempted, "violation", False, "mfa-exempt") == Plan(open_episode=True, exemption="removed")
