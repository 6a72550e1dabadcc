"""Identity chain, the cached Slack directory, admin roles and the 429 policy, against the Slack stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient

from bot.config import Config
from bot.demo import demo_client
from bot.identity import IdentityChain, Roles, SlackDirectory, resolve_slack_user, track_identities, user_email
from bot.models import AccountFindings, AuditResult, RootStatus, UserFinding
from bot.slack import BoundedRateLimitRetryHandler, make_responder, make_web_client
from bot.store import Store
from tests.fixtures_slack import ServedApp
from tests.slack_standin import SlackStandIn, person


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    members = [
        person("U0ALICE01", "Alice@Example.com"),
        person("U0ERIN001", "erin@example.com"),
        person("U0GONE001", "bob@example.com", deleted=True),
        person("U0ROBOT01", "bot@example.com", is_bot=True),
        person("USLACKBOT", "slackbot@example.com"),
        person("U0NOMAIL1"),
        person("U0IVAN001", "ivan@corp.example"),
    ]
    with SlackStandIn(members=members) as server:
        yield server


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return make_web_client(Config(slack_bot_token="xoxb-test", slack_api_url=standin.api_url))


def finding(name: str, tags: dict[str, str] | None = None, status: str = "violation") -> UserFinding:
    return UserFinding(
        account_id="123456789012",
        user_name=name,
        arn=f"arn:aws:iam::123456789012:user/{name}",
        console_access=True,
        mfa_devices=(),
        status=status,  # type: ignore[arg-type]
        tags=tags or {},
    )


def test_directory_pages_with_cursor_and_leaves_out_deleted_and_bots(standin: SlackStandIn, client: WebClient) -> None:
    directory = SlackDirectory(client, page_limit=2)
    assert directory.emails() == {
        "alice@example.com": "U0ALICE01",
        "erin@example.com": "U0ERIN001",
        "ivan@corp.example": "U0IVAN001",
    }
    calls = standin.calls("users.list")
    assert len(calls) == 4  # 7 members, 2 a page
    assert [c.payload.get("cursor") for c in calls] == [None, "2", "4", "6"]
    assert all(c.payload["limit"] == "2" for c in calls)
    assert directory.user_id_for_email("ALICE@example.com ") == "U0ALICE01"


def test_directory_default_page_is_1000(standin: SlackStandIn, client: WebClient) -> None:
    SlackDirectory(client).emails()
    assert standin.calls("users.list")[0].payload["limit"] == "1000"


def test_directory_is_cached_for_its_ttl(standin: SlackStandIn, client: WebClient) -> None:
    clock = FakeClock()
    directory = SlackDirectory(client, ttl_seconds=600, clock=clock)
    for _ in range(5):
        directory.user_id_for_email("erin@example.com")
    assert len(standin.calls("users.list")) == 1
    clock.now += 601
    directory.user_id_for_email("erin@example.com")
    assert len(standin.calls("users.list")) == 2
    assert not standin.calls("users.lookupByEmail")


def test_directory_failure_is_retried_later_not_raised(standin: SlackStandIn, client: WebClient) -> None:
    from tests.slack_standin import Reply

    standin.reply("users.list", Reply(body={"ok": False, "error": "missing_scope"}))
    clock = FakeClock()
    directory = SlackDirectory(client, clock=clock)
    assert directory.user_id_for_email("erin@example.com") is None
    assert directory.user_id_for_email("erin@example.com") is None
    assert len(standin.calls("users.list")) == 1
    clock.now += 61
    assert directory.user_id_for_email("erin@example.com") == "U0ERIN001"


def test_chain_order_link_then_id_tag_then_email_tag_then_domain(client: WebClient) -> None:
    directory = SlackDirectory(client)
    links = {"arn:aws:iam::123456789012:user/linked": "U0LINKED1"}
    tagged = {"slack-user-id": "U0TAGGED1", "email": "erin@example.com"}
    assert resolve_slack_user(finding("linked", tagged), links, directory, "example.com") == "U0LINKED1"
    assert resolve_slack_user(finding("x", tagged), links, directory, "example.com") == "U0TAGGED1"
    assert resolve_slack_user(finding("x", {"email": "ERIN@example.com"}), {}, directory, None) == "U0ERIN001"
    assert resolve_slack_user(finding("alice"), {}, directory, "example.com") == "U0ALICE01"
    # an email tag nobody has falls through to name + domain
    assert resolve_slack_user(finding("alice", {"email": "nobody@x.io"}), {}, directory, "example.com") == "U0ALICE01"
    assert resolve_slack_user(finding("alice"), {}, directory, None) is None
    assert resolve_slack_user(finding("x", {"slack-user-id": "not-an-id"}), {}, directory, None) is None
    # configurable tag keys
    assert resolve_slack_user(finding("x", {"chat-id": "U0OTHER01"}), {}, directory, None, "chat-id") == "U0OTHER01"


def test_reverse_chain_finds_every_own_user(client: WebClient) -> None:
    users = [
        finding("erin", {"email": "erin@example.com"}),
        finding("alice", status="compliant"),  # no tags: found by name + domain
        finding("svc", status="compliant"),
        finding("old-alice", status="no_console"),
    ]
    result = AuditResult(
        generated_at=None,  # type: ignore[arg-type]
        accounts=[AccountFindings("123456789012", None, None, None, RootStatus(), users)],
    )
    chain = IdentityChain(SlackDirectory(client), email_domain="example.com")
    links = {"arn:aws:iam::123456789012:user/old-alice": "U0ALICE01"}
    own = chain.own_findings(result, "U0ALICE01", "alice@example.com", links)
    assert [u.user_name for u in own] == ["alice", "old-alice"]
    assert [u.user_name for u in chain.own_findings(result, "U0ERIN001", "erin@example.com", {})] == ["erin"]
    # the caller's users.info email counts even if the cached directory does not know them yet
    new = chain.own_findings(result, "U0NEW0001", "svc@example.com", {})
    assert [u.user_name for u in new] == ["svc"]
    annotated = chain.annotate(result, links)
    assert [u.slack_user_id for u in annotated.accounts[0].users] == ["U0ERIN001", "U0ALICE01", None, "U0ALICE01"]


def test_user_email_from_users_info(standin: SlackStandIn, client: WebClient) -> None:
    assert user_email(client, "U0ERIN001") == "erin@example.com"
    assert user_email(client, "U0MISSING") is None


def test_roles_from_ids_and_a_cached_usergroup(standin: SlackStandIn, client: WebClient) -> None:
    standin.add_usergroup("S0ADMINS1", "mfa-admins", ["U0GROUP01"])
    clock = FakeClock()
    roles = Roles({"U0ADMIN01"}, client=client, usergroup="mfa-admins", ttl_seconds=300, clock=clock)
    assert roles.is_admin("U0ADMIN01")
    assert roles.is_admin("U0GROUP01")
    assert not roles.is_admin("U0PLEB001")
    assert len(standin.calls("usergroups.users.list")) == 1
    standin.usergroups["S0ADMINS1"]["users"] = []
    assert roles.is_admin("U0GROUP01")  # cached
    clock.now += 301
    assert not roles.is_admin("U0GROUP01")
    assert standin.calls("usergroups.users.list")[-1].payload["usergroup"] == "S0ADMINS1"


def test_roles_without_a_group_ask_nobody(standin: SlackStandIn, client: WebClient) -> None:
    roles = Roles({"U0ADMIN01"}, client=client)
    assert not roles.is_admin("U0PLEB001")
    assert not standin.requests


def test_a_429_is_waited_out_with_retry_after(standin: SlackStandIn, client: WebClient) -> None:
    standin.rate_limit("chat.postMessage", retry_after=1, times=1)
    started = time.monotonic()
    response = client.chat_postMessage(channel="C0CHAN001", text="hi")
    assert response["ok"]
    assert time.monotonic() - started >= 1.0
    assert len(standin.calls("chat.postMessage")) == 2


def test_a_429_on_response_url_is_waited_out(standin: SlackStandIn) -> None:
    url = standin.response_url("limited")
    standin.rate_limit("/response/limited", retry_after=0, times=1)
    respond = make_responder(url)
    assert respond(text="hello").status_code == 200
    assert len(standin.posts_to(url)) == 2


def test_the_total_wait_is_bounded(standin: SlackStandIn) -> None:
    slept: list[float] = []
    handler = BoundedRateLimitRetryHandler(max_total_wait=250, sleep=slept.append)
    client = WebClient(token="xoxb-test", base_url=standin.api_url, retry_handlers=[handler])
    standin.rate_limit("chat.postMessage", retry_after=100, times=10)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C0CHAN001", text="hi")
    assert raised.value.response.status_code == 429
    assert len(slept) == 2 and 200 <= sum(slept) <= 250
    assert len(standin.calls("chat.postMessage")) == 3


def test_many_retries_allowed_within_the_bound(standin: SlackStandIn) -> None:
    slept: list[float] = []
    client = WebClient(
        token="xoxb-test", base_url=standin.api_url, retry_handlers=[BoundedRateLimitRetryHandler(sleep=slept.append)]
    )
    standin.rate_limit("chat.postMessage", retry_after=5, times=20)
    assert client.chat_postMessage(channel="C0CHAN001", text="hi")["ok"]
    assert len(slept) == 20


# -- a redirected identity (issue 10, item 6) ----------------------------------------------------


def violating(name: str, tags: dict[str, str]) -> AuditResult:
    user = UserFinding(
        account_id="123456789012",
        user_name=name,
        arn=f"arn:aws:iam::123456789012:user/{name}",
        console_access=True,
        mfa_devices=(),
        status="violation",
        tags=tags,
    )
    account = AccountFindings("123456789012", None, None, None, RootStatus(), [user])
    return AuditResult(generated_at=datetime.now(UTC), accounts=[account])


def test_a_person_who_changes_between_audits_is_written_to_the_audit_trail_once(store: Store) -> None:
    chain = IdentityChain(directory=None)
    bob = "arn:aws:iam::123456789012:user/bob"
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert track_identities(store, chain, violating("bob", {"slack-user-id": "U0BOB0001"}), {}, t0) == []
    assert store.identities([bob])[bob].slack_user_id == "U0BOB0001"  # first sighting: no change
    redirected = violating("bob", {"slack-user-id": "U0EVE0001"})  # someone with iam:TagUser
    (change,) = track_identities(store, chain, redirected, {}, t0 + timedelta(hours=1))
    assert (change.previous_slack_user_id, change.slack_user_id) == ("U0BOB0001", "U0EVE0001")
    assert track_identities(store, chain, redirected, {}, t0 + timedelta(hours=2)) == []  # noted once
    (trail,) = store.actions(action="identity_changed")
    assert (trail.target, trail.detail) == (bob, "U0BOB0001 (slack-user-id tag) -> U0EVE0001 (slack-user-id tag)")
    assert track_identities(store, chain, violating("bob", {}), {}, t0 + timedelta(hours=3)) == []  # nobody now
    assert store.identities([bob])[bob].slack_user_id == "U0EVE0001"  # a lookup that finds no one is no change


def test_a_link_set_in_slack_always_wins_over_tags(store: Store) -> None:
    chain = IdentityChain(directory=None)
    bob = "arn:aws:iam::123456789012:user/bob"
    finding = violating("bob", {"slack-user-id": "U0EVE0001"}).accounts[0].users[0]
    assert chain.resolve_source(finding, {bob: "U0BOB0001"}) == ("U0BOB0001", "link set in Slack")
    assert chain.resolve_source(finding, {}) == ("U0EVE0001", "slack-user-id tag")


def test_own_findings_without_a_directory_trust_the_callers_own_email_and_nothing_else() -> None:
    """No Slack directory (no token): only the caller's own profile email can match an `email` tag."""
    chain = IdentityChain(directory=None, email_domain="example.com")
    bob, eve = (violating(name, {"email": f"{name}@example.com"}).accounts[0].users[0] for name in ("bob", "eve"))
    account = AccountFindings("123456789012", None, None, None, RootStatus(), [bob, eve])
    both = AuditResult(generated_at=datetime.now(UTC), accounts=[account])
    mine = chain.own_findings(both, "U0BOB0001", "bob@example.com", {})
    assert [u.user_name for u in mine] == ["bob"]
    assert chain.own_findings(both, "U0BOB0001", None, {}) == []  # no email, no directory: nobody


