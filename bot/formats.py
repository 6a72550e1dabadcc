"""Pure renderers of an AuditResult for security tooling: ASFF (Security Hub), OCSF 2003 and CSV.

One finding per IAM user of every account that was read, with an id that stays the same from
one audit to the next (per account and user), so a re-import updates instead of duplicating.
An account that could not be read yields no finding at all: its users' state is unknown, and
a missing finding must never read as fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.messages import remediation
from bot.models import STATUSES, AccountFindings, AuditResult, Status, UserFinding

TOOL = "mfa-bot"
TOOL_VERSION = "0.1.0"
GENERATOR_ID = "mfa-bot/iam-user-console-mfa"
ASFF_SCHEMA_VERSION = "2018-10-08"
OCSF_VERSION = "1.3.0"
ASFF_TYPES = (
    "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark",
    "Software and Configuration Checks/AWS Security Best Practices",
)
FORMATS = ("text", "json", "asff", "ocsf", "csv")


@dataclass(frozen=True)
class Control:
    """The Security Hub control and CIS recommendation an audit scope answers to."""

    control_id: str
    title: str
    requirements: tuple[str, ...]


CONTROLS = {
    "console": Control(
        "IAM.5",
        "MFA should be enabled for all IAM users that have a console password",
        ("AWS Foundational Security Best Practices/IAM.5", "CIS AWS Foundations Benchmark v1.4.0/1.10"),
    ),
    "all": Control(
        "IAM.19",
        "MFA should be enabled for all IAM users",
        ("NIST.800-53.r5 IA-2(1)", "PCI DSS v3.2.1/8.3.1", "AWS Foundational Security Best Practices/IAM.19"),
    ),
}

# status -> (ASFF compliance, ASFF workflow, ASFF severity, record active?)
ASFF_STATES: dict[Status, tuple[str, str, str, bool]] = {
    "violation": ("FAILED", "NEW", "MEDIUM", True),
    "grace": ("FAILED", "NOTIFIED", "MEDIUM", True),
    "exempt": ("FAILED", "SUPPRESSED", "MEDIUM", True),
    "compliant": ("PASSED", "RESOLVED", "INFORMATIONAL", False),
    "no_console": ("PASSED", "RESOLVED", "INFORMATIONAL", False),
}
# status -> (OCSF compliance status_id, finding status_id, severity_id, activity_id)
OCSF_STATES: dict[Status, tuple[int, int, int, int]] = {
    "violation": (3, 1, 3, 1),  # Fail, New, Medium, Create
    "grace": (3, 2, 3, 1),  # Fail, In Progress
    "exempt": (3, 3, 3, 1),  # Fail, Suppressed
    "compliant": (1, 4, 1, 3),  # Pass, Resolved, Informational, Close
    "no_console": (1, 4, 1, 3),
}
OCSF_COMPLIANCE_STATUS = {1: "Pass", 2: "Warning", 3: "Fail"}
OCSF_FINDING_STATUS = {1: "New", 2: "In Progress", 3: "Suppressed", 4: "Resolved"}
OCSF_SEVERITY = {1: "Informational", 3: "Medium"}
OCSF_ACTIVITY = {1: "Create", 2: "Update", 3: "Close"}
OCSF_CLASS_UID, OCSF_CATEGORY_UID = 2003, 2


def finding_id(account_id: str, user_arn: str) -> str:
    """The stable id of one user's finding: the same account and user always give the same id."""
    return f"{GENERATOR_ID}/{account_id}/{user_arn}"


def _partition(arn: str) -> str:
    parts = arn.split(":", 2)
    return parts[1] if len(parts) > 2 and parts[1] else "aws"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _title(user: UserFinding) -> str:
    if user.status == "violation" and not user.console_access:
        return f"IAM user {user.user_name} has active access keys and no MFA"
    if user.status == "violation":
        return f"IAM user {user.user_name} can sign in to the console without MFA"
    if user.status in ("exempt", "grace"):
        return f"IAM user {user.user_name} signs in without MFA ({user.status})"
    if user.status == "no_console":
        return f"IAM user {user.user_name} has no console password"
    return f"IAM user {user.user_name} has MFA enabled"


