"""The collector and the rule against moto's server over HTTP, with faults injected by a proxy."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from bot import aws, service
from bot.config import Config
from bot.demo import DEMO_VIOLATORS, add_user, demo_client
from bot.models import AuditResult
from bot.pacing import Pacer
from bot.report import exit_code, to_json, to_text

BASE = Config(report_deadline_seconds=2.0)


def audit_via(proxy_url: str, config: Config = BASE) -> AuditResult:
    return service.run_audit(dataclasses.replace(config, aws_endpoint_url=proxy_url))


def statuses(result: AuditResult) -> dict[str, str]:
    return {u.user_name: u.status for u in result.accounts[0].users}


def test_demo_account_verdicts_over_http(demo_account, iam_proxy):
    result = audit_via(iam_proxy.url)
    account = result.accounts[0]
    assert account.error is None
    assert (account.account_id, account.alias) == ("123456789012", "acme-demo")
    assert {u.user_name for u in result.violations} == DEMO_VIOLATORS
    assert statuses(result) == {
        "alice": "compliant", "bob": "violation", "carol": "compliant", "dave": "compliant", "erin": "violation",
        "frank": "no_console", "heidi": "exempt", "ivan": "violation", "svc-deploy": "no_console",
    }  # fmt: skip
    devices = {u.user_name: [d.type for d in u.mfa_devices] for u in account.users}
    assert devices["alice"] == ["virtual"]
    assert account.root.mfa_enabled is False
    erin = next(u for u in account.users if u.user_name == "erin")
    assert "virtual MFA device created but never enabled" in (erin.reason or "")
    assert account.cloudtrail_error is None and account.fresh_through >= account.report_generated_at
    assert exit_code(result) == 1


def test_every_user_with_mfa_lists_their_devices_by_type(demo_account, iam_proxy):
    result = audit_via(iam_proxy.url)
    by_name = {u.user_name: u for u in result.accounts[0].users}
    # carol and dave: the report says mfa_active and ListVirtualMFADevices lists none for them:
    # one ListMFADevices each names their FIDO key and hardware token.
    assert [(d.type, d.serial) for d in by_name["carol"].mfa_devices] == [
        ("fido", "arn:aws:iam::123456789012:u2f/user/carol/yubikey-carol")
    ]
    assert [d.type for d in by_name["dave"].mfa_devices] == ["hardware"]
    assert all(u.mfa_devices for u in by_name.values() if u.status == "compliant")


def test_call_budget_is_12_plus_3v_plus_h_plus_cloudtrail_pages(demo_account, iam_proxy):
    audit_via(iam_proxy.url)
    per_user = {a: iam_proxy.calls[a] for a in ("GetLoginProfile", "ListMFADevices", "ListUserTags")}
    # V = 4 (bob, erin, ivan, heidi: console, no MFA in the report), H = 2 (carol's FIDO key,
    # dave's hardware token: MFA in the report, no virtual device); one page per event name.
    assert per_user == {"GetLoginProfile": 4, "ListMFADevices": 4 + 2, "ListUserTags": 4}
    assert iam_proxy.calls["LookupEvents"] == 3
    assert iam_proxy.total_calls <= 12 + 3 * 4 + 2 + 3


def _age_the_report(iam_proxy):
    """Audit once: the account's credential report is generated now and served unchanged for 4 hours."""
    assert audit_via(iam_proxy.url).accounts[0].error is None
    iam_proxy.reset_counts()


def test_a_password_created_after_the_report_is_caught_through_cloudtrail(demo_account, iam_proxy):
    _age_the_report(iam_proxy)
    iam = demo_client(iam_proxy.url)
    iam.create_login_profile(UserName="frank", Password="Demo-Password-1!")
    report = iam.get_credential_report()["Content"].decode()
    # the report is the one of the first audit: frank has no password in it
    assert next(line for line in report.splitlines() if line.startswith("frank,")).split(",")[3] == "false"

    result = audit_via(iam_proxy.url)
    frank = next(u for u in result.accounts[0].users if u.user_name == "frank")
    assert (frank.status, frank.console_access, frank.checked_live) == ("violation", True, True)
    assert result.accounts[0].cloudtrail_error is None
    assert iam_proxy.calls["GetLoginProfile"] == 5  # the four the report flags, and frank


def test_an_mfa_device_deactivated_after_the_report_is_caught(demo_account, iam_proxy):
    _age_the_report(iam_proxy)
    iam = demo_client(iam_proxy.url)
    serial = iam.list_mfa_devices(UserName="dave")["MFADevices"][0]["SerialNumber"]
    iam.deactivate_mfa_device(UserName="dave", SerialNumber=serial)
    alice = iam.list_mfa_devices(UserName="alice")["MFADevices"][0]["SerialNumber"]
    iam.deactivate_mfa_device(UserName="alice", SerialNumber=alice)
    iam.delete_virtual_mfa_device(SerialNumber=alice)

    result = audit_via(iam_proxy.url)
    by_name = {u.user_name: u for u in result.accounts[0].users}
    assert by_name["dave"].status == by_name["alice"].status == "violation"
    assert by_name["dave"].checked_live and by_name["alice"].checked_live
    assert by_name["dave"].mfa_devices == by_name["alice"].mfa_devices == ()


