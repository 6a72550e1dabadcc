"""Block Kit renderers: pure functions, tested on plain data (no fakes)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.models.blocks import HeaderBlock, SectionBlock

from bot.buttons import UserRef, parse_nudge, parse_recheck, user_value
from bot.messages.audit import (
    COUNTED,
    LISTED,
    account_title,
    audit_csv,
    audit_message,
    usage_message,
    user_detail_message,
)
from bot.messages.blocks import Message
from bot.messages.digest import DigestRow, digest_row_block
from bot.messages.personal import (
    cli_steps,
    dm_after_recheck,
    not_found_message,
    nudge_dm,
    personal_message,
    recheck_thanks,
)
from bot.messages.remediation import signin_url
from bot.messages.text import BIDI_CONTROLS
from bot.models import AccountFindings, AuditResult, MfaDevice, RootStatus, UserFinding

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ACCOUNT = "123456789012"


def user(name: str, status: str = "violation", account: str = ACCOUNT, **kw: object) -> UserFinding:
    defaults: dict[str, object] = {
        "console_access": status != "no_console",
        "mfa_devices": (MfaDevice(f"arn:aws:iam::{account}:mfa/{name}", "virtual"),) if status == "compliant" else (),
        "reason": {
            "violation": "console password, no MFA device",
            "exempt": "tag mfa-exempt: vault",
            "grace": "new",
        }.get(status),
        "console_since": NOW - timedelta(days=12) if status in {"violation", "grace"} else None,
    }
    defaults.update(kw)
    return UserFinding(
        account_id=account,
        user_name=name,
        arn=f"arn:aws:iam::{account}:user/{name}",
        status=status,  # type: ignore[arg-type]
        **defaults,  # type: ignore[arg-type]
    )


def account(
    users: list[UserFinding], account_id: str = ACCOUNT, alias: str | None = "acme", **kw: object
) -> AccountFindings:
    base: dict[str, object] = {
        "error": None,
        "report_generated_at": NOW - timedelta(hours=1),
        "root": RootStatus(mfa_enabled=True, hardware=False),
    }
    base.update(kw)
    return AccountFindings(account_id=account_id, alias=alias, users=users, **base)  # type: ignore[arg-type]


def result(*accounts: AccountFindings) -> AuditResult:
    return AuditResult(generated_at=NOW, accounts=list(accounts))


def check_limits(message: Message) -> None:
    """Slack's limits, checked with slack_sdk's own validators."""
    assert 0 < len(message.blocks) <= 50
    for block in message.blocks:
        block.validate_json()
        if isinstance(block, SectionBlock) and block.text is not None:
            assert len(block.text.text) <= 3000
    assert len(message.text) <= 3000
    json.dumps(message.blocks_json())


def all_text(message: Message) -> str:
    return json.dumps(message.blocks_json(), ensure_ascii=False) + message.text


def header_counts(message: Message) -> list[dict[str, int]]:
    """The status counts each account's summary block shows."""
    counts = []
    for block in message.blocks:
        if isinstance(block, SectionBlock) and block.fields:
            shown = {}
            for status, title in COUNTED:
                for f in block.fields:
                    m = re.fullmatch(rf"\*{re.escape(title)}:\* (\d+)", f.text)
                    if m:
                        shown[status] = int(m.group(1))
            counts.append(shown)
    return counts


def rows_in_message(message: Message) -> dict[str, set[str]]:
    """User names listed per status in the message's list sections."""
    rows: dict[str, set[str]] = {"violation": set(), "exempt": set(), "grace": set()}
    current = None
    for block in message.blocks:
        if not isinstance(block, SectionBlock) or block.text is None:
            continue
        for line in block.text.text.split("\n"):
            for status, title in LISTED:
                if line.startswith(f"*{title} ("):
                    current = status
            m = re.match(r"• `([^`]+)`", line)
            if m and current:
                rows[current].add(m.group(1))
    return rows


def more_counts(message: Message) -> int:
    return sum(int(n) for n in re.findall(r"…and (\d+) more \(", all_text(message)))


