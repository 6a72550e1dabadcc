"""The recorded audit: stored exemptions honoured, scans and episodes written, failures never close."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from bot import service
from bot.config import Config
from bot.demo import demo_client
from bot.snapshot import account_from_json
from tests.store_rows import stored_scans


def config_for(proxy_url: str) -> Config:
    # A healthy report is ready at the second poll; the deadline only bounds a machine under load.
    return Config(aws_endpoint_url=proxy_url, report_deadline_seconds=10)


def test_episodes_open_close_and_survive_a_failed_scan(demo_account, iam_proxy, store):
    config = config_for(iam_proxy.url)
    first = service.run_recorded_audit(config, store)
    open_arns = {e.arn for e in store.open_episodes()}
    assert open_arns == {u.arn for u in first.violations} and len(open_arns) == 3

    iam = demo_client(demo_account)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob2")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName="bob", SerialNumber=serial, AuthenticationCode1="111111", AuthenticationCode2="222222"
    )
    second = service.run_recorded_audit(config, store)
    assert {e.user_name for e in store.open_episodes()} == {"erin", "ivan"}
    (kept,) = store.snapshots()
    assert account_from_json(kept.findings).users == second.accounts[0].users
    assert kept.audited_at == second.generated_at

    iam_proxy.fail("GetCredentialReport", "AccessDenied", status=403)
    failed = service.run_recorded_audit(config, store)
    assert failed.accounts[0].error
    assert {e.user_name for e in store.open_episodes()} == {"erin", "ivan"}  # nobody marked fixed
    (kept,) = store.snapshots()  # the last good audit's findings stay, for the App Home
    assert account_from_json(kept.findings).by_status("violation") == second.accounts[0].by_status("violation")
    scans = stored_scans(store)
    assert [s.error is not None for s in scans] == [True, False, False]
    assert (scans[1].violation, scans[2].violation) == (2, 3)


def test_a_stored_exemption_makes_the_user_exempt_until_it_ends(demo_account, iam_proxy, store):
    config = config_for(iam_proxy.url)
    now = datetime.now(UTC)
    erin = "arn:aws:iam::123456789012:user/erin"
    store.grant_exemption(erin, "123456789012", "erin", "on leave", now + timedelta(days=2), "U0ADMIN01", now)
    result = service.run_recorded_audit(config, store)
    erin_finding = next(u for u in result.accounts[0].users if u.user_name == "erin")
    assert erin_finding.status == "exempt" and "on leave" in erin_finding.reason
    later = service.run_recorded_audit(config, store, clock=lambda: now + timedelta(days=3))
    assert next(u for u in later.accounts[0].users if u.user_name == "erin").status == "violation"


def test_without_a_store_the_audit_still_runs(demo_account, iam_proxy):
    result = service.run_recorded_audit(dataclasses.replace(config_for(iam_proxy.url)), None)
    assert len(result.violations) == 3
