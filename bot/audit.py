"""The rule, as pure functions: AWS facts in, findings out. No I/O, no clock.

A user violates when a console password (login profile) exists and no MFA device is
enabled; with `MFA_SCOPE=all` (Security Hub IAM.19) an active access key counts like a
password. The credential report covers the whole account in one read; every user it flags,
does not know, or CloudTrail names as changed since the report, is confirmed live
(GetLoginProfile + ListMFADevices) before judging, because the report can be four hours old.
A user the report shows with MFA but with no enabled virtual device (so FIDO or hardware) has
its devices listed, so `mfa_devices` never reads empty for a user with MFA. Root is reported
apart, never judged as a user.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.models import (
    AccessKeyUse,
    AccountFacts,
    AccountFindings,
    AuditPolicy,
    DeviceType,
    IamUser,
    LiveState,
    MfaDevice,
    ReportRow,
    RootStatus,
    Scope,
    UserFinding,
)

ROOT_ROW_USER = "<root_account>"
REQUIRED_REPORT_COLUMNS = ("user", "arn", "user_creation_time", "password_enabled", "mfa_active")


class ReportFormatError(ValueError):
    """The credential report is not the CSV AWS documents."""


def device_type(serial: str) -> DeviceType:
    """Classify an MFA serial: `:mfa/` ARN virtual, `:u2f/` ARN FIDO, any other serial hardware."""
    if serial.startswith("arn:"):
        if ":u2f/" in serial:
            return "fido"
        if ":mfa/" in serial:
            return "virtual"
    return "hardware"


def mfa_device(serial: str, enabled_at: datetime | None = None) -> MfaDevice:
    """An MfaDevice with its type derived from the serial."""
    return MfaDevice(serial=serial, type=device_type(serial), enabled_at=enabled_at)


def _report_time(value: str) -> datetime | None:
    value = (value or "").strip()
    if value in {"", "N/A", "not_supported", "no_information"}:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _report_bool(value: str) -> bool | None:
    value = (value or "").strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None  # not_supported, N/A, no_information


def _access_keys(raw: Mapping[str, str]) -> tuple[AccessKeyUse, ...]:
    keys = []
    for number in (1, 2):
        active = _report_bool(raw.get(f"access_key_{number}_active", ""))
        if active is None:
            continue
        last_used = _report_time(raw.get(f"access_key_{number}_last_used_date", ""))
        keys.append(AccessKeyUse(number=number, active=active, last_used=last_used))
    return tuple(keys)


def parse_credential_report(content: bytes | str) -> tuple[dict[str, ReportRow], ReportRow | None]:
    """Parse the credential report CSV into user rows keyed by ARN, and the root row apart."""
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_REPORT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ReportFormatError(f"credential report lacks column(s): {', '.join(missing)}")
    rows: dict[str, ReportRow] = {}
    root: ReportRow | None = None
    for raw in reader:
        row = ReportRow(
            user=raw["user"],
            arn=raw["arn"],
            user_creation_time=_report_time(raw.get("user_creation_time", "")),
            password_enabled=_report_bool(raw.get("password_enabled", "")),
            password_last_changed=_report_time(raw.get("password_last_changed", "")),
            mfa_active=_report_bool(raw.get("mfa_active", "")) is True,
            access_keys=_access_keys(raw),
        )
        if row.user == ROOT_ROW_USER or row.arn.endswith(":root"):
            root = row
        else:
            rows[row.arn] = row
    return rows, root


def _same_user(user: IamUser, row: ReportRow) -> bool:
    """A report row describes this user: same ARN and, when both are known, same creation second.

    A name deleted and created again keeps its ARN; the creation time tells them apart.
    """
    if user.created_at is None or row.user_creation_time is None:
        return True
    return abs((user.created_at - row.user_creation_time).total_seconds()) < 1.0


def report_row_for(user: IamUser, report_rows: Mapping[str, ReportRow]) -> ReportRow | None:
    """The report row that describes this very user, joined by ARN (None: the report lacks them)."""
    row = report_rows.get(user.arn)
    return row if row is not None and _same_user(user, row) else None


def in_scope_without_mfa(row: ReportRow, scope: Scope) -> bool:
    """The report row flags the user: a console password (or, in scope `all`, an active key) and no MFA."""
    if row.mfa_active:
        return False
    return bool(row.password_enabled) or (scope == "all" and bool(row.active_keys))


def users_the_report_flags(report_rows: Mapping[str, ReportRow], scope: Scope = "console") -> list[IamUser]:
    """The users the report's rows flag, as users (no UserId: ListUsers has not answered yet).

    Their live checks can start as soon as the report is read; `users_to_confirm` adds the rest
    (users missing from the report, unclear rows) once ListUsers is in.
    """
    return [
        IamUser(row.user, row.arn, "", row.user_creation_time)
        for row in report_rows.values()
        if row.password_enabled is not None and in_scope_without_mfa(row, scope)
    ]


def users_to_confirm(
    users: Iterable[IamUser],
    report_rows: Mapping[str, ReportRow],
    changed_since_report: Iterable[str] = (),
    scope: Scope = "console",
) -> list[IamUser]:
    """Users whose report row flags them, is unclear, or is missing, and users CloudTrail names as changed."""
    changed = set(changed_since_report)
    confirm = []
    for user in users:
        row = report_row_for(user, report_rows)
        if row is None or row.password_enabled is None or user.name in changed or in_scope_without_mfa(row, scope):
            confirm.append(user)
    return confirm


def users_to_list_devices(
    users: Iterable[IamUser],
    report_rows: Mapping[str, ReportRow],
    virtual_devices: Mapping[str, tuple[MfaDevice, ...]],
    confirmed: Iterable[IamUser] = (),
) -> list[IamUser]:
    """Users the report shows with MFA but with no enabled virtual device (so FIDO or hardware), not confirmed anyway.

    One ListMFADevices each names their devices; an empty answer means the device went since the report.
    """
    skip = {u.arn for u in confirmed}
    listed = []
    for user in users:
        row = report_row_for(user, report_rows)
        if user.arn not in skip and row is not None and row.mfa_active and not virtual_devices.get(user.arn):
            listed.append(user)
    return listed


def pending_virtual_device_names(items: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Names of virtual MFA devices created but never enabled (ListVirtualMFADevices, AssignmentStatus Any).

    Nothing links such a device to a user but its name, which the console and our CLI steps set to
    the user name: a user with no MFA and a pending device of that name is told to finish enabling it.
    """
    return frozenset(
        str(item.get("SerialNumber", "")).rsplit("/", 1)[-1]
        for item in items
        if not item.get("EnableDate") and not (item.get("User") or {}).get("Arn")
    )


