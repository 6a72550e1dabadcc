"""Real-time mode: long-poll the SQS queue of IAM events (EVENTS_QUEUE_URL) and act on each event once.

`QueuePoller` runs in its own thread beside the scheduler (started with `serve`): it receives up
to 10 messages at a time with 20 s long polls, hands each to `EventHandler`, and deletes a message
only after it was handled. What it guarantees:
- nothing twice: SQS delivers at least once and several replicas may poll one queue; the
  CloudTrail eventID is claimed in the store (`Store.claim_event`), so a redelivered or duplicated
  event changes nothing twice. A claim is a lease: a process that dies mid-event leaves it to
  expire, and the message, back in the queue, is handled by whoever receives it next, skipping
  the steps already done (`steps`).
- nothing lost: a message that could not be handled (IAM, Slack or the database failing) stays
  in the queue, made visible again after a backoff; a malformed one (poison) is retried at once.
  After the queue's maxReceiveCount SQS moves it to the dead-letter queue. Each is logged once
  (on its first failure) with its eventID.
- the queue unreachable or access denied: logged once (and once when it is back), retried with
  backoff up to a minute; `serve` stays up and `/healthz` shows it (`health()`).

Each message is handed to `bot.event_handler.EventHandler`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from bot import aws, events
from bot.config import Config, queue_region
from bot.event_handler import WORKERS, EventHandler, Handled
from bot.events import BadEvent, IgnoredEvent

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

WAIT_SECONDS = 20  # SQS long poll (the maximum)
BATCH = 10  # messages per receive (the maximum); the next long poll starts while WORKERS handle the last,
# holding at most WORKERS + BATCH messages
RETRY_BASE_SECONDS = 30  # a failed message comes back after 30 s, 60 s, 120 s … (at most MAX_RETRY_SECONDS)
MAX_RETRY_SECONDS = 900
IN_PROGRESS_SECONDS = 5  # a message whose event another worker or process holds is looked at again then
MAX_QUEUE_BACKOFF = 60.0


def sqs_client(config: Config, session: aws.AwsSession | None = None) -> Any:
    """An SQS client for EVENTS_QUEUE_URL: the region from the URL (else the session's), AWS_ENDPOINT_URL honoured."""
    session = session or aws.make_session()
    region = queue_region(config.events_queue_url or "") or session.region_name or "us-east-1"
    kwargs: dict[str, Any] = {"config": aws.boto_config()}
    if config.aws_endpoint_url:
        kwargs["endpoint_url"] = config.aws_endpoint_url
    return session.client("sqs", region_name=region, **kwargs)


def retry_delay(receive_count: int) -> int:
    """Seconds until a message that failed its `receive_count`-th delivery is visible again."""
    return min(MAX_RETRY_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, receive_count - 1))


