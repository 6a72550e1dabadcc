"""A small local HTTP server standing in for the Slack Web API, response_url and file upload URLs,
plus Slack's other side: the demo workspace's people and signed slash-command requests.

Point `SLACK_API_URL` at `standin.api_url`; give slash commands `standin.response_url()`.
Every request is recorded (method, path, headers, raw body, parsed payload). Answers are
programmable per API method: queue replies with `reply(...)`, or rate-limit with
`rate_limit(method, retry_after, times)` (HTTP 429 + Retry-After). `emulate_rate_limit(method,
per_second, burst)` answers like Slack's limiter: a token bucket per method (or per channel with
`per_channel=True`), and a 429 with the seconds until the next token as Retry-After when it is
empty (`rate_limited` counts them). `emulate_workspace_cap(method, per_minute)` adds the
workspace-wide cap Slack does not publish (the bot is never told it). `latency` delays every
Web API answer, like a real network. Without a programmed reply, a built-in Slack-like answer is
given for the methods the bot uses; like Slack, `chat.postMessage` to a user ID posts to the DM
and answers with the DM channel's ID, and `chat.update` needs a channel ID (not a user ID).
A reply may be delayed (`Reply(delay=...)`) so the client times out after Slack has the request,
or carry a raw body (`Reply(body=b"{x")`) that is not the JSON Slack sends.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from slack_sdk.signature import SignatureVerifier

BOT_USER_ID = "U0BOT0000"
TEAM_ID = "T0TEST000"


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0  # the HTTP status the stand-in answered with

    @property
    def kind(self) -> str:
        """`api`, `response` (response_url), `upload` (file bytes) or `other`."""
        return self.path.strip("/").split("/", 1)[0] if self.path.count("/") >= 1 else "other"

    @property
    def api_method(self) -> str | None:
        """The Web API method (`chat.postMessage`) of an `/api/...` request."""
        if not self.path.startswith("/api/"):
            return None
        return self.path[len("/api/") :].split("?", 1)[0]

    @property
    def text(self) -> str:
        """The raw body as text."""
        return self.body.decode("utf-8", "replace")

    @property
    def payload(self) -> dict[str, Any]:
        """The body parsed: JSON, or form fields (single values), else {}."""
        content_type = self.headers.get("content-type", "")
        if "json" in content_type:
            try:
                return json.loads(self.text or "{}")
            except ValueError:
                return {}
        if "x-www-form-urlencoded" in content_type:
            return {k: v[0] for k, v in urllib.parse.parse_qs(self.text, keep_blank_values=True).items()}
        query = urllib.parse.urlsplit(self.path).query
        return {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}


@dataclass
class Reply:
    """A programmed answer: status, JSON body, headers."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (after recording): a client may time out first


