"""One digest run's shared parts: the fresh annotated audit and its history, and the claim leases kept alive.

`audit_run` runs the recorded audit once for every channel this run claimed (and the escalations);
`leases_kept` renews the run's claims while it works, so only a dead holder's claims expire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.escalation import Overdue, select_overdue
from bot.models import AuditResult
from bot.slack import SLACK_ERRORS, slack_error

if TYPE_CHECKING:
    from bot.edges import Edges

logger = logging.getLogger(__name__)


@contextmanager
def leases_kept(services: Edges, holder: str) -> Iterator[None]:
    """Renew every unposted claim of `holder` every third of the lease while the block runs (a heartbeat).

    A long audit or a slow Slack never lets a live holder's claim expire; only a dead one's does.
    """
    stop = threading.Event()
    every = services.lease.total_seconds() / 3

    def beat() -> None:
        while not stop.wait(every):
            try:
                services.store.renew_claims(holder, services.clock(), services.lease)
            except Exception:
                logger.exception("could not renew the claims of %s", holder)

    thread = threading.Thread(target=beat, name="claim-leases", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(every + 5)


@dataclass(frozen=True)
class AuditRun:
    """One fresh audit (annotated) and the history every channel's digest of this run is built from."""

    result: AuditResult
    first_seen: dict[str, datetime]  # open episodes by ARN
    overdue: list[Overdue]
    nudges: dict[str, int]  # DMs sent so far, for the overdue ARNs


def audit_run(services: Edges, now: datetime) -> AuditRun:
    """Run the fresh recorded audit, then read the open episodes and their first nudges."""
    result = services.annotated(services.fresh_audit())
    store = services.store
    episodes = store.open_episodes()
    violators = {u.arn for u in result.violations}
    overdue = select_overdue(
        [e for e in episodes if e.arn in violators], store.first_nudges(), now, services.config.escalate_after_days
    )
    nudges = store.nudge_counts([o.arn for o in overdue]) if overdue else {}
    return AuditRun(result, {e.arn: e.first_seen for e in episodes}, overdue, nudges)


def error_text(exc: BaseException) -> str:
    """A failure in a few words for the log and the audit trail (Slack's error code, else type and message)."""
    return slack_error(exc) if isinstance(exc, SLACK_ERRORS) else f"{type(exc).__name__}: {exc}"
