"""Real-time mode, one event: claim its CloudTrail eventID, check the IAM user live, act on the plan.

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
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from bot import audit, aws, events, service
from bot.config import Config
from bot.events import IamEvent, IgnoredEvent, Plan
from bot.identity import IdentityChain
from bot.messages import alerts
from bot.messages.blocks import Message, text_message
from bot.messages.personal import recheck_thanks
from bot.models import IamUser, violation_finding
from bot.store import EXEMPTED, SCHEDULER, Episode, process_identity

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

WORKERS = 4  # events handled side by side (more only queue up on SQLite's one writer)
LEASE_SECONDS = 120.0  # a claim held this long by a process that died is taken over
CLIENT_SECONDS = 600.0  # an account's IAM client (assumed-role credentials last an hour) is reused this long
UNKNOWN_SECONDS = 60.0  # an account found not configured is not looked up again for this long


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
        services: Services,
        owner: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.rechecker = services.rechecker
        self.nudger = services.nudger
        self.owner = owner or process_identity()
        self.monotonic = monotonic
        self._clients: dict[str, tuple[float, tuple[Any, str] | None]] = {}
        self._lock = threading.Lock()
        self._reads = ThreadPoolExecutor(WORKERS, thread_name_prefix="event-read")

    @property
    def config(self) -> Config:
        return self.services.config

    def handle(self, body: str) -> Handled:
        """Handle one message body. Raises BadEvent (poison) or any failure (the message is retried)."""
        try:
            event = events.parse_event(body)
        except IgnoredEvent as exc:
            logger.info("event %s ignored: %s", exc.event_id, exc)
            return Handled("ignored", exc.event_id)
        store = self.services.store
        claim = store.claim_event(
            event.event_id, event.account_id, event.name, self.owner, self.services.clock(), LEASE_SECONDS
        )
        if not claim.won:
            if claim.handled:
                return Handled("duplicate", event.event_id)
            return Handled("in_progress", event.event_id, delete=False)  # another process holds it
        try:
            outcome = self._apply(event, set(claim.steps))
        except BaseException:
            store.release_event(event.event_id, self.owner, self.services.clock())
            raise
        store.finish_event(event.event_id, outcome, self.services.clock())
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
        services, store, config = self.services, self.services.store, self.config
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
        now = services.clock()
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
        links = self.services.store.links()
        identity: IdentityChain = self.services.identity
        return links.get(arn) or identity.resolve(violation_finding(arn, tags), links)

    def _label(self, account_id: str, iam: Any) -> str:
        """`alias (id)`: the alias remembered from audits, else read once (ListAccountAliases)."""
        aliases = self.services.aliases
        if account_id not in aliases:
            try:
                aliases[account_id] = next(iter(iam.list_account_aliases().get("AccountAliases", [])), None)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("the alias of account %s could not be read: %s", account_id, aws.describe_error(exc))
        alias = aliases.get(account_id)
        return f"{alias} ({account_id})" if alias else account_id

    def _when(self, event: IamEvent) -> str:
        return self.services.when(event.at or self.services.clock())

    def _step(self, event: IamEvent, done: set[str], step: str) -> None:
        self.services.store.event_step_done(event.event_id, step)
        done.add(step)

    def _post_alert(self, message: Message) -> None:
        channel = self.config.alerts_to
        if channel is None:
            logger.warning("no ALERT_CHANNEL or DIGEST_CHANNEL: a real-time alert was not posted")
            return
        self.services.slack.post(channel, message.text, message.blocks)

    def _open(self, event: IamEvent, arn: str, subject: alerts.AlertSubject, done: set[str]) -> Episode | None:
        """A new violation: open the episode (one process wins), DM the person, alert the channel."""
        store = self.services.store
        if "opened" not in done:
            opened = store.open_episode(arn, event.account_id, event.user_name, self.services.clock())
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
            self.services.store.claim_alert(self._login_key(event, episode), event.event_id, self.services.clock())
            self._step(event, done, "login_claimed")
            self._step(event, done, "login_alert")
        return episode

    def _login_key(self, event: IamEvent, episode: Episode) -> str:
        day = (event.at or self.services.clock()).astimezone(self.services.tz).date().isoformat()
        return events.login_alert_key(episode.id, event, day)

    def _login(self, event: IamEvent, episode: Episode, subject: alerts.AlertSubject, done: set[str]) -> bool:
        """A sign-in without MFA by a violator: one alert per episode and day (in DIGEST_TIMEZONE)."""
        if "login_alert" in done:
            return True
        if "login_claimed" not in done:
            if not self.services.store.claim_alert(
                self._login_key(event, episode), event.event_id, self.services.clock()
            ):
                return False
            self._step(event, done, "login_claimed")
        since = self.services.when(episode.first_seen)
        self._post_alert(alerts.login_alert(subject, event, self._when(event), since))
        self._step(event, done, "login_alert")
        return True

    def _close(
        self, event: IamEvent, episode: Episode, person: str | None, label: str, thank: bool, done: set[str]
    ) -> None:
        """Fixed (or exempted): close the episode, update the digest rows, thank the person who was DMed."""
        services = self.services
        if "closed" not in done:
            services.store.close_episode(episode.arn, services.clock(), closed_as=None if thank else EXEMPTED)
            self._step(event, done, "closed")
            try:
                services.refresh_digest_rows([episode.arn])
            except Exception:
                logger.exception("could not update the digest rows after event %s", event.event_id)
        if not thank or person is None or "thanked" in done:
            return
        if services.store.first_nudge_at(episode.arn, since=episode.first_seen) is None:
            return  # never asked: nothing to thank for
        message = text_message(recheck_thanks(episode.user_name, label))
        services.slack.dm(person, message.text, message.blocks)
        self._step(event, done, "thanked")

    def _exemption(self, event: IamEvent, arn: str, subject: alerts.AlertSubject, change: str, done: set[str]) -> None:
        """The exemption tag changed outside Slack: the audit trail (with userIdentity), then the channel."""
        key = self.config.tag_mfa_exempt
        if "exemption_recorded" not in done:
            reason = event.tags_added.get(key, "") if change == "added" else ""
            detail = f"tag {key} {change} by {event.actor} (CloudTrail {event.event_id})" + (
                f": {reason}" if reason else ""
            )
            self.services.store.record_action(
                event.actor, f"exemption_tag_{change}", arn, detail, self.services.clock()
            )
            self._step(event, done, "exemption_recorded")
        if "exemption_alert" not in done:
            self._post_alert(alerts.exemption_alert(subject, event, self._when(event), key, change))
            self._step(event, done, "exemption_alert")
