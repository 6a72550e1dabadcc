"""`python -m bot serve`: run the bot in Socket Mode (SLACK_APP_TOKEN set) or over HTTP.

HTTP mode serves `POST /slack/events` (every Slack request, signature checked) and `GET /healthz`
on `$PORT` with uvicorn, in ONE process that also runs the scheduler. uvicorn reads requests on an
asyncio event loop, so a slow or huge body holds no thread: a body is read whole (at most
MAX_BODY_BYTES, within BODY_TIMEOUT_SECONDS), its signature checked on the raw bytes, and only
then is Bolt's (synchronous) dispatch run on a small thread pool; the listeners ack at once and
hand the work to the job pool. Malformed or unsigned requests end in the front with a 4xx and one
log line (never a body, never a traceback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltResponse
from slack_bolt.request import BoltRequest
from slack_sdk.web import WebClient

from bot.app import SIGNATURE_VERIFIED, SignatureCheck, create_app
from bot.config import EVENTS_PATH, Config, ConfigError
from bot.services import Services, build_services
from bot.slack import check_tokens, make_web_client
from bot.startup import log_startup

if TYPE_CHECKING:
    import uvicorn

    from bot.scheduler import Background
    from bot.store import Store

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
MAX_BODY_BYTES = 1_000_000  # Slack's requests are a few kilobytes; a digest's button payload stays far below
BODY_TIMEOUT_SECONDS = 10.0  # a body that has not arrived whole by then gets 408
DISPATCH_THREADS = 16  # Bolt dispatch (middleware + ack) for signed requests only: each brief
HEALTH_TIMEOUT_SECONDS = 5.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Runtime:
    """Everything one serving process holds: the Bolt app, its client, services and store.

    `health_checks` name what /healthz reports (each True when fine); add one per background part.
    """

    app: App
    client: WebClient
    services: Services
    store: Store | None
    background: Background | None = None
    health_checks: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.store is not None:
            from bot.store.db import reachable

            store = self.store
            self.health_checks.setdefault("database", lambda: reachable(store.engine))

    def health(self) -> dict[str, Any]:
        """{"ok": all checks pass, name: "ok" | "unreachable" per check}, plus the background's details.

        The background reports the event queue (`events_queue`: ok, error, last poll) without
        failing the check: the bot still serves Slack while the queue is unreachable.
        """
        results = {name: check() for name, check in self.health_checks.items()}
        details = self.background.health() if self.background is not None else {}
        checks = {name: "ok" if ok else "unreachable" for name, ok in results.items()}
        return {"ok": all(results.values()), **checks, **details}

    def close(self) -> None:
        """Stop the background work and close the store."""
        if self.background is not None:
            self.background.stop()
        if self.store is not None:
            self.store.close()


def check_config(config: Config) -> None:
    """Raise ConfigError (one line) when serve cannot start with this configuration."""
    from bot.scheduler import check_schedule

    config.require("SLACK_BOT_TOKEN")
    if not config.socket_mode:
        config.require("SLACK_SIGNING_SECRET")
    check_schedule(config)


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
    """Open the store, create the Slack client and the Bolt app, in the process that serves.

    With `background`, the scheduler (digest, re-check, prune) and the nudge worker start here, so
    they run in this serving process with its store and client.
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
    open_store(config).close()  # migrate and fail fast here, with one line, before serving
    check_tokens(config)
    log_startup(config)
    if config.socket_mode:
        return run_socket_mode(config, build_runtime(config))
    return run_http(config, lambda: build_runtime(config))


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
    handler.close()
    runtime.close()
    return 0