class QueuePoller:
    """The thread that long-polls EVENTS_QUEUE_URL and hands each message to the handler."""

    def __init__(
        self,
        handler: Callable[[str], Handled],
        queue_url: str,
        sqs: Any,
        wait_seconds: int = WAIT_SECONDS,
        workers: int = WORKERS,
        sleep: Callable[[float], bool] | None = None,
        retry_delay: Callable[[int], int] = retry_delay,
        in_progress_delay: int = IN_PROGRESS_SECONDS,
    ) -> None:
        self.handler = handler
        self.queue_url = queue_url
        self.sqs = sqs
        self.wait_seconds = wait_seconds
        self.retry_delay = retry_delay
        self.in_progress_delay = in_progress_delay
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="event")
        self._limit = max(1, workers) + BATCH
        self._in_flight = 0
        self._room = threading.Condition()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.error: str | None = None
        self.last_poll_at: datetime | None = None
        self.counts: dict[str, int] = {}

    def health(self) -> dict[str, Any]:
        """For /healthz: whether the queue answers, when it last did, and what the events led to."""
        with self._lock:
            return {
                "ok": self.error is None,
                "error": self.error,
                "last_poll_at": self.last_poll_at.isoformat() if self.last_poll_at else None,
                "handled": sum(n for k, n in self.counts.items() if k not in ("failed", "poison", "in_progress")),
                "failed": self.counts.get("failed", 0) + self.counts.get("poison", 0),
            }

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="event-queue", daemon=True)
        self._thread.start()
        logger.info("real-time events: polling %s", self.queue_url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the messages in hand (an unfinished one comes back: its claim's lease expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.poll_once(wait=False)
                failed = self.error is not None
            except Exception:  # never let the thread die: log and go on
                logger.exception("the event queue poller failed")
                failed = True
            if failed:
                self._sleep(delay)
                delay = min(delay * 2, MAX_QUEUE_BACKOFF)
            else:
                delay = 1.0

    def poll_once(self, wait: bool = True) -> int:
        """One long poll: receive, hand each message to a worker; returns how many came.

        `wait`: return once they are handled (tests); the thread does not wait, so the next long
        poll runs while they are handled (at most WORKERS + BATCH messages held at once).
        """
        with self._room:
            while self._in_flight >= self._limit and not self._stop.is_set():
                self._room.wait(1.0)
            room = min(BATCH, self._limit - self._in_flight)
        if room <= 0:
            return 0
        try:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=room,
                WaitTimeSeconds=self.wait_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except (ClientError, BotoCoreError) as exc:
            self._queue_failed(exc)
            return 0
        self._queue_ok()
        received = response.get("Messages", [])
        with self._room:
            self._in_flight += len(received)
        futures = [self._pool.submit(self._held, message) for message in received]
        if wait:
            for future in futures:
                future.result()
        return len(received)

    def _held(self, message: dict[str, Any]) -> None:
        try:
            self._one(message)
        except Exception:  # _one handles its own failures; this is a bug, logged, the message comes back
            logger.exception("a message could not be processed")
        finally:
            with self._room:
                self._in_flight -= 1
                self._room.notify_all()

    def _queue_failed(self, exc: BaseException) -> None:
        error = aws.describe_error(exc).replace("grant it in the audit policy", "grant it in deploy/bot-policy.json")
        with self._lock:
            first = self.error is None
            self.error = error
        if first:
            logger.error("the event queue %s cannot be read: %s; retrying with backoff", self.queue_url, error)

    def _queue_ok(self) -> None:
        with self._lock:
            was, self.error = self.error, None
            self.last_poll_at = datetime.now(UTC)
        if was is not None:
            logger.info("the event queue is reachable again")

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def _one(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        attributes = message.get("Attributes") or {}
        received = int(attributes.get("ApproximateReceiveCount", "1") or 1)
        try:
            handled = self.handler(message.get("Body") or "")
        except BadEvent as exc:
            self._count("poison")
            if received == 1:
                logger.error(
                    "event %s (SQS message %s) cannot be handled: %s; it goes to the dead-letter queue",
                    exc.event_id or "without eventID",
                    message.get("MessageId"),
                    exc,
                )
            self._visible_in(receipt, 0)  # poison: no point waiting, let SQS count it to the DLQ
            return
        except Exception as exc:
            self._count("failed")
            delay = self.retry_delay(received)
            if received == 1:
                logger.error(
                    "event %s could not be handled (%s); it stays in the queue (retried after %d s, "
                    "then with backoff, then the dead-letter queue after the queue's maxReceiveCount)",
                    _event_id_of(message.get("Body") or ""),
                    _short(exc),
                    delay,
                )
            self._visible_in(receipt, delay)
            return
        self._count(handled.outcome)
        if handled.delete:
            try:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
            except (ClientError, BotoCoreError) as exc:  # it comes back; its claim says handled then
                logger.warning("event %s handled, but not deleted from the queue: %s", handled.event_id, _short(exc))
        else:  # another worker or process holds its claim: look again soon; then it is a duplicate, or retried
            self._visible_in(receipt, self.in_progress_delay)

    def _visible_in(self, receipt: str, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as exc:  # then it comes back after the queue's visibility timeout
            logger.warning("could not change a message's visibility: %s", _short(exc))


def _short(exc: BaseException) -> str:
    if isinstance(exc, (ClientError, BotoCoreError)):
        return aws.describe_error(exc)
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _event_id_of(body: str) -> str:
    try:
        return events.parse_event(body).event_id
    except (BadEvent, IgnoredEvent) as exc:
        return getattr(exc, "event_id", None) or "without eventID"


def start_events(config: Config, services: Services) -> QueuePoller:
    """The poller `serve` starts when EVENTS_QUEUE_URL is set."""
    handler = EventHandler(services)
    poller = QueuePoller(handler.handle, config.events_queue_url or "", sqs_client(config))
    poller.start()
    return poller
