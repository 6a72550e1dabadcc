"""Pure renderers: findings in, Block Kit (slack_sdk.models.blocks) and plain text out. No I/O.

One module per surface; import each name from the module that owns it:
- `text`: shared string helpers (escape, clean, truncate, code, mention, days open) and Slack's limits;
- `blocks`: the shared Block Kit pieces (`Message`, `mrkdwn`, the one line packer, one-line answers);
- `remediation`: the set-up steps, read from the data file `remediation.toml`;
- `audit`: `/mfa-check` replies (the audit table and its CSV, one user's detail, usage);
- `personal`: `/mfa-check me`, the nudge DM and the DM after a re-check;
- `nudging`: the answers to admins about nudges;
- `digest`: the digest (its view dataclasses, overdue section, escalations);
- `alerts`: the real-time alerts.

Button values (action ids, encodings) live in `bot.buttons`.
"""
