"""Slack fixtures (a pytest plugin): the Slack stand-in, a Config wired to it, the app served over HTTP.

`served_app` runs the real WSGI app (`bot.server.wsgi_app`, signature check included) on a
loopback port in this process, wired to the stand-in (Slack Web API + response_url), to moto's
IAM server seeded with the demo account (tests.fixtures_aws), and to a SQLite store in tmp_path.
`serve_app(services)` serves the app with any Services (a slow or synthetic audit).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from bot.app import Services, build_services, create_app
from bot.config import Config
from bot.server import wsgi_app
from bot.slack import make_web_client
from tests.slack_standin import ADMIN, MEMBERS, OTHER_ADMIN, HttpResult, SlackStandIn, command_body, post, sign

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-token"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        return


def serve_wsgi(application: Callable[..., Any]) -> tuple[_ThreadingWSGIServer, str]:
    """Serve a WSGI app on a loopback port in a thread; returns the server and its URL."""
    server = make_server("127.0.0.1", 0, application, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


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
    running: list[tuple[_ThreadingWSGIServer, Services]] = []

    def start(services: Services) -> ServedApp:
        app = create_app(slack_config, services, make_web_client(slack_config))
        server, url = serve_wsgi(wsgi_app(app))
        running.append((server, services))
        return ServedApp(url=url, standin=slack_standin, services=services, config=slack_config)

    yield start
    for server, services in running:
        server.shutdown()
        server.server_close()
        services.jobs.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def served_production(config: Config, standin: SlackStandIn, **build_kwargs: Any) -> Iterator[ServedApp]:
    """The production wiring for `config` (real audit, store, directory, roles) served over HTTP."""
    from bot.store import Store

    client = make_web_client(config)
    store = Store.open(config.database_url)
    services = build_services(config, client, store, **build_kwargs)
    server, url = serve_wsgi(wsgi_app(create_app(config, services, client)))
    try:
        yield ServedApp(url=url, standin=standin, services=services, config=config)
    finally:
        server.shutdown()
        server.server_close()
        services.jobs.shutdown(wait=True, cancel_futures=True)
        store.close()


@pytest.fixture
def served_app(slack_config: Config, slack_standin: SlackStandIn) -> Iterator[ServedApp]:
    """The production wiring (real audit against moto, store, directory, roles) served over HTTP."""
    with served_production(slack_config, slack_standin) as served:
        yield served
