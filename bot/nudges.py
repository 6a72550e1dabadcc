"""Nudges: DM a person their MFA set-up steps, at most once per NUDGE_COOLDOWN_HOURS, never dropped.

One DM per person covers all their violating IAM users across accounts (one re-check button per
IAM user). Every attempt claims the person's cooldown window in the store first
(`claim_nudge_window`, decided by the database, so every process honours it), then posts the DM
(chat.postMessage with the user ID as channel), paced per channel and by an adaptive
workspace-wide rate (`bot.pacing`); a 429 is waited out by the client's retry handler. The
outcome is always recorded, whatever shape Slack's failure takes, in
the nudge log and the audit trail: `sent`, `skipped_cooldown`, `failed` (Slack surely did not post:
the window is given back) or `unknown` (the DM may have gone - a timeout, a dropped connection, an
unreadable answer: the window stays claimed, so at most one DM per window, and the digest row says
"delivery unknown").

"Nudge all" enqueues one item per person in the store's outbox first, then a worker works it
off (`claim_pending_nudge` / `complete_nudge`); a worker starts with `serve` and resumes what a
stopped process left. A process killed while one DM was in flight leaves that item's cooldown
window claimed under the item's own tag: the resumed item then finds its own claim, cannot know
whether Slack got the DM, and records it as `unknown` ("delivery unknown") instead of repeating it.
The batch is kept in the store with the admin's response_url: whichever process finishes it
claims its "finished" notice (a lease) and sends it once, through the response_url while Slack
honours it (30 minutes), else as a DM to the admin; a restart mid-queue loses nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.error import URLError

from slack_sdk.errors import SlackApiError

from bot.messages.blocks import text_message
from bot.messages.nudging import (
    nudge_all_queued_text,
    nudge_batch_done_text,
    nudge_failed_text,
    nudge_sent_text,
    nudge_skipped_text,
    nudge_unknown_text,
)
from bot.messages.personal import nudge_dm
from bot.messages.text import code, code_safe, escape
from bot.models import AuditResult, UserFinding, violation_finding
from bot.pacing import NoTsInAnswer
from bot.slack import SLACK_ERRORS, make_responder, slack_error
from bot.store import process_identity

if TYPE_CHECKING:
    from bot.edges import Edges
    from bot.store import NudgeBatch, OutboxItem

logger = logging.getLogger(__name__)

LEASE_SECONDS = 900.0  # longer than one item can take, 429 waits included (bot.slack bounds them)
POLL_SECONDS = 30.0
FLUSH_SECONDS = 15.0
OUTBOX_TAG = "#outbox-"
RESPONSE_URL_LIFETIME = timedelta(minutes=30)  # Slack's; after it the "finished" notice goes as a DM
INTERRUPTED = "interrupted while sending (the process stopped): delivery unknown, not repeated"
UNKNOWN = "may have gone: Slack's answer was lost (delivery unknown)"
NON_JSON = "Received a response in a non-JSON format"
NOTHING_LEFT = "nothing to nudge: fixed before the DM went"


def post_outcome(exc: BaseException) -> str:
    """What a chat.postMessage that raised `exc` did: "failed" (Slack surely did not post) or "unknown".

    Failed: Slack answered with its own error (4xx or `ok: false` with an error code, a 429 past the
    bounded wait included), or the connection was never made. Unknown: anything after the request
    may have reached Slack - a timeout, a dropped connection, a 5xx, a body that is not the JSON
    Slack sends (a 200 with `{x`), an answer without a ts.
    """
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or "")
        status = exc.response.status_code
        return "failed" if status < 500 and error and not error.startswith(NON_JSON) else "unknown"
    if isinstance(exc, URLError) and isinstance(exc.reason, ConnectionRefusedError | socket.gaierror):
        return "failed"
    return "unknown"


def describe_failure(exc: BaseException) -> str:
    """A Slack failure in a few words (never a token, never a whole body), whatever its shape."""
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or "")
        if error.startswith(NON_JSON) or not error:
            return f"HTTP {exc.response.status_code} with an answer that is not Slack's JSON"
        return error
    if isinstance(exc, ValueError):
        return "an answer that is not valid JSON"
    if isinstance(exc, NoTsInAnswer | KeyError | TypeError):
        return "an answer without the expected fields"
    if isinstance(exc, TimeoutError):
        return "timed out waiting for Slack's answer"
    if isinstance(exc, URLError):
        return f"connection failed ({type(exc.reason).__name__})"
    return slack_error(exc)


def targets_from_arns(arns: Iterable[str], key_only: Collection[str] = ()) -> list[UserFinding]:
    """The IAM users a DM is about, from their ARNs (and which are key-only): enough to render the steps."""
    targets = [violation_finding(arn) for arn in dict.fromkeys(arns)]
    return [dataclasses.replace(t, console_access=False) if t.arn in key_only else t for t in targets]


@dataclass(frozen=True)
class NudgeResult:
    """One DM attempt: sent, skipped (cooldown: when and by whom the last one went) or failed."""

    outcome: str
    slack_user_id: str
    arns: tuple[str, ...]
    last_at: str | None = None
    last_by: str | None = None
    error: str | None = None
    channel: str | None = None
    ts: str | None = None
    last_unknown: bool = False  # skipped: the DM holding the window may or may not have gone


@dataclass(frozen=True)
class NudgeAnswer:
    """What the admin who asked is told (ephemeral), and the outcome for the audit trail."""

    outcome: str
    text: str


@dataclass(frozen=True)
class BatchQueued:
    """A "Nudge all": its batch, the people and IAM users queued, and violators without a Slack person."""

    batch_id: str
    people: int
    queued: int
    users: int
    no_person: tuple[str, ...]
    text: str


@dataclass
class Nudger:
    """Nudges for one process: single DMs, "Nudge all" batches, and the outbox items a worker hands in."""

    services: Edges
    lease_seconds: float = LEASE_SECONDS
    wake: Callable[[], None] = lambda: None
    _dirty: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def cooldown(self) -> timedelta:
        return timedelta(hours=self.services.config.nudge_cooldown_hours)

    # -- one DM -----------------------------------------------------------------------------

    def deliver(
        self, person: str, arns: Sequence[str], requested_by: str, item: OutboxItem | None = None
    ) -> NudgeResult:
        """Claim the person's window, DM them about their still-open `arns`, record the outcome."""
        services, store = self.services, self.services.store
        open_arns = {e.arn for e in store.open_episodes()}
        arns = tuple(a for a in dict.fromkeys(arns) if a in open_arns)
        if not arns:
            return self._finish(NudgeResult("failed", person, (), error=NOTHING_LEFT), requested_by, item)
        tag = requested_by if item is None else f"{requested_by}{OUTBOX_TAG}{item.id}"
        claim = store.claim_nudge_window(person, self.cooldown, services.clock(), tag)
        if not claim.won:
            if item is not None and claim.claimed_by == tag:
                return self._finish(NudgeResult("unknown", person, arns, error=INTERRUPTED), requested_by, item)
            by = claim.claimed_by.split(OUTBOX_TAG, 1)[0]
            last = store.last_nudge(person, ("sent", "unknown"))
            unknown = last is not None and last.outcome == "unknown" and last.at >= claim.claimed_at
            result = NudgeResult(
                "skipped_cooldown",
                person,
                arns,
                last_at=services.when(claim.claimed_at),
                last_by=by,
                error=f"cooldown: last DM at {claim.claimed_at.isoformat()} by {by}"
                + (" (delivery unknown)" if unknown else ""),
                last_unknown=unknown,
            )
            return self._finish(result, requested_by, item)
        message = nudge_dm(person, targets_from_arns(arns, services.key_only), services.aliases, requested_by)
        try:
            channel, ts = services.slack.dm(person, message.text, message.blocks)
        except Exception as exc:  # every failure is recorded, whatever its shape
            outcome = post_outcome(exc)
            if outcome == "failed":
                store.release_nudge_window(claim)
            result = NudgeResult(outcome, person, arns, error=describe_failure(exc))
            logger.warning("a nudge DM %s: %s", "could not be sent" if outcome == "failed" else UNKNOWN, result.error)
            return self._finish(result, requested_by, item)
        return self._finish(NudgeResult("sent", person, arns, channel=channel, ts=ts), requested_by, item)

    def _finish(self, result: NudgeResult, requested_by: str, item: OutboxItem | None) -> NudgeResult:
        services = self.services
        now = services.clock()
        if item is not None:
            services.store.complete_nudge(item.id, result.outcome, result.error, now, result.channel, result.ts)
        elif result.arns or result.outcome != "failed":
            services.store.record_nudge(
                result.slack_user_id,
                result.arns,
                requested_by,
                now,
                result.outcome,
                result.error,
                result.channel,
                result.ts,
            )
        detail = " ".join(result.arns) + (f" ({result.error})" if result.error else "")
        services.record(requested_by, "nudge", result.slack_user_id, detail, outcome=result.outcome)
        if result.outcome in ("sent", "unknown"):  # the digest row shows it ("delivery unknown")
            with self._lock:
                self._dirty.update(result.arns)
        return result

    def flush_rows(self) -> int:
        """Show the nudges sent since the last flush in the digest (chat.update, coalesced per message)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        if not dirty:
            return 0
        try:
            return self.services.refresh_digest_rows(dirty)
        except Exception:
            logger.exception("could not update the digest rows after nudges")
            return 0

    # -- asked for by an admin --------------------------------------------------------------

    def nudge_user(
        self, requested_by: str, account_id: str, user_name: str, result: AuditResult | None = None
    ) -> NudgeAnswer:
        """Nudge the person behind one IAM user (the digest's Nudge button)."""
        result = self.services.annotated(result or self.services.recent_audit())
        account = next((a for a in result.accounts if a.account_id == account_id), None)
        if account is not None and account.error:
            return NudgeAnswer("error", f":warning: {account.label} could not be audited just now: nothing was sent.")
        found = next((u for u in account.users if u.user_name == user_name), None) if account else None
        if found is None:
            where = f"{code(user_name)} in account {escape(account_id)}"
            return NudgeAnswer("not_found", f"No IAM user {where}: nothing was sent.")
        return self.nudge_finding(requested_by, found, result, annotated=True)

    def nudge_finding(
        self, requested_by: str, user: UserFinding, result: AuditResult, annotated: bool = False
    ) -> NudgeAnswer:
        """Nudge the person behind `user`: one DM about all of their violating IAM users."""
        if not annotated:
            result = self.services.annotated(result)
            user = next((u for u in result.violations if u.arn == user.arn), user)
        labels = {a.account_id: a.label for a in result.accounts}
        label = labels.get(user.account_id, user.account_id)
        if user.status != "violation":
            return NudgeAnswer(
                "noop",
                f"{code(user.user_name)} in {escape(label)} is {user.status.replace('_', ' ')}: nothing to nudge.",
            )
        person = user.slack_user_id
        if not person:
            text = (
                f"No Slack person found for {code(user.user_name)} in {escape(label)}: "
                f"link one with `/mfa-check link {code_safe(user.user_name)} @person`. Nothing was sent."
            )
            return NudgeAnswer("no_person", text)
        theirs = [u for u in result.violations if u.slack_user_id == person]
        sent = self.deliver(person, [u.arn for u in theirs], requested_by)
        if sent.outcome == "sent":
            self.flush_rows()
            names = [(u.user_name, labels.get(u.account_id, u.account_id)) for u in theirs if u.arn in sent.arns]
            return NudgeAnswer("sent", nudge_sent_text(person, names))
        if sent.outcome == "skipped_cooldown":
            text = nudge_skipped_text(
                person,
                sent.last_at or "?",
                sent.last_by or "",
                self.services.config.nudge_cooldown_hours,
                delivery_unknown=sent.last_unknown,
            )
            return NudgeAnswer("skipped_cooldown", text)
        if sent.outcome == "unknown":
            self.flush_rows()
            hours = self.services.config.nudge_cooldown_hours
            return NudgeAnswer("unknown", nudge_unknown_text(person, sent.error or "no answer", hours))
        if sent.error == NOTHING_LEFT:
            return NudgeAnswer("noop", f"<@{person}> has no open violation left: nothing was sent.")
        return NudgeAnswer("failed", nudge_failed_text(person, sent.error or "unknown error"))

    def enqueue_all(
        self,
        requested_by: str,
        result: AuditResult | None = None,
        notify_url: str | None = None,
        accounts: Collection[str] | None = None,
    ) -> BatchQueued:
        """ "Nudge all": one outbox item per person with open violations; the worker sends them at Slack's pace.

        `accounts` limits it to the violations of those account ids (an account channel's digest).
        `notify_url` (the admin's response_url) is kept with the batch for its "finished" notice,
        which whichever process sends the last DM posts (`notify_finished`), after a restart too.
        """
        services = self.services
        result = services.annotated(result or services.recent_audit())
        open_arns = {e.arn for e in services.store.open_episodes()}
        by_person: dict[str, list[str]] = {}
        no_person = []
        for user in result.violations:
            if user.arn not in open_arns or (accounts is not None and user.account_id not in accounts):
                continue
            if user.slack_user_id:
                by_person.setdefault(user.slack_user_id, []).append(user.arn)
            else:
                no_person.append(f"{user.user_name} ({user.account_id})")
        now = services.clock()
        batch_id = f"nudge-all:{requested_by}:{now:%Y%m%dT%H%M}"
        if accounts is not None:  # a scoped batch is not the same batch as an unscoped one that minute
            batch_id += ":" + hashlib.sha256(",".join(sorted(accounts)).encode()).hexdigest()[:12]
        queued = 0
        if by_person:
            queued = services.store.enqueue_nudges(
                batch_id, by_person.items(), requested_by, now, response_url=notify_url
            )
        services.record(requested_by, "nudge_all", None, f"{batch_id}: {queued} of {len(by_person)} people queued")
        self.wake()
        users = sum(len(v) for v in by_person.values())
        seconds = 1.0 / services.slack.rates["chat.postMessage"].per_second  # where the adaptive rate starts
        text = nudge_all_queued_text(queued, users, no_person, seconds)
        if by_person and not queued:
            text = "This Nudge all was already queued a moment ago: nothing more was queued."
        errors = [a for a in result.errors if accounts is None or a.account_id in accounts]
        if errors:
            text += f"\n:warning: {len(errors)} account(s) could not be audited: their users were not nudged."
        return BatchQueued(batch_id, len(by_person), queued, users, tuple(no_person), text)

    # -- the outbox -------------------------------------------------------------------------

    def work_one(self, worker_id: str) -> NudgeResult | None:
        """Lease the oldest queued DM and deliver it; None when the outbox is empty.

        The DM that finishes a batch is followed by the batch's "finished" notice.
        """
        if not self.services.store.pending_nudges(limit=1):  # a read: an idle worker takes no write lock
            return None
        item = self.services.store.claim_pending_nudge(worker_id, self.services.clock(), self.lease_seconds)
        if item is None:
            return None
        result = self.deliver(item.slack_user_id, item.arns, item.requested_by, item=item)
        self.notify_finished(worker_id, [item.batch_id])
        return result

    def notify_finished(self, holder: str, batch_ids: Sequence[str] | None = None) -> int:
        """Tell the admin of each finished batch (all of them when `batch_ids` is None) the tally, once.

        The notice is claimed in the store first (a lease), so exactly one process sends it; a
        process that dies before sending leaves it to another. Returns how many notices went.
        """
        store = self.services.store
        try:
            if batch_ids is None:
                batch_ids = store.finished_batches(self.services.clock())
            told = 0
            for batch_id in batch_ids:
                claimed = store.claim_batch_notice(batch_id, holder, self.services.clock(), self.services.lease)
                if claimed is None:
                    continue
                batch, counts = claimed
                if batch.response_url is None:  # nobody asked to be told (no response_url in the request)
                    store.finish_batch_notice(batch_id, self.services.clock())
                    continue
                text = nudge_batch_done_text(
                    counts.get("sent", 0),
                    counts.get("skipped_cooldown", 0),
                    counts.get("failed", 0),
                    counts.get("unknown", 0),
                )
                told += self._tell_admin(batch, text)
                store.finish_batch_notice(batch_id, self.services.clock())
            return told
        except Exception:
            logger.exception("could not tell the admin that Nudge all finished")
            return 0

    def _tell_admin(self, batch: NudgeBatch, text: str) -> bool:
        """The notice as an ephemeral answer through the batch's response_url while it lives, else a DM."""
        services = self.services
        message = text_message(text)
        if batch.response_url and services.clock() - batch.created_at < RESPONSE_URL_LIFETIME:
            try:
                answer = make_responder(batch.response_url)(
                    text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False
                )
                if answer.status_code == 200:
                    return True
            except Exception as exc:
                logger.warning("the Nudge all notice could not go through its response_url (%s)", type(exc).__name__)
        try:
            services.slack.dm(batch.requested_by, message.text, message.blocks)
            return True
        except SLACK_ERRORS as exc:
            logger.error("the Nudge all notice could not be sent to %s (%s)", batch.requested_by, slack_error(exc))
            services.record(
                batch.requested_by, "nudge_all", None, f"{batch.batch_id}: notice not sent", outcome="failed"
            )
            return False


class NudgeWorker:
    """Threads that work off the nudge outbox: started with `serve`, so pending items resume.

    One thread delivers DMs one after another (paced); another shows them in the digest rows
    every `flush_seconds` (chat.update has its own rate limit, so DMs never wait for it).
    """

    def __init__(
        self,
        nudger: Nudger,
        worker_id: str | None = None,
        poll_seconds: float = POLL_SECONDS,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.nudger = nudger
        self.worker_id = worker_id or process_identity()
        self.poll_seconds = poll_seconds
        self.flush_seconds = flush_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._flush_now = threading.Event()
        self._threads: list[threading.Thread] = []
        nudger.wake = self.wake

    def wake(self) -> None:
        """Look at the outbox now (something was queued)."""
        self._wake.set()

    def start(self) -> None:
        """Start the delivery and the digest-row threads."""
        self._threads = [
            threading.Thread(target=self._run, name="nudge-worker", daemon=True),
            threading.Thread(target=self._flush_loop, name="nudge-rows", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the DM in hand (never in the middle of one), waiting up to `timeout` seconds."""
        self._stop.set()
        self._wake.set()
        self._flush_now.set()
        for thread in self._threads:
            thread.join(timeout)

    def run_until_idle(self) -> list[NudgeResult]:
        """Deliver every queued DM in this thread, then update the digest rows (tests, benchmarks)."""
        results = []
        while not self._stop.is_set():
            result = self.nudger.work_one(self.worker_id)
            if result is None:
                break
            results.append(result)
        self.nudger.notify_finished(self.worker_id)
        self.nudger.flush_rows()
        return results

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.nudger.work_one(self.worker_id)
            except Exception:
                logger.exception("the nudge worker failed; retrying in %.0f s", self.poll_seconds)
                self._stop.wait(self.poll_seconds)
                continue
            if result is None:
                self.nudger.notify_finished(self.worker_id)  # a batch another process finished and died
                self._flush_now.set()
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._flush_now.wait(self.flush_seconds)
            self._flush_now.clear()
            self.nudger.flush_rows()
        self.nudger.flush_rows()