@dataclass
class TokenBucket:
    """Slack's limiter for one method: `burst` calls at once, refilled at `per_second`."""

    per_second: float
    burst: int = 1
    integer_retry_after: bool = True  # Slack sends whole seconds
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def wait(self, now: float) -> float:
        """0 when a call may go now, else the seconds until the next token (nothing taken)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.per_second

    def take(self, now: float) -> float:
        """0 when a call may go now (a token taken), else the seconds until the next token."""
        wait = self.wait(now)
        if not wait:
            self.tokens -= 1.0
        return wait


@dataclass
class Limit:
    """An emulated limit of one method: one bucket, or one per channel."""

    per_second: float
    burst: int
    integer_retry_after: bool
    per_channel: bool = False
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def bucket(self, channel: str) -> TokenBucket:
        key = channel if self.per_channel else ""
        if key not in self.buckets:
            self.buckets[key] = TokenBucket(self.per_second, self.burst, self.integer_retry_after)
        return self.buckets[key]


def is_user_id(channel: str) -> bool:
    """A user ID (U… or W…) given where a channel goes."""
    return channel[:1] in {"U", "W"}


def dm_channel_of(user_id: str) -> str:
    """The ID of the app's DM with `user_id` (stable, like Slack's)."""
    return "D" + user_id[1:]


# Slack's Block Kit limits the stand-in enforces on views.publish (a home view).
VIEW_LIMITS = {"blocks": 100, "section": 3000, "field": 2000, "header": 150, "button_text": 75, "value": 2000}


def view_problems(view: dict[str, Any]) -> list[str]:
    """What Slack would refuse in a home view (an empty list when it is valid)."""
    problems = []
    if view.get("type") != "home":
        problems.append(f"view type {view.get('type')!r} is not home")
    blocks = view.get("blocks") or []
    if not 0 < len(blocks) <= VIEW_LIMITS["blocks"]:
        problems.append(f"{len(blocks)} blocks: a view holds 1 to {VIEW_LIMITS['blocks']}")
    for index, block in enumerate(blocks):
        text = (block.get("text") or {}).get("text") or ""
        if block.get("type") == "section" and len(text) > VIEW_LIMITS["section"]:
            problems.append(f"block {index}: section text of {len(text)} characters")
        if block.get("type") == "header" and len(text) > VIEW_LIMITS["header"]:
            problems.append(f"block {index}: header of {len(text)} characters")
        for field_ in block.get("fields") or []:
            if len(field_.get("text") or "") > VIEW_LIMITS["field"]:
                problems.append(f"block {index}: a field over {VIEW_LIMITS['field']} characters")
        buttons = [block.get("accessory") or {}, *(block.get("elements") or [])]
        for button in (b for b in buttons if b.get("type") == "button"):
            if len((button.get("text") or {}).get("text") or "") > VIEW_LIMITS["button_text"]:
                problems.append(f"block {index}: a button text over {VIEW_LIMITS['button_text']} characters")
            if len(button.get("value") or "") > VIEW_LIMITS["value"]:
                problems.append(f"block {index}: a button value over {VIEW_LIMITS['value']} characters")
    return problems


def person(user_id: str, email: str | None = None, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """A users.list member."""
    profile = {"email": email} if email else {}
    return {
        "id": user_id,
        "name": name or user_id.lower(),
        "deleted": False,
        "is_bot": False,
        "profile": profile,
        **extra,
    }


class SlackStandIn:
    """The stand-in server. Use as a context manager; `url`, `api_url`, `response_url()`."""

    def __init__(self, members: list[dict[str, Any]] | None = None) -> None:
        self.members: list[dict[str, Any]] = list(members or [])
        self.usergroups: dict[str, dict[str, Any]] = {}  # id -> {"handle", "users"}
        self.requests: list[Recorded] = []
        self.uploads: dict[str, bytes] = {}
        self.home_views: dict[str, dict[str, Any]] = {}  # user id -> the last home view published for them
        self._replies: dict[str, deque[Reply]] = {}
        self._limits: dict[str, list[Limit]] = {}
        self.latency = 0.0  # seconds added to every Web API answer
        self._stalls: list[tuple[str, str | None]] = []  # (api_method, channel or None for any)
        self._unstall = threading.Event()
        self._noise: dict[str, tuple[float, random.Random, float]] = {}
        self.rate_limited: dict[str, int] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-standin", daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> SlackStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._unstall.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """The value for SLACK_API_URL."""
        return f"{self.url}/api/"

    def response_url(self, name: str | None = None) -> str:
        """A fresh response_url on the stand-in."""
        return f"{self.url}/response/{name or next(self._ids)}"

    # -- programming -------------------------------------------------------------------------

    def reply(self, api_method: str, *replies: Reply) -> None:
        """Answer the next calls of `api_method` (or a `/response/...`/`/upload/...` path) with these."""
        with self._cond:
            self._replies.setdefault(api_method, deque()).extend(replies)

    def rate_limit(self, api_method: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `api_method` with 429 and Retry-After."""
        body = {"ok": False, "error": "ratelimited"}
        self.reply(api_method, *[Reply(429, body, {"Retry-After": str(retry_after)}) for _ in range(times)])

    def emulate_rate_limit(
        self,
        api_method: str,
        per_second: float,
        burst: int = 1,
        integer_retry_after: bool = True,
        per_channel: bool = False,
    ) -> None:
        """Limit `api_method` like Slack: a token bucket (per channel, or per workspace); an empty
        one answers 429 + Retry-After. Several limits on one method all apply."""
        with self._cond:
            limit = Limit(per_second, burst, integer_retry_after, per_channel)
            self._limits.setdefault(api_method, []).append(limit)

    def emulate_workspace_cap(self, api_method: str, per_minute: float, burst: int | None = None) -> None:
        """Slack's unpublished workspace-wide cap on `api_method`: `per_minute`, bursts of about a second's worth."""
        per_second = per_minute / 60
        self.emulate_rate_limit(api_method, per_second, burst or max(1, round(per_second)))

    def inject_429s(self, api_method: str, probability: float, retry_after: float = 1.0, seed: int = 7) -> None:
        """Also answer a random share of `api_method` calls with 429 + Retry-After, as a busy workspace might."""
        with self._cond:
            self._noise[api_method] = (probability, random.Random(seed), retry_after)

    def stall(self, api_method: str, channel: str | None = None) -> None:
        """Hold calls of `api_method` (to `channel`, or any) unanswered until `unstall()`: a hung Slack.

        A held call is recorded at once with status 0 (not accepted), so a test can wait for it,
        e.g. to kill the bot mid-post; after `unstall()` it is answered as usual.
        """
        with self._cond:
            self._stalls.append((api_method, channel))

    def unstall(self, answer_held: bool = True) -> None:
        """Stop holding new calls; answer the held ones (else they stay unanswered until the stand-in stops)."""
        with self._cond:
            self._stalls.clear()
        if answer_held:
            self._unstall.set()

    def stalled(self, api_method: str) -> list[Recorded]:
        """Calls of `api_method` held (or once held) unanswered by `stall`."""
        return [r for r in self.calls(api_method) if r.status == 0]

    def _stalls_this(self, record: Recorded) -> bool:
        with self._cond:
            return any(
                record.api_method == method and channel in (None, record.payload.get("channel"))
                for method, channel in self._stalls
            )

    def add_usergroup(self, group_id: str, handle: str, users: list[str]) -> None:
        """A user group for usergroups.list / usergroups.users.list."""
        self.usergroups[group_id] = {"id": group_id, "handle": handle, "users": list(users)}

    # -- inspection --------------------------------------------------------------------------

    def calls(self, api_method: str) -> list[Recorded]:
        """Recorded Web API calls of one method."""
        with self._cond:
            return [r for r in self.requests if r.api_method == api_method]

    def accepted(self, api_method: str) -> list[Recorded]:
        """Calls of one method the stand-in answered with 200 (a 429 delivered nothing)."""
        return [r for r in self.calls(api_method) if r.status == 200]

    def posts_to(self, response_url: str) -> list[Recorded]:
        """Everything posted to one response_url."""
        path = urllib.parse.urlsplit(response_url).path
        with self._cond:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked at every request); returns its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the stand-in did not see the expected requests in time")
                self._cond.wait(min(left, 0.2))

    def clear(self) -> None:
        """Forget recorded requests (not the programmed replies)."""
        with self._cond:
            self.requests.clear()

    # -- built-in answers --------------------------------------------------------------------

    def _builtin(self, api_method: str, payload: dict[str, Any]) -> Reply:
        if api_method == "auth.test":
            return Reply(body={"ok": True, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": "B0BOT0000"})
        if api_method == "users.list":
            limit = int(payload.get("limit") or 200)
            start = int(payload.get("cursor") or 0)
            page = self.members[start : start + limit]
            next_cursor = str(start + limit) if start + limit < len(self.members) else ""
            return Reply(body={"ok": True, "members": page, "response_metadata": {"next_cursor": next_cursor}})
        if api_method == "users.info":
            for member in self.members:
                if member["id"] == payload.get("user"):
                    return Reply(body={"ok": True, "user": member})
            return Reply(body={"ok": False, "error": "user_not_found"})
        if api_method == "usergroups.list":
            groups = [{"id": g["id"], "handle": g["handle"]} for g in self.usergroups.values()]
            return Reply(body={"ok": True, "usergroups": groups})
        if api_method == "usergroups.users.list":
            group = self.usergroups.get(payload.get("usergroup", ""))
            if group is None:
                return Reply(body={"ok": False, "error": "no_such_subteam"})
            return Reply(body={"ok": True, "users": group["users"]})
        if api_method == "conversations.open":
            return Reply(
                body={"ok": True, "channel": {"id": dm_channel_of(str(payload.get("users", "X")).split(",")[0])}}
            )
        if api_method in {"chat.postMessage", "chat.postEphemeral"}:
            ts = f"{int(time.time())}.{next(self._ts):06d}"  # unique, like Slack's
            channel = str(payload.get("channel") or "")
            if api_method == "chat.postMessage" and is_user_id(channel):
                channel = dm_channel_of(channel)  # the app's DM with that person
            return Reply(body={"ok": True, "channel": channel, "ts": ts})
        if api_method == "chat.update":
            if is_user_id(str(payload.get("channel") or "")):
                return Reply(body={"ok": False, "error": "channel_not_found"})
            return Reply(body={"ok": True, "channel": payload.get("channel"), "ts": payload.get("ts")})
        if api_method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ids):08d}"
            return Reply(body={"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"})
        if api_method == "files.completeUploadExternal":
            files = payload.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            return Reply(body={"ok": True, "files": [{"id": f.get("id"), "title": f.get("title")} for f in files]})
        if api_method == "views.publish":
            return self._publish(payload)
        if api_method == "apps.connections.open":
            return Reply(body={"ok": True, "url": "wss://127.0.0.1:9/link/?ticket=standin"})
        return Reply(body={"ok": False, "error": "unknown_method"})

    def _publish(self, payload: dict[str, Any]) -> Reply:
        """views.publish as Slack checks it: a home view within its limits, else invalid_arguments."""
        view = payload.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        problems = view_problems(view) if isinstance(view, dict) else ["view is not an object"]
        if not payload.get("user_id"):
            problems.append("user_id is missing")
        if problems:
            return Reply(body={"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}})
        with self._cond:
            self.home_views[str(payload["user_id"])] = view
        return Reply(body={"ok": True, "view": {"id": f"V{next(self._ids):08d}", **view}})

    def _limited(self, api_method: str, payload: dict[str, Any]) -> Reply | None:
        """A 429 when an emulated limit (or the injected noise) says so; caller holds the lock."""
        wait = 0.0
        noise = self._noise.get(api_method)
        if noise is not None and noise[1].random() < noise[0]:
            wait = noise[2]
        limits = self._limits.get(api_method, [])
        if not wait and limits:
            now = time.monotonic()
            channel = str(payload.get("channel") or "")
            buckets = [limit.bucket(channel) for limit in limits]
            waits = [(bucket.wait(now), bucket.integer_retry_after) for bucket in buckets]
            wait, whole = max(waits)
            if not wait:
                for bucket in buckets:  # a call goes only when every limit allows it, and counts against each
                    bucket.take(now)
            elif whole:
                wait = float(max(1, math.ceil(wait)))
        if not wait:
            return None
        self.rate_limited[api_method] = self.rate_limited.get(api_method, 0) + 1
        retry_after = str(int(wait)) if wait == int(wait) else f"{wait:.3f}"
        return Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": retry_after})

    def _answer(self, record: Recorded) -> Reply:
        key = record.api_method or record.path
        if record.api_method is not None and self.latency:
            time.sleep(self.latency)
        with self._cond:
            queue = self._replies.get(key)
            if queue:
                return queue.popleft()
            if record.api_method is not None:
                limited = self._limited(record.api_method, record.payload)
                if limited is not None:
                    return limited
        if record.api_method is not None:
            return self._builtin(record.api_method, record.payload)
        if record.path.startswith("/upload/"):
            self.uploads[record.path.rsplit("/", 1)[-1]] = record.body
            return Reply(body=f"OK - {len(record.body)}")
        if record.path.startswith("/response/"):
            return Reply(body="ok")
        return Reply(404, {"ok": False, "error": "not_found"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
                if standin._stalls_this(record):  # recorded at once (status 0), answered after unstall()
                    with standin._cond:
                        standin.requests.append(record)
                        standin._cond.notify_all()
                    standin._unstall.wait()
                    reply = standin._answer(record)
                    record.status = reply.status
                else:
                    reply = standin._answer(record)
                    record.status = reply.status
                    with standin._cond:
                        standin.requests.append(record)
                        standin._cond.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.body if isinstance(reply.body, bytes) else None
                if data is None:
                    is_text = isinstance(reply.body, str)
                    data = reply.body.encode() if is_text else json.dumps(reply.body).encode()
                content_type = "text/plain" if isinstance(reply.body, str) else "application/json"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (a delayed reply), or was killed while held
                    self.close_connection = True

            do_GET = do_POST = _handle

        return Handler


# -- playing Slack's side: the demo workspace, signed requests -----------------------------------

ADMIN = "U0ADMIN01"
OTHER_ADMIN = "U0ADMIN02"
NOBODY = "U0PLEB001"  # a Slack person with no IAM user and no admin role

# Slack people of the demo account (bot.demo.DEMO_USERS): bob by his slack-user-id tag, erin by
# her email tag, alice and ivan by name + EMAIL_DOMAIN.
MEMBERS = [
    person(ADMIN, "admin@example.com", "admin"),
    person(OTHER_ADMIN, "admin2@example.com", "admin2"),
    person(NOBODY, "pleb@example.com", "pleb"),
    person("U0BOB0001", "robert@example.com", "bob"),
    person("U0ERIN001", "erin@example.com", "erin"),
    person("U0ALICE01", "alice@example.com", "alice"),
    person("U0IVAN001", "ivan@example.com", "ivan"),
    person("U0GONE001", "gone@example.com", "gone", deleted=True),
    person("U0ROBOT01", "robot@example.com", "robot", is_bot=True),
]


def sign(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request headers for `body`, signed with `secret` at `timestamp` (default: now)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or ""
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def command_body(text: str, user_id: str, response_url: str, command: str = "/mfa-check") -> str:
    """A slash command payload as Slack posts it (form-encoded)."""
    return urllib.parse.urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0TEST000",
            "team_domain": "test",
            "channel_id": "C0CHAN001",
            "channel_name": "general",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0APP0001",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
    )


def action_body(
    action_id: str,
    value: str,
    user_id: str,
    response_url: str,
    channel: str = "C0CHAN001",
    message: dict[str, Any] | None = None,
) -> str:
    """A block_actions payload as Slack posts it when a button is clicked (form-encoded `payload`)."""
    message = message or {"ts": "1.000001", "blocks": []}
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "test"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0APP0001",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False},
        "trigger_id": "1.2.3",
        "channel": {"id": channel, "name": "channel"},
        "message": {"type": "message", "user": BOT_USER_ID, **message},
        "response_url": response_url,
        "actions": [button_action(action_id, value)],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def button_action(action_id: str, value: str) -> dict[str, Any]:
    """One clicked button as it stands in a block_actions payload's `actions`."""
    return {
        "type": "button",
        "action_id": action_id,
        "block_id": "b1",
        "value": value,
        "text": {"type": "plain_text", "text": action_id},
        "action_ts": f"{time.time():.6f}",
    }


def event_body(event: dict[str, Any]) -> str:
    """An Events API callback (JSON) as Slack posts it, around `event` (e.g. app_home_opened)."""
    return json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0APP0001",
            "event": {"event_ts": f"{time.time():.6f}", **event},
            "type": "event_callback",
            "event_id": f"Ev{int(time.time() * 1000)}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        }
    )


def home_opened(user_id: str, tab: str = "home") -> dict[str, Any]:
    """The app_home_opened event of one person (`tab`: "home" or "messages")."""
    return {"type": "app_home_opened", "user": user_id, "channel": "D0HOME001", "tab": tab}


def home_action_body(action_id: str, value: str, user_id: str) -> str:
    """A block_actions payload for a button on the App Home: a view container, no response_url."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "test"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0APP0001",
        "token": "deprecated-verification-token",
        "container": {"type": "view", "view_id": "V0HOME001"},
        "trigger_id": "1.2.3",
        "view": {"id": "V0HOME001", "type": "home", "blocks": [], "team_id": TEAM_ID},
        "actions": [button_action(action_id, value)],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


@dataclass
class HttpResult:
    """What an HTTP request got back, and how long it took."""

    status: int
    body: bytes
    seconds: float


def post(url: str, path: str, body: str | bytes, headers: dict[str, str], timeout: float = 10.0) -> HttpResult:
    """POST over a fresh connection; returns status, body and elapsed seconds."""
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request("POST", path, body=body.encode() if isinstance(body, str) else body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return HttpResult(response.status, data, time.perf_counter() - started)
    finally:
        conn.close()


def get(url: str, path: str, timeout: float = 5.0) -> HttpResult:
    """GET over a fresh connection."""
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return HttpResult(response.status, response.read(), time.perf_counter() - started)
    finally:
        conn.close()