def test_cloudtrail_denied_is_a_freshness_note_never_an_error(demo_account, iam_proxy, tmp_path):
    _age_the_report(iam_proxy)
    demo_client(iam_proxy.url).create_login_profile(UserName="frank", Password="Demo-Password-1!")
    iam_proxy.fail("LookupEvents", "AccessDeniedException", status=400)

    result = audit_via(iam_proxy.url)
    account = result.accounts[0]
    assert account.error is None and account.cloudtrail_error == "AccessDeniedException"
    assert {u.user_name for u in result.violations} == DEMO_VIOLATORS  # as of the report: frank unseen
    assert account.fresh_through == account.report_generated_at
    assert exit_code(result) == 1  # unchanged: violations, not an error
    note = f"report of {account.report_generated_at:%H:%M} UTC; CloudTrail not readable (AccessDeniedException)"
    assert note in to_text(result)
    assert '"cloudtrail_error": "AccessDeniedException"' in to_json(result)


def test_cloudtrail_lookups_are_paged_and_paced_at_two_a_second():
    ct = boto3.client("cloudtrail", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(ct)
    since = datetime(2026, 12, 1, 6, 12, tzinfo=UTC)

    def event(name, params, error=None):
        detail = {"eventName": name, "requestParameters": params, **({"errorCode": error} if error else {})}
        return {"EventId": "e", "EventName": name, "CloudTrailEvent": json.dumps(detail)}

    def lookup(name, token=None):
        params = {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": name}], "StartTime": since,
                  "MaxResults": 50}  # fmt: skip
        return {**params, "NextToken": token} if token else params

    stub.add_response(
        "lookup_events",
        {"Events": [event("CreateLoginProfile", {"userName": "judy"})], "NextToken": "p2"},
        lookup("CreateLoginProfile"),
    )
    stub.add_response(
        "lookup_events",
        {"Events": [event("CreateLoginProfile", {"userName": "mallory"}, error="AccessDenied")]},
        lookup("CreateLoginProfile", "p2"),
    )
    stub.add_response(
        "lookup_events",
        {"Events": [event("DeactivateMFADevice", {"userName": "oscar", "serialNumber": "GAHT1"})]},
        lookup("DeactivateMFADevice"),
    )
    stub.add_response(
        "lookup_events",
        {"Events": [event("DeleteVirtualMFADevice", {"serialNumber": "arn:aws:iam::1:mfa/peggy"})]},
        lookup("DeleteVirtualMFADevice"),
    )
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = Pacer(aws.CLOUDTRAIL_DOCUMENTED_RATE, clock=lambda: now[0], sleep=sleep)
    with stub:
        changes, requests = aws.user_changes_since(ct, since, pacer)
    names = {name for name, _ in changes}
    stub.assert_no_pending_responses()
    assert names == {"judy", "oscar", "peggy"}  # mallory's call failed: nothing changed
    assert requests == 4
    assert waits == [0.5, 0.5, 0.5]  # 4 requests in 1.5 s: never more than 2 in a second


def test_a_user_who_enabled_mfa_since_the_report_is_not_flagged(demo_account, iam_proxy):
    iam = demo_client(demo_account)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-phone")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName="bob", SerialNumber=serial, AuthenticationCode1="111111", AuthenticationCode2="222222"
    )
    assert statuses(audit_via(iam_proxy.url))["bob"] == "compliant"


@pytest.mark.parametrize(
    ("action", "code", "expected"),
    [
        ("GenerateCredentialReport", "LimitExceeded", "credential report not available"),
        ("GetCredentialReport", "ReportInProgress", "credential report not available"),
        ("GetCredentialReport", "AccessDenied", "AccessDenied: iam:GetCredentialReport was denied"),
        ("ListUsers", "AccessDenied", "AccessDenied: iam:ListUsers was denied"),
        ("ListMFADevices", "Throttling", "throttled by AWS on iam:ListMFADevices"),
        ("GetCallerIdentity", "AccessDenied", "AccessDenied: sts:GetCallerIdentity was denied"),
    ],
)
def test_a_failure_is_an_error_for_the_account_never_a_pass(demo_account, iam_proxy, action, code, expected):
    iam_proxy.fail(action, code, status=403 if code == "AccessDenied" else 400)
    result = audit_via(iam_proxy.url)
    account = result.accounts[0]
    assert account.error is not None and expected in account.error
    assert account.users == [] and result.violations == []
    assert exit_code(result) == 2
    assert '"error": null' not in to_json(result)


def test_a_throttling_storm_is_retried_and_then_an_error(demo_account, iam_proxy):
    iam_proxy.fail("ListMFADevices", "Throttling", times=1)  # one throttle: retried, audit completes
    assert audit_via(iam_proxy.url).accounts[0].error is None
    iam_proxy.fail("ListMFADevices", "Throttling")  # a storm: past the retries, an error
    assert "throttled" in audit_via(iam_proxy.url).accounts[0].error
    assert iam_proxy.calls["ListMFADevices"] >= 2