def test_small_audit_fits_without_a_file() -> None:
    users = [
        user("bob", slack_user_id="U0BOB0001"),
        user("erin"),
        user("heidi", "exempt"),
        user("gina", "grace", grace_until=NOW + timedelta(days=2)),
        user("alice", "compliant"),
        user("frank", "no_console"),
    ]
    message = audit_message(result(account(users)))
    check_limits(message)
    assert message.file is None
    assert isinstance(message.blocks[0], HeaderBlock)
    assert "acme (123456789012)" in message.blocks[0].text.text
    assert header_counts(message) == [{"violation": 2, "exempt": 1, "grace": 1, "compliant": 1, "no_console": 1}]
    text = all_text(message)
    assert "<@U0BOB0001>" in text
    assert "no Slack person found" in text  # erin
    assert "open 12 days" in text
    assert "MFA on (virtual)" in text
    assert "grace ends 2025-03-03" in text
    assert rows_in_message(message) == {"violation": {"bob", "erin"}, "exempt": {"heidi"}, "grace": {"gina"}}
    assert message.text == "MFA audit of acme (123456789012): 2 violations, 1 exempt, 1 in grace period"


def test_violations_come_before_exempt_and_grace() -> None:
    message = audit_message(result(account([user("z", "grace"), user("y", "exempt"), user("x")])))
    text = all_text(message)
    assert text.index("Violations") < text.index("Exempt (") < text.index("In grace period (")


def test_root_mfa_off_and_hardware() -> None:
    off = audit_message(result(account([], root=RootStatus(mfa_enabled=False))))
    assert ":warning: *Root user: MFA OFF*" in all_text(off)
    hw = audit_message(result(account([], root=RootStatus(mfa_enabled=True, hardware=True))))
    assert "MFA on (hardware)" in all_text(hw)


def test_an_account_with_an_error_is_never_zero_violations() -> None:
    failed = account([], error="AccessDenied: iam:GenerateCredentialReport", root=RootStatus())
    message = audit_message(result(failed))
    check_limits(message)
    text = all_text(message)
    assert "could not be audited" in text and "iam:GenerateCredentialReport" in text
    assert "unknown" in text
    assert "Violations" not in text and ": 0" not in text and "0 violations" not in json.dumps(message.blocks_json())
    assert "could NOT be completed" in message.text


def test_user_supplied_text_is_escaped() -> None:
    evil = user("mallory", reason="<!channel> & <https://evil|click> <@U0ADMIN01>", slack_user_id=None)
    text = all_text(audit_message(result(account([evil], alias="a<b>"))))
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U0ADMIN01>" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in text


@pytest.mark.parametrize("n", [300, 1000])
def test_many_violations_stay_within_limits_and_are_counted_exactly(n: int) -> None:
    users = [
        user(f"user-{i:04d}", reason="console password since 2025-01-01 (59 days), no MFA device") for i in range(n)
    ]
    users += [user(f"exempt-{i:03d}", "exempt", reason="x" * 400) for i in range(30)]
    message = audit_message(result(account(users)))
    check_limits(message)
    (counts,) = header_counts(message)
    assert counts["violation"] == n and counts["exempt"] == 30
    shown = rows_in_message(message)
    assert message.file is not None
    rows = list(csv.DictReader(io.StringIO(message.file.content)))
    assert message.file.rows == len(rows) == n + 30
    in_file = {status: {r["user_name"] for r in rows if r["status"] == status} for status in ("violation", "exempt")}
    # every count in the header equals the distinct rows delivered across the message and the file
    for status in ("violation", "exempt"):
        assert len(shown[status] | in_file[status]) == counts[status]
        assert shown[status] <= in_file[status]
    # the message says exactly how many it left out
    assert len(shown["violation"]) + len(shown["exempt"]) + more_counts(message) == n + 30
    assert len(shown["violation"]) > 0


def test_many_accounts_fit_and_none_is_dropped_silently() -> None:
    accounts = [
        account(
            [user(f"u{i}-{j}") for j in range(3)] + [user(f"e{i}", "exempt")], account_id=f"{i:012d}", alias=f"acct{i}"
        )
        for i in range(25)
    ]
    accounts.append(account([], account_id="999999999999", alias="broken", error="AccessDenied", root=RootStatus()))
    message = audit_message(result(*accounts))
    check_limits(message)
    assert message.file is not None
    rows = list(csv.DictReader(io.StringIO(message.file.content)))
    assert sum(1 for r in rows if r["status"] == "violation") == 75
    assert any(r["status"] == "error" and r["account_id"] == "999999999999" for r in rows)
    assert re.search(r"…and \d+ more accounts", all_text(message))


def test_csv_cells_cannot_become_formulas() -> None:
    message = audit_message(result(account([user(f"u{i}") for i in range(60)] + [user("=cmd", reason="+1")])))
    assert message.file is not None
    assert "'=cmd" in message.file.content and "'+1" in message.file.content


