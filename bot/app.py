"""The Bolt app factory (thin): dependencies in, a Bolt `App` with every listener registered out.

Everything with side effects (the audit, the store, the Slack directory, the clock) is passed
in through `Services`, so tests wire real objects to local servers and the scheduler can share
the very same services.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk.web import WebClient

from bot.config import Config
from bot.identity import IdentityChain, Roles, SlackDirectory
from bot.models import AuditResult
from bot.slack import make_web_client

if TYPE_CHECKING:
    from bot.digest import Desk
    from bot.home_tab import HomeTab
    from bot.nudges import Nudger
    from bot.pacing import PacedSlack
    from bot.recheck import Rechecker
    from bot.store import Store

logger = logging.getLogger(__name__)

LISTENER_THREADS = 32  # Bolt listeners only ack and hand work over: many at once, each brief
JOB_THREADS = 8  # the work after the ack (audits, store writes, messages)
SIGNATURE_MAX_AGE_SECONDS = 300
SIGNATURE_VERIFIED = "mfa_bot_signature_verified"  # BoltRequest context key set by the HTTP front only
RECENT_AUDIT_SECONDS = 300  # a nudge may use an audit this old (a re-check button corrects the rest)


FAILED_TEXT = ":warning: Something went wrong; the error is in the bot's log."
DATABASE_UNREACHABLE_TEXT = (
    ":warning: The database is unreachable, so nothing was done. Try again in a few minutes; "
    "the bot's log has the details."
)


def report_failure(exc: BaseException, what: str) -> str:
    """Log a failed command or button (one line when the database is unreachable) and return what to tell the person."""
    from bot.store.db import is_unreachable

    if is_unreachable(exc):
        logger.error("%s failed: the database is unreachable (%s)", what, type(exc).__name__)
        return DATABASE_UNREACHABLE_TEXT
    logger.exception("%s failed", what)
    return FAILED_TEXT


def utc_now() -> datetime:
    """The clock edge."""
    return datetime.now(UTC)


class SharedAudit:
    """Run the audit once for everyone who asks while it runs (single flight).

    Fifty admins typing `/mfa-check` in the same ten seconds cause one audit, not fifty. A
    request that was made while an audit ran (`asked_at`, on the monotonic clock) is answered
    by that audit even if its job starts only after the audit ended (the job pool queues), so
    queued requests do not start audits of their own. `last` keeps the latest result.
    """

    def __init__(self, audit: Callable[[], AuditResult], clock: Callable[[], float] = time.monotonic) -> None:
        self._audit = audit
        self._clock = clock
        self._lock = threading.Lock()
        self._running: Future[AuditResult] | None = None
        self._finished_at: float | None = None
        self.last: AuditResult | None = None

    def __call__(self, asked_at: float | None = None) -> AuditResult:
        with self._lock:
            if (
                asked_at is not None
                and self.last is not None
                and self._finished_at is not None
                and self._finished_at >= asked_at
            ):
                return self.last
            future = self._running
            owner = future is None
            if future is None:
                future = self._running = Future()
        if not owner:
            return future.result()
        try:
            result = self._audit()
        except BaseException as exc:
            with self._lock:
                self._running = None
            future.set_exception(exc)
            raise
        with self._lock:
            self.last, self._finished_at, self._running = result, self._clock(), None
        future.set_result(result)
        return result


@dataclass
class Services:
    """What the listeners (and later the scheduler) need, passed in rather than looked up.

    `audit` runs the audit over every configured account; `store` is the history (None: not
    configured, then exempt/unexempt/link/nudge say so and change nothing); `digest` posts one
    digest now; `audit_account` audits the one account with that id or alias (no accounts in
    the result: none is configured). With a store, `desk` (the digest's edges), `nudger` and
    `rechecker` serve the buttons, the slash command and the scheduler alike, and `home` builds
    and publishes the App Home.
    """

    audit: Callable[[], AuditResult]
    roles: Roles
    identity: IdentityChain
    store: Store | None = None
    clock: Callable[[], datetime] = utc_now
    digest: Callable[[], Any] | None = None
    audit_account: Callable[[str], AuditResult] | None = None
    jobs: Executor = field(default_factory=lambda: ThreadPoolExecutor(JOB_THREADS, thread_name_prefix="mfa-job"))
    desk: Desk | None = None
    nudger: Nudger | None = None
    rechecker: Rechecker | None = None
    home: HomeTab | None = None
    shared_audit: SharedAudit = field(init=False)

    def __post_init__(self) -> None:
        self.shared_audit = SharedAudit(self.audit)

    def recent_audit(self) -> AuditResult:
        """The last audit when it is at most RECENT_AUDIT_SECONDS old, else a new one (single flight)."""
        last = self.shared_audit.last
        if last is not None and (self.clock() - last.generated_at).total_seconds() <= RECENT_AUDIT_SECONDS:
            return last
        return self.shared_audit(time.monotonic())

    def audited(self, result: AuditResult) -> AuditResult:
        """Call after each recorded audit: the App Homes opened lately are published again (on the job pool)."""
        home = self.home
        if home is not None:
            try:
                self.jobs.submit(_refresh_homes, home)
            except RuntimeError:  # the pool is shutting down
                logger.info("no App Home refresh: the bot is stopping")
        return result

    def links(self) -> dict[str, str]:
        """Stored IAM ARN -> Slack ID links (empty without a store)."""
        return self.store.links() if self.store is not None else {}

    def record(self, actor: str, action: str, target: str | None, detail: str | None, outcome: str = "ok") -> None:
        """Write to the audit trail when there is a store; a failure is logged, never raised."""
        if self.store is None:
            logger.info("audit trail (no store configured): %s %s %s", actor, action, outcome)
            return
        try:
            self.store.record_action(actor, action, target, detail, self.clock(), outcome=outcome)
        except Exception:
            logger.exception("could not write the audit trail entry %s/%s", action, outcome)


def _refresh_homes(home: HomeTab) -> None:
    try:
        home.refresh_recent()
    except Exception:
        logger.exception("could not refresh the App Homes after an audit")


def build_services(
    config: Config, client: WebClient, store: Store | None = None, slack: PacedSlack | None = None
) -> Services:
    """Production wiring: the recorded audit (stored exemptions honoured, scans kept), directory, roles.

    With a store, the digest, nudges and re-checks are wired too (`slack`: the paced Web API
    calls they make; default: Slack's documented rates).
    """
    from bot import service

    def audit() -> AuditResult:
        return services.audited(service.run_recorded_audit(config, store))

    def audit_account(account: str) -> AuditResult:
        return services.audited(service.run_recorded_audit(config, store, only=account))

    services = Services(
        audit=audit,
        audit_account=audit_account,
        roles=Roles(config.admin_user_ids, client=client, usergroup=config.admin_usergroup),
        identity=IdentityChain(
            directory=SlackDirectory(client),
            email_domain=config.email_domain,
            tag_slack_user_id=config.tag_slack_user_id,
            tag_email=config.tag_email,
        ),
        store=store,
        digest=_digest_function(config),
    )
    if store is not None:
        _wire_workflows(config, client, store, services, slack)
    return services


def _wire_workflows(
    config: Config, client: WebClient, store: Store, services: Services, slack: PacedSlack | None
) -> None:
    """The digest, nudges, re-checks and App Home over the same audit, identity chain, roles and clock."""
    from bot.digest import Desk, post_manual_digest
    from bot.home_tab import HomeTab
    from bot.nudges import Nudger
    from bot.recheck import Rechecker

    desk = Desk.create(
        config,
        client,
        store,
        slack=slack,
        identity=services.identity,
        fresh_audit=lambda: services.shared_audit(time.monotonic()),
        recent_audit=services.recent_audit,
        clock=services.clock,
    )
    services.desk = desk
    services.nudger = Nudger(desk)
    services.rechecker = Rechecker(desk, services.roles)
    services.digest = lambda: 0 if post_manual_digest(desk, "slack").ok else 1
    services.home = HomeTab(config, store, client, services.identity, services.roles, services.clock)


def _digest_function(config: Config) -> Callable[[], Any] | None:
    """`bot.digest.post_digest_now(config)` once the digest exists, else None."""
    try:
        from bot.digest import post_digest_now  # type: ignore[import-not-found]
    except ImportError:
        return None
    return lambda: post_digest_now(config)


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
    from handlers import actions, commands, home

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

    commands.register(app)
    actions.register(app)
    home.register(app)
    return app
