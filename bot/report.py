"""Pure renderers of an AuditResult for the terminal: a readable table and the contract's JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.models import AccountFindings, AuditResult, RootStatus, UserFinding

EXIT_CLEAN, EXIT_VIOLATIONS, EXIT_ERROR = 0, 1, 2


def exit_code(result: AuditResult) -> int:
    """0 no violation, 1 violations found, 2 any account could not be read."""
    if result.errors or not result.accounts:
        return EXIT_ERROR
    return EXIT_VIOLATIONS if result.violations else EXIT_CLEAN


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


ROOT_NO_CREDENTIALS = "no credentials (no password, no access keys): cannot sign in"


def root_text(root: RootStatus) -> str:
    """Root as people read it: `no credentials…`, `MFA on (hardware)`, `MFA on (virtual)`, `MFA OFF`,
    or `unknown`, then `no password` or `ACCESS KEYS PRESENT` when the summary says so."""
    if root.no_credentials:
        return ROOT_NO_CREDENTIALS
    if root.mfa_enabled is None:
        text = "MFA unknown (could not be read)"
    elif not root.mfa_enabled:
        text = "MFA OFF"
    else:
        text = f"MFA on ({'hardware' if root.hardware else 'virtual'})"
    if root.password_present is False:
        text += ", no password"
    if root.access_keys_present:
        text += ", ROOT ACCESS KEYS PRESENT (delete them)"
    return text


def _clock(value: datetime) -> str:
    return f"{value:%H:%M} UTC"


def freshness_text(account: AccountFindings) -> str | None:
    """How fresh one account's findings are: `fresh through 07:30 UTC (report of 06:12 UTC + CloudTrail)`,
    or `report of 06:12 UTC; CloudTrail not readable (AccessDenied)`. None for an unread account."""
    if account.error:
        return None
    generated = account.report_generated_at
    report = f"report of {_clock(generated)}" if generated else "report time unknown"
    if account.cloudtrail_error:
        return f"{report}; CloudTrail not readable ({account.cloudtrail_error})"
    if account.fresh_through is None:
        return report
    return f"fresh through {_clock(account.fresh_through)} ({report} + CloudTrail)"


def days_without_mfa(user: UserFinding, now: datetime) -> int | None:
    """Whole days the console password has existed without MFA (None when unknown)."""
    if user.console_since is None:
        return None
    return max(0, (now - user.console_since).days)


def user_json(user: UserFinding) -> dict[str, Any]:
    """One user in the contract's JSON shape."""
    return {
        "user_name": user.user_name,
        "arn": user.arn,
        "console_access": user.console_access,
        "mfa_devices": [{"serial": d.serial, "type": d.type} for d in user.mfa_devices],
        "status": user.status,
        "reason": user.reason,
        "slack_user_id": user.slack_user_id,
    }


def account_json(account: AccountFindings) -> dict[str, Any]:
    """One account in the contract's JSON shape."""
    return {
        "account_id": account.account_id,
        "alias": account.alias,
        "error": account.error,
        "report_generated_at": _iso(account.report_generated_at),
        "fresh_through": _iso(account.fresh_through),
        "cloudtrail_error": account.cloudtrail_error,
        "root": {
            "mfa_enabled": account.root.mfa_enabled,
            "hardware": account.root.hardware,
            "password_present": account.root.password_present,
            "access_keys_present": account.root.access_keys_present,
        },
        "users": [user_json(u) for u in account.users],
    }


def to_json(result: AuditResult) -> str:
    """The `check --json` document, exactly the contract's schema."""
    document = {
        "generated_at": _iso(result.generated_at),
        "accounts": [account_json(a) for a in result.accounts],
        "summary": result.summary(),
    }
    return json.dumps(document, indent=2)


def _table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def account_text(account: AccountFindings, now: datetime) -> list[str]:
    """The table for one account: violations first, then exempt, grace, counts and root."""
    lines = [f"Account {account.label}"]
    if account.error:
        lines.append(f"  ERROR: {account.error}")
        lines.append("  This account was NOT audited: its result is unknown, not clean.")
        return lines
    if account.report_generated_at:
        lines.append(f"  credential report generated {account.report_generated_at:%Y-%m-%d %H:%M} UTC")
    lines.append(f"  findings: {freshness_text(account)}")
    lines.append(f"  root user: {'WARNING: ' if account.root.needs_attention else ''}{root_text(account.root)}")
    violations = account.by_status("violation")
    if violations:
        lines.append(f"  VIOLATIONS ({len(violations)}): {violation_title(violations)}")
        rows = [("USER", "WITHOUT MFA", "REASON")]
        for user in violations:
            days = days_without_mfa(user, now)
            rows.append((user.user_name, "?" if days is None else f"{days}d", user.reason or ""))
        lines.extend(_table(rows, indent="    "))
    else:
        lines.append("  no violations")
    for status, title in (("exempt", "EXEMPT"), ("grace", "IN GRACE PERIOD")):
        users = account.by_status(status)  # type: ignore[arg-type]
        if users:
            lines.append(f"  {title} ({len(users)}): {ACCEPTED_RISK}")
            lines.extend(_table([(u.user_name, u.reason or "") for u in users], indent="    "))
    compliant = account.by_status("compliant")
    lines.append(
        f"  compliant: {len(compliant)}{devices_by_type(compliant)}, "
        f"no console password: {len(account.by_status('no_console'))}"
    )
    return lines


def devices_by_type(users: list[UserFinding]) -> str:
    """` (MFA: 1 virtual, 1 fido, 1 hardware)`: how many users have each device type ('' for none)."""
    counts = {kind: sum(1 for u in users if any(d.type == kind for d in u.mfa_devices)) for kind in DEVICE_TYPES}
    shown = [f"{n} {kind}" for kind, n in counts.items() if n]
    return f" (MFA: {', '.join(shown)})" if shown else ""


DEVICE_TYPES = ("virtual", "fido", "hardware")


ACCEPTED_RISK = "accepted risk, not compliant"


def violation_title(users: list[UserFinding]) -> str:
    """What the violations are: console passwords, and (MFA_SCOPE=all) access keys, without MFA."""
    key_only = any(not u.console_access for u in users)
    return "console password or access key, no MFA" if key_only else "console password, no MFA"


def to_text(result: AuditResult) -> str:
    """The human-readable `check` output."""
    lines = [f"MFA audit at {result.generated_at:%Y-%m-%d %H:%M} UTC"]
    for account in result.accounts:
        lines.append("")
        lines.extend(account_text(account, result.generated_at))
    summary = result.summary()
    lines.append("")
    lines.append(
        "Summary: "
        + ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in summary.items())
        + (f"; {len(result.errors)} account(s) FAILED" if result.errors else "")
    )
    if summary["exempt"] or summary["grace"]:
        lines.append("Exempt and grace are accepted risk: they are not counted as compliant.")
    return "\n".join(lines)
