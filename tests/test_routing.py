"""Routing: DIGEST_CHANNEL gets every account, each ACCOUNT_CHANNELS channel its own account's detail.

The pure parts with plain data; then an AWS Organization in moto (one member's role denied, behind
the counting proxy), a real store and the Slack stand-in: one audit run, one post per channel and
period however often the job runs, a failed account shown as an error in its own channel, and a
nudged row updated in place in the main digest and in the account channel alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.buttons import NudgeAllScope, nudge_all_value, parse_nudge_all, user_value
from bot.config import Config
from bot.digest import (
    account_routes,
    build_view,
    digest_channels,
    post_manual_digest,
    post_scheduled_digest,
    scoped_result,
)
from bot.messages.digest import digest_parts
from bot.nudges import Nudger
from bot.pacing import PacedSlack
from bot.service import UNKNOWN_ACCOUNT, failed_account
from bot.services import Services, build_services
from bot.slack import make_web_client
from bot.store import Store
from tests.fixtures_aws import MANAGEMENT, org_config
from tests.iam_proxy import IamProxy
from tests.slack_standin import ADMIN, MEMBERS, OTHER_ADMIN, Recorded, SlackStandIn, person
from tests.workflow_helpers import ACCOUNT, NOW, OTHER_ACCOUNT, Clock, account, result, violator

MAIN = "C0DIGEST1"
DEV_CHANNEL = "C0DEVCHAN"
SANDBOX_CHANNEL = "C0SANDBOX"


def text_of(record: Recorded) -> str:
    return json.dumps(record.payload.get("blocks", []), ensure_ascii=False) + str(record.payload.get("text", ""))


def posts(standin: SlackStandIn, channel: str, method: str = "chat.postMessage") -> list[Recorded]:
    return [r for r in standin.accepted(method) if r.payload.get("channel") == channel]


# -- pure ---------------------------------------------------------------------------------------


def test_routes_group_accounts_by_channel_and_leave_out_the_digest_channel() -> None:
    config = Config(
        digest_channel=MAIN,
        account_channels={"111111111111": "C0B", "222222222222": "C0A", "333333333333": "C0A", "444444444444": MAIN},
    )
    assert account_routes(config) == {"C0A": ("222222222222", "333333333333"), "C0B": ("111111111111",)}
    assert digest_channels(config) == [MAIN, "C0A", "C0B"]
    assert digest_channels(Config(digest_channel=MAIN)) == [MAIN]


def test_an_account_channel_shows_its_accounts_only_and_a_missing_or_failed_one_as_an_error() -> None:
    found = result(
        account([violator("bob")]),
        account(
            [dataclasses.replace(violator("eve", OTHER_ACCOUNT), slack_user_id="U0EVE0001")], OTHER_ACCOUNT, "acme-prod"
        ),
    )
    view = build_view(scoped_result(found, [OTHER_ACCOUNT]), {}, NOW, "UTC", scope=[OTHER_ACCOUNT])
    assert view.title == f"MFA digest · acme-prod ({OTHER_ACCOUNT}) · Fri 27 Nov 2026"
    assert [r.user_name for r in view.rows] == ["eve"] and view.scope == (OTHER_ACCOUNT,)
    lead = [b.to_dict() for b in digest_parts(view)[0].blocks]
    values = [e["value"] for b in lead if b["type"] == "actions" for e in b["elements"]]
    assert values == [nudge_all_value([OTHER_ACCOUNT])]  # its Nudge all nudges its own account only
    assert parse_nudge_all(values[0]) == NudgeAllScope((OTHER_ACCOUNT,))
    assert parse_nudge_all(nudge_all_value()) == NudgeAllScope(())  # every account

    # an account the run did not audit at all, or the whole run failing: an error, never clean
    missing = build_view(scoped_result(found, ["999999999999"]), {}, NOW, "UTC", scope=["999999999999"])
    assert (
        not missing.all_clear
        and missing.failed[0].error
        and "not among the audited accounts" in (missing.failed[0].error or "")
    )
    broken = result(failed_account(UNKNOWN_ACCOUNT, "AccessDenied: organizations:ListAccounts was denied"))
    view = build_view(scoped_result(broken, [ACCOUNT]), {}, NOW, "UTC", scope=[ACCOUNT])
    (part,) = digest_parts(view)
    text = json.dumps([b.to_dict() for b in part.blocks])
    assert f"{ACCOUNT} could not be audited" in text and "organizations:ListAccounts" in text
    assert "All clear" not in text and "could NOT be audited" in part.text


# -- against moto's Organization and the stand-in -----------------------------------------------


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(members=[*MEMBERS, person("U0DEVAL01", "dev-alice@example.com", "dev-alice")]) as running:
        yield running


@dataclasses.dataclass
class Org:
    ids: dict[str, str]
    config: Config
    store: Store
    standin: SlackStandIn
    clock: Clock

    def services(self) -> Services:
        """Services as `serve` wires them (the recorded audit against the Organization); one per "process".

        Every audit is a new one (`recent_seconds=0`), as before the container.
        """
        client = make_web_client(self.config)
        slack = PacedSlack.scaled(client, 1000)
        return build_services(self.config, client, self.store, slack, clock=self.clock, recent_seconds=0)


@pytest.fixture
def org(organization: dict[str, str], iam_proxy: IamProxy, store: Store, standin: SlackStandIn) -> Org:
    """The Organization with ACCOUNT_CHANNELS for dev and for sandbox, whose role cannot be assumed."""
    iam_proxy.fail("AssumeRole", "AccessDenied", status=403, when=organization["sandbox"])
    config = org_config(
        iam_proxy.url,
        slack_bot_token="xoxb-test-token",
        slack_api_url=standin.api_url,
        digest_channel=MAIN,
        admin_user_ids=frozenset({ADMIN, OTHER_ADMIN}),
        email_domain="example.com",
        account_channels={organization["dev"]: DEV_CHANNEL, organization["sandbox"]: SANDBOX_CHANNEL},
    )
    return Org(organization, config, store, standin, Clock(datetime.now(UTC)))


def test_summary_to_the_digest_channel_detail_to_each_account_channel_once_per_period(
    org: Org, iam_proxy: IamProxy
) -> None:
    dev, sandbox = org.ids["dev"], org.ids["sandbox"]
    first = post_scheduled_digest(org.services(), org.clock())
    assert first.ok and first.rows == 4  # bob, erin, ivan, dev-alice
    assert [(a.channel, a.posted, a.rows) for a in first.accounts] == [
        (DEV_CHANNEL, True, 1),
        (SANDBOX_CHANNEL, True, 0),
    ]
    assert iam_proxy.calls["AssumeRole"] == 3  # one audit run for every channel (dev, prod, sandbox)

    again = post_scheduled_digest(org.services(), org.clock())  # another process, same period
    twice = post_scheduled_digest(org.services(), org.clock())
    assert not again.posted and not twice.posted and again.reason.startswith("already")
    assert again.accounts == () and iam_proxy.calls["AssumeRole"] == 3  # nothing claimed: no audit either
    (main,) = posts(org.standin, MAIN)
    (detail,) = posts(org.standin, DEV_CHANNEL)
    (failed,) = posts(org.standin, SANDBOX_CHANNEL)
    assert len(org.standin.accepted("chat.postMessage")) == 3

    summary = text_of(main)
    for row in ("`bob` in acme-demo", "`erin` in acme-demo", "`ivan` in acme-demo", f"`dev-alice` in acme-dev ({dev})"):
        assert row in summary
    assert f"sandbox ({sandbox}) could not be audited" in summary and f"{MANAGEMENT}): root" in summary

    text = text_of(detail)
    assert f"MFA digest · acme-dev ({dev}) ·" in text
    assert f"<@U0DEVAL01> · `dev-alice` in acme-dev ({dev})" in text and f"acme-dev ({dev}): root" in text
    assert "`bob`" not in text and MANAGEMENT not in text and sandbox not in text
    assert f'"value": {json.dumps(user_value(dev, "dev-alice"))}' in text
    assert f'"value": {json.dumps(nudge_all_value([dev]))}' in text

    text = text_of(failed)
    assert f"sandbox ({sandbox}) could not be audited" in text and "AccessDenied" in text
    assert "unknown*, not clean" in text
    assert "All clear" not in text and "all clear" not in text and "`dev-alice`" not in text

    period = first.period_key
    dev_alice = f"arn:aws:iam::{dev}:user/dev-alice"
    assert org.store.digest_rows(DEV_CHANNEL, period) == {dev_alice: first.accounts[0].message_ts}
    assert org.store.digest_rows(MAIN, period)[dev_alice] == first.message_ts
    assert org.store.last_digest(SANDBOX_CHANNEL).message_ts == first.accounts[1].message_ts


def test_a_nudged_row_is_updated_in_place_in_the_account_channel_too(org: Org) -> None:
    dev = org.ids["dev"]
    services = org.services()
    first = post_scheduled_digest(services, org.clock())
    dev_ts = first.accounts[0].message_ts
    nudger = Nudger(services)
    answer = nudger.nudge_user(ADMIN, dev, "dev-alice")
    assert answer.outcome == "sent"
    updates = {u.payload["channel"]: u for u in org.standin.accepted("chat.update")}
    assert set(updates) == {MAIN, DEV_CHANNEL}  # the sandbox channel lists no such row: untouched
    assert updates[MAIN].payload["ts"] == first.message_ts and updates[DEV_CHANNEL].payload["ts"] == dev_ts
    assert f"`dev-alice` in acme-dev ({dev}) · open since today · 1 nudge · _nudged by <@{ADMIN}> at" in text_of(
        updates[DEV_CHANNEL]
    )

    # the account channel's "Nudge all" queues that account's people only
    latest = services.recent_audit()
    assert nudger.enqueue_all(OTHER_ADMIN, latest, accounts=(org.ids["prod"],)).people == 0
    assert nudger.enqueue_all(OTHER_ADMIN, latest, accounts=(dev,)).people == 1
    assert nudger.enqueue_all(ADMIN, latest).people == 4  # bob, erin, ivan and dev-alice's people
    assert sorted(item.slack_user_id for item in org.store.pending_nudges()) == [
        "U0BOB0001",
        "U0DEVAL01",
        "U0DEVAL01",
        "U0ERIN001",
        "U0IVAN001",
    ]


def test_a_manual_digest_goes_to_the_account_channels_too_under_its_own_period(org: Org) -> None:
    scheduled = post_scheduled_digest(org.services(), org.clock())
    org.clock.advance(minutes=5)
    manual = post_manual_digest(org.services(), ADMIN)
    assert scheduled.posted and manual.posted and manual.period_key != scheduled.period_key
    assert [len(posts(org.standin, c)) for c in (MAIN, DEV_CHANNEL, SANDBOX_CHANNEL)] == [2, 2, 2]
    second = posts(org.standin, DEV_CHANNEL)[1]
    assert "*New since the last digest:* 0" in text_of(second)  # counted against that channel's own last digest
