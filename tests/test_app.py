"""/mfa-check end to end over real sockets: signed HTTP requests to the real WSGI app, answers through
the Slack stand-in (Web API + response_url), IAM from moto's server seeded with the demo account,
a SQLite store. Socket Mode: the same command dispatched through Bolt without HTTP.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from slack_bolt.request import BoltRequest

from bot.app import create_app
from bot.config import Config
from bot.demo import DEMO_USERS
from bot.identity import IdentityChain, Roles, SlackDirectory
from bot.models import AccountFindings, AuditResult, RootStatus, UserFinding
from bot.services import Services, build_services
from bot.slack import make_web_client
from tests.slack_standin import ADMIN, NOBODY, SlackStandIn, command_body, get, post, sign
from tests.store_rows import stored_scans

if TYPE_CHECKING:
    from tests.fixtures_slack import ServedApp


IAM_NAMES = [name for name, *_ in DEMO_USERS]
ACCOUNT_RE = re.compile(r"\d{12}")


def final_blocks_text(payload: dict) -> str:
    return json.dumps(payload.get("blocks", []), ensure_ascii=False) + payload.get("text", "")


def assert_ephemeral(payloads: list[dict]) -> None:
    assert payloads and all(p.get("response_type") == "ephemeral" for p in payloads)


# -- the full audit -------------------------------------------------------------------------------


def test_admin_audit_is_acked_then_replaced_by_the_result(served_app: ServedApp) -> None:
    ack, url = served_app.command("")
    assert ack.status == 200 and ack.seconds < 1.0
    final = served_app.final(url)
    payloads = served_app.answers(url, 2)
    assert_ephemeral(payloads)
    assert payloads[0]["text"].startswith(":hourglass_flowing_sand: Auditing")
    assert final["replace_original"] is True
    text = final_blocks_text(final)
    assert "acme-demo" in text and "*Violations:* 3" in text and "*Exempt:* 1" in text
    # violation rows name the Slack person found by the chain, or say none was found
    assert "`bob` · " in text and "<@U0BOB0001>" in text  # slack-user-id tag
    assert "<@U0ERIN001>" in text  # email tag
    assert "<@U0IVAN001>" in text  # ivan + EMAIL_DOMAIN
    assert "break-glass account" in text  # heidi's exemption reason
    assert not served_app.standin.calls("files.getUploadURLExternal")  # everything fit
    assert not served_app.standin.calls("users.lookupByEmail")
    store = served_app.services.store
    assert store is not None and stored_scans(store)  # the audit is kept as history


def test_a_second_audit_names_the_account_while_it_runs(served_app: ServedApp) -> None:
    _, first = served_app.command("")
    served_app.final(first)
    _, second = served_app.command("")
    assert "Auditing acme-demo (" in served_app.answers(second, 1)[0]["text"]


# -- roles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "user bob", "exempt bob 30d on leave", "unexempt heidi", "link bob <@U0PLEB001>", "nudge all", "digest"],
)
def test_non_admin_is_refused_without_any_iam_name(served_app: ServedApp, text: str) -> None:
    ack, url = served_app.command(text, user_id=NOBODY)
    assert ack.status == 200
    (answer,) = served_app.answers(url, 1)
    time.sleep(0.3)  # nothing else may follow
    assert_ephemeral(served_app.answers(url, 1))
    assert "Only MFA-bot admins" in answer["text"] + final_blocks_text(answer)
    received = [ack.body.decode()] + [r.text for r in served_app.standin.requests]
    for body in received:
        for name in IAM_NAMES:
            assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", body), (name, body)
        assert not ACCOUNT_RE.search(body)
    store = served_app.services.store
    assert store is not None
    (refusal,) = store.actions(action=f"refused:{text.split()[0] if text else 'audit'}")
    assert refusal.actor == NOBODY and refusal.outcome == "refused"
    assert not store.active_exemptions(datetime.now(UTC)) and not store.links()


def test_admin_usergroup_members_are_admins(slack_config: Config, slack_standin: SlackStandIn) -> None:
    slack_standin.add_usergroup("S0SECOPS1", "secops", [NOBODY])
    client = make_web_client(slack_config)
    roles = Roles(slack_config.admin_user_ids, client=client, usergroup="S0SECOPS1")
    assert roles.is_admin(NOBODY)
    assert slack_standin.calls("usergroups.users.list")[0].payload["usergroup"] == "S0SECOPS1"


def test_help_and_usage_for_anyone(served_app: ServedApp) -> None:
    _, url = served_app.command("help", user_id=NOBODY)
    text = final_blocks_text(served_app.answers(url)[0])
    assert "/mfa-check me" in text and "exempt" not in text
    _, url = served_app.command("help")
    assert "exempt NAME DAYSd REASON" in final_blocks_text(served_app.answers(url)[0])


# -- me -------------------------------------------------------------------------------------------


def test_me_for_a_violator_found_by_slack_id_tag(served_app: ServedApp) -> None:
    _, url = served_app.command("me", user_id="U0BOB0001")
    text = final_blocks_text(served_app.final(url))
    assert "`bob`" in text and "without MFA" in text
    assert "aws iam create-virtual-mfa-device --virtual-mfa-device-name bob" in text
    assert "aws iam enable-mfa-device --user-name bob" in text and "aws iam list-mfa-devices --user-name bob" in text
    assert "Security credentials" in text
    for other in set(IAM_NAMES) - {"bob"}:
        assert f"`{other}`" not in text


def test_me_found_by_email_tag(served_app: ServedApp) -> None:
    _, url = served_app.command("me", user_id="U0ERIN001")
    text = final_blocks_text(served_app.final(url))
    assert "`erin`" in text and "create-virtual-mfa-device" in text
    assert served_app.standin.calls("users.info")[-1].payload["user"] == "U0ERIN001"


def test_me_compliant_user_found_by_name_and_email_domain(served_app: ServedApp) -> None:
    _, url = served_app.command("me", user_id="U0ALICE01")
    text = final_blocks_text(served_app.final(url))
    assert "`alice`" in text and "MFA on" in text and "create-virtual-mfa-device" not in text


def test_me_without_an_iam_user_says_how_to_get_linked(served_app: ServedApp) -> None:
    _, url = served_app.command("me", user_id=NOBODY)
    text = final_blocks_text(served_app.final(url))
    assert "found no IAM user" in text and "/mfa-check link NAME @you" in text
    for name in IAM_NAMES:
        assert f"`{name}`" not in text


# -- user, exempt, unexempt, link -------------------------------------------------------------------


def test_user_detail_is_case_insensitive(served_app: ServedApp) -> None:
    _, url = served_app.command("user BOB")
    text = final_blocks_text(served_app.final(url))
    assert "`bob`" in text and "without MFA" in text and "<@U0BOB0001>" in text and ":user/bob" in text


def test_unknown_user_is_one_line_and_changes_nothing(served_app: ServedApp) -> None:
    store = served_app.services.store
    assert store is not None
    for text in ["user nosuch", "exempt nosuch 30d reason", "unexempt nosuch", "link nosuch <@U0ERIN001>"]:
        _, url = served_app.command(text)
        final = served_app.final(url)
        assert final["text"].startswith("No IAM user `nosuch`") and final["text"].count("\n") == 0
    assert not store.active_exemptions(datetime.now(UTC)) and not store.links()
    assert not [a for a in store.actions() if a.outcome == "ok"]


def test_exempt_is_recorded_and_the_next_audit_shows_it(served_app: ServedApp) -> None:
    store = served_app.services.store
    assert store is not None
    _, url = served_app.command("exempt bob 30d waiting for a YubiKey &amp; a laptop")
    final = served_app.final(url)
    assert "exempt until" in final["text"] and "waiting for a YubiKey &amp; a laptop" in final["text"]
    (exemption,) = store.active_exemptions(datetime.now(UTC)).values()
    assert exemption.user_name == "bob" and exemption.granted_by == ADMIN
    assert exemption.reason == "waiting for a YubiKey & a laptop"
    assert 29 <= (exemption.until - datetime.now(UTC)).days <= 30
    (action,) = store.actions(action="exempt")
    assert action.actor == ADMIN and action.target == exemption.arn
    _, url = served_app.command("")
    text = final_blocks_text(served_app.final(url))
    assert "*Violations:* 2" in text and "*Exempt:* 2" in text

    _, url = served_app.command("unexempt bob")
    assert "has ended" in served_app.final(url)["text"]
    assert not store.active_exemptions(datetime.now(UTC))
    _, url = served_app.command("unexempt bob")
    assert "nothing changed" in served_app.final(url)["text"]


def test_link_then_me_finds_the_linked_user(served_app: ServedApp) -> None:
    store = served_app.services.store
    assert store is not None
    _, url = served_app.command("link frank <@U0ALICE01|alice>")
    assert "linked to <@U0ALICE01>" in served_app.final(url)["text"]
    assert list(store.links().values()) == ["U0ALICE01"]
    assert store.actions(action="link")[0].detail == "U0ALICE01"
    _, url = served_app.command("me", user_id="U0ALICE01")
    text = final_blocks_text(served_app.final(url))
    assert "`alice`" in text and "`frank`" in text
    # a bare ID works too; an unknown person changes nothing
    _, url = served_app.command("link carol U0ERIN001")
    assert "linked to <@U0ERIN001>" in served_app.final(url)["text"]
    _, url = served_app.command("link dave <@U0NOPE001>")
    assert "no Slack person" in served_app.final(url)["text"]
    assert len(store.links()) == 2


@pytest.mark.parametrize(
    "text",
    [
        "x" * 5000,
        ":tada:",
        "🙂 🙂",
        "Frobnicate",  # not an account alias either (aliases are lowercase): usage
        "user",
        "exempt bob",
        "exempt bob 0d x",
        "exempt bob 366d x",
        "link bob",
        "link bob @bob",
        "me too",
    ],
)
def test_unparsable_text_gets_usage_and_changes_nothing(served_app: ServedApp, text: str) -> None:
    ack, url = served_app.command(text)
    assert ack.status == 200
    (answer,) = served_app.answers(url)
    assert "*Usage*" in final_blocks_text(answer)
    store = served_app.services.store
    assert store is not None
    assert not store.actions() and not store.links() and not store.active_exemptions(datetime.now(UTC))


# -- signatures, health ---------------------------------------------------------------------------


def test_forged_and_replayed_requests_get_401_and_their_body_is_not_logged(
    served_app: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = served_app.standin.response_url("forged")
    body = command_body("exempt bob 365d SECRET-MARKER", ADMIN, url)
    secret = served_app.config.slack_signing_secret or ""
    forged = post(served_app.url, "/slack/events", body, sign(body, "not-the-secret"))
    replayed = post(served_app.url, "/slack/events", body, sign(body, secret, timestamp=int(time.time()) - 301))
    unsigned = post(served_app.url, "/slack/events", body, {"Content-Type": "application/x-www-form-urlencoded"})
    tampered_headers = sign(body, secret)
    tampered = post(served_app.url, "/slack/events", body.replace("365d", "300d"), tampered_headers)
    assert [r.status for r in (forged, replayed, unsigned, tampered)] == [401, 401, 401, 401]
    time.sleep(0.2)
    assert not served_app.standin.posts_to(url)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rejected a Slack request (401)" in logged and "replayed" in logged
    assert "SECRET-MARKER" not in logged and "exempt" not in logged
    assert served_app.services.store is not None and not served_app.services.store.actions()


def _refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "rejected a Slack request" in r.getMessage()]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "signed", "timestamp", "status"),
    [
        ("timestamp abc", b"text=MARKER", "application/x-www-form-urlencoded", False, "abc", 401),
        ("unsigned, not UTF-8", b"text=MARKER\xff\xfe", "application/x-www-form-urlencoded", False, None, 401),
        ("signed, not UTF-8", b"text=MARKER\xff\xfe", "application/x-www-form-urlencoded", True, None, 400),
        ("unsigned, JSON {x", b"{x MARKER", "application/json", False, None, 401),
        ("signed, JSON {x", b"{x MARKER", "application/json", True, None, 400),
        ("signed, payload not JSON", b"payload=%7Bx+MARKER", "application/x-www-form-urlencoded", True, None, 400),
    ],
)
def test_malformed_requests_get_4xx_and_one_log_line_without_body_or_traceback(
    served_app: ServedApp,
    caplog: pytest.LogCaptureFixture,
    name: str,
    body: bytes,
    content_type: str,
    signed: bool,
    timestamp: str | None,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = served_app.config.slack_signing_secret or ""
    ts = str(int(time.time()))
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp or ts}
    if signed:
        digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        headers["X-Slack-Signature"] = f"v0={digest}"
    else:
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    result = post(served_app.url, "/slack/events", body, headers)
    assert result.status == status, name
    (refusal,) = _refusals(caplog)
    assert refusal.getMessage().startswith(f"rejected a Slack request ({status}): ")
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in caplog.records)
    assert "MARKER" not in caplog.text and "Traceback" not in caplog.text


def test_a_replayed_signed_request_is_refused_and_changes_nothing(
    served_app: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    url = served_app.standin.response_url("replay")
    body = command_body("exempt bob 30d REPLAY-MARKER", ADMIN, url)
    headers = sign(body, served_app.config.slack_signing_secret or "")
    first = post(served_app.url, "/slack/events", body, headers)
    assert first.status == 200
    served_app.final(url)
    answers = len(served_app.standin.posts_to(url))
    caplog.set_level(logging.INFO)
    again = [post(served_app.url, "/slack/events", body, headers) for _ in range(2)]
    assert [r.status for r in again] == [401, 401]
    refusals = _refusals(caplog)
    assert len(refusals) == 2 and all("replayed" in r.getMessage() for r in refusals)
    assert "REPLAY-MARKER" not in caplog.text
    time.sleep(0.3)
    assert len(served_app.standin.posts_to(url)) == answers  # the first request's answers only
    store = served_app.services.store
    assert store is not None
    assert [a.action for a in store.actions() if a.action.startswith("exempt")] == ["exempt"]


def test_an_oversized_body_gets_413_at_once_without_being_read(
    served_app: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.slow_clients import big_body, declared_big_body

    declared = declared_big_body(served_app.url, 10_000_000)
    streamed = big_body(served_app.url, 10_000_000)
    assert (declared.status, streamed.status) == (413, 413)
    assert declared.seconds < 1.0
    assert len(_refusals(caplog)) == 2


def test_a_body_that_does_not_arrive_in_time_gets_408(
    served_app: ServedApp, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import server
    from tests.slow_clients import SlowClients

    monkeypatch.setattr(server, "BODY_TIMEOUT_SECONDS", 0.5)
    with SlowClients(served_app.url, 3) as slow:
        assert slow.statuses() == [408, 408, 408]
    refusals = _refusals(caplog)
    assert len(refusals) == 3 and all("(408): body not received within" in r.getMessage() for r in refusals)


def test_debug_logs_never_contain_a_response_url(served_app: ServedApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ack, url = served_app.command("")  # an audit: a placeholder, then the answer, both to response_url
    assert ack.status == 200
    served_app.final(url)
    _, help_url = served_app.command("help")
    served_app.answers(help_url)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) > 20  # DEBUG really was on
    for path in (urllib.parse.urlparse(url).path, urllib.parse.urlparse(help_url).path):
        assert path not in logged and urllib.parse.quote(path, safe="") not in logged
    assert "response_url" not in logged.replace("no response_url", "")


def test_health_and_unknown_paths(served_app: ServedApp) -> None:
    assert get(served_app.url, "/healthz").status == 200
    assert get(served_app.url, "/slack/events").status == 404
    assert get(served_app.url, "/nope").status == 404


# -- 300 violations -------------------------------------------------------------------------------


def big_result(n: int) -> AuditResult:
    now = datetime.now(UTC)
    users = [
        UserFinding(
            account_id="123456789012",
            user_name=f"user-{i:04d}",
            arn=f"arn:aws:iam::123456789012:user/user-{i:04d}",
            console_access=True,
            mfa_devices=(),
            status="violation",
            reason="console password, no MFA device",
        )
        for i in range(n)
    ]
    account = AccountFindings("123456789012", "big", None, now, RootStatus(True, True), users)
    return AuditResult(generated_at=now, accounts=[account])


@pytest.fixture
def big_app(slack_config: Config, serve_app: Callable[[Services], ServedApp]) -> Iterator[ServedApp]:
    from bot.store import Store

    client = make_web_client(slack_config)
    with Store.open(slack_config.database_url) as store:
        services = build_services(
            slack_config,
            client,
            store,
            run_audit=lambda: big_result(300),
            roles=Roles(slack_config.admin_user_ids),
            identity=IdentityChain(SlackDirectory(client), email_domain="example.com"),
        )
        yield serve_app(services)


def test_300_violations_fit_slack_and_the_rest_arrives_as_a_csv(big_app: ServedApp) -> None:
    from slack_sdk.models.blocks import Block

    _, url = big_app.command("")
    final = big_app.final(url)
    blocks = final["blocks"]
    assert len(blocks) <= 50
    for raw in blocks:
        Block.parse(raw).validate_json()
        if raw["type"] == "section" and "text" in raw:
            assert len(raw["text"]["text"]) <= 3000
    text = final_blocks_text(final)
    assert "*Violations:* 300" in text
    shown = set(re.findall(r"• `(user-\d{4})`", text))
    more = int(re.search(r"…and (\d+) more \(", text).group(1))
    assert len(shown) + more == 300

    standin = big_app.standin
    standin.wait_for(lambda: standin.calls("files.completeUploadExternal"), 10)
    (opened,) = standin.calls("conversations.open")
    assert opened.payload["users"] == ADMIN
    (asked,) = standin.calls("files.getUploadURLExternal")
    (completed,) = standin.calls("files.completeUploadExternal")
    file_id = json.loads(completed.payload["files"])[0]["id"]
    assert completed.payload["channel_id"] == "D0ADMIN01"
    uploaded = standin.uploads[file_id].decode()
    assert int(asked.payload["length"]) == len(standin.uploads[file_id])
    rows = list(csv.DictReader(io.StringIO(uploaded)))
    assert len(rows) == 300 and {r["status"] for r in rows} == {"violation"}
    assert shown <= {r["user_name"] for r in rows}  # header 300 == distinct rows across message and file


# -- Socket Mode ----------------------------------------------------------------------------------


def test_socket_mode_dispatches_the_same_command_without_http(served_app: ServedApp) -> None:
    from dataclasses import replace

    config = replace(served_app.config, slack_app_token="xapp-test", slack_signing_secret=None)
    client = make_web_client(config)
    app = create_app(config, served_app.services, client)
    url = served_app.standin.response_url("socket")
    body = dict(urllib.parse.parse_qsl(command_body("me", "U0BOB0001", url)))
    started = time.perf_counter()
    response = app.dispatch(BoltRequest(body=body, mode="socket_mode"))
    assert response.status == 200 and time.perf_counter() - started < 1.0
    text = final_blocks_text(served_app.final(url))
    assert "`bob`" in text and "create-virtual-mfa-device" in text
    # the same body over HTTP without a signature is refused
    assert app.dispatch(BoltRequest(body=command_body("me", "U0BOB0001", url))).status == 401


# -- single flight, mode selection -------------------------------------------------------------------


def test_one_audit_serves_everyone_who_asked_while_it_ran() -> None:
    import threading

    from bot.edges import SharedAudit

    calls = []
    gate = threading.Event()

    def audit() -> AuditResult:
        calls.append(1)
        gate.wait(5)
        return big_result(1)

    shared = SharedAudit(audit)
    asked = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(shared, asked) for _ in range(4)]
        time.sleep(0.2)
        gate.set()
        results = [f.result() for f in futures]
    assert len(calls) == 1 and all(r is results[0] for r in results)
    # asked while it ran, started only after it ended (a queued job): still served by it
    assert shared(asked) is results[0] and len(calls) == 1
    # asked after it ended: a fresh audit
    assert shared(time.monotonic()) is not results[0] and len(calls) == 2


def test_serve_picks_socket_mode_when_an_app_token_is_set(
    slack_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from bot import server
    from bot.config import ConfigError

    chosen: list[str] = []
    monkeypatch.setattr(server, "run_socket_mode", lambda config, runtime: chosen.append("socket") or 0)
    monkeypatch.setattr(server, "run_http", lambda config, load, options=None: chosen.append("http") or 0)
    assert server.serve(replace(slack_config, slack_app_token="xapp-1", slack_signing_secret=None)) == 0
    assert server.serve(slack_config) == 0
    assert chosen == ["socket", "http"]
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        server.serve(replace(slack_config, slack_signing_secret=None))
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        server.serve(replace(slack_config, slack_bot_token=None))


def test_manifest_and_procfile() -> None:
    from pathlib import Path

    yaml = pytest.importorskip("yaml")
    root = Path(__file__).resolve().parents[1]
    manifest = yaml.safe_load((root / "manifest.yml").read_text())
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/mfa-check" and command["should_escape"] is True
    assert set(manifest["oauth_config"]["scopes"]["bot"]) >= {
        "commands",
        "chat:write",
        "im:write",
        "users:read",
        "users:read.email",
        "usergroups:read",
        "files:write",
    }
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]
    assert len(manifest["display_information"]["description"]) <= 140
    procfile = dict(line.split(": ", 1) for line in (root / "Procfile").read_text().splitlines() if line)
    assert procfile == {"release": "python -m bot migrate", "web": "python -m bot serve"}


def test_an_unreachable_database_gives_503_health_and_commands_say_so(
    served_app: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.store.db import create_store_engine

    store = served_app.services.store
    assert store is not None
    healthy = get(served_app.url, "/healthz")
    assert healthy.status == 200 and json.loads(healthy.body) == {"ok": True, "database": "ok"}
    reachable_engine = store.engine
    store.engine = create_store_engine("postgresql://mfa:pw@127.0.0.1:1/mfa")  # the database goes away
    try:
        health = get(served_app.url, "/healthz")
        assert health.status == 503 and json.loads(health.body) == {"ok": False, "database": "unreachable"}
        for text in ("exempt bob 30d waiting for a key", "unexempt bob", "link frank U0ALICE01"):
            ack, url = served_app.command(text)
            assert ack.status == 200
            final = served_app.final(url)
            assert "The database is unreachable" in final["text"], (text, final)
    finally:
        store.engine.dispose()
        store.engine = reachable_engine
    assert get(served_app.url, "/healthz").status == 200
    assert "Something went wrong" not in caplog.text