def test_violation_rows_with_buttons_for_the_digest() -> None:
    bob = user("bob", slack_user_id="U0BOB0001")
    block = digest_row_block(DigestRow(bob.arn, ACCOUNT, "acme", "bob", bob.slack_user_id, 3))
    block.validate_json()
    assert block.accessory.action_id == "nudge"
    assert parse_nudge(block.accessory.value) == UserRef(ACCOUNT, "bob")


def test_personal_message_has_console_and_cli_steps() -> None:
    bob = user("bob")
    message = personal_message([bob, user("bob2", "compliant")], result(account([bob])))
    check_limits(message)
    text = all_text(message)
    assert "aws iam create-virtual-mfa-device --virtual-mfa-device-name bob" in text
    assert f"--serial-number arn:aws:iam::{ACCOUNT}:mfa/bob" in text
    assert "--authentication-code1" in text and "--authentication-code2" in text
    assert "aws iam list-mfa-devices --user-name bob" in text
    assert "Security credentials" in text and "https://acme.signin.aws.amazon.com/console" in text
    assert "MFA on" in text  # bob2


def test_govcloud_steps_use_the_partition() -> None:
    gov = UserFinding(
        account_id=ACCOUNT,
        user_name="g",
        arn=f"arn:aws-us-gov:iam::{ACCOUNT}:user/g",
        console_access=True,
        mfa_devices=(),
        status="violation",
    )
    assert f"arn:aws-us-gov:iam::{ACCOUNT}:mfa/g" in cli_steps(gov)


def test_not_found_explains_linking() -> None:
    text = all_text(not_found_message(result(account([])), "U0PLEB001"))
    assert "/mfa-check link NAME @you" in text and "<@U0PLEB001>" in text


def test_user_detail() -> None:
    bob = user("bob", slack_user_id="U0BOB0001")
    text = all_text(user_detail_message([bob], result(account([bob]))))
    assert "without MFA" in text and "<@U0BOB0001>" in text and bob.arn in text


def test_usage_for_non_admins_lists_only_me_and_help() -> None:
    text = all_text(usage_message(is_admin=False))
    assert "/mfa-check me" in text and "/mfa-check help" in text
    assert "exempt" not in text and "link" not in text
    admin = all_text(usage_message(is_admin=True, error="that is not an IAM user name"))
    assert "exempt NAME DAYSd REASON" in admin and "that is not an IAM user name" in admin


# -- issue 10, item 9: escaping ---------------------------------------------------------------------

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def rendered(message: Message) -> str:
    """Every text Slack shows of a message (button values are data handed back to the bot, not shown)."""

    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            return [t for k, v in node.items() if k not in {"value", "action_id", "block_id"} for t in walk(v)]
        if isinstance(node, list):
            return [t for item in node for t in walk(item)]
        return [node] if isinstance(node, str) else []

    return "\n".join([message.text, *walk(message.blocks_json())])


def test_iam_names_are_escaped_inside_the_cli_code_block() -> None:
    evil = user("x`<!channel>`&<@U0ADMIN01>")
    steps = cli_steps(evil)
    assert steps.startswith("```") and steps.endswith("```") and steps.count("`") == 6  # no way out of the block
    assert "<!channel>" not in steps and "<@U0ADMIN01>" not in steps and "&lt;!channel&gt;" in steps
    dm = rendered(nudge_dm("U0BOB0001", [evil], {}))
    assert "<!channel>" not in dm and "<@U0ADMIN01>" not in dm


def test_button_values_must_name_an_account_id_and_an_iam_user() -> None:
    assert parse_recheck("123456789012:bob") == UserRef("123456789012", "bob")  # as posted before the JSON values
    assert parse_recheck(user_value("123456789012", "bob")) == UserRef("123456789012", "bob")
    for forged in ("<!here>:bob", "123456789012:<!channel>", "12345:bob", "123456789012:", "123456789012:a b"):
        assert parse_recheck(forged) is None and parse_nudge(forged) is None


def test_bidi_controls_are_removed_from_everything_rendered() -> None:
    evil = user(f"adm{BIDI}in", reason=f"ok{BIDI}", slack_user_id=None)
    exempt = user(f"ex{BIDI}", "exempt", reason=f"tag mfa-exempt: {BIDI}vault")
    audit = result(account([evil, exempt], alias=f"ac{BIDI}me"))
    texts = [
        all_text(audit_message(audit)),
        audit_csv(audit),
        all_text(personal_message([evil, exempt], audit)),
        all_text(user_detail_message([evil, exempt], audit)),
        all_text(nudge_dm("U0BOB0001", [evil], {ACCOUNT: f"a{BIDI}"})),
        account_title(audit.accounts[0]),
    ]
    for text in texts:
        assert not BIDI_CONTROLS.search(text), text