# -- HTTP ---------------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _json_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = headers or [(b"content-type", b"application/json")]
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class SlackFront:
    """The ASGI application: Bolt at POST /slack/events, health at GET /healthz, 404 elsewhere.

    Everything before a request is known to come from Slack happens on the event loop (reading the
    body, the size cap, the signature and replay check) and costs no thread; Bolt's dispatch runs on
    `executor` only for signed, well-formed requests, and health checks on their own two threads.
    """

    def __init__(
        self,
        app: App,
        signature_check: SignatureCheck,
        health: Callable[[], dict[str, Any]] = lambda: {"ok": True},
        dispatch_threads: int = DISPATCH_THREADS,
    ) -> None:
        self._app = app
        self._signature_check = signature_check
        self._health = health
        self._dispatch: Executor = ThreadPoolExecutor(dispatch_threads, thread_name_prefix="http-dispatch")
        self._health_pool: Executor = ThreadPoolExecutor(2, thread_name_prefix="http-health")

    def close(self) -> None:
        """Let the dispatch and health threads finish."""
        self._dispatch.shutdown(wait=True)
        self._health_pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope.get("path", ""), scope.get("method", "")
        if path == HEALTH_PATH and method in {"GET", "HEAD"}:
            await self._healthz(send)
        elif path == EVENTS_PATH and method == "POST":
            await self._slack(scope, receive, send)
        else:
            await _send(send, 404, _json_body({"error": "not found"}))

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _healthz(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        try:
            status = await asyncio.wait_for(
                loop.run_in_executor(self._health_pool, self._health), HEALTH_TIMEOUT_SECONDS
            )
        except TimeoutError:
            status = {"ok": False, "error": "health check timed out"}
        await _send(send, 200 if status.get("ok") else 503, _json_body(status))

    async def _refuse(self, send: Send, status: int, reason: str, size: int) -> None:
        logger.warning("rejected a Slack request (%d): %s, %d bytes", status, reason, size)
        await _send(send, status, _json_body({"error": "invalid request" if status < 410 else "request too large"}))

    async def _slack(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            await self._refuse(send, 400, "malformed Content-Length", 0)
            return
        if declared is not None and int(declared) > MAX_BODY_BYTES:
            await self._refuse(send, 413, f"body over {MAX_BODY_BYTES} bytes (Content-Length)", int(declared))
            return
        try:
            body = await asyncio.wait_for(_read_body(receive, MAX_BODY_BYTES), BODY_TIMEOUT_SECONDS)
        except _BodyTooLarge:
            await self._refuse(send, 413, f"body over {MAX_BODY_BYTES} bytes", MAX_BODY_BYTES)
            return
        except TimeoutError:
            await self._refuse(send, 408, f"body not received within {BODY_TIMEOUT_SECONDS:g} s", 0)
            return
        except _Disconnected:
            return
        refusal = self._signature_check.check(body, headers)
        if refusal is not None:
            await self._refuse(send, 401, refusal, len(body))
            return
        try:
            request = BoltRequest(
                body=body.decode("utf-8"),
                query=scope.get("query_string", b"").decode("latin-1"),
                headers={**headers},  # Bolt's type: values may be lists
                context={SIGNATURE_VERIFIED: True},
            )
        except UnicodeDecodeError:
            await self._refuse(send, 400, "body is not UTF-8", len(body))
            return
        except Exception as exc:  # Bolt parses the body here: any failure is a malformed request
            await self._refuse(send, 400, f"malformed body ({type(exc).__name__})", len(body))
            return
        loop = asyncio.get_running_loop()
        response: BoltResponse = await loop.run_in_executor(self._dispatch, self._app.dispatch, request)
        response_headers = [
            (name.lower().encode("latin-1"), str(value).encode("latin-1"))
            for name, values in response.headers.items()
            if name.lower() != "content-length"
            for value in values
        ]
        await _send(send, response.status, (response.body or "").encode("utf-8"), response_headers)


def uvicorn_server(front: SlackFront, port: int, host: str = "0.0.0.0") -> uvicorn.Server:
    """uvicorn for `front`: h11, no access log (requests carry tokens in bodies), our logging setup."""
    import uvicorn

    settings = uvicorn.Config(
        front,
        host=host,
        port=port,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=20,
    )
    logging.getLogger("uvicorn.access").disabled = True  # stays off even if logging is reconfigured later
    return uvicorn.Server(settings)


def run_http(config: Config, load: Callable[[], Runtime], sockets: list[socket.socket] | None = None) -> int:
    """Build the runtime (`load()`) and serve it with uvicorn in this process until SIGTERM/SIGINT."""
    runtime = load()
    front = SlackFront(runtime.app, SignatureCheck(config.slack_signing_secret), runtime.health)
    server = uvicorn_server(front, config.port)
    # uvicorn re-raises the signal that stopped it once it is done: let that land on a no-op, so
    # the scheduler and the store are closed below instead of the process dying mid-way.
    previous = {signum: signal.signal(signum, lambda *_: None) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=sockets)
    finally:
        logger.info("stopping")
        front.close()
        runtime.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if server.started else 1
