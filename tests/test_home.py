"""The App Home renderer, pure: plain data in, a home view within Slack's limits out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.buttons import RECHECK_ACTION, user_value
from bot.home import (
    HOME_AUDIT_ACTION,
    HOME_DIGEST_ACTION,
    MAX_OWN_ROWS,
    AccountLine,
    AdminHome,
    EndingExemption,
    HomePage,
    OwnUser,
    account_line,
    home_view,
)
from bot.home_tab import HomeTab
from bot.messages.digest import OverdueRow
from bot.models import MfaDevice, UserFinding
from bot.snapshot import account_from_json, account_to_json
from tests.slack_standin import view_problems
from tests.test_messages import account

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
LABEL = "acme (123456789012)"
ME = "U0BOB0001"


def finding(name: str, status: str = "violation", **extra: object) -> UserFinding:
    values: dict = {
        "account_id": ACCOUNT,
        "user_name": name,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
        "console_access": status != "no_console",
        "mfa_devices": (MfaDevice(f"arn:aws:iam::{ACCOUNT}:mfa/{name}", "virtual"),) if status == "compliant" else (),
        "status": status,
    }
    values.update(extra)
    return UserFinding(**values)


def page(own: tuple[OwnUser, ...] = (), admin: AdminHome | None = None, **extra: object) -> HomePage:
    values: dict = {
        "slack_user_id": ME,
        "now": NOW,
        "audited_at": NOW - timedelta(minutes=12),
        "own": own,
        "accounts": (LABEL,),
        "admin": admin,
    }
    values.update(extra)
    return HomePage(**values)


def rendered(home: HomePage) -> tuple[dict, str]:
    """The view as Slack gets it (slack_sdk validates it on the way), and all of its text."""
    view = home_view(home).to_dict()
    assert view_problems(view) == []
    return view, json.dumps(view, ensure_ascii=False)


def buttons(view: dict) -> list[dict]:
    found = []
    for block in view["blocks"]:
        found += [
            e for e in [block.get("accessory") or {}, *(block.get("elements") or [])] if e.get("type") == "button"
        ]
    return found


def sections(view: dict) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]


def test_a_person_sees_each_iam_user_with_status_account_days_and_a_recheck_button() -> None:
    own = (
        OwnUser(finding("bob-admin", "compliant"), LABEL),
        OwnUser(finding("bob", reason="console password, no MFA device"), LABEL, days_open=4, episode_open=True),
        OwnUser(finding("bob-ops", "grace", grace_until=NOW + timedelta(days=2), reason="new password"), LABEL),
    )
    view, text = rendered(page(own))

    rows = [s for s in sections(view) if s.startswith("*`")]
    assert rows[0] == f"*`bob`* in {LABEL}: :x: console password *without MFA* · open 4 days"
    assert rows[1].startswith("*`bob-ops`*") and "grace period until 2026-11-29: new password" in rows[1]
    assert rows[2] == f"*`bob-admin`* in {LABEL}: :white_check_mark: MFA on (virtual)"
    rechecks = [b for b in buttons(view) if b["action_id"] == RECHECK_ACTION]
    assert [b["value"] for b in rechecks] == [user_value(ACCOUNT, "bob")]  # the DM's button, on the open violation only
    assert "All set" not in text
    assert "id_credentials_mfa_enable.html" in text and "/mfa-check me" in text  # the set-up steps
    assert "From the audit of 2026-11-27 08:48 UTC (12 min ago)" in text
    assert HOME_AUDIT_ACTION not in text and "admins" not in text  # no admin part for a person


def test_all_set_when_nothing_is_left_to_do_including_a_violation_fixed_since_the_audit() -> None:
    own = (
        OwnUser(finding("bob", "compliant"), LABEL),
        OwnUser(finding("bob-old", "no_console"), LABEL),
        OwnUser(finding("bob-new"), LABEL, fixed_at=NOW - timedelta(minutes=3)),
    )
    view, text = rendered(page(own))

    assert ":white_check_mark: *All set.* All 3 of your IAM users have MFA or no console password." in text
    assert "fixed (checked live 2026-11-27 08:57 UTC)" in text
    assert not [b for b in buttons(view) if b["action_id"] == RECHECK_ACTION]


def test_nobody_mapped_is_told_how_to_get_linked() -> None:
    view, text = rendered(page(()))
    assert "I found no IAM user of yours in acme (123456789012)" in text
    assert f"`/mfa-check link NAME @you` (you are <@{ME}>)" in text
    assert not [b for b in buttons(view) if b.get("action_id") == RECHECK_ACTION]


def test_before_any_audit_the_home_says_so() -> None:
    _, text = rendered(page((), audited_at=None, accounts=()))
    assert "No audit has been recorded yet" in text and "From the audit" not in text


def admin_home(**extra: object) -> AdminHome:
    values: dict = {
        "accounts": (
            AccountLine(
                "210987654321", "prod (210987654321)", error="AccessDenied", failed_at=NOW - timedelta(minutes=12)
            ),
            AccountLine(
                ACCOUNT,
                LABEL,
                violations=3,
                exempt=1,
                grace=2,
                root="MFA OFF",
                root_off=True,
                audited_at=NOW - timedelta(minutes=12),
                report_at=NOW - timedelta(hours=3),
            ),
        ),
        "last_audit_at": NOW - timedelta(minutes=12),
        "digest_channel": "C0DIGEST1",
        "digest_at": NOW - timedelta(days=1),
        "new": (("erin", LABEL),),
        "fixed": (("alice", LABEL), ("carol", LABEL)),
        "overdue": (OverdueRow(f"arn:aws:iam::{ACCOUNT}:user/ivan", ACCOUNT, LABEL, "ivan", "U0IVAN001", 9, 3),),
        "overdue_after_days": 7,
        "ending": (
            EndingExemption(
                "heidi", LABEL, NOW + timedelta(days=2), "break-glass <!channel> & co \u202eevil", "U0ADMIN01"
            ),
        ),
    }
    values.update(extra)
    return AdminHome(**values)


def test_an_admin_sees_accounts_changes_overdue_exemptions_freshness_and_the_buttons() -> None:
    view, text = rendered(page((), admin=admin_home()))

    actions = {b["action_id"]: b for b in buttons(view)}
    assert actions[HOME_AUDIT_ACTION]["text"]["text"] == "Run audit now"
    assert actions[HOME_DIGEST_ACTION]["text"]["text"] == "Post digest now" and "confirm" in actions[HOME_DIGEST_ACTION]
    body = "\n".join(sections(view))
    assert "Last audit: 2026-11-27 08:48 UTC (12 min ago)." in text
    assert (
        f"• *{LABEL}* · 3 violations · 1 exempt · 2 in grace · :warning: *root MFA OFF* · credential report 3 h ago"
        in body
    )
    assert (
        "• :rotating_light: *prod (210987654321)*: the latest audit at 2026-11-27 08:48 UTC *failed*: AccessDenied"
        in body
    )
    assert body.index("prod (210987654321)") < body.index(f"*{LABEL}*")  # failures first
    assert "*Since the last digest* (2026-11-26 09:00 UTC, 1 day ago): 1 new, 2 fixed." in body
    assert f"*New:* `erin` ({LABEL})" in body and f"*Fixed:* `alice` ({LABEL}), `carol` ({LABEL})" in body
    assert "Overdue (1)" in body and "<@U0IVAN001> · `ivan` in" in body and "9 days since the first nudge" in body
    assert "`heidi` in acme (123456789012) · ends 2026-11-29 09:00 UTC (in 2 days)" in body
    assert "break-glass &lt;!channel&gt; &amp; co evil" in body and "<!channel>" not in body  # escaped, no bidi
    assert all(b["text"].get("verbatim") for b in view["blocks"] if b["type"] == "section")


def test_an_admin_view_without_digest_channel_overdue_or_exemptions_says_none() -> None:
    _, text = rendered(page((), admin=admin_home(digest_channel=None, overdue=(), ending=())))
    assert "DIGEST_CHANNEL is not set" in text
    assert "*:alarm_clock: Overdue:* none." in text and "Exemptions ending within 7 days:* none." in text


def test_a_thousand_violators_everywhere_still_fit_slacks_limits() -> None:
    names = [f"user-{i:04d}-{'x' * 40}" for i in range(1000)]
    own = tuple(
        OwnUser(finding(n, reason="console password, no MFA device"), LABEL, days_open=i, episode_open=True)
        for i, n in enumerate(names)
    )
    accounts = tuple(
        AccountLine(f"{i:012d}", f"account-{i:03d}-{'y' * 40} ({i:012d})", violations=5, audited_at=NOW)
        for i in range(300)
    )
    admin = admin_home(
        accounts=accounts,
        new=tuple((n, LABEL) for n in names),
        fixed=tuple((n, LABEL) for n in names),
        overdue=tuple(OverdueRow(f"arn:{n}", ACCOUNT, LABEL, n, "U0BOB0001", 30, 4) for n in names),
        ending=tuple(EndingExemption(n, LABEL, NOW + timedelta(days=1), "r" * 400, "U0ADMIN01") for n in names),
    )

    view, text = rendered(page(own, admin=admin, notice="x" * 5000))

    assert len(view["blocks"]) <= 100
    assert all(len(s) <= 3000 for s in sections(view))
    assert len([b for b in buttons(view) if b["action_id"] == RECHECK_ACTION]) == MAX_OWN_ROWS
    assert f"…and {1000 - MAX_OWN_ROWS} more IAM users ({1000 - MAX_OWN_ROWS} without MFA)" in text
    assert "*Accounts (300)*" in text and "more (`/mfa-check` audits them all)" in text
    assert "1000 new, 1000 fixed" in text and "more_" in text
    assert "Overdue (1000)" in text and "more (the digest lists them all)" in text
    assert "Exemptions ending within 7 days (1000)" in text
    assert len(text) < 150_000  # the whole view stays a modest payload


def test_an_account_whose_cloudtrail_was_unreadable_says_so_on_its_admin_line() -> None:
    """Freshness is never silent: the kept findings carry the CloudTrail error to the Home."""

    kept = account_from_json(account_to_json(account([], cloudtrail_error="AccessDenied", fresh_through=None)))
    line = account_line(HomeTab._account_line(kept, NOW, None), NOW)
    assert "CloudTrail not readable (AccessDenied)" in line
    assert "changes seen through" not in line
    fresh = account([], fresh_through=NOW - timedelta(minutes=5))
    assert "CloudTrail not readable" not in account_line(HomeTab._account_line(fresh, NOW, None), NOW)
