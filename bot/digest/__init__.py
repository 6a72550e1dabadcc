"""The digest: a fresh recorded audit posted to DIGEST_CHANNEL, exactly once per channel and period.

Period keys: a scheduled digest's key is the date, in DIGEST_TIMEZONE, of the cron fire time it
stands for (`2026-11-27`), so every process due at that time, or catching up on it after a
restart, competes for the same `Store.claim_digest` and exactly one posts. A manual digest
(`python -m bot digest`, `/mfa-check digest`) gets its own key (`manual-20261127T093005Z`): it
never suppresses the scheduled one.

Claims are leases (CLAIM_LEASE_SECONDS): the holder renews its claims while it works
(`leases_kept`) and checks it still holds one right before posting; posting ends the lease. A
process that dies (SIGKILL, a dyno restart) between claiming and posting leaves its claims to
expire, and the scheduler's periodic check in any surviving or new process (`resume_expired`)
takes them over (decided by the database) and posts them: nothing is silently skipped. One
window stays: a process that dies after Slack accepted a message but before the store recorded
it leaves that message to be posted again by the taker.

Routing: DIGEST_CHANNEL gets every account. Each channel of ACCOUNT_CHANNELS also gets a digest
of its own account(s) (violators with Nudge buttons, root MFA, the error when the account could
not be audited, a "Nudge all" limited to those accounts), from the same audit run, under its own
claim of (channel, period). An account channel that is DIGEST_CHANNEL itself gets nothing more.

Overdue: open violations still open ESCALATE_AFTER_DAYS after their first nudge
(`bot.escalation`) have their own section; ESCALATION_CHANNEL, when set, is told about each
violation episode once (`escalate`).

Rows are updated in place later (nudged, fixed): the view the digest was rendered from is kept
in the audit trail (action `digest_posted`, its JSON in `detail`) and each row's message ts in
`Store.set_digest_rows`; `refresh_rows` re-renders the messages holding some ARNs from that
view plus the store's current state and chat.updates them, in DIGEST_CHANNEL and in the account
channels alike; the overdue section's lines too (nudges so far, fixed), in whichever message
holds that section. Only the latest digest of each channel is kept up to date.

Modules: `view` (pure: period keys, routes, the view and its JSON), `run` (the run's audit and
claim leases), `post` (claims, posting, takeover), `escalate` (ESCALATION_CHANNEL), `rows`
(rows updated in place). The names below are the package's public face.
"""

from bot.digest.escalate import escalate
from bot.digest.post import (
    ALREADY,
    LOST,
    DigestOutcome,
    channel_view,
    post_channel,
    post_digest,
    post_manual_digest,
    post_scheduled_digest,
    resume_expired,
)
from bot.digest.rows import load_view, refresh_rows, row_states
from bot.digest.run import AuditRun, audit_run, leases_kept
from bot.digest.view import (
    NOT_AUDITED,
    SNAPSHOT_ACTION,
    SNAPSHOT_VERSION,
    account_routes,
    build_view,
    digest_channels,
    manual_period_key,
    overdue_rows,
    scheduled_period_key,
    scoped_changes,
    scoped_result,
    view_from_json,
    view_to_json,
)

__all__ = [
    "ALREADY",
    "LOST",
    "NOT_AUDITED",
    "SNAPSHOT_ACTION",
    "SNAPSHOT_VERSION",
    "AuditRun",
    "DigestOutcome",
    "account_routes",
    "audit_run",
    "build_view",
    "channel_view",
    "digest_channels",
    "escalate",
    "leases_kept",
    "load_view",
    "manual_period_key",
    "overdue_rows",
    "post_channel",
    "post_digest",
    "post_manual_digest",
    "post_scheduled_digest",
    "refresh_rows",
    "resume_expired",
    "row_states",
    "scheduled_period_key",
    "scoped_changes",
    "scoped_result",
    "view_from_json",
    "view_to_json",
]
