"""The Bolt app factory (thin): the service container in, a Bolt `App` with every listener registered out.

Everything with side effects (the audit, the store, the Slack directory, the clock) is passed
in through `bot.services.Services`, so tests wire real objects to local servers and the
scheduler shares the very same container. Listener modules live in `handlers/` (one
`register(app)` each, as in Bolt's starter template).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk.web import WebClient

import handlers
from bot.config import Config
from bot.services import Services
from bot.slack import make_web_client

logger = logging.getLogger(__name__)

LISTENER_THREADS = 32  # Bolt listeners only ack and hand work over: many at once, each brief
SIGNATURE_MAX_AGE_SECONDS = 300
SIGNATURE_VERIFIED = "mfa_bot_signature_verified"  # BoltRequest context key set by the HTTP front only


class SignatureCheck(Middleware):
    """Slack request signatures: valid, at most five minutes old, and each accepted once (no replays).

    `check(body, headers)` is the one place a request is verified: the HTTP front calls it on the
    raw bytes before anything parses them. As Bolt middleware it lets through Socket Mode requests
    (an authenticated socket) and requests the front verified; any other HTTP request is checked
    here, so an App served some other way still fails closed. Refusals are logged in one line,
    never with the body or the signature. With no signing secret every HTTP request is refused.

    Replays: every accepted signature is remembered until its timestamp leaves the window, in this
    process's memory (one serving process; several processes would each accept a replay once).
    """

    def __init__(self, signing_secret: str | None, clock: Callable[[], float] = time.time) -> None:
        self._secret = signing_secret.encode() if signing_secret else None
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}  # signature -> its timestamp
        self._next_sweep = 0.0

    def check(self, body: bytes, headers: Mapping[str, Any]) -> str | None:
        """None when the request is Slack's and new; else why not (one line, nothing secret)."""
        timestamp, signature = _header(headers, "x-slack-request-timestamp"), _header(headers, "x-slack-signature")
        if self._secret is None:
            return "no signing secret configured"
        if not timestamp or not signature:
            return "unsigned (no signature or timestamp header)"
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            return "malformed timestamp"
        now = self._clock()
        age = now - int(timestamp)
        if abs(age) > SIGNATURE_MAX_AGE_SECONDS:
            return f"timestamp {int(age)} s off (replayed or clock skew)"
        expected = "v0=" + hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return "signature does not match"
        with self._lock:
            if now >= self._next_sweep:
                self._seen = {s: t for s, t in self._seen.items() if now - t <= SIGNATURE_MAX_AGE_SECONDS}
                self._next_sweep = now + 10
            if signature in self._seen:
                return "replayed (this signature was already accepted)"
            self._seen[signature] = int(timestamp)
        return None

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        if req.mode == "socket_mode" or req.context.get(SIGNATURE_VERIFIED) is True:
            return next()
        raw = req.raw_body or ""
        refusal = self.check(raw.encode() if isinstance(raw, str) else raw, req.headers)
        if refusal is None:
            return next()
        logger.warning("rejected a Slack request (401): %s, %d bytes", refusal, len(raw))
        return BoltResponse(
            status=401, body='{"error":"invalid request"}', headers={"content-type": "application/json"}
        )


def _header(headers: Mapping[str, Any], name: str) -> str:
    """One header value from a plain or Bolt-style (lists of values) mapping; '' when absent."""
    value = headers.get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return str(value or "")


class _DropClientGivenWarning(logging.Filter):
    """Bolt warns "As you gave `client` as well, `token` will be unused." whenever SLACK_BOT_TOKEN is
    set, since it reads the variable itself even when given a client: expected here, so dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("As you gave `client` as well")


def bolt_logger() -> logging.Logger:
    """The logger Bolt gets (`bot.bolt`), without its client-given warning."""
    logger = logging.getLogger("bot.bolt")
    if not any(isinstance(f, _DropClientGivenWarning) for f in logger.filters):
        logger.addFilter(_DropClientGivenWarning())
    return logger


def create_app(
    config: Config,
    services: Services,
    client: WebClient | None = None,
    listener_threads: int = LISTENER_THREADS,
) -> App:
    """A Bolt App for `config` with the signature check and every listener module registered.

    Calls auth.test once (fails fast on a bad token). Listeners find `services` in their
    `context` (a global middleware puts it there).
    """
    client = client or make_web_client(config)
    app = App(
        name="mfa-bot",
        client=client,
        signing_secret=config.slack_signing_secret or "",
        request_verification_enabled=False,  # replaced by SignatureCheck, which never logs bodies
        before_authorize=SignatureCheck(config.slack_signing_secret),
        listener_executor=ThreadPoolExecutor(listener_threads, thread_name_prefix="bolt-listener"),
        logger=bolt_logger(),
    )

    @app.middleware
    def inject_services(context: dict, next: Callable[[], Any]) -> Any:
        context["services"] = services
        context["config"] = config
        return next()

    handlers.register(app)
    return app
