"""Re-check: live against moto's IAM (GetLoginProfile + ListMFADevices), who may press it, what it changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot import service
from bot.buttons import user_value
from bot.demo import demo_client
from bot.digest import post_scheduled_digest
from bot.models import LiveState, MfaDevice
from bot.nudges import Nudger
from bot.recheck import REFUSAL, Rechecker, verdict
from bot.store import Store
from tests.slack_standin import ADMIN, MEMBERS, NOBODY, SlackStandIn
from tests.workflow_helpers import Clock, config_for, make_services

ACCOUNT = "123456789012"  # moto's account


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(members=MEMBERS) as running:
        yield running


@pytest.fixture
def rechecker(store: Store, standin: SlackStandIn, demo_account: str) -> Rechecker:
    """The demo account audited once (episodes for bob, erin, ivan) and its digest posted."""
    clock = Clock(datetime.now(UTC))
    config = config_for(standin, aws_endpoint_url=demo_account)
    services = make_services(
        store, standin, lambda: service.run_audit(config, now=clock()), clock=clock, aws_endpoint_url=demo_account
    )
    assert post_scheduled_digest(services, clock()).ok
    standin.clear()
    return Rechecker(services)


def enable_mfa(moto_url: str, user: str) -> None:
    iam = demo_client(moto_url)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"{user}-phone")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName=user, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
    )


def open_names(store: Store) -> set[str]:
    return {e.user_name for e in store.open_episodes()}


def test_verdict_in_words() -> None:
    console = LiveState(console_since=datetime(2026, 1, 1, tzinfo=UTC))
    assert verdict(console) == (False, "no MFA device is enabled, and it has a console password.")
    assert "created for it but never enabled" in verdict(console, pending_virtual=True)[1]
    device = MfaDevice("arn:aws:iam::1:u2f/user/bob/key", "fido")
    assert verdict(LiveState(console_since=console.console_since, mfa_devices=(device,))) == (
        True,
        "an MFA device is enabled (fido)",
    )
    assert verdict(LiveState())[0] and verdict(LiveState(exists=False))[0]  # no password; user gone


def test_the_person_is_told_exactly_what_is_missing(rechecker: Rechecker, standin: SlackStandIn) -> None:
    bob = rechecker.recheck("U0BOB0001", ACCOUNT, "bob")  # bob by his slack-user-id tag
    assert bob.outcome == "still_missing" and "no MFA device is enabled" in bob.text
    erin = rechecker.recheck("U0ERIN001", ACCOUNT, "erin")  # erin by her email tag
    assert erin.outcome == "still_missing" and "created for it but never enabled" in erin.text
    assert open_names(rechecker.services.store) == {"bob", "erin", "ivan"}
    assert not standin.calls("chat.update")


def test_only_the_person_or_an_admin_may_recheck(rechecker: Rechecker) -> None:
    refused = rechecker.recheck(NOBODY, ACCOUNT, "bob")
    assert (refused.outcome, refused.text) == ("refused", REFUSAL)
    assert "bob" not in refused.text
    assert rechecker.recheck("U0ERIN001", ACCOUNT, "bob").outcome == "refused"  # someone else's IAM user
    trail = rechecker.services.store.actions(action="refused:recheck")
    assert [(t.actor, t.outcome, t.target) for t in trail] == [
        ("U0ERIN001", "refused", None),
        (NOBODY, "refused", None),
    ]
    assert rechecker.recheck(ADMIN, ACCOUNT, "ivan").outcome == "still_missing"  # admins may
    assert rechecker.recheck("U0IVAN001", ACCOUNT, "ivan").outcome == "still_missing"  # ivan + EMAIL_DOMAIN


def test_fixed_closes_the_episode_and_marks_the_digest_row_fixed(
    rechecker: Rechecker, standin: SlackStandIn, demo_account: str
) -> None:
    enable_mfa(demo_account, "bob")
    answer = rechecker.recheck("U0BOB0001", ACCOUNT, "bob")
    assert answer.outcome == "fixed" and "Thank you" in answer.text and "`bob`" in answer.text
    assert open_names(rechecker.services.store) == {"erin", "ivan"}
    (update,) = standin.calls("chat.update")
    text = json.dumps(update.payload["blocks"], ensure_ascii=False)
    assert ":white_check_mark: *fixed* at" in text and "<@U0BOB0001> · `bob`" in text
    assert f'"value": {json.dumps(user_value(ACCOUNT, "bob"))}' not in text  # no Nudge button on a fixed row
    assert f'"value": {json.dumps(user_value(ACCOUNT, "erin"))}' in text
    (trail,) = rechecker.services.store.actions(action="recheck")
    assert (trail.actor, trail.outcome) == ("U0BOB0001", "fixed")


def test_scheduled_recheck_closes_the_ones_fixed_meanwhile(
    rechecker: Rechecker, standin: SlackStandIn, demo_account: str
) -> None:
    enable_mfa(demo_account, "ivan")
    demo_client(demo_account).delete_login_profile(UserName="erin")  # no console password: fixed too
    summary = rechecker.recheck_open()
    assert summary.checked == 3 and not summary.failed_accounts
    assert {arn.rsplit("/", 1)[-1] for arn in summary.fixed} == {"ivan", "erin"}
    assert open_names(rechecker.services.store) == {"bob"}
    (update,) = standin.calls("chat.update")  # both rows are in one message: one update
    assert json.dumps(update.payload["blocks"]).count("*fixed* at") == 2
    assert rechecker.recheck_open().fixed == ()  # nothing more to close


def test_an_account_the_bot_does_not_audit_answers_only_after_the_role_check(rechecker: Rechecker) -> None:
    store = rechecker.services.store
    gone = "arn:aws:iam::999999999999:user/bob"
    store.sync_episodes("999999999999", [(gone, "bob")], datetime.now(UTC))  # an account no longer audited
    refused = rechecker.recheck("U0BOB0001", "999999999999", "bob")  # no link: nobody can say it is his
    assert (refused.outcome, refused.text) == ("refused", REFUSAL)
    assert rechecker.recheck(NOBODY, "999999999999", "bob").outcome == "refused"
    answer = rechecker.recheck(ADMIN, "999999999999", "bob")
    assert answer.outcome == "error" and "not audited" in answer.text
    store.set_link(gone, "U0BOB0001", ADMIN, datetime.now(UTC))
    assert rechecker.recheck("U0BOB0001", "999999999999", "bob").outcome == "error"  # his, by the stored link
    assert [e.arn for e in store.open_episodes("999999999999")] == [gone]  # nothing closed


def test_a_recheck_must_concern_an_open_episode_the_store_knows(rechecker: Rechecker, demo_account: str) -> None:
    store = rechecker.services.store
    ghost = rechecker.recheck(ADMIN, ACCOUNT, "ghost")  # no such IAM user: "no longer exists" must not say fixed
    assert ghost.outcome == "no_episode" and "nothing was re-checked" in ghost.text
    assert rechecker.recheck(ADMIN, ACCOUNT, "alice").outcome == "no_episode"  # compliant: nothing open
    assert rechecker.recheck("U0ALICE01", ACCOUNT, "alice").outcome == "refused"  # nor for her
    assert rechecker.recheck(NOBODY, ACCOUNT, "ghost").outcome == "refused"  # names nothing to a stranger
    assert {a.outcome for a in store.actions(action="recheck")} == {"noop"}  # nothing checked, nothing closed
    demo_client(demo_account).delete_login_profile(UserName="bob")
    demo_client(demo_account).delete_user(UserName="bob")
    closed = rechecker.recheck("U0ADMIN01", ACCOUNT, "bob")  # the user is gone: closes the episode that existed
    assert closed.outcome == "fixed" and open_names(store) == {"erin", "ivan"}
    assert rechecker.recheck(ADMIN, ACCOUNT, "bob").outcome == "no_episode"  # and only that one, once
    assert [a.outcome for a in store.actions(action="recheck", limit=10)].count("fixed") == 1


def test_the_dm_updated_is_the_one_the_store_knows_rebuilt_from_the_bots_data(
    rechecker: Rechecker, standin: SlackStandIn, demo_account: str
) -> None:
    services = rechecker.services
    assert Nudger(services).nudge_user(ADMIN, ACCOUNT, "bob").outcome == "sent"
    (dm,) = [p for p in standin.calls("chat.postMessage") if p.payload["channel"] == "U0BOB0001"]
    stored = services.store.last_dm("arn:aws:iam::123456789012:user/bob")
    assert stored is not None and stored.channel and stored.message_ts
    standin.clear()
    enable_mfa(demo_account, "bob")
    answer = rechecker.recheck("U0BOB0001", ACCOUNT, "bob")
    assert answer.outcome == "fixed" and answer.dm_updated
    (update,) = [u for u in standin.calls("chat.update") if u.payload["channel"] == stored.channel]
    assert update.payload["ts"] == stored.message_ts
    text = json.dumps(update.payload["blocks"], ensure_ascii=False)
    assert "*Thank you!* `bob`" in text and '"action_id": "recheck"' not in text
    # every IAM user of the DM fixed: the DM becomes a short thank-you (issue 9), no request, no steps
    assert "aws iam enable-mfa-device" not in text and "Please turn on" not in text and "nothing left to do" in text
    header = update.payload["blocks"][0]["text"]["text"]
    assert header == "Thank you: MFA is on" != dm.payload["blocks"][0]["text"]["text"]


def test_verdict_with_mfa_scope_all_counts_active_access_keys() -> None:
    key_only = LiveState()  # exists, no console password, no device
    assert verdict(key_only, active_keys=1) == (
        False,
        "it has an active access key and no MFA device (or move the workload to a role).",
    )
    assert "never enabled" in verdict(key_only, pending_virtual=True, active_keys=2)[1]
    assert verdict(key_only, active_keys=0) == (True, "it has no console password any more")
    device = MfaDevice("GAHT1", "hardware")
    assert verdict(LiveState(mfa_devices=(device,)), active_keys=1)[0]


def test_a_key_only_violation_is_fixed_only_when_mfa_is_on_or_the_key_is_gone(
    store: Store, standin: SlackStandIn, demo_account: str
) -> None:
    iam = demo_client(demo_account)
    iam.create_user(UserName="ci")
    key = iam.create_access_key(UserName="ci")["AccessKey"]["AccessKeyId"]
    clock = Clock(datetime.now(UTC))
    config = config_for(standin, aws_endpoint_url=demo_account, mfa_scope="all")
    services = make_services(store, standin, lambda: service.run_audit(config, now=clock()), clock=clock,
                     aws_endpoint_url=demo_account, mfa_scope="all")  # fmt: skip
    assert post_scheduled_digest(services, clock()).ok
    assert "ci" in open_names(store)
    rechecker = Rechecker(services)
    still = rechecker.recheck(ADMIN, ACCOUNT, "ci")
    assert still.outcome == "still_missing" and "active access key and no MFA device" in still.text
    assert rechecker.recheck_open().fixed == () and "ci" in open_names(store)
    iam.update_access_key(UserName="ci", AccessKeyId=key, Status="Inactive")
    assert rechecker.recheck(ADMIN, ACCOUNT, "ci").outcome == "fixed"
    assert "ci" not in open_names(store)
