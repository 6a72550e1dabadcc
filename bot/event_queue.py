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

`EventHandler` checks the event's IAM user live through the re-check's path (`Rechecker.live_client`:
the assumed role for member accounts; `aws.live_state`), judges it with the audit's rule
(`audit.judge_user`: stored and tag exemptions, grace), and acts on the plan `bot.events.decide`
returns: opens the episode, DMs the person through the nudger (cooldown respected), alerts
ALERT_CHANNEL; closes the episode, updates the digest rows, thanks the person; records
exemption-tag changes in the audit trail with the event's userIdentity.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot import audit, aws, events, service
from bot.config import Config, queue_region
from bot.digest import Desk, refresh_rows
from bot.events import BadEvent, IamEvent, IgnoredEvent, Plan
from bot.identity import IdentityChain
from bot.messages import alerts
from bot.messages.blocks import Message, text_message
from bot.messages.personal import recheck_thanks
from bot.models import IamUser, violation_finding
from bot.nudges import Nudger
from bot.recheck import Rechecker
from bot.store import SCHEDULER, Episode, process_identity
from bot.store.store import EXEMPTED

logger = logging.getLogger(__name__)

WAIT_SECONDS = 20  # SQS long poll (the maximum)
BATCH = 10  # messages per receive (the maximum)
WORKERS = 4  # events handled side by side (more only queue up on SQLite's one writer); the next long poll
# starts while they run, holding at most WORKERS + BATCH messages
LEASE_SECONDS = 120.0  # a claim held this long by a process that died is taken over
CLIENT_SECONDS = 600.0  # an account's IAM client (assumed-role credentials last an hour) is reused this long
UNKNOWN_SECONDS = 60.0  # an account found not configured is not looked up again for this long
RETRY_BASE_SECONDS = 30  # a failed message comes back after 30 s, 60 s, 120 s … (at most MAX_RETRY_SECONDS)
MAX_RETRY_SECONDS = 900
IN_PROGRESS_SECONDS = 5  # a message whose event another worker or process holds is looked at again then
MAX_QUEUE_BACKOFF = 60.0


@dataclass(frozen=True)
class Handled:
    """What became of one message: `outcome` says what the event led to; `delete` whether it is done."""

    outcome: str
    event_id: str | None = None
    delete: bool = True


