"""The rule as pure functions: plain data in, findings out. No mocks, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot import audit
from bot.models import AccountFacts, AuditPolicy, Exemption, IamUser, LiveState, MfaDevice

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ACCOUNT = "111122223333"
HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,"
    "cert_2_active,cert_2_last_rotated"
)
CREATED = "2025-01-02T03:04:05+00:00"


def arn(name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{ACCOUNT}:user{path}{name}"


def row(name: str, password: str, mfa: str, created: str = CREATED, path: str = "/") -> str:
    return (
        f"{name},{arn(name, path)},{created},{password},N/A,{CREATED if password == 'true' else 'N/A'},N/A,"
        f"{mfa},false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"
    )


ROOT_ROW = (
    f"<root_account>,arn:aws:iam::{ACCOUNT}:root,2020-01-01T00:00:00+00:00,not_supported,2026-01-01T00:00:00+00:00,"
    "not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"
)


def report(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def user(name: str, created: str = CREATED, path: str = "/") -> IamUser:
    return IamUser(
        name=name, arn=arn(name, path), user_id=f"AIDA{name.upper()}", created_at=datetime.fromisoformat(created)
    )


def policy(**kwargs) -> AuditPolicy:
    return AuditPolicy(now=NOW, **kwargs)


def live(console_days_ago: int | None = 30, devices: tuple[MfaDevice, ...] = (), reset: bool = False) -> LiveState:
    since = None if console_days_ago is None else NOW - timedelta(days=console_days_ago)
    return LiveState(exists=True, console_since=since, password_reset_required=reset, mfa_devices=devices)


def judge(facts: AccountFacts, **kwargs):
    return {u.user_name: u for u in audit.judge_account(facts, policy(**kwargs)).users}


# --- the credential report -------------------------------------------------------------


def test_root_row_is_kept_apart_and_not_supported_values_are_unknown():
    rows, root = audit.parse_credential_report(report(ROOT_ROW, row("alice", "true", "true")))
    assert list(rows) == [arn("alice")]
    assert root is not None and root.user == "<root_account>"
    assert root.password_enabled is None  # not_supported
    assert root.mfa_active is True
    assert root.password_last_changed is None


def test_na_and_no_information_values_parse_as_unknown():
    line = row("bob", "false", "false").replace(f"{CREATED},false", "no_information,false", 1)
    rows, _ = audit.parse_credential_report(report(line).encode())
    bob = rows[arn("bob")]
    assert bob.user_creation_time is None
    assert bob.password_enabled is False
    assert bob.password_last_changed is None  # N/A


def test_user_names_with_commas_and_quotes_survive_the_csv_module():
    # IAM names cannot hold commas, but paths and report values are quoted by AWS when needed.
    quoted = row("carol", "true", "false").replace("carol,", '"carol",', 1)
    rows, _ = audit.parse_credential_report(report(quoted))
    assert rows[arn("carol")].user == "carol"


def test_a_report_without_its_columns_is_an_error_not_an_empty_pass():
    with pytest.raises(audit.ReportFormatError):
        audit.parse_credential_report("<html>rate exceeded</html>\n")


# --- devices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "kind"),
    [
        (f"arn:aws:iam::{ACCOUNT}:mfa/alice-phone", "virtual"),
        (f"arn:aws-us-gov:iam::{ACCOUNT}:mfa/path/alice", "virtual"),
        (f"arn:aws:iam::{ACCOUNT}:u2f/user/alice/yubikey-ABCDEF", "fido"),
        ("GAHT12345678", "hardware"),
        ("SMS-1234", "hardware"),
    ],
)
def test_device_type_comes_from_the_serial(serial, kind):
    assert audit.device_type(serial) == kind


def test_a_virtual_device_created_but_never_enabled_counts_for_nobody():
    items = [
        {"SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/erin"},  # created, never enabled: no User
        {"SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/alice", "User": {"Arn": arn("alice")}, "EnableDate": NOW},
    ]
    grouped = audit.virtual_devices_by_user(items)
    assert list(grouped) == [arn("alice")]
    assert grouped[arn("alice")][0].type == "virtual"


# --- which users are confirmed live ------------------------------------------------------


def test_only_flagged_unclear_and_missing_users_are_confirmed_live():
    rows, _ = audit.parse_credential_report(
        report(
            row("ok", "true", "true"),
            row("flagged", "true", "false"),
            row("keys-only", "false", "false"),
            row("odd", "no_information", "false"),
        )
    )
    users = [user("ok"), user("flagged"), user("keys-only"), user("odd"), user("new-since-report")]
    assert [u.name for u in audit.users_to_confirm(users, rows)] == ["flagged", "odd", "new-since-report"]


def test_a_reused_name_is_not_joined_to_the_old_users_row():
    # "dana" was deleted and created again after the report: same ARN, new creation time.
    rows, _ = audit.parse_credential_report(report(row("dana", "false", "false", created=CREATED)))
    reborn = user("dana", created="2026-11-27T09:00:00+00:00")
    assert audit.report_row_for(reborn, rows) is None
    assert audit.users_to_confirm([reborn], rows) == [reborn]


def test_rows_are_joined_by_arn_not_by_name():
    # Two users named "eve" on different paths: each gets its own row.
    rows, _ = audit.parse_credential_report(
        report(row("eve", "true", "true", path="/staff/"), row("eve", "true", "false", path="/contractors/"))
    )
    staff, contractor = user("eve", path="/staff/"), user("eve", path="/contractors/")
    assert audit.users_to_confirm([staff, contractor], rows) == [contractor]


# --- verdicts ------------------------------------------------------------------------------


def facts_for(csv_text: str, users: list[IamUser], **kwargs) -> AccountFacts:
    rows, _ = audit.parse_credential_report(csv_text)
    return AccountFacts(account_id=ACCOUNT, report_rows=rows, users=users, **kwargs)


def test_stale_report_loses_to_the_live_check_for_a_user_who_enabled_mfa_since():
    device = audit.mfa_device(f"arn:aws:iam::{ACCOUNT}:mfa/frank")
    facts = facts_for(
        report(row("frank", "true", "false")), [user("frank")], live={arn("frank"): live(devices=(device,))}
    )
    frank = judge(facts)["frank"]
    assert frank.status == "compliant"
    assert frank.mfa_devices == (device,)


def test_live_violation_has_reason_and_since():
    facts = facts_for(report(row("gina", "true", "false")), [user("gina")], live={arn("gina"): live(12)})
    gina = judge(facts)["gina"]
    assert gina.status == "violation"
    assert gina.console_since == NOW - timedelta(days=12)
    assert "12 days" in gina.reason


def test_a_user_missing_from_the_report_is_judged_on_the_live_check():
    facts = facts_for(report(), [user("hank")], live={arn("hank"): live(0)})
    assert judge(facts)["hank"].status == "violation"


def test_a_user_deleted_between_list_users_and_the_live_check_is_left_out():
    facts = facts_for(report(row("ian", "true", "false")), [user("ian")], live={arn("ian"): LiveState(exists=False)})
    assert judge(facts) == {}


def test_a_report_row_for_a_user_not_in_list_users_is_ignored():
    facts = facts_for(report(row("gone", "true", "false")), [])
    assert judge(facts) == {}


def test_password_reset_required_still_counts_and_says_so():
    facts = facts_for(report(), [user("jo")], live={arn("jo"): live(1, reset=True)})
    jo = judge(facts)["jo"]
    assert jo.status == "violation"
    assert "reset required" in jo.reason


def test_report_compliant_user_keeps_the_report_verdict_and_lists_virtual_devices():
    device = audit.mfa_device(f"arn:aws:iam::{ACCOUNT}:mfa/kim")
    facts = facts_for(report(row("kim", "true", "true")), [user("kim")], virtual_devices={arn("kim"): (device,)})
    kim = judge(facts)["kim"]
    assert (kim.status, kim.checked_live, kim.mfa_devices) == ("compliant", False, (device,))


def test_no_console_password_is_no_console_whatever_the_mfa():
    facts = facts_for(report(row("svc", "false", "false")), [user("svc")])
    assert judge(facts)["svc"].status == "no_console"


def test_tag_exemption_uses_its_value_as_reason():
    facts = facts_for(
        report(), [user("lee")], live={arn("lee"): live(40)}, tags={arn("lee"): {"mfa-exempt": "break-glass"}}
    )
    lee = judge(facts)["lee"]
    assert (lee.status, lee.reason) == ("exempt", "exempt by tag, set outside Slack (mfa-exempt: break-glass)")
    assert lee.exempt_by_tag


def test_tag_exemptions_off_ignores_the_tag_and_slack_granted_ones_still_count():
    tags = {arn("lee"): {"mfa-exempt": "break-glass"}, arn("max"): {"mfa-exempt": "x"}}
    facts = facts_for(
        report(), [user("lee"), user("max")], live={arn("lee"): live(40), arn("max"): live(40)}, tags=tags
    )
    granted = {arn("max"): Exemption("vendor laptop", NOW + timedelta(days=3), "U0ADMIN01")}
    found = judge(facts, tag_exemptions=False, exemptions=granted)
    assert found["lee"].status == "violation" and not found["lee"].exempt_by_tag
    assert found["max"].status == "exempt" and not found["max"].exempt_by_tag  # granted in Slack: not a tag
    assert judge(facts, exemptions=granted)["max"].exempt_by_tag is False  # Slack's grant wins over the tag


def test_tag_key_is_configurable():
    facts = facts_for(report(), [user("lee")], live={arn("lee"): live(40)}, tags={arn("lee"): {"mfa-exempt": "x"}})
    assert judge(facts, tag_mfa_exempt="no-mfa-ok")["lee"].status == "violation"


def test_stored_exemption_applies_until_it_expires():
    facts = facts_for(report(), [user("max")], live={arn("max"): live(40)})
    active = {arn("max"): Exemption(reason="travelling", until=NOW + timedelta(days=3), granted_by="U0ADMIN")}
    expired = {arn("max"): Exemption(reason="travelling", until=NOW - timedelta(seconds=1), granted_by="U0ADMIN")}
    exempt = judge(facts, exemptions=active)["max"]
    assert (
        exempt.status == "exempt" and "travelling" in exempt.reason and exempt.exempt_until == NOW + timedelta(days=3)
    )
    assert judge(facts, exemptions=expired)["max"].status == "violation"


def test_grace_period_counts_from_the_login_profile_creation():
    facts = facts_for(report(), [user("ned"), user("old")], live={arn("ned"): live(2), arn("old"): live(9)})
    verdicts = judge(facts, grace_period_days=7)
    assert verdicts["ned"].status == "grace"
    assert verdicts["ned"].grace_until == NOW - timedelta(days=2) + timedelta(days=7)
    assert verdicts["old"].status == "violation"
    assert judge(facts, grace_period_days=0)["ned"].status == "violation"


def test_violations_sort_first():
    facts = facts_for(
        report(row("a-ok", "true", "true"), row("b-keys", "false", "false")),
        [user("a-ok"), user("b-keys"), user("z-bad")],
        live={arn("z-bad"): live(3)},
    )
    assert [u.user_name for u in audit.judge_account(facts, policy()).users] == ["z-bad", "a-ok", "b-keys"]


def test_an_account_with_an_error_has_no_verdicts_at_all():
    facts = facts_for(report(row("x", "true", "false")), [user("x")], error="AccessDenied: iam:GetCredentialReport")
    findings = audit.judge_account(facts, policy())
    assert findings.error and findings.users == []


# --- root ----------------------------------------------------------------------------------


def test_root_is_virtual_only_when_a_device_belongs_to_the_exact_root_arn():
    root_device = audit.mfa_device(f"arn:aws:iam::{ACCOUNT}:mfa/root-account-mfa-device")
    exact = {f"arn:aws:iam::{ACCOUNT}:root": (root_device,)}
    other_partition = {f"arn:aws-cn:iam::{ACCOUNT}:root": (root_device,)}
    assert audit.judge_root(True, exact, "aws", ACCOUNT).hardware is False
    assert audit.judge_root(True, other_partition, "aws", ACCOUNT).hardware is True
    assert audit.judge_root(True, exact, "aws-cn", ACCOUNT).hardware is True


def test_root_off_and_unknown():
    off = audit.judge_root(False, {}, "aws", ACCOUNT)
    assert (off.mfa_enabled, off.hardware) == (False, None)
    unknown = audit.judge_root(None, {}, "aws", ACCOUNT)
    assert (unknown.mfa_enabled, unknown.hardware) == (None, None)


def test_root_falls_back_to_the_report_row():
    _, root_row = audit.parse_credential_report(report(ROOT_ROW))
    assert audit.judge_root(None, {}, "aws", ACCOUNT, root_row).mfa_enabled is True


# --- root credentials: every combination of the account summary's flags ------------------------


@pytest.mark.parametrize(
    ("mfa", "password", "keys", "no_credentials", "needs_attention", "text"),
    [
        (False, False, False, True, False, "no credentials (no password, no access keys): cannot sign in"),
        (True, False, False, True, False, "no credentials (no password, no access keys): cannot sign in"),
        (None, False, False, True, False, "no credentials (no password, no access keys): cannot sign in"),
        (False, True, False, False, True, "MFA OFF"),
        (True, True, False, False, False, "MFA on (hardware)"),
        (False, None, None, False, True, "MFA OFF"),  # an older endpoint: nothing proves root cannot sign in
        (True, None, None, False, False, "MFA on (hardware)"),
        (None, None, None, False, False, "MFA unknown (could not be read)"),
        (False, False, None, False, False, "MFA OFF, no password"),
        (False, True, True, False, True, "MFA OFF, ROOT ACCESS KEYS PRESENT (delete them)"),
        (True, True, True, False, True, "MFA on (hardware), ROOT ACCESS KEYS PRESENT (delete them)"),
        (True, False, True, False, True, "MFA on (hardware), no password, ROOT ACCESS KEYS PRESENT (delete them)"),
        (False, False, True, False, True, "MFA OFF, no password, ROOT ACCESS KEYS PRESENT (delete them)"),
    ],
)
def test_root_credentials_every_combination(mfa, password, keys, no_credentials, needs_attention, text):
    from bot.report import root_text

    root = audit.judge_root(mfa, {}, "aws", ACCOUNT, password_present=password, access_keys_present=keys)
    assert (root.password_present, root.access_keys_present) == (password, keys)
    assert root.no_credentials is no_credentials
    assert root.needs_attention is needs_attention
    assert root_text(root) == text


def test_summary_flags_are_none_when_the_summary_lacks_them():
    summary = {"AccountMFAEnabled": 0, "AccountPasswordPresent": 1}
    assert audit.summary_flag(summary, "AccountMFAEnabled") is False
    assert audit.summary_flag(summary, "AccountPasswordPresent") is True
    assert audit.summary_flag(summary, "AccountAccessKeysPresent") is None


# --- devices: mfa_devices never empty for a user with MFA ---------------------------------------

FIDO = audit.mfa_device(f"arn:aws:iam::{ACCOUNT}:u2f/user/fay/key")
TOKEN = audit.mfa_device("GAHT12345678")
PHONE = audit.mfa_device(f"arn:aws:iam::{ACCOUNT}:mfa/vic")


def test_report_mfa_users_without_a_virtual_device_get_their_devices_listed():
    users = [user("fay"), user("vic"), user("nomfa"), user("flagged")]
    rows, _ = audit.parse_credential_report(
        report(row("fay", "true", "true"), row("vic", "true", "true"), row("nomfa", "false", "false"),
               row("flagged", "true", "false"))
    )  # fmt: skip
    virtual = {arn("vic"): (PHONE,)}
    confirm = audit.users_to_confirm(users, rows)
    assert [u.name for u in confirm] == ["flagged"]
    assert [u.name for u in audit.users_to_list_devices(users, rows, virtual, confirm)] == ["fay"]
    # named by CloudTrail: confirmed in full, so not listed twice
    confirm = audit.users_to_confirm(users, rows, changed_since_report={"fay"})
    assert [u.name for u in audit.users_to_list_devices(users, rows, virtual, confirm)] == []


@pytest.mark.parametrize(("device", "kind"), [(FIDO, "fido"), (TOKEN, "hardware"), (PHONE, "virtual")])
def test_a_compliant_user_lists_the_devices_found(device, kind):
    facts = facts_for(report(row("fay", "true", "true")), [user("fay")], devices={arn("fay"): (device,)})
    fay = judge(facts)["fay"]
    assert fay.status == "compliant" and [d.type for d in fay.mfa_devices] == [kind]


def test_listed_devices_empty_means_the_device_went_and_the_live_check_decides():
    facts = facts_for(report(row("fay", "true", "true")), [user("fay")], devices={arn("fay"): ()})
    assert judge(facts)["fay"].status == "violation"  # no live check: the listing alone says no device
    facts = facts_for(report(row("fay", "true", "true")), [user("fay")], live={arn("fay"): live(3)})
    assert judge(facts)["fay"].status == "violation" and judge(facts)["fay"].checked_live


def test_a_never_enabled_virtual_device_has_its_own_reason():
    items = [
        {"SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/erin"},  # created, never enabled
        {"SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/vic", "EnableDate": NOW, "User": {"Arn": arn("vic")}},
    ]
    assert audit.pending_virtual_device_names(items) == {"erin"}
    assert audit.virtual_devices_by_user(items) == {arn("vic"): (audit.mfa_device(items[1]["SerialNumber"], NOW),)}
    facts = facts_for(
        report(row("erin", "true", "false")), [user("erin")], live={arn("erin"): live(2)},
        pending_virtual_names=frozenset({"erin"}),
    )  # fmt: skip
    erin = judge(facts)["erin"]
    assert erin.status == "violation"
    assert erin.reason == "console password since 2026-11-25 (2 days), virtual MFA device created but never enabled"


def test_cloudtrail_named_users_are_confirmed_even_when_the_report_says_no_console():
    users = [user("judy"), user("other")]
    rows, _ = audit.parse_credential_report(report(row("judy", "false", "false"), row("other", "false", "false")))
    assert [u.name for u in audit.users_to_confirm(users, rows, changed_since_report={"judy"})] == ["judy"]
    facts = facts_for(
        report(row("judy", "false", "false")), [user("judy")], live={arn("judy"): live(0)},
        changed_since_report=frozenset({"judy"}),
    )  # fmt: skip
    assert judge(facts)["judy"].status == "violation"


# --- scope: console (IAM.5, CIS) or all (IAM.19) ------------------------------------------------


def key_row(name: str, password: str, mfa: str, key1: str = "true", used1: str = "2026-11-20T10:00:00+00:00",
            key2: str = "false", used2: str = "N/A") -> str:  # fmt: skip
    return (
        f"{name},{arn(name)},{CREATED},{password},N/A,N/A,N/A,{mfa},{key1},{CREATED},{used1},us-east-1,s3,"
        f"{key2},N/A,{used2},N/A,N/A,false,N/A,false,N/A"
    )


def test_access_key_columns_are_parsed():
    rows, _ = audit.parse_credential_report(report(key_row("ci", "false", "false", key2="true")))
    keys = rows[arn("ci")].access_keys
    assert [(k.number, k.active) for k in keys] == [(1, True), (2, True)]
    assert keys[0].last_used == datetime(2026, 11, 20, 10, tzinfo=UTC) and keys[1].last_used is None


@pytest.mark.parametrize(
    ("scope", "password", "mfa", "key1", "status"),
    [
        ("console", "false", "false", "true", "no_console"),
        ("all", "false", "false", "true", "violation"),
        ("all", "false", "true", "true", "compliant"),
        ("all", "false", "false", "false", "no_console"),
        ("console", "true", "false", "true", "violation"),
        ("all", "true", "false", "false", "violation"),
        ("all", "true", "true", "true", "compliant"),
        ("console", "false", "true", "true", "no_console"),
    ],
)
def test_scope_decides_whether_an_access_key_counts(scope, password, mfa, key1, status):
    rows, _ = audit.parse_credential_report(report(key_row("ci", password, mfa, key1=key1)))
    flagged = audit.users_to_confirm([user("ci")], rows, scope=scope)
    console = password == "true"
    state = live(30 if console else None, devices=(PHONE,) if mfa == "true" else ())
    checked = {"live": {arn("ci"): state}} if flagged else {"devices": {arn("ci"): (PHONE,)}}
    facts = facts_for(report(key_row("ci", password, mfa, key1=key1)), [user("ci")], **checked)
    assert judge(facts, scope=scope)["ci"].status == status
    assert bool(flagged) == (status == "violation")


def test_a_key_only_violation_names_the_key_and_when_it_was_last_used():
    csv_text = report(key_row("ci", "false", "false", key2="true"))
    facts = facts_for(csv_text, [user("ci")], live={arn("ci"): live(None)})
    ci = judge(facts, scope="all")["ci"]
    assert ci.status == "violation" and not ci.console_access
    assert ci.reason == (
        "access key 1 active, last used 2026-11-20 (7 days ago); access key 2 active, never used; "
        "no console password, no MFA device"
    )
    assert [k.number for k in ci.access_keys] == [1, 2]


def test_a_key_only_user_can_be_exempt_and_is_never_in_grace():
    facts = facts_for(report(key_row("ci", "false", "false")), [user("ci")], live={arn("ci"): live(None)},
                      tags={arn("ci"): {"mfa-exempt": "legacy batch job"}})  # fmt: skip
    assert judge(facts, scope="all")["ci"].status == "exempt"
    facts = facts_for(report(key_row("ci", "false", "false")), [user("ci")], live={arn("ci"): live(None)})
    assert judge(facts, scope="all", grace_period_days=30)["ci"].status == "violation"


def test_the_users_the_report_flags_are_known_before_list_users_answers():
    rows, root = audit.parse_credential_report(
        report(row("flagged", "true", "false"), row("fay", "true", "true"), row("nomfa", "false", "false"))
    )
    early = audit.users_the_report_flags(rows)
    assert [(u.name, u.arn) for u in early] == [("flagged", arn("flagged"))]
    assert root is None or root.arn not in {u.arn for u in early}
    # once ListUsers is in, the same user is among those to confirm: the wave confirms it once (by ARN)
    assert {u.arn for u in early} <= {u.arn for u in audit.users_to_confirm([user("flagged"), user("fay")], rows)}
