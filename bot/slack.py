"""Slack Web API clients: one factory so every call waits out rate limits the same way.

A 429 is retried after its Retry-After (plus a little jitter) until it goes through, within a
bounded total wait per call (minutes, not one retry). Connection resets and 5xx are retried a
few times too. The same policy applies to response_url posts (`make_responder`).
"""

from __future__ import annotations

import logging
import random
import time
import weakref
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient, WebhookResponse

from bot.config import Config, ConfigError

logger = logging.getLogger(__name__)

SLACK_ERRORS = (SlackApiError, SlackClientError, OSError)  # what a Web API call raises when Slack fails

# A response_url is a bearer credential for half an hour: slack_sdk's webhook client logs it with
# every request at DEBUG. Its loggers stay at INFO whatever the root level, so no DEBUG line has one.
RESPONSE_URL_LOGGERS = (logging.getLogger("bot.slack.response_url"), logging.getLogger("slack_sdk.webhook"))
for _quiet in RESPONSE_URL_LOGGERS:
    _quiet.setLevel(logging.INFO)
# The token check reports its failure in one line of its own: slack_sdk's error line would be a second.
PREFLIGHT_LOGGER = logging.getLogger("bot.slack.preflight")
PREFLIGHT_LOGGER.setLevel(logging.CRITICAL)

RATE_LIMIT_MAX_RETRIES = 50
RATE_LIMIT_MAX_TOTAL_WAIT_SECONDS = 300.0
WEB_API_TIMEOUT_SECONDS = 30
PREFLIGHT_TIMEOUT_SECONDS = 5


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Retry a 429 after its Retry-After, again and again, until `max_total_wait` seconds are spent.

    slack_sdk's handler counts retries only; this one also bounds the total time one call
    may spend waiting, so a persistent limit ends in an error the caller records, not a hang.
    `listeners` (weak references to callables taking the method name and the wait) hear of
    every 429 before the wait, so a pacer (`bot.pacing`) can hold its other callers back.
    """

    def __init__(
        self,
        max_retry_count: int = RATE_LIMIT_MAX_RETRIES,
        max_total_wait: float = RATE_LIMIT_MAX_TOTAL_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_total_wait = max_total_wait
        self.sleep = sleep
        self.listeners: list[weakref.ReferenceType[Callable[[str, float], None]]] = []

    @staticmethod
    def retry_after(response: HttpResponse) -> float:
        """Seconds the 429 asks us to wait (1 when the header is missing or unreadable)."""
        for key, values in response.headers.items():
            if key.lower() == "retry-after":
                raw = values[0] if isinstance(values, list | tuple) else values
                try:
                    return max(0.0, float(raw))
                except (TypeError, ValueError):
                    break
        return 1.0

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        waited = (state.custom_values or {}).get("rate_limit_waited", 0.0)
        return waited + self.retry_after(response) <= self.max_total_wait

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:  # pragma: no cover - _can_retry never lets this through
            raise RuntimeError("rate-limit retry without a response") from error
        duration = self.retry_after(response) + random.random() * 0.5
        if state.custom_values is None:
            state.custom_values = {}
        state.custom_values["rate_limit_waited"] = state.custom_values.get("rate_limit_waited", 0.0) + duration
        method = _method_of(request.url)
        logger.info("Slack rate limit (429) on %s: waiting %.1f s", method, duration)
        callbacks = [c for c in (ref() for ref in self.listeners) if c is not None]
        for callback in callbacks:
            callback(method, duration)
        state.next_attempt_requested = True
        self.sleep(duration)
        state.increment_current_attempt()


def slack_error(exc: BaseException) -> str:
    """A Slack failure in a few words (the API's error code, or the exception type); never a token."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    return type(exc).__name__


def _method_of(url: str) -> str:
    """The API method name of a Web API URL, or `response_url` (never a full URL with secrets)."""
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail if "." in tail else "response_url"


def retry_handlers(sleep: Callable[[float], None] = time.sleep) -> list[RetryHandler]:
    """The retry policy shared by every Slack client of the bot."""
    return [
        BoundedRateLimitRetryHandler(sleep=sleep),
        ConnectionErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
    ]


def make_web_client(config: Config, token: str | None = None) -> WebClient:
    """A WebClient for `SLACK_API_URL` with the bot token and the shared retry policy."""
    return WebClient(
        token=token or config.slack_bot_token,
        base_url=config.slack_api_url,
        timeout=WEB_API_TIMEOUT_SECONDS,
        retry_handlers=retry_handlers(),
        logger=logging.getLogger("bot.slack.web"),
    )


def check_tokens(config: Config) -> None:
    """Ask Slack once, fast, whether the tokens work, before anything starts (serve, digest).

    auth.test for SLACK_BOT_TOKEN; apps.connections.open for SLACK_APP_TOKEN (Socket Mode). No
    retries and a short timeout: a refused token or an unreachable SLACK_API_URL is one
    ConfigError line naming the variable, in seconds (the token itself is never shown).
    """
    client = WebClient(
        token=config.slack_bot_token,
        base_url=config.slack_api_url,
        timeout=PREFLIGHT_TIMEOUT_SECONDS,
        retry_handlers=[],
        logger=PREFLIGHT_LOGGER,
    )
    checks: list[tuple[str, str, Callable[[], Any]]] = [("SLACK_BOT_TOKEN", "auth.test", client.auth_test)]
    if config.slack_app_token:
        app_token = config.slack_app_token
        checks.append(
            ("SLACK_APP_TOKEN", "apps.connections.open", lambda: client.apps_connections_open(app_token=app_token))
        )
    for variable, method, call in checks:
        try:
            call()
        except SlackApiError as exc:
            raise ConfigError(f"{variable} was refused by Slack ({method}: {exc.response.get('error')})") from None
        except (SlackClientError, OSError) as exc:
            reason = type(getattr(exc, "reason", None) or exc).__name__
            raise ConfigError(
                f"Slack could not be reached at SLACK_API_URL {config.slack_api_url} ({reason}, {method})"
            ) from None


Responder = Callable[..., object]  # answers a slash command or button: keyword message fields in


def make_responder(response_url: str) -> Callable[..., WebhookResponse]:
    """Post to a slash command's response_url with the shared retry policy.

    Bolt's own `respond` does not retry a 429; this one does. Keyword arguments are the
    message fields (`text`, `blocks`, `response_type`, `replace_original`...).
    """
    client = WebhookClient(
        url=response_url,
        timeout=WEB_API_TIMEOUT_SECONDS,
        retry_handlers=retry_handlers(),
        logger=RESPONSE_URL_LOGGERS[0],
    )

    def respond(**message: Any) -> WebhookResponse:
        message = {k: v for k, v in message.items() if v is not None}
        response = client.send_dict(message)
        if response.status_code != 200:
            logger.warning("response_url answered HTTP %s: the message was not delivered", response.status_code)
        return response

    return respond
