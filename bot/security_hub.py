"""The Security Hub edge: import one account's ASFF findings with BatchImportFindings, and close the
findings of users that are gone (GetFindings).

Findings go to the audited account's own Security Hub (its `default` product), in the region of
the bot's session, through the same credentials the audit used for that account. A failed import
is one line for that account; it never changes the audit's verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot import aws, formats

logger = logging.getLogger(__name__)

BATCH_SIZE = 100  # BatchImportFindings takes at most 100 findings per call


def active_findings(securityhub: Any, account_id: str) -> list[dict[str, Any]]:
    """This bot's ACTIVE findings in the account's Security Hub (every GetFindings page)."""
    filters = {
        "GeneratorId": [{"Value": formats.GENERATOR_ID, "Comparison": "EQUALS"}],
        "AwsAccountId": [{"Value": account_id, "Comparison": "EQUALS"}],
        "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}],
    }
    found = []
    for page in securityhub.get_paginator("get_findings").paginate(Filters=filters):
        found.extend(page.get("Findings", []))
    # The filter again here: the service applies it, a stand-in may not.
    return [
        f
        for f in found
        if f.get("GeneratorId") == formats.GENERATOR_ID
        and f.get("AwsAccountId") == account_id
        and f.get("RecordState", "ACTIVE") == "ACTIVE"
    ]


def with_vanished(
    securityhub: Any, account_id: str, findings: Sequence[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """`findings`, plus an archived one for each ACTIVE finding of a user the audit no longer saw (deleted)."""
    current = {f["Id"] for f in findings}
    vanished = [f for f in active_findings(securityhub, account_id) if f["Id"] not in current]
    return [*findings, *(formats.vanished_finding(f, now) for f in vanished)]


def import_findings(securityhub: Any, findings: Sequence[dict[str, Any]]) -> str | None:
    """Import `findings` 100 per call; None when all were imported, else one line saying what failed."""
    rejected = 0
    first_reason = ""
    for start in range(0, len(findings), BATCH_SIZE):
        batch = list(findings[start : start + BATCH_SIZE])
        try:
            response = securityhub.batch_import_findings(Findings=batch)
        except (ClientError, BotoCoreError) as exc:
            done = f", {start} of {len(findings)} imported" if start else ""
            return f"Security Hub import failed ({aws.describe_error(exc)}){done}"
        rejected += int(response.get("FailedCount", 0))
        for failure in response.get("FailedFindings", [])[:1]:
            first_reason = first_reason or f"{failure.get('ErrorCode')}: {failure.get('ErrorMessage')}"
    if rejected:
        return f"Security Hub rejected {rejected} of {len(findings)} findings ({first_reason})"
    return None


def sync_findings(securityhub: Any, account_id: str, findings: Sequence[dict[str, Any]], now: datetime) -> str | None:
    """Import the audit's findings and close those of users that are gone; None when all went in, else one line."""
    unclosed = None
    try:
        findings = with_vanished(securityhub, account_id, findings, now)
    except (ClientError, BotoCoreError) as exc:
        unclosed = f"deleted users' findings left open ({aws.describe_error(exc)})"
    problems = [p for p in (import_findings(securityhub, findings), unclosed) if p]
    return "; ".join(problems) or None