def test_report_in_progress_is_polled_until_complete(demo_account, iam_proxy):
    iam_proxy.fail("GetCredentialReport", "ReportInProgress", times=2)
    result = audit_via(iam_proxy.url, dataclasses.replace(BASE, report_deadline_seconds=10))
    assert result.accounts[0].error is None
    assert iam_proxy.calls["GetCredentialReport"] == 3


def test_unreachable_endpoint_is_one_clear_error(aws_env):
    result = audit_via("http://127.0.0.1:1")
    assert result.accounts[0].error.startswith("cannot reach the AWS endpoint")
    assert exit_code(result) == 2


# --- pagination: moto answers in one page whatever MaxItems says, so page with a Stubber -----


def _stubbed_iam():
    client = boto3.client("iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def test_list_users_reads_every_page():
    iam, stub = _stubbed_iam()
    created = datetime(2026, 1, 1, tzinfo=UTC)

    def page(names):
        return [
            {"UserName": n, "Path": "/", "UserId": "AIDA" + "X" * 16, "Arn": f"arn:aws:iam::1:user/{n}",
             "CreateDate": created}
            for n in names
        ]  # fmt: skip

    stub.add_response(
        "list_users", {"Users": page(["a", "b"]), "IsTruncated": True, "Marker": "m1"}, {"MaxItems": 1000}
    )
    stub.add_response("list_users", {"Users": page(["c"]), "IsTruncated": False}, {"MaxItems": 1000, "Marker": "m1"})
    with stub:
        assert [u.name for u in aws.list_users(iam)] == ["a", "b", "c"]
    stub.assert_no_pending_responses()


def test_mfa_devices_and_virtual_devices_read_every_page():
    iam, stub = _stubbed_iam()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stub.add_response("get_login_profile", {"LoginProfile": {"UserName": "a", "CreateDate": now}}, {"UserName": "a"})
    stub.add_response(
        "list_mfa_devices",
        {"MFADevices": [{"UserName": "a", "SerialNumber": "GAHT12345678", "EnableDate": now}], "IsTruncated": True,
         "Marker": "m"},
        {"UserName": "a"},
    )  # fmt: skip
    stub.add_response(
        "list_mfa_devices",
        {"MFADevices": [{"UserName": "a", "SerialNumber": "arn:aws:iam::1:u2f/user/a/k", "EnableDate": now}]},
        {"UserName": "a", "Marker": "m"},
    )
    serial = "arn:aws:iam::1:mfa/root-account-mfa-device"
    stub.add_response(
        "list_virtual_mfa_devices",
        {"VirtualMFADevices": [{"SerialNumber": "arn:aws:iam::1:mfa/a"}], "IsTruncated": True, "Marker": "v"},
        {"AssignmentStatus": "Any", "MaxItems": 1000},
    )
    stub.add_response(
        "list_virtual_mfa_devices",
        {"VirtualMFADevices": [{"SerialNumber": serial}]},
        {"AssignmentStatus": "Any", "MaxItems": 1000, "Marker": "v"},
    )
    with stub:
        state = aws.live_state(iam, "a")
        devices = aws.list_virtual_devices(iam)
    assert [d.type for d in state.mfa_devices] == ["hardware", "fido"]
    assert [d["SerialNumber"] for d in devices] == ["arn:aws:iam::1:mfa/a", serial]


def test_report_deadline_is_honoured_without_real_sleeping():
    iam, stub = _stubbed_iam()
    for _ in range(3):
        stub.add_response("generate_credential_report", {"State": "INPROGRESS"})
    clock = iter([0.0, 1.0, 2.0, 3.5]).__next__
    waits: list[float] = []
    with stub, pytest.raises(aws.AccountReadError, match="not available after 3s"):
        aws.fetch_credential_report(iam, 3.0, sleep=waits.append, clock=clock)
    assert waits == [0.1, 0.2]  # polled soon, then backing off


def test_users_the_report_flags_but_gone_or_re_created_since_are_judged_as_they_are_now(demo_account, iam_proxy):
    # The first audit has the report made; the stand-in keeps serving that report, as AWS does for 4 hours.
    assert {u.user_name for u in audit_via(iam_proxy.url).violations} == DEMO_VIOLATORS
    iam = demo_client(demo_account)
    iam.delete_login_profile(UserName="erin")
    iam.delete_user(UserName="erin")  # flagged by the report, deleted since
    iam.delete_login_profile(UserName="bob")
    iam.delete_user(UserName="bob")
    add_user(iam, "bob", console=True, mfa="virtual")  # the same name (and ARN), now with MFA
    result = audit_via(iam_proxy.url)
    account = result.accounts[0]
    assert account.error is None
    assert "erin" not in statuses(result)
    assert statuses(result)["bob"] == "compliant"
    assert {u.user_name for u in result.violations} == DEMO_VIOLATORS - {"bob", "erin"}
