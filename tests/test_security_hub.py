"""SECURITY_HUB_IMPORT: each audit's findings go into the account's Security Hub (moto's server, over HTTP)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from bot import formats, security_hub, service
from bot.config import Config
from bot.demo import DEMO_USERS, DEMO_VIOLATORS, demo_client, role_client
from tests.fixtures_aws import MANAGEMENT, ROLE, org_config
from tests.test_cli import run_bot
from tests.test_formats import validate_asff
from tests.test_messages import account, user


def hub_config(url: str, **overrides: Any) -> Config:
    return dataclasses.replace(
        Config(aws_endpoint_url=url, security_hub_import=True, report_deadline_seconds=5), **overrides
    )


def hub_findings(client: Any) -> list[dict[str, Any]]:
    """Every finding the account's Security Hub holds (every GetFindings page)."""
    return [f for page in client.get_paginator("get_findings").paginate() for f in page["Findings"]]


def by_user(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["Resources"][0]["Details"]["AwsIamUser"]["UserName"]: f for f in findings}


def workflow(finding: dict[str, Any]) -> tuple[str, str, str]:
    return finding["Workflow"]["Status"], finding["Compliance"]["Status"], finding["RecordState"]


def enable_virtual_mfa(iam: Any, name: str) -> None:
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"{name}-fixed")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName=name, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
    )


def test_each_audit_imports_its_findings_and_a_fix_resolves_without_duplicates(demo_account):
    hub = demo_client(demo_account, "securityhub")
    hub.enable_security_hub()
    first = service.run_audit(hub_config(demo_account))
    assert first.accounts[0].security_hub_error is None
    findings = hub_findings(hub)
    validate_asff(findings)
    assert len(findings) == len(DEMO_USERS)
    imported = by_user(findings)
    assert {name for name, f in imported.items() if f["Workflow"]["Status"] == "NEW"} == DEMO_VIOLATORS
    assert workflow(imported["heidi"]) == ("SUPPRESSED", "FAILED", "ACTIVE")
    heidi_note = "exempt by tag, set outside Slack (mfa-exempt: break-glass account, password in the vault)"
    assert imported["heidi"]["Note"]["Text"] == heidi_note
    assert workflow(imported["alice"]) == ("RESOLVED", "PASSED", "ARCHIVED")
    assert imported["bob"]["ProductArn"] == f"arn:aws:securityhub:us-east-1:{MANAGEMENT}:product/{MANAGEMENT}/default"

    iam = demo_client(demo_account)
    enable_virtual_mfa(iam, "bob")
    delete_user(iam, "ivan")
    second = service.run_audit(hub_config(demo_account))
    assert second.accounts[0].security_hub_error is None
    assert {u.user_name for u in second.violations} == {"erin"}
    findings = hub_findings(hub)
    validate_asff(findings)
    assert len(findings) == len(DEMO_USERS)  # the same ids: updated, not duplicated
    assert {f["Id"] for f in findings} == {f["Id"] for f in imported.values()}
    after = by_user(findings)
    assert workflow(after["bob"]) == ("RESOLVED", "PASSED", "ARCHIVED")
    assert workflow(after["erin"]) == ("NEW", "FAILED", "ACTIVE")
    assert workflow(after["ivan"]) == ("RESOLVED", "PASSED", "ARCHIVED")  # deleted: closed, not left open
    assert after["ivan"]["ProductFields"]["mfa-bot/status"] == "deleted"


def delete_user(iam: Any, name: str) -> None:
    iam.delete_login_profile(UserName=name)
    iam.delete_user(UserName=name)


def test_closing_deleted_users_findings_failing_still_imports_the_rest(demo_account, iam_proxy):
    iam_proxy.fail("GetFindings", "AccessDeniedException", status=403)
    audited = service.run_audit(hub_config(iam_proxy.url))
    assert audited.accounts[0].security_hub_error == (
        "deleted users' findings left open (AccessDenied: securityhub:GetFindings was denied "
        "(grant it in the audit policy))"
    )
    assert len(hub_findings(demo_client(demo_account, "securityhub"))) == len(DEMO_USERS)


def test_without_the_setting_nothing_is_imported(demo_account):
    service.run_audit(hub_config(demo_account, security_hub_import=False))
    assert hub_findings(demo_client(demo_account, "securityhub")) == []


def test_a_failed_import_is_reported_and_never_fails_the_audit(demo_account, iam_proxy, aws_env):
    iam_proxy.fail("BatchImportFindings", "AccessDeniedException", status=403)
    audited = service.run_audit(hub_config(iam_proxy.url))
    (only,) = audited.accounts
    assert only.error is None and {u.user_name for u in audited.violations} == DEMO_VIOLATORS
    assert only.security_hub_error == (
        "Security Hub import failed (AccessDenied: securityhub:BatchImportFindings was denied "
        "(grant it in the audit policy))"
    )
    done = run_bot("check", env={**aws_env, "AWS_ENDPOINT_URL": iam_proxy.url, "SECURITY_HUB_IMPORT": "true"})
    assert done.returncode == 1, done.stderr  # violations, not an error: the audit stands
    assert "warning: account acme-demo (123456789012): Security Hub import failed (AccessDenied" in done.stderr
    assert "VIOLATIONS (3)" in done.stdout and "Traceback" not in done.stderr


def test_findings_go_100_per_call(moto_url, iam_proxy, aws_env):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    many = account([user(f"u{i:03d}") for i in range(250)])
    findings = [formats.asff_finding(many, u, now, "us-east-1") for u in many.users]
    client = demo_client(iam_proxy.url, "securityhub")
    assert security_hub.import_findings(client, findings) is None
    assert iam_proxy.calls["BatchImportFindings"] == 3
    assert len(hub_findings(demo_client(moto_url, "securityhub"))) == 250


def test_each_member_account_gets_its_own_findings_through_its_role(organization, iam_proxy):
    service.run_audit(org_config(iam_proxy.url, security_hub_import=True))
    dev = hub_findings(role_client(iam_proxy.url, organization["dev"], ROLE, "securityhub"))
    assert set(by_user(dev)) == {"dev-alice", "dev-bob"}
    assert {f["AwsAccountId"] for f in dev} == {organization["dev"]}
    own = by_user(hub_findings(demo_client(iam_proxy.url, "securityhub")))
    assert "dev-alice" not in own and set(own) >= DEMO_VIOLATORS


def test_a_failed_account_imports_nothing(demo_account, iam_proxy):
    iam_proxy.fail("GetCredentialReport", "AccessDenied", status=403)
    audited = service.run_audit(hub_config(iam_proxy.url))
    assert audited.accounts[0].error
    assert hub_findings(demo_client(demo_account, "securityhub")) == []