def _description(user: UserFinding, control: Control) -> str:
    devices = ", ".join(f"{d.type} {d.serial}" for d in user.mfa_devices)
    text = f"{control.control_id}: {control.title}. Status: {user.status}."
    if user.reason:
        text += f" {user.reason}."
    if devices:
        text += f" MFA devices: {devices}."
    if user.access_keys:
        text += f" Active access keys: {len(user.access_keys)}."
    return text[:1024]


def _created_at(user: UserFinding, generated_at: datetime) -> datetime:
    return user.console_since if user.console_since and user.console_since <= generated_at else generated_at


def asff_finding(
    account: AccountFindings, user: UserFinding, generated_at: datetime, region: str, scope: str = "console"
) -> dict[str, Any]:
    """One user's finding in the AWS Security Finding Format, for the account's `default` product."""
    control = CONTROLS.get(scope, CONTROLS["console"])
    copy = remediation.current()  # REMEDIATION_FILE may put a team's own wording in force at startup
    compliance, workflow, severity, active = ASFF_STATES[user.status]
    partition = _partition(user.arn)
    account_id = account.account_id
    now = _iso(generated_at)
    finding: dict[str, Any] = {
        "SchemaVersion": ASFF_SCHEMA_VERSION,
        "Id": finding_id(account_id, user.arn),
        "ProductArn": f"arn:{partition}:securityhub:{region}:{account_id}:product/{account_id}/default",
        "GeneratorId": GENERATOR_ID,
        "AwsAccountId": account_id,
        "Types": list(ASFF_TYPES),
        "CreatedAt": _iso(_created_at(user, generated_at)),
        "UpdatedAt": now,
        "LastObservedAt": now,
        "Severity": {"Label": severity},
        "Title": _title(user)[:256],
        "Description": _description(user, control),
        "Remediation": {"Recommendation": {"Text": copy.finding_text, "Url": copy.setup_guide_url}},
        "ProductFields": {"mfa-bot/status": user.status, "mfa-bot/control": control.control_id},
        "Resources": [
            {
                "Type": "AwsIamUser",
                "Id": user.arn,
                "Partition": partition,
                "Region": region,
                "Details": {"AwsIamUser": {"UserName": user.user_name}},
            }
        ],
        "Compliance": {"Status": compliance, "RelatedRequirements": list(control.requirements)},
        "Workflow": {"Status": workflow},
        "RecordState": "ACTIVE" if active else "ARCHIVED",
    }
    if account.alias:
        finding["ProductFields"]["mfa-bot/account-alias"] = account.alias
    if user.slack_user_id:
        finding["ProductFields"]["mfa-bot/slack-user-id"] = user.slack_user_id
    if account.fresh_through:
        finding["ProductFields"]["mfa-bot/fresh-through"] = _iso(account.fresh_through)
    if user.status == "exempt":
        finding["Note"] = {"Text": (user.reason or "exempt")[:512], "UpdatedBy": TOOL, "UpdatedAt": now}
    return finding