def test_urls_in_tag_values_are_not_turned_into_links() -> None:
    exempt = user("ops", "exempt", reason="tag mfa-exempt: see https://evil.example/login and www.evil.example")
    for message in (
        audit_message(result(account([exempt]))),
        user_detail_message([exempt], result(account([exempt]))),
        personal_message([exempt], result(account([exempt]))),
    ):
        texts = [b["text"] for b in message.blocks_json() if b.get("text", {}).get("type") == "mrkdwn"]
        texts += [f for b in message.blocks_json() for f in b.get("fields", [])]
        shown = [t for t in texts if "evil.example" in t["text"]]
        assert shown and all(t.get("verbatim") is True for t in shown)  # Slack links nothing in verbatim text
        assert all("<http" not in t["text"] for t in shown)


def test_the_bots_own_sign_in_url_stays_a_link_and_a_bad_alias_makes_none() -> None:
    dm = all_text(nudge_dm("U0BOB0001", [user("bob")], {ACCOUNT: "acme"}))
    assert "<https://acme.signin.aws.amazon.com/console>" in dm
    assert signin_url(ACCOUNT, "evil.com/x|y>") == f"https://{ACCOUNT}.signin.aws.amazon.com/console"
    assert signin_url("<!here>", None) is None


def test_csv_guard_covers_a_leading_tab_and_carriage_return() -> None:
    audit = result(account([user("u", reason="\t=cmd"), user("v", reason="\r+1"), user(f"w{BIDI}")]))
    content = audit_csv(audit)
    rows = list(csv.DictReader(io.StringIO(content)))
    reasons = {r["user_name"]: r["reason"] for r in rows}
    assert reasons["u"] == "'\t=cmd" and reasons["v"] == "'\r+1"
    assert "w" in reasons  # bidi controls removed from the file too


# --- root without credentials, freshness, accepted risk -----------------------------------------

NO_CREDENTIALS = RootStatus(mfa_enabled=False, hardware=None, password_present=False, access_keys_present=False)


def test_a_root_without_credentials_is_a_neutral_pass_never_a_warning() -> None:
    message = audit_message(result(account([], root=NO_CREDENTIALS)))
    text = all_text(message)
    assert "Root user: no credentials (no password, no access keys): cannot sign in" in text
    assert ":warning:" not in text and "MFA OFF" not in text


def test_root_password_without_mfa_warns_and_root_keys_are_said() -> None:
    off = RootStatus(mfa_enabled=False, password_present=True, access_keys_present=False)
    assert ":warning: *Root user: MFA OFF*" in all_text(audit_message(result(account([], root=off))))
    keys = RootStatus(mfa_enabled=True, hardware=True, password_present=True, access_keys_present=True)
    text = all_text(audit_message(result(account([], root=keys))))
    assert ":warning: *Root user: MFA on (hardware), ROOT ACCESS KEYS PRESENT (delete them)*" in text


def test_the_context_says_how_fresh_the_findings_are() -> None:
    generated = datetime(2025, 3, 1, 6, 12, tzinfo=UTC)
    fresh = account([], report_generated_at=generated, fresh_through=datetime(2025, 3, 1, 8, 59, tzinfo=UTC))
    assert "fresh through 08:59 UTC (report of 06:12 UTC + CloudTrail)" in all_text(
        audit_message(result(fresh))
    )
    stale = account([], report_generated_at=generated, fresh_through=generated, cloudtrail_error="AccessDenied")
    assert "report of 06:12 UTC; CloudTrail not readable (AccessDenied)" in all_text(
        audit_message(result(stale))
    )


def test_exempt_and_grace_are_shown_as_accepted_risk() -> None:
    text = all_text(audit_message(result(account([user("y", "exempt"), user("z", "grace")]))))
    assert "Exempt (accepted risk, not compliant) (1)" in text
    assert "In grace period (accepted risk, not compliant) (1)" in text


def test_a_key_only_violation_is_titled_for_access_keys() -> None:
    key_only = user("ci", console_access=False, reason="access key 1 active, never used; no console password")
    text = all_text(audit_message(result(account([key_only]))))
    assert "Violations: console password or access key, no MFA (1)" in text


# --- the DM after a re-check: never keeps saying what is no longer true -------------------------


def _dm_text(blocks: list) -> str:
    return json.dumps([b if isinstance(b, dict) else b.to_dict() for b in blocks], ensure_ascii=False)