def test_user_detail_shows_admins_where_the_person_comes_from_and_that_it_changed(
    served_app: ServedApp, demo_account: str
) -> None:
    _, url = served_app.command("user bob")
    first = json.dumps(served_app.final(url), ensure_ascii=False)
    assert "*Slack person:* <@U0BOB0001>" in first and "*Found by:* slack-user-id tag" in first
    assert "Slack person changed" not in first
    demo_client(demo_account).tag_user(UserName="bob", Tags=[{"Key": "slack-user-id", "Value": "U0ERIN001"}])
    _, url = served_app.command("user bob")
    second = json.dumps(served_app.final(url), ensure_ascii=False)
    assert "*Slack person:* <@U0ERIN001>" in second
    assert "Slack person changed" in second and "was <@U0BOB0001> (slack-user-id tag)" in second
    store = served_app.services.store
    assert store is not None
    assert [a.detail for a in store.actions(action="identity_changed")] == [
        "U0BOB0001 (slack-user-id tag) -> U0ERIN001 (slack-user-id tag)"
    ]
    _, url = served_app.command("link bob <@U0BOB0001|bob>")  # a link set in Slack wins over the tag
    served_app.final(url)
    _, url = served_app.command("user bob")
    third = json.dumps(served_app.final(url), ensure_ascii=False)
    assert "*Slack person:* <@U0BOB0001>" in third and "*Found by:* link set in Slack" in third