def vanished_finding(previous: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A finding as imported before, closed because its IAM user no longer exists (archived, resolved)."""
    kept = ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "Types", "CreatedAt",
            "Severity", "Title", "Resources", "Remediation")  # fmt: skip
    closed = {key: previous[key] for key in kept if key in previous}
    fields = {**previous.get("ProductFields", {}), "mfa-bot/status": "deleted"}
    closed.update(
        UpdatedAt=_iso(now),
        Description="The IAM user no longer exists: it can no longer sign in.",
        ProductFields={k: v for k, v in fields.items() if k.startswith("mfa-bot/")},
        Compliance={
            "Status": "PASSED",
            "RelatedRequirements": previous.get("Compliance", {}).get("RelatedRequirements", []),
        },
        Workflow={"Status": "RESOLVED"},
        RecordState="ARCHIVED",
        Severity={"Label": "INFORMATIONAL"},
    )
    return closed


def asff_findings(result: AuditResult, region: str, scope: str = "console") -> list[dict[str, Any]]:
    """Every user of every account that was read, as ASFF findings (failed accounts yield none)."""
    return [
        asff_finding(account, user, result.generated_at, region, scope)
        for account in result.accounts
        if account.error is None
        for user in account.users
    ]


def to_asff(result: AuditResult, region: str, scope: str = "console") -> str:
    """`check --format asff`: the BatchImportFindings input document, `{"Findings": [...]}`."""
    return json.dumps({"Findings": asff_findings(result, region, scope)}, indent=2)


def ocsf_event(account: AccountFindings, user: UserFinding, generated_at: datetime, scope: str = "console") -> dict:
    """One user as an OCSF Compliance Finding (class 2003) event."""
    control = CONTROLS.get(scope, CONTROLS["console"])
    compliance_id, status_id, severity_id, activity_id = OCSF_STATES[user.status]
    copy = remediation.current()
    now = _ms(generated_at)
    account_object = {"uid": account.account_id, "type": "AWS Account", "type_id": 10}
    if account.alias:
        account_object["name"] = account.alias
    return {
        "activity_id": activity_id,
        "activity_name": OCSF_ACTIVITY[activity_id],
        "category_uid": OCSF_CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": OCSF_CLASS_UID,
        "class_name": "Compliance Finding",
        "type_uid": OCSF_CLASS_UID * 100 + activity_id,
        "type_name": f"Compliance Finding: {OCSF_ACTIVITY[activity_id]}",
        "severity_id": severity_id,
        "severity": OCSF_SEVERITY[severity_id],
        "status_id": status_id,
        "status": OCSF_FINDING_STATUS[status_id],
        "time": now,
        "message": _title(user),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": TOOL, "vendor_name": TOOL, "version": TOOL_VERSION},
            "profiles": ["cloud"],
        },
        "cloud": {"provider": "AWS", "account": account_object},
        "finding_info": {
            "uid": finding_id(account.account_id, user.arn),
            "title": _title(user),
            "desc": _description(user, control),
            "types": list(ASFF_TYPES),
            "created_time": _ms(_created_at(user, generated_at)),
            "last_seen_time": now,
            "product_uid": GENERATOR_ID,
        },
        "compliance": {
            "standards": [r.split("/", 1)[0] for r in control.requirements],
            "control": control.control_id,
            "requirements": list(control.requirements),
            "status_id": compliance_id,
            "status": OCSF_COMPLIANCE_STATUS[compliance_id],
            "status_detail": user.reason or user.status,
        },
        "remediation": {"desc": copy.finding_text, "references": [copy.setup_guide_url]},
        "resources": [
            {
                "uid": user.arn,
                "name": user.user_name,
                "type": "AwsIamUser",
                "cloud_partition": _partition(user.arn),
                "data": {
                    "status": user.status,
                    "console_access": user.console_access,
                    "mfa_devices": [{"serial": d.serial, "type": d.type} for d in user.mfa_devices],
                    "active_access_keys": [
                        {"number": k.number, "last_used": k.last_used and _iso(k.last_used)} for k in user.access_keys
                    ],
                    "slack_user_id": user.slack_user_id,
                    "fresh_through": account.fresh_through and _iso(account.fresh_through),
                },
            }
        ],
    }


def ocsf_events(result: AuditResult, scope: str = "console") -> list[dict[str, Any]]:
    """One OCSF 2003 event per user of every account that was read."""
    return [
        ocsf_event(account, user, result.generated_at, scope)
        for account in result.accounts
        if account.error is None
        for user in account.users
    ]


def to_ocsf(result: AuditResult, scope: str = "console") -> str:
    """`check --format ocsf`: JSON Lines, one event per user."""
    return "\n".join(json.dumps(event, separators=(",", ":")) for event in ocsf_events(result, scope))


def to_csv(result: AuditResult) -> str:
    """`check --format csv`: every user (all statuses) and one `error` row per failed account."""
    from bot.messages.audit import audit_csv  # Slack's Block Kit models: only `check --format csv` needs them

    return audit_csv(result, statuses=STATUSES)
