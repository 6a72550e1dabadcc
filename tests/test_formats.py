"""ASFF, OCSF and CSV renderers: pure functions of plain data, checked against the formats' own rules."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import timedelta

import botocore.session
import pytest
from botocore.validate import ParamValidator

from bot import formats
from bot.demo import DEMO_VIOLATORS
from bot.models import AccessKeyUse, RootStatus
from tests.test_cli import run_bot
from tests.test_messages import ACCOUNT, NOW, account, result, user

STATUSES = ("violation", "grace", "exempt", "compliant", "no_console")


def every_status():
    users = [user(status, status) for status in STATUSES]  # one user per status, named after it
    broken = account([], account_id="999999999999", alias="broken", error="AccessDenied", root=RootStatus())
    return result(account(users), broken)


# "Required attributes" of the ASFF (Security Hub user guide); the service model marks fewer.
ASFF_REQUIRED = {"AwsAccountId", "CreatedAt", "Description", "GeneratorId", "Id", "ProductArn", "Resources",
                 "SchemaVersion", "Severity", "Title", "Types", "UpdatedAt"}  # fmt: skip


def securityhub_model():
    return botocore.session.get_session().get_service_model("securityhub")


def validate_asff(findings: list[dict]) -> None:
    """Validate against the Security Hub service model: every required ASFF field, every type."""
    model = securityhub_model()
    shape = model.operation_model("BatchImportFindings").input_shape
    report = ParamValidator().validate({"Findings": findings}, shape)
    assert not report.has_errors(), report.generate_report()
    required = ASFF_REQUIRED | set(model.shape_for("AwsSecurityFinding").required_members)
    for finding in findings:
        assert required <= set(finding)


def test_asff_is_valid_and_maps_each_status():
    findings = formats.asff_findings(every_status(), "eu-west-1")
    validate_asff(findings)
    by_user = {f["Resources"][0]["Details"]["AwsIamUser"]["UserName"]: f for f in findings}
    assert set(by_user) == set(STATUSES)  # the failed account yields nothing
    states = {n: (f["Compliance"]["Status"], f["Workflow"]["Status"], f["RecordState"]) for n, f in by_user.items()}
    assert states == {
        "violation": ("FAILED", "NEW", "ACTIVE"),
        "grace": ("FAILED", "NOTIFIED", "ACTIVE"),
        "exempt": ("FAILED", "SUPPRESSED", "ACTIVE"),
        "compliant": ("PASSED", "RESOLVED", "ARCHIVED"),
        "no_console": ("PASSED", "RESOLVED", "ARCHIVED"),
    }
    assert by_user["exempt"]["Note"]["Text"] == "tag mfa-exempt: vault"
    violation = by_user["violation"]
    assert violation["ProductArn"] == f"arn:aws:securityhub:eu-west-1:{ACCOUNT}:product/{ACCOUNT}/default"
    assert violation["AwsAccountId"] == ACCOUNT
    assert "AWS Foundational Security Best Practices/IAM.5" in violation["Compliance"]["RelatedRequirements"]
    assert violation["Resources"][0] == {
        "Type": "AwsIamUser",
        "Id": f"arn:aws:iam::{ACCOUNT}:user/violation",
        "Partition": "aws",
        "Region": "eu-west-1",
        "Details": {"AwsIamUser": {"UserName": "violation"}},
    }
    enums = {
        ("Severity", "Label"): securityhub_model().shape_for("SeverityLabel").enum,
        ("Workflow", "Status"): securityhub_model().shape_for("WorkflowStatus").enum,
        ("Compliance", "Status"): securityhub_model().shape_for("ComplianceStatus").enum,
    }
    for finding in findings:
        for (outer, inner), allowed in enums.items():
            assert finding[outer][inner] in allowed
        assert finding["RecordState"] in securityhub_model().shape_for("RecordState").enum


def test_asff_ids_are_stable_per_account_and_user_and_scope_names_iam19():
    first = formats.asff_findings(every_status(), "us-east-1")
    again = formats.asff_findings(every_status(), "us-east-1", scope="all")
    assert [f["Id"] for f in first] == [f["Id"] for f in again]
    assert len({f["Id"] for f in first}) == len(first)
    other = formats.asff_findings(result(account([user("violation")], account_id="210987654321")), "us-east-1")
    assert other[0]["Id"] != first[0]["Id"]
    assert any("IAM.19" in r for r in again[0]["Compliance"]["RelatedRequirements"])
    gov = result(account([dataclasses.replace(user("bob"), arn=f"arn:aws-us-gov:iam::{ACCOUNT}:user/bob")]))
    (finding,) = formats.asff_findings(gov, "us-gov-west-1")
    assert finding["ProductArn"].startswith("arn:aws-us-gov:securityhub:us-gov-west-1:")


# The required attributes of OCSF 1.3.0 class 2003 (base_event + finding + compliance_finding), and of
# the objects they require (metadata, product, finding_info, compliance; cloud for the cloud profile).
OCSF_REQUIRED = {
    "": {"activity_id", "category_uid", "class_uid", "type_uid", "severity_id", "time", "metadata",
         "finding_info", "compliance", "cloud"},
    "metadata": {"version", "product"},
    "finding_info": {"uid", "title"},
    "compliance": {"standards"},
    "cloud": {"provider"},
}  # fmt: skip


def test_ocsf_events_carry_the_required_fields_of_class_2003():
    events = formats.ocsf_events(every_status())
    assert len(events) == len(STATUSES)  # one per user; the failed account yields none
    for event in events:
        for path, keys in OCSF_REQUIRED.items():
            obj = event[path] if path else event
            assert keys <= {k for k, v in obj.items() if v not in (None, "", [])}, (path, keys - set(obj))
        assert (event["class_uid"], event["category_uid"]) == (2003, 2)
        assert event["type_uid"] == 2003 * 100 + event["activity_id"]
        assert event["metadata"]["product"]["name"] == "mfa-bot"
        assert isinstance(event["time"], int) and event["time"] == int(NOW.timestamp() * 1000)
        assert event["severity_id"] in {0, 1, 2, 3, 4, 5, 6, 99}
        assert event["compliance"]["status_id"] in {1, 2, 3}
    by_user = {e["resources"][0]["name"]: e for e in events}
    assert by_user["violation"]["compliance"]["status"] == "Fail" and by_user["violation"]["status"] == "New"
    assert by_user["exempt"]["status"] == "Suppressed"
    assert by_user["compliant"]["compliance"]["status"] == "Pass" and by_user["compliant"]["status"] == "Resolved"
    assert by_user["compliant"]["resources"][0]["data"]["mfa_devices"][0]["type"] == "virtual"
    violation_arn = f"arn:aws:iam::{ACCOUNT}:user/violation"
    assert by_user["violation"]["finding_info"]["uid"] == formats.finding_id(ACCOUNT, violation_arn)


def test_csv_lists_every_user_and_failed_account_and_guards_formulas():
    audit = every_status()
    audit.accounts[0].users.append(user("mallory", "exempt", reason='=HYPERLINK("http://x")'))
    rows = list(csv.DictReader(io.StringIO(formats.to_csv(audit))))
    assert sorted(r["status"] for r in rows) == sorted([*STATUSES, "exempt", "error"])
    assert next(r for r in rows if r["user_name"] == "mallory")["reason"].startswith("'=")


@pytest.mark.parametrize("output", ["asff", "ocsf", "csv"])
def test_check_demo_prints_each_format_with_the_same_exit_code(tmp_path, output):
    done = run_bot("check", "--demo", "--format", output, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    if output == "asff":
        findings = json.loads(done.stdout)["Findings"]
        validate_asff(findings)
        new = {f["Resources"][0]["Id"].rsplit("/", 1)[1] for f in findings if f["Workflow"]["Status"] == "NEW"}
        assert new == DEMO_VIOLATORS
    elif output == "ocsf":
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(events) == 11 and all(e["class_uid"] == 2003 for e in events)  # both demo accounts
    else:
        rows = list(csv.DictReader(io.StringIO(done.stdout)))
        assert len(rows) == 11  # both demo accounts
        assert {r["user_name"] for r in rows if r["status"] == "violation"} == DEMO_VIOLATORS


def test_json_and_another_format_is_a_one_line_usage_error(tmp_path):
    done = run_bot("check", "--json", "--format", "csv", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --json and --format csv disagree: give one of them"
    assert done.stdout == ""


def test_formats_carry_freshness_and_key_only_violations():
    keys = (AccessKeyUse(1, True, NOW - timedelta(days=3)),)
    key_only = dataclasses.replace(user("kim"), console_access=False, access_keys=keys)
    audit = result(account([key_only], fresh_through=NOW))
    (finding,) = formats.asff_findings(audit, "us-east-1", scope="all")
    validate_asff([finding])
    assert finding["Title"] == "IAM user kim has active access keys and no MFA"
    assert finding["ProductFields"]["mfa-bot/fresh-through"] == "2025-03-01T09:00:00Z"
    assert "AWS Foundational Security Best Practices/IAM.19" in finding["Compliance"]["RelatedRequirements"]
    (event,) = formats.ocsf_events(audit, scope="all")
    assert event["compliance"]["control"] == "IAM.19"
    data = event["resources"][0]["data"]
    assert data["active_access_keys"] == [{"number": 1, "last_used": "2025-02-26T09:00:00Z"}]
    assert data["fresh_through"] == "2025-03-01T09:00:00Z"