def _rechecked(sent: list[dict], *names: str) -> list[dict]:
    """The DM `sent` after a re-check found each of `names` fixed (as bot.recheck updates it)."""
    for name in names:
        sent = dm_after_recheck(sent, user_value(ACCOUNT, name), recheck_thanks(name, f"acme ({ACCOUNT})"))
    return sent


def test_every_iam_user_fixed_turns_the_dm_into_a_short_thank_you() -> None:
    sent = nudge_dm("U0BOB0001", [user("bob"), user("bob2")], {ACCOUNT: "acme"}).blocks_json()
    blocks = _rechecked(sent, "bob", "bob2")
    text = _dm_text(blocks)
    assert blocks[0]["text"]["text"] == "Thank you: MFA is on" and "*Thank you!*" in text
    assert "`bob` in acme (123456789012) is fixed" in text and "`bob2`" in text
    assert "Please turn on" not in text and "no MFA device" not in text and "aws iam" not in text
    assert '"action_id": "recheck"' not in text and len(blocks) == 2


def test_partly_fixed_says_which_are_done_and_asks_only_for_the_rest() -> None:
    sent = nudge_dm("U0BOB0001", [user("bob"), user("bob2")], {ACCOUNT: "acme"}).blocks_json()
    blocks = _rechecked(sent, "bob")
    text = _dm_text(blocks)
    assert "Almost there: MFA still needed for 1 IAM user" in text
    assert "thank you: `bob` is done" in text and "Still needed: an MFA device for `bob2`" in text
    assert "Please turn on" not in text and "has no MFA device" not in text
    buttons = [b["accessory"]["value"] for b in blocks if b.get("accessory")]
    assert buttons == [user_value(ACCOUNT, "bob2")]
    assert "aws iam enable-mfa-device --user-name bob2" in text and "--user-name bob " not in text


def test_the_dm_as_slack_holds_it_is_updated_row_by_row_then_becomes_a_thank_you() -> None:
    sent = nudge_dm("U0BOB0001", [user("bob"), user("bob2")], {ACCOUNT: "acme"}).blocks_json()
    assert "Please turn on MFA" in _dm_text(sent)
    once = dm_after_recheck(sent, f"{ACCOUNT}:bob", recheck_thanks("bob", "acme"))  # a value in the old form
    text = _dm_text(once)
    assert "Almost there: MFA still needed for 1 IAM user" in text and "Please turn on" not in text
    assert "Hi <@U0BOB0001>, thank you: `bob` is done" in text and "for `bob2`" in text
    assert "these 2 IAM users" not in text and "*Thank you!* `bob` in acme" in text
    assert [b["accessory"]["value"] for b in once if b.get("accessory")] == [user_value(ACCOUNT, "bob2")]
    twice = dm_after_recheck(once, user_value(ACCOUNT, "bob2"), recheck_thanks("bob2", "acme"))
    text = _dm_text(twice)
    assert twice[0]["text"]["text"] == "Thank you: MFA is on"
    assert "`bob` in acme" in text and "`bob2` in acme" in text and "nothing left to do" in text
    assert "aws iam" not in text and "Please" not in text and not [b for b in twice if b.get("accessory")]


def test_a_key_only_user_gets_cli_mfa_steps_and_no_console_request() -> None:
    ci = user("ci", console_access=False)
    message = nudge_dm("U0CI00001", [ci], {ACCOUNT: "acme"})
    text = _dm_text(message.blocks)
    assert "Please turn on MFA for your AWS IAM user" in text and "console sign-in" not in text
    assert "has an active access key but no MFA device" in text
    assert f"aws sts get-session-token --serial-number arn:aws:iam::{ACCOUNT}:mfa/ci --token-code 123456" in text
    assert "move it to an IAM role" in text
    assert "*In the AWS console*" not in text and "Sign-in URL" not in text
    assert message.text == "Your AWS access key needs MFA"
    mixed = _dm_text(nudge_dm("U1", [ci, user("bob")], {}).blocks)
    assert "console or have an active access key" in mixed and "*In the AWS console*" in mixed


def test_mfa_check_me_for_a_key_only_user_shows_the_key_steps() -> None:
    ci = user("ci", console_access=False, reason="access key 1 active, never used; no console password")
    text = all_text(personal_message([ci], result(account([ci]))))
    assert "active access key *without MFA*" in text and "console password *without MFA*" not in text
    assert "aws sts get-session-token" in text and "*In the AWS console*" not in text