class EventHandler:
    """Handles one EventBridge event: claim its eventID, check the user live, act on the plan, mark it handled."""

    def __init__(
        self,
        desk: Desk,
        rechecker: Rechecker,
        nudger: Nudger,
        owner: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desk = desk
        self.rechecker = rechecker
        self.nudger = nudger
        self.owner = owner or process_identity()
        self.monotonic = monotonic
        self._clients: dict[str, tuple[float, tuple[Any, str] | None]] = {}
        self._lock = threading.Lock()
        self._reads = ThreadPoolExecutor(WORKERS, thread_name_prefix="event-read")

    @property
    def config(self) -> Config:
        return self.desk.config

    def handle(self, body: str) -> Handled:
        """Handle one message body. Raises BadEvent (poison) or any failure (the message is retried)."""
        try:
            event = events.parse_event(body)
        except IgnoredEvent as exc:
            logger.info("event %s ignored: %s", exc.event_id, exc)
            return Handled("ignored", exc.event_id)
        store = self.desk.store
        claim = store.claim_event(
            event.event_id, event.account_id, event.name, self.owner, self.desk.clock(), LEASE_SECONDS
        )
        if not claim.won:
            if claim.handled:
                return Handled("duplicate", event.event_id)
            return Handled("in_progress", event.event_id, delete=False)  # another process holds it
        try:
            outcome = self._apply(event, set(claim.steps))
        except BaseException:
            store.release_event(event.event_id, self.owner, self.desk.clock())
            raise
        store.finish_event(event.event_id, outcome, self.desk.clock())
        return Handled(outcome, event.event_id)

    # -- the account's IAM ------------------------------------------------------------------

    def _client(self, account_id: str) -> tuple[Any, str] | None:
        now = self.monotonic()
        with self._lock:
            cached = self._clients.get(account_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self.rechecker.live_client(account_id)
        ttl = CLIENT_SECONDS if found is not None else UNKNOWN_SECONDS
        with self._lock:
            self._clients[account_id] = (now + ttl, found)
        return found

    # -- acting on one event ------------------------------------------------------------------

    def _apply(self, event: IamEvent, done: set[str]) -> str:
        desk, store, config = self.desk, self.desk.store, self.config
        client = self._client(event.account_id)
        if client is None:
            logger.warning(
                "event %s (%s) is for account %s, which this bot does not audit: dropped",
                event.event_id,
                event.name,
                event.account_id,
            )
            return "unconfigured"
        iam, partition = client
        episode = store.open_episode_of(event.account_id, event.user_name)
        arn = episode.arn if episode else self._arn(event, partition)
        now = desk.clock()
        tags_read = self._reads.submit(aws.user_tags, iam, event.user_name)  # beside the live check
        state = aws.live_state(iam, event.user_name)
        tags = tags_read.result() if state.exists else {}
        exemptions = {a: e.to_policy() for a, e in store.active_exemptions(now).items() if a == arn}
        finding = audit.judge_user(
            event.account_id,
            IamUser(event.user_name, arn, ""),
            None,
            state,
            (),
            tags,
            service.audit_policy(config, now, exemptions),
        )
        status = finding.status if finding is not None else None
        if "opened" in done:  # an earlier attempt opened the episode: finish what it started
            plan = Plan(open_episode=True, login_alert=event.is_login)
        else:
            plan = events.decide(event, status, episode is not None, config.tag_mfa_exempt)
        person = self._person(arn, tags)
        label = self._label(event.account_id, iam)
        subject = alerts.AlertSubject(event.account_id, event.user_name, label, person)
        outcomes: list[str] = []
        if plan.exemption is not None:
            self._exemption(event, arn, subject, plan.exemption, done)
            outcomes.append(f"exemption_{plan.exemption}")
        if plan.open_episode:
            episode = self._open(event, arn, subject, done) or store.open_episode_of(event.account_id, event.user_name)
            outcomes.append("opened" if "opened" in done else "already_open")
        if plan.login_alert and episode is not None and self._login(event, episode, subject, done):
            outcomes.append("login_alert")
        if plan.close_episode and episode is not None:
            self._close(event, episode, person, label, plan.thank, done)
            outcomes.append("closed")
        outcome = "+".join(outcomes) or "no_change"  # kept with the claim (event_claims.outcome)
        logger.info("event %s %s in %s: %s", event.event_id, event.name, event.account_id, outcome)
        return outcome

    @staticmethod
    def _arn(event: IamEvent, partition: str) -> str:
        if event.is_login and event.actor.startswith("arn:") and ":user/" in event.actor:
            return event.actor  # the signed-in user's own ARN (its path included)
        return f"arn:{partition}:iam::{event.account_id}:user/{event.user_name}"

    def _person(self, arn: str, tags: dict[str, str]) -> str | None:
        links = self.desk.store.links()
        identity: IdentityChain = self.desk.identity
        return links.get(arn) or identity.resolve(violation_finding(arn, tags), links)

    def _label(self, account_id: str, iam: Any) -> str:
        """`alias (id)`: the alias remembered from audits, else read once (ListAccountAliases)."""
        aliases = self.desk.aliases
        if account_id not in aliases:
            try:
                aliases[account_id] = next(iter(iam.list_account_aliases().get("AccountAliases", [])), None)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("the alias of account %s could not be read: %s", account_id, aws.describe_error(exc))
        alias = aliases.get(account_id)
        return f"{alias} ({account_id})" if alias else account_id

    def _when(self, event: IamEvent) -> str:
        return self.desk.when(event.at or self.desk.clock())

    def _step(self, event: IamEvent, done: set[str], step: str) -> None:
        self.desk.store.event_step_done(event.event_id, step)
        done.add(step)

    def _post_alert(self, message: Message) -> None:
        channel = self.config.alerts_to
        if channel is None:
            logger.warning("no ALERT_CHANNEL or DIGEST_CHANNEL: a real-time alert was not posted")
            return
        self.desk.slack.post(channel, message.text, message.blocks)

    def _open(self, event: IamEvent, arn: str, subject: alerts.AlertSubject, done: set[str]) -> Episode | None:
        """A new violation: open the episode (one process wins), DM the person, alert the channel."""
        store = self.desk.store
        if "opened" not in done:
            opened = store.open_episode(arn, event.account_id, event.user_name, self.desk.clock())
            if opened is None:
                return None  # opened meanwhile by an audit or another event: that one told everyone
            self._step(event, done, "opened")
        episode = store.open_episode_of(event.account_id, event.user_name)
        dm_outcome = "no_person"
        if "dm" in done:
            dm_outcome = "sent"
        elif subject.slack_user_id:
            dm_outcome = self.nudger.deliver(subject.slack_user_id, [arn], SCHEDULER).outcome
            self._step(event, done, "dm")
        if "alert" not in done:
            self._post_alert(alerts.violation_alert(subject, event, self._when(event), dm_outcome))
            self._step(event, done, "alert")
        if event.is_login and episode is not None:  # this sign-in is in the alert: none more today
            self.desk.store.claim_alert(self._login_key(event, episode), event.event_id, self.desk.clock())
            self._step(event, done, "login_claimed")
            self._step(event, done, "login_alert")
        return episode

    def _login_key(self, event: IamEvent, episode: Episode) -> str:
        day = (event.at or self.desk.clock()).astimezone(self.desk.tz).date().isoformat()
        return events.login_alert_key(episode.id, event, day)

    def _login(self, event: IamEvent, episode: Episode, subject: alerts.AlertSubject, done: set[str]) -> bool:
        """A sign-in without MFA by a violator: one alert per episode and day (in DIGEST_TIMEZONE)."""
        if "login_alert" in done:
            return True
        if "login_claimed" not in done:
            if not self.desk.store.claim_alert(self._login_key(event, episode), event.event_id, self.desk.clock()):
                return False
            self._step(event, done, "login_claimed")
        since = self.desk.when(episode.first_seen)
        self._post_alert(alerts.login_alert(subject, event, self._when(event), since))
        self._step(event, done, "login_alert")
        return True

    def _close(
        self, event: IamEvent, episode: Episode, person: str | None, label: str, thank: bool, done: set[str]
    ) -> None:
        """Fixed (or exempted): close the episode, update the digest rows, thank the person who was DMed."""
        desk = self.desk
        if "closed" not in done:
            desk.store.close_episode(episode.arn, desk.clock(), closed_as=None if thank else EXEMPTED)
            self._step(event, done, "closed")
            try:
                refresh_rows(desk, [episode.arn])
            except Exception:
                logger.exception("could not update the digest rows after event %s", event.event_id)
        if not thank or person is None or "thanked" in done:
            return
        if desk.store.first_nudge_at(episode.arn, since=episode.first_seen) is None:
            return  # never asked: nothing to thank for
        message = text_message(recheck_thanks(episode.user_name, label))
        desk.slack.dm(person, message.text, message.blocks)
        self._step(event, done, "thanked")

    def _exemption(self, event: IamEvent, arn: str, subject: alerts.AlertSubject, change: str, done: set[str]) -> None:
        """The exemption tag changed outside Slack: the audit trail (with userIdentity), then the channel."""
        key = self.config.tag_mfa_exempt
        if "exemption_recorded" not in done:
            reason = event.tags_added.get(key, "") if change == "added" else ""
            detail = f"tag {key} {change} by {event.actor} (CloudTrail {event.event_id})" + (
                f": {reason}" if reason else ""
            )
            self.desk.store.record_action(event.actor, f"exemption_tag_{change}", arn, detail, self.desk.clock())
            self._step(event, done, "exemption_recorded")
        if "exemption_alert" not in done:
            self._post_alert(alerts.exemption_alert(subject, event, self._when(event), key, change))
            self._step(event, done, "exemption_alert")


# -- the queue ----------------------------------------------------------------------------------


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


def start_events(config: Config, desk: Desk, rechecker: Rechecker, nudger: Nudger) -> QueuePoller:
    """The poller `serve` starts when EVENTS_QUEUE_URL is set."""
    handler = EventHandler(desk, rechecker, nudger)
    poller = QueuePoller(handler.handle, config.events_queue_url or "", sqs_client(config))
    poller.start()
    return poller
