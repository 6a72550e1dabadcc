"""`python -m bot serve`: run the bot in Socket Mode (SLACK_APP_TOKEN set) or over HTTP.

HTTP mode serves `POST /slack/events` (every Slack request, signature checked) and
`GET /healthz` on `$PORT` with gunicorn: ONE worker process with threads (gthread), because
the scheduler runs inside the process that serves. The runtime (store, Slack client, Bolt app)
is built inside that worker, after the fork, so no connection or thread crosses a fork.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import WebClient

from bot.app import Services, build_services, create_app
from bot.config import Config, ConfigError
from bot.slack import make_web_client

if TYPE_CHECKING:
    from bot.scheduler import Background
    from bot.store import Store

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
MAX_BODY_BYTES = 1_000_000
HTTP_THREADS = 16

WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


@dataclass
class Runtime:
    """Everything one serving process holds: the Bolt app, its client, services and store."""

    app: App
    client: WebClient
    services: Services
    store: Store | None
    background: Background | None = None


def check_config(config: Config) -> None:
    """Raise ConfigError (one line) when serve cannot start with this configuration."""
    from bot.scheduler import check_schedule

    config.require("SLACK_BOT_TOKEN")
    if not config.socket_mode:
        config.require("SLACK_SIGNING_SECRET")
    check_schedule(config)


def check_token(client: WebClient) -> None:
    """auth.test: a bad token becomes one ConfigError line (the token itself is never shown)."""
    try:
        client.auth_test()
    except SlackApiError as exc:
        raise ConfigError(f"SLACK_BOT_TOKEN was refused by Slack (auth.test: {exc.response.get('error')})") from None
    except (SlackClientError, OSError) as exc:
        raise ConfigError(f"Slack could not be reached at SLACK_API_URL ({type(exc).__name__})") from None


def open_store(config: Config) -> Store:
    """Open (and migrate) the store at DATABASE_URL; a failure is one ConfigError line."""
    from bot.store import Store, StoreError

    try:
        return Store.open(config.database_url)
    except StoreError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None


def build_runtime(
    config: Config, services_factory: Callable[..., Services] = build_services, background: bool = True
) -> Runtime:
    """Open the store, create the Slack client and the Bolt app, in the process that will serve.

    With `background`, the scheduler (digest, re-check, prune) and the nudge worker start here, so
    they run in this serving process (the gunicorn worker in HTTP mode) with its store and client.
    """
    from bot.scheduler import start_background

    store = open_store(config)
    client = make_web_client(config)
    services = services_factory(config, client, store)
    app = create_app(config, services, client)
    runtime = Runtime(app=app, client=client, services=services, store=store)
    if background:
        runtime.background = start_background(config, services)
    return runtime


def serve(config: Config) -> int:
    """Run the bot until stopped; returns the exit code. Config problems raise ConfigError."""
    check_config(config)
    check_token(make_web_client(config))
    open_store(config).close()  # migrate and fail fast here, with one line, before serving
    if config.socket_mode:
        return run_socket_mode(config, build_runtime(config))
    return run_http(config, lambda: wsgi_app(build_runtime(config).app))


# -- Socket Mode --------------------------------------------------------------------------------


def run_socket_mode(config: Config, runtime: Runtime) -> int:
    """Connect over Socket Mode and block until SIGTERM/SIGINT."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(runtime.app, config.slack_app_token)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    handler.connect()
    logger.info("connected to Slack over Socket Mode")
    stop.wait()
    logger.info("stopping")
    if runtime.background is not None:
        runtime.background.stop()
    handler.close()
    if runtime.store is not None:
        runtime.store.close()
    return 0


# -- HTTP ---------------------------------------------------------------------------------------


def _respond(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def wsgi_app(app: App, ready: Callable[[], bool] = lambda: True) -> WsgiApp:
    """The WSGI application: Bolt at POST /slack/events, health at GET /healthz, 404 elsewhere."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == HEALTH_PATH and method in {"GET", "HEAD"}:
            if ready():
                return _respond(start_response, "200 OK", {"ok": True})
            return _respond(start_response, "503 Service Unavailable", {"ok": False})
        if path == EVENTS_PATH and method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                return _respond(start_response, "413 Payload Too Large", {"error": "request too large"})
            return slack(environ, start_response)
        return _respond(start_response, "404 Not Found", {"error": "not found"})

    return application


def gunicorn_options(config: Config) -> dict[str, Any]:
    """One worker, threads: the scheduler lives in the single process that serves."""
    return {
        "bind": f"0.0.0.0:{config.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": HTTP_THREADS,
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "preload_app": False,
        "proc_name": "mfa-bot",
    }


def run_http(config: Config, load: Callable[[], WsgiApp], options: dict[str, Any] | None = None) -> int:
    """Serve the WSGI app that `load()` builds (called in the worker) with gunicorn; blocks."""
    from gunicorn.app.base import BaseApplication

    settings = {**gunicorn_options(config), **(options or {})}

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> WsgiApp:
            return load()

    logger.info("serving Slack requests at http://0.0.0.0:%s%s", config.port, EVENTS_PATH)
    try:
        Gunicorn().run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