def virtual_devices_by_user(items: Iterable[Mapping[str, Any]]) -> dict[str, tuple[MfaDevice, ...]]:
    """Group ListVirtualMFADevices items by the ARN of the user they are enabled for.

    A device created but never enabled has no user (and no EnableDate): it counts for nobody.
    """
    grouped: dict[str, list[MfaDevice]] = {}
    for item in items:
        user = item.get("User") or {}
        arn = user.get("Arn")
        if not arn or not item.get("EnableDate"):
            continue
        grouped.setdefault(arn, []).append(mfa_device(item["SerialNumber"], item.get("EnableDate")))
    return {arn: tuple(devices) for arn, devices in grouped.items()}


def root_arn(partition: str, account_id: str) -> str:
    """The root user's ARN in this partition."""
    return f"arn:{partition}:iam::{account_id}:root"


def summary_flag(summary: Mapping[str, Any], key: str) -> bool | None:
    """A 0/1 GetAccountSummary entry as a bool (None when the summary lacks it, e.g. an older endpoint)."""
    value = summary.get(key)
    return None if value is None else bool(value)


def judge_root(
    account_mfa_enabled: bool | None,
    virtual_devices: Mapping[str, tuple[MfaDevice, ...]],
    partition: str,
    account_id: str,
    report_root: ReportRow | None = None,
    password_present: bool | None = None,
    access_keys_present: bool | None = None,
) -> RootStatus:
    """Root MFA on/off (GetAccountSummary, else the report), hardware when no root virtual device,
    and whether a root password and root access keys exist (GetAccountSummary)."""
    credentials = {"password_present": password_present, "access_keys_present": access_keys_present}
    enabled = account_mfa_enabled
    if enabled is None and report_root is not None:
        enabled = report_root.mfa_active
    if enabled is None:
        return RootStatus(**credentials)
    if not enabled:
        return RootStatus(mfa_enabled=False, hardware=None, **credentials)
    has_virtual = bool(virtual_devices.get(root_arn(partition, account_id)))
    return RootStatus(mfa_enabled=True, hardware=not has_virtual, **credentials)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


PENDING_VIRTUAL_REASON = "virtual MFA device created but never enabled"


def violation_reason(live: LiveState | None, now: datetime, pending_virtual: bool = False) -> str:
    """Why this user violates, for people: since when, and what is pending."""
    missing = PENDING_VIRTUAL_REASON if pending_virtual else "no MFA device"
    if live is not None and live.console_since is not None:
        age = max(0, (now - live.console_since).days)
        reason = f"console password since {live.console_since:%Y-%m-%d} ({_days(age)}), {missing}"
    else:
        reason = f"console password, {missing}"
    if live is not None and live.password_reset_required:
        reason += "; password never used yet (reset required at first sign-in)"
    return reason


def key_only_reason(keys: Iterable[AccessKeyUse], now: datetime, pending_virtual: bool = False) -> str:
    """Why a user with active access keys and no console password violates (MFA_SCOPE=all)."""
    parts = []
    for key in keys:
        if key.last_used is None:
            used = "never used"
        else:
            used = f"last used {key.last_used:%Y-%m-%d} ({_days(max(0, (now - key.last_used).days))} ago)"
        parts.append(f"access key {key.number} active, {used}")
    missing = PENDING_VIRTUAL_REASON if pending_virtual else "no MFA device"
    return "; ".join(parts) + f"; no console password, {missing}"


