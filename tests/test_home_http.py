"""The App Home end to end: signed app_home_opened events and Home button clicks into the real HTTP
server, views.publish answered (and checked against Slack's limits) by the Slack stand-in, IAM from
moto's server behind a counting proxy, a SQLite store."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from bot.buttons import RECHECK_ACTION, user_value
from bot.demo import demo_client
from bot.home import HOME_AUDIT_ACTION, HOME_DIGEST_ACTION, MAX_OWN_ROWS
from bot.models import AccountFindings, AuditResult, RootStatus, UserFinding
from bot.service import record_result
from tests.fixtures_slack import served_production
from tests.slack_standin import ADMIN, NOBODY, home_opened
from tests.store_rows import stored_scans

if TYPE_CHECKING:
    from bot.config import Config
    from tests.fixtures_slack import ServedApp
    from tests.iam_proxy import IamProxy
    from tests.slack_standin import SlackStandIn

DEMO = "123456789012"
BOB, ALICE = "U0BOB0001", "U0ALICE01"


@pytest.fixture
def home_app(slack_config: Config, slack_standin: SlackStandIn, iam_proxy: IamProxy) -> Iterator[ServedApp]:
    """The production wiring served over HTTP, its IAM calls counted by the proxy."""
    config = dataclasses.replace(slack_config, aws_endpoint_url=iam_proxy.url)
    with served_production(config, slack_standin) as served:
        yield served


def publishes(served: ServedApp, user: str) -> list[dict[str, Any]]:
    """The views published (and accepted) for one person, oldest first."""
    return [r.payload["view"] for r in served.standin.accepted("views.publish") if r.payload.get("user_id") == user]


def next_view(served: ServedApp, user: str, after: int = 0, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until more than `after` views were published for `user`; the latest."""
    served.standin.wait_for(lambda: len(publishes(served, user)) > after, timeout)
    return publishes(served, user)[-1]


