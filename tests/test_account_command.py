"""`/mfa-check ACCOUNT`, and an account channel's "Nudge all", over real sockets: signed requests to the real
WSGI app, an AWS Organization in moto reached through assumed roles (behind the counting proxy), answers
through the Slack stand-in.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest

from bot.config import Config
from tests.fixtures_aws import org_config
from tests.fixtures_slack import ServedApp, served_production
from tests.iam_proxy import IamProxy
from tests.slack_standin import ADMIN, NOBODY, SlackStandIn, action_body, post, sign
from tests.store_rows import stored_scans


def text_of(payload: dict) -> str:
    return json.dumps(payload.get("blocks", []), ensure_ascii=False) + payload.get("text", "")


@pytest.fixture
def org_bot(
    organization: dict[str, str], iam_proxy: IamProxy, slack_config: Config, slack_standin: SlackStandIn
) -> Iterator[ServedApp]:
    """The production wiring auditing the Organization (4 accounts), served over HTTP."""
    config = org_config(
        iam_proxy.url,
        **{f.name: getattr(slack_config, f.name) for f in dataclasses.fields(Config) if f.name.startswith("slack_")},
        admin_user_ids=slack_config.admin_user_ids,
        database_url=slack_config.database_url,
        email_domain=slack_config.email_domain,
    )
    with served_production(config, slack_standin) as served:
        yield served


def scanned(bot: ServedApp) -> list[str]:
    store = bot.services.store
    assert store is not None
    return sorted(scan.account_id for scan in stored_scans(store))


def test_one_account_by_id_then_by_alias_audited_and_recorded_alone(
    org_bot: ServedApp, organization: dict[str, str], iam_proxy: IamProxy
) -> None:
    prod, dev = organization["prod"], organization["dev"]
    _, url = org_bot.command(prod)
    final = org_bot.final(url)
    assert org_bot.answers(url)[0]["text"] == f":hourglass_flowing_sand: Auditing {prod}…"
    text = text_of(final)
    assert final["replace_original"] is True and final["response_type"] == "ephemeral"
    assert f"MFA audit · {prod}" in text and "*Compliant:* 1" in text and "*Violations:* 0" in text
    assert "dev-alice" not in text and "acme-dev" not in text and "bob" not in text  # no other account
    assert iam_proxy.calls["AssumeRole"] == 1  # by id: only that account's role was assumed
    assert scanned(org_bot) == [prod]

    _, url = org_bot.command("acme-dev")
    text = text_of(org_bot.final(url))
    assert f"MFA audit · acme-dev ({dev})" in text and "*Violations:* 1" in text and "`dev-alice`" in text
    assert prod not in text and "prod-carol" not in text
    assert scanned(org_bot) == sorted([prod, dev])
    store = org_bot.services.store
    assert store is not None
    assert [(e.account_id, e.user_name) for e in store.open_episodes()] == [(dev, "dev-alice")]


def test_an_account_that_cannot_be_read_is_an_error_never_clean(
    org_bot: ServedApp, organization: dict[str, str], iam_proxy: IamProxy
) -> None:
    sandbox = organization["sandbox"]
    iam_proxy.fail("AssumeRole", "AccessDenied", status=403, when=sandbox)
    _, url = org_bot.command(sandbox)
    final = org_bot.final(url)
    text = text_of(final)
    assert "This account could not be audited" in text and "sts:AssumeRole was denied" in text
    assert "*Violations:*" not in text and final["text"].endswith("could NOT be completed: the result is unknown")
    store = org_bot.services.store
    assert store is not None
    assert [(s.account_id, bool(s.error)) for s in stored_scans(store)] == [(sandbox, True)]


@pytest.mark.parametrize("wanted", ["nosuch-acct", "999999999999"])
def test_an_unknown_account_is_one_line_and_changes_nothing(org_bot: ServedApp, wanted: str) -> None:
    _, url = org_bot.command(wanted)
    final = org_bot.final(url)
    assert final["text"] == f"no configured account {wanted}"
    assert [b["text"]["text"] for b in final["blocks"]] == [f"no configured account {wanted}"]
    assert scanned(org_bot) == []
    store = org_bot.services.store
    assert store is not None and not store.open_episodes() and not store.actions()


def test_a_non_admin_naming_an_account_gets_the_usage_not_an_audit(
    org_bot: ServedApp, organization: dict[str, str], iam_proxy: IamProxy
) -> None:
    urls = []
    for text in ("acme-dev", organization["prod"], "prod"):
        _, url = org_bot.command(text, user_id=NOBODY)
        (answer,) = org_bot.answers(url)
        shown = text_of(answer)
        assert "*Usage*" in shown and "/mfa-check me" in shown
        assert "ACCOUNT" not in shown and "Only MFA-bot admins" not in shown  # admin forms stay unlisted
        urls.append(url)
    time.sleep(0.3)  # nothing else may follow
    assert [len(org_bot.standin.posts_to(url)) for url in urls] == [1, 1, 1]
    assert iam_proxy.calls["AssumeRole"] == 0 and scanned(org_bot) == []
    received = "".join(r.text for r in org_bot.standin.requests)
    for name in ("dev-alice", "dev-bob", "prod-carol", organization["dev"]):
        assert name not in received


def test_an_account_channels_nudge_all_queues_that_accounts_people_only(
    org_bot: ServedApp, organization: dict[str, str]
) -> None:
    def nudge_all(value: str) -> str:
        response_url = org_bot.standin.response_url()
        body = action_body("nudge_all", value, ADMIN, response_url, channel="C0DEVCHAN")
        assert post(org_bot.url, "/slack/events", body, sign(body, org_bot.config.slack_signing_secret or "")).status
        (answer,) = org_bot.answers(response_url)
        return answer["text"]

    dev = organization["dev"]
    scoped = nudge_all(f"accounts:{dev}")  # dev-alice has no Slack person; nobody else is in that account
    assert scoped.startswith("Nobody to nudge") and f"dev-alice ({dev})" in scoped and "Queued" not in scoped
    store = org_bot.services.store
    assert store is not None and store.pending_nudges() == []
    everyone = nudge_all("all")
    assert "Queued 3 DMs" in everyone and f"dev-alice ({dev})" in everyone
    assert sorted(item.slack_user_id for item in store.pending_nudges()) == ["U0BOB0001", "U0ERIN001", "U0IVAN001"]
