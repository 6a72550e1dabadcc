"""The Security Hub edge: import one account's ASFF findings with BatchImportFindings.

Findings go to the audited account's own Security Hub (its `default` product), in the region of
the bot's session, through the same credentials the audit used for that account. A failed import
is one line for that account; it never changes the audit's verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot import aws

logger = logging.getLogger(__name__)

BATCH_SIZE = 100  # BatchImportFindings takes at most 100 findings per call


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