def view_with(served: ServedApp, user: str, text: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until a view published for `user` contains `text`; that view."""

    def found() -> dict[str, Any] | None:
        return next((v for v in reversed(publishes(served, user)) if text in json.dumps(v, ensure_ascii=False)), None)

    return served.standin.wait_for(found, timeout)


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view, ensure_ascii=False)


def buttons(view: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for block in view["blocks"]:
        found += [
            e for e in [block.get("accessory") or {}, *(block.get("elements") or [])] if e.get("type") == "button"
        ]
    return found


def open_home(served: ServedApp, user: str) -> dict[str, Any]:
    before = len(publishes(served, user))
    assert served.event(home_opened(user)).status == 200
    return next_view(served, user, before)


def test_a_person_sees_their_iam_user_from_the_last_audit_without_any_aws_call(
    home_app: ServedApp, iam_proxy: IamProxy
) -> None:
    home_app.services.audit()
    iam_proxy.reset_counts()

    view = open_home(home_app, BOB)

    assert iam_proxy.total_calls == 0  # built from the recorded audit
    text = text_of(view)
    assert "*`bob`* in acme-demo (123456789012): :x: console password *without MFA* · open since today" in text
    (recheck,) = [b for b in buttons(view) if b["action_id"] == RECHECK_ACTION]
    assert recheck["value"] == user_value(DEMO, "bob")
    assert "All set" not in text and "erin" not in text and "ivan" not in text  # only their own
    assert HOME_AUDIT_ACTION not in text and "admins" not in text
    assert home_app.services.store is not None and home_app.services.store.recent_home_openers(
        datetime.now(UTC) - timedelta(minutes=5), 10
    ) == [BOB]


def test_a_compliant_person_is_all_set_and_the_messages_tab_publishes_nothing(home_app: ServedApp) -> None:
    home_app.services.audit()
    assert home_app.event(home_opened(ALICE, tab="messages")).status == 200

    view = open_home(home_app, ALICE)

    assert ":white_check_mark: *All set.* Your IAM user has MFA or no console password." in text_of(view)
    assert len(publishes(home_app, ALICE)) == 1  # the Messages tab did not publish the Home


def test_nobody_mapped_gets_how_to_be_linked_and_no_admin_part(home_app: ServedApp) -> None:
    home_app.services.audit()

    text = text_of(open_home(home_app, NOBODY))

    assert "I found no IAM user of yours in acme-demo (123456789012)" in text
    assert f"(you are <@{NOBODY}>)" in text
    assert HOME_AUDIT_ACTION not in text and "bob" not in text and "erin" not in text


def test_before_any_audit_the_home_says_none_was_recorded(home_app: ServedApp, iam_proxy: IamProxy) -> None:
    text = text_of(open_home(home_app, BOB))
    assert "No audit has been recorded yet" in text
    assert iam_proxy.total_calls == 0


def test_an_admin_sees_every_account_and_the_buttons(home_app: ServedApp) -> None:
    home_app.services.audit()

    view = open_home(home_app, ADMIN)

    text = text_of(view)
    assert "I found no IAM user of yours" in text  # the admin has no IAM user of their own
    assert "*acme-demo (123456789012)* · 3 violations · 1 exempt · 0 in grace · :warning: *root MFA OFF*" in text
    assert "Last audit: " in text and "credential report" in text
    assert "DIGEST_CHANNEL is not set" in text and "Overdue:* none." in text
    assert {b["action_id"] for b in buttons(view)} >= {HOME_AUDIT_ACTION, HOME_DIGEST_ACTION}


def test_an_account_that_could_not_be_read_keeps_its_last_findings_and_shows_the_error(
    home_app: ServedApp, iam_proxy: IamProxy
) -> None:
    home_app.services.audit()
    iam_proxy.fail("GetCredentialReport", "AccessDenied", status=403)
    failed = home_app.services.audit()
    assert failed.accounts[0].error

    admin = text_of(open_home(home_app, ADMIN))
    bob = text_of(open_home(home_app, BOB))

    assert ":rotating_light: *acme-demo (123456789012)*: the latest audit at " in admin
    assert "*failed*: AccessDenied" in admin and "last good audit" in admin and "3 violations" in admin
    assert "*`bob`* in acme-demo (123456789012): :x:" in bob  # still shown from the last good audit


def test_another_process_shows_the_same_home_from_the_store(home_app: ServedApp, iam_proxy: IamProxy) -> None:
    home_app.services.audit()  # recorded by this process
    iam_proxy.reset_counts()

    with served_production(home_app.config, home_app.standin) as restarted:  # a second process on the same store
        view = open_home(restarted, BOB)

    assert "*`bob`* in acme-demo (123456789012): :x:" in text_of(view)
    assert iam_proxy.total_calls == 0


def test_homes_opened_lately_are_published_again_after_each_audit(home_app: ServedApp) -> None:
    home_app.services.audit()
    open_home(home_app, BOB)
    open_home(home_app, ADMIN)
    store = home_app.services.store
    assert store is not None
    scans = len(stored_scans(store))

    _, url = home_app.command("")  # /mfa-check: the same recorded audit
    home_app.final(url)

    assert len(stored_scans(store)) == scans + 1
    next_view(home_app, BOB, after=1)
    next_view(home_app, ADMIN, after=1)
    assert not publishes(home_app, ALICE)  # never opened: nothing pushed


def test_run_audit_now_audits_for_an_admin_and_is_refused_and_recorded_for_anyone_else(
    home_app: ServedApp, iam_proxy: IamProxy
) -> None:
    store = home_app.services.store
    assert store is not None
    open_home(home_app, NOBODY)

    assert home_app.home_click(HOME_AUDIT_ACTION, "audit", NOBODY).status == 200
    refused = view_with(home_app, NOBODY, "Only MFA-bot admins")
    assert "bob" not in text_of(refused)
    assert stored_scans(store) == [] and iam_proxy.total_calls == 0
    assert [(a.actor, a.outcome) for a in store.actions(action=f"refused:{HOME_AUDIT_ACTION}")] == [(NOBODY, "refused")]

    assert home_app.home_click(HOME_AUDIT_ACTION, "audit", ADMIN).status == 200
    done = view_with(home_app, ADMIN, "Audit finished")
    assert "3 violations in 1 account(s)." in text_of(done)
    assert "*acme-demo (123456789012)* · 3 violations" in text_of(done)
    assert len(stored_scans(store)) == 1


def test_post_digest_now_goes_through_mfa_check_digest(home_app: ServedApp) -> None:
    store = home_app.services.store
    assert store is not None
    open_home(home_app, ADMIN)

    assert home_app.home_click(HOME_DIGEST_ACTION, "digest", ADMIN).status == 200
    view_with(home_app, ADMIN, "DIGEST_CHANNEL is not set: nothing was posted.")  # the command's own answer

    assert home_app.home_click(HOME_DIGEST_ACTION, "digest", NOBODY).status == 200
    view_with(home_app, NOBODY, "Only MFA-bot admins")
    assert [a.actor for a in store.actions(action=f"refused:{HOME_DIGEST_ACTION}")] == [NOBODY]
    assert not home_app.standin.calls("chat.postMessage")


def test_recheck_on_the_home_is_served_by_the_dm_handler_and_answers_on_the_home(
    home_app: ServedApp, demo_account: str
) -> None:
    home_app.services.audit()
    open_home(home_app, BOB)

    assert home_app.home_click(RECHECK_ACTION, f"{DEMO}:bob", BOB).status == 200
    missing = view_with(home_app, BOB, "no MFA device is enabled")
    assert "open since today" in text_of(missing)

    iam = demo_client(demo_account)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-home")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName="bob", SerialNumber=serial, AuthenticationCode1="111111", AuthenticationCode2="222222"
    )
    assert home_app.home_click(RECHECK_ACTION, f"{DEMO}:bob", BOB).status == 200

    fixed = text_of(view_with(home_app, BOB, "Thank you!"))
    assert "fixed (checked live" in fixed and "*All set.*" in fixed
    assert not [b for b in buttons(view_with(home_app, BOB, "Thank you!")) if b["action_id"] == RECHECK_ACTION]


def synthetic_audit(count: int, at: datetime) -> AuditResult:
    users = [
        UserFinding(
            account_id=DEMO,
            user_name=f"user-{i:04d}",
            arn=f"arn:aws:iam::{DEMO}:user/team/user-{i:04d}",
            console_access=True,
            mfa_devices=(),
            status="violation",
            reason="console password, no MFA device",
            console_since=at - timedelta(days=i % 90),
            tags={"slack-user-id": ADMIN},
        )
        for i in range(count)
    ]
    account = AccountFindings(DEMO, "acme-demo", None, at, RootStatus(mfa_enabled=False, hardware=False), users)
    return AuditResult(generated_at=at, accounts=[account])


def test_a_thousand_violators_render_within_slacks_limits(home_app: ServedApp) -> None:
    store = home_app.services.store
    assert store is not None
    now = datetime.now(UTC)
    store.claim_digest("C0DIGEST1", "2026-11-01", "host:1", now - timedelta(days=12))
    store.mark_digest_posted("C0DIGEST1", "2026-11-01", "1.1", now - timedelta(days=12))
    result = synthetic_audit(1000, now - timedelta(days=10))
    record_result(store, result, result.generated_at, result.generated_at)
    arns = [u.arn for u in result.violations]
    store.record_nudge(ADMIN, arns, "scheduler", now - timedelta(days=9), "sent")  # all overdue
    tab = home_app.services.home
    assert tab is not None
    tab.config = dataclasses.replace(tab.config, digest_channel="C0DIGEST1")  # to compare with its last digest

    view = open_home(home_app, ADMIN)  # the admin is also the person behind all 1,000

    assert not home_app.standin.calls("views.publish")[-1].payload.get("error")
    assert len(view["blocks"]) <= 100
    assert all(len((b.get("text") or {}).get("text") or "") <= 3000 for b in view["blocks"])
    text = text_of(view)
    assert len([b for b in buttons(view) if b["action_id"] == RECHECK_ACTION]) == MAX_OWN_ROWS
    assert f"…and {1000 - MAX_OWN_ROWS} more IAM users ({1000 - MAX_OWN_ROWS} without MFA)" in text
    assert "1000 violations" in text and ":warning: *root MFA OFF*" in text
    assert "1000 new, 0 fixed" in text and "Overdue (1000)" in text and "more (the digest lists them all)" in text
    print(f"\n1,000 violators: {len(view['blocks'])} blocks, {len(text)} characters")
