"""Slack fixtures (a pytest plugin): the Slack stand-in, a Config wired to it, the app served over HTTP.

`served_app` runs the real HTTP front (`bot.server.SlackFront` under uvicorn, as `serve` runs it,
signature check included) on a loopback port in this process, wired to the stand-in (Slack Web API
+ response_url), to moto's IAM server seeded with the demo account (tests.fixtures_aws), and to a
SQLite store in tmp_path.
`serve_app(services)` serves the app with any Services (a slow or synthetic audit).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from slack_bolt import App

from bot.app import SignatureCheck, create_app
from bot.config import Config
from bot.server import Runtime, SlackFront, uvicorn_server
from bot.services import Services, build_services
from bot.slack import make_web_client
from tests.slack_standin import (
    ADMIN,
    MEMBERS,
    OTHER_ADMIN,
    HttpResult,
    SlackStandIn,
    command_body,
    event_body,
    home_action_body,
    post,
    sign,
)

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-token"


@dataclass
class RunningFront:
    """uvicorn serving a SlackFront in a thread; `stop()` ends it."""

    server: uvicorn.Server
    thread: threading.Thread
    front: SlackFront
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.front.close()


def serve_front(front: SlackFront) -> RunningFront:
    """Serve `front` with uvicorn (the server `serve` uses) on a loopback port in a thread."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn_server(front, port=port, host="127.0.0.1")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return RunningFront(server, thread, front, f"http://127.0.0.1:{port}")


def serve_app_over_http(config: Config, app: App, health: Callable[[], dict[str, Any]] | None = None) -> RunningFront:
    """`app` behind the HTTP front `serve` uses (signature check, body cap, /healthz), served by uvicorn."""
    front = SlackFront(app, SignatureCheck(config.slack_signing_secret), health or (lambda: {"ok": True}))
    return serve_front(front)


@dataclass
class ServedApp:
    """The app served on a loopback port, with everything a test needs to drive and inspect it."""

    url: str
    standin: SlackStandIn
    services: Services
    config: Config
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def command(self, text: str, user_id: str = ADMIN, headers: dict[str, str] | None = None) -> tuple[HttpResult, str]:
        """Send a signed /mfa-check; returns the HTTP result (the ack) and the response_url used."""
        response_url = self.standin.response_url(f"cmd-{next(self._ids)}")
        body = command_body(text, user_id, response_url)
        secret = self.config.slack_signing_secret or ""
        return post(self.url, "/slack/events", body, headers or sign(body, secret)), response_url

    def event(self, event: dict[str, Any]) -> HttpResult:
        """Send a signed Events API callback (JSON) around `event`."""
        body = event_body(event)
        headers = {**sign(body, self.config.slack_signing_secret or ""), "Content-Type": "application/json"}
        return post(self.url, "/slack/events", body, headers)

    def home_click(self, action_id: str, value: str, user_id: str) -> HttpResult:
        """Send a signed click on a button of the App Home."""
        body = home_action_body(action_id, value, user_id)
        return post(self.url, "/slack/events", body, sign(body, self.config.slack_signing_secret or ""))

    def answers(self, response_url: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait for at least `count` posts to `response_url`; returns all their JSON payloads."""
        self.standin.wait_for(lambda: len(self.standin.posts_to(response_url)) >= count, timeout)
        return [r.payload for r in self.standin.posts_to(response_url)]

    def final(self, response_url: str, timeout: float = 20.0) -> dict[str, Any]:
        """The answer that replaced the "Auditing…" placeholder (or the only answer when none was shown)."""

        def done() -> dict[str, Any] | None:
            for record in self.standin.posts_to(response_url):
                payload = record.payload
                if payload.get("replace_original") or not payload.get("text", "").startswith(":hourglass"):
                    return payload
            return None

        return self.standin.wait_for(done, timeout)


@pytest.fixture
def slack_standin() -> Iterator[SlackStandIn]:
    """The Slack stand-in with the demo workspace's people."""
    with SlackStandIn(members=MEMBERS) as standin:
        yield standin


@pytest.fixture
def slack_config(slack_standin: SlackStandIn, demo_account: str, tmp_path: Any) -> Config:
    """A Config for HTTP mode against the stand-in, the seeded moto IAM and a SQLite store."""
    return Config(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_standin.api_url,
        admin_user_ids=frozenset({ADMIN, OTHER_ADMIN}),
        database_url=f"sqlite:///{tmp_path / 'bot.db'}",
        email_domain="example.com",
        aws_endpoint_url=demo_account,
    )


@pytest.fixture
def serve_app(slack_config: Config, slack_standin: SlackStandIn) -> Iterator[Callable[[Services], ServedApp]]:
    """A factory: serve the real WSGI app for the given Services; everything stops at teardown."""
    running: list[tuple[RunningFront, Services]] = []

    def start(services: Services) -> ServedApp:
        served = serve_app_over_http(slack_config, create_app(slack_config, services, make_web_client(slack_config)))
        running.append((served, services))
        return ServedApp(url=served.url, standin=slack_standin, services=services, config=slack_config)

    yield start
    for served, services in running:
        served.stop()
        services.jobs.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def served_production(config: Config, standin: SlackStandIn, **build_kwargs: Any) -> Iterator[ServedApp]:
    """The production wiring for `config` (real audit, store, directory, roles) served over HTTP."""
    from bot.store import Store

    client = make_web_client(config)
    store = Store.open(config.database_url)
    services = build_services(config, client, store, **build_kwargs)
    runtime = Runtime(create_app(config, services, client), client, services, store)
    served = serve_app_over_http(config, runtime.app, runtime.health)
    try:
        yield ServedApp(url=served.url, standin=standin, services=services, config=config)
    finally:
        served.stop()
        services.jobs.shutdown(wait=True, cancel_futures=True)
        store.close()


@pytest.fixture
def served_app(slack_config: Config, slack_standin: SlackStandIn) -> Iterator[ServedApp]:
    """The production wiring (real audit against moto, store, directory, roles) served over HTTP."""
    with served_production(slack_config, slack_standin) as served:
        yield served