TAG_EXEMPT_REASON = "exempt by tag, set outside Slack"


def _exemption(arn: str, tags: Mapping[str, str], policy: AuditPolicy) -> tuple[str, datetime | None, bool] | None:
    """(reason, until, by tag?) of the exemption in force: one granted in Slack first, then the tag.

    Anyone with iam:TagUser can set the tag, so it is its own reason ("exempt by tag, set outside
    Slack"), never mistaken for one granted in Slack; `tag_exemptions=False` ignores it.
    """
    stored = policy.exemptions.get(arn)
    if stored is not None and (stored.until is None or stored.until > policy.now):
        who = f" by {stored.granted_by}" if stored.granted_by else ""
        until = f" until {stored.until:%Y-%m-%d}" if stored.until else ""
        return f"exempt{who}{until}: {stored.reason}", stored.until, False
    if policy.tag_exemptions and policy.tag_mfa_exempt in tags:
        value = tags[policy.tag_mfa_exempt].strip()
        return f"{TAG_EXEMPT_REASON} ({policy.tag_mfa_exempt}: {value or 'no reason given'})", None, True
    return None


def judge_user(
    account_id: str,
    user: IamUser,
    row: ReportRow | None,
    live: LiveState | None,
    virtual_devices: tuple[MfaDevice, ...],
    tags: Mapping[str, str],
    policy: AuditPolicy,
    listed_devices: tuple[MfaDevice, ...] | None = None,
    pending_virtual: bool = False,
) -> UserFinding | None:
    """The verdict on one user; None when the live check found the user deleted meanwhile.

    `listed_devices`: ListMFADevices of a user the report shows with MFA and no virtual device.
    `pending_virtual`: a virtual device of the user's name was created but never enabled.
    """
    if live is not None and not live.exists:
        return None
    if live is not None:
        console, devices, has_mfa = live.console_access, live.mfa_devices, bool(live.mfa_devices)
    elif row is not None:
        console = bool(row.password_enabled)
        if listed_devices is not None:
            devices, has_mfa = listed_devices, bool(listed_devices)
        else:
            devices, has_mfa = virtual_devices, row.mfa_active or bool(virtual_devices)
    else:
        raise ValueError(f"no report row and no live check for {user.arn}")
    keys = row.active_keys if row is not None and policy.scope == "all" else ()
    base = UserFinding(
        account_id=account_id,
        user_name=user.name,
        arn=user.arn,
        console_access=console,
        mfa_devices=tuple(devices),
        status="violation",
        console_since=live.console_since if live else None,
        checked_live=live is not None,
        tags=dict(tags),
    )
    if has_mfa:
        return replace(base, status="compliant" if console or keys else "no_console")
    if not console and not keys:
        return replace(base, status="no_console")
    if not console:
        base = replace(base, access_keys=keys)
    exemption = _exemption(user.arn, tags, policy)
    if exemption is not None:
        reason, until, by_tag = exemption
        return replace(base, status="exempt", reason=reason, exempt_until=until, exempt_by_tag=by_tag)
    since = live.console_since if live else None
    if policy.grace_period_days > 0 and since is not None:
        grace_until = since + timedelta(days=policy.grace_period_days)
        if grace_until > policy.now:
            reason = f"new console password: grace period ends {grace_until:%Y-%m-%d}"
            return replace(base, status="grace", reason=reason, grace_until=grace_until)
    if not console:
        return replace(base, reason=key_only_reason(keys, policy.now, pending_virtual))
    return replace(base, reason=violation_reason(live, policy.now, pending_virtual))


def judge_account(facts: AccountFacts, policy: AuditPolicy) -> AccountFindings:
    """Turn one account's facts into findings. An account with an error has no user verdicts."""
    users: list[UserFinding] = []
    if facts.error is None:
        for user in facts.users:
            finding = judge_user(
                facts.account_id,
                user,
                report_row_for(user, facts.report_rows),
                facts.live.get(user.arn),
                facts.virtual_devices.get(user.arn, ()),
                facts.tags.get(user.arn, {}),
                policy,
                listed_devices=facts.devices.get(user.arn),
                pending_virtual=user.name in facts.pending_virtual_names,
            )
            if finding is not None:
                users.append(finding)
    users.sort(key=lambda u: (STATUS_ORDER[u.status], u.user_name.lower(), u.arn))
    return AccountFindings(
        account_id=facts.account_id,
        alias=facts.alias,
        error=facts.error,
        report_generated_at=facts.report_generated_at,
        root=facts.root,
        users=users,
        fresh_through=facts.fresh_through,
        cloudtrail_error=facts.cloudtrail_error,
    )


STATUS_ORDER = {"violation": 0, "exempt": 1, "grace": 2, "compliant": 3, "no_console": 4}
