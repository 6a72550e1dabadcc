"""The scheduler inside `serve`: the daily digest, the live re-check loop, retention, and the nudge worker.

APScheduler's BackgroundScheduler (in-memory job store) runs in the serving process only (in
HTTP mode: the one process that also runs uvicorn). The digest fires on a CronTrigger built
from DIGEST_CRON in DIGEST_TIMEZONE, coalesced, with a misfire grace time. APScheduler forgets
a missed run across a restart, so at start the bot catches up itself: if a fire time of today
(in DIGEST_TIMEZONE; or within `catchup`) has passed, it posts that digest now. Either way the
period key is that fire time's date and `Store.claim_digest` decides, so the digest goes out
exactly once per day and channel, however many processes are due or restart.

Claims are leases (`bot.digest`): every half lease (CLAIM_LEASE_SECONDS / 2) the scheduler looks
for claims a stopped process left unposted (today's digest in any channel, escalations) and
takes them over, so a process killed at 09:00 between claiming and posting delays that day's
digest by at most a lease and a half; it never skips it.

Crontab day-of-week numbers follow cron (0 or 7 = Sunday). APScheduler 3.x's `from_crontab`
reads 0 as Monday, which would shift `1-5` to Tuesday-Saturday; the field is translated to
weekday names here instead.
"""

from __future__ import annotations

import atexit
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import Config, ConfigError
from bot.digest import post_scheduled_digest, resume_expired
from bot.event_queue import QueuePoller, start_events
from bot.nudges import NudgeWorker
from bot.service import utc_now

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MISFIRE_GRACE_SECONDS = 6 * 3600  # a scheduler thread held up (suspended host) still fires, once
RETRY_AFTER = timedelta(minutes=10)  # a digest that could not be posted is tried again, the same day
MAX_RETRIES = 6
PRUNE_AT = {"hour": 3, "minute": 30}  # daily, in DIGEST_TIMEZONE
_DOW_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


def _weekday(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if not 0 <= number <= 7:
            raise ValueError(f"day of week {token} is out of range 0-7")
        return number % 7
    if token not in CRON_WEEKDAYS:
        raise ValueError(f"unknown day of week {token!r}")
    return CRON_WEEKDAYS.index(token)


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday, names, ranges, lists, steps) as APScheduler weekday names."""
    field = field.strip().lower()
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        match = _DOW_ITEM.match(item)
        if match is None:
            raise ValueError(f"cannot read day of week {item!r}")
        span, step = match["range"], int(match["step"] or 1)
        if step < 1:
            raise ValueError("a step must be at least 1")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _weekday(low), _weekday(high)
            if high == "7":
                last = 7
            if last < first:
                raise ValueError(f"day-of-week range {span!r} runs backwards")
        else:
            first = last = _weekday(span)
            if step > 1:
                last = 6
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(CRON_WEEKDAYS[day] for day in sorted(days))


def digest_trigger(config: Config) -> CronTrigger | None:
    """The digest's CronTrigger (None when DIGEST_CRON=off); ConfigError (one line) when it is not valid."""
    if config.digest_cron is None:
        return None
    try:
        zone = ZoneInfo(config.digest_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"DIGEST_TIMEZONE must be an IANA zone like Europe/Berlin, got {config.digest_timezone[:60]!r}"
        ) from None
    fields = config.digest_cron.split()
    if len(fields) != 5:
        raise ConfigError(
            f"DIGEST_CRON must have 5 fields (minute hour day month weekday), like '0 9 * * 1-5'; "
            f"got {config.digest_cron[:60]!r}"
        )
    minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=crontab_weekdays(weekday), timezone=zone
        )
    except ValueError as exc:
        raise ConfigError(f"DIGEST_CRON {config.digest_cron[:60]!r} is not a valid crontab: {exc}") from None


def check_schedule(config: Config) -> None:
    """Raise ConfigError when DIGEST_CRON or DIGEST_TIMEZONE cannot be scheduled (serve calls it first)."""
    digest_trigger(config)


def latest_fire_time(trigger: CronTrigger, now: datetime, earliest: datetime) -> datetime | None:
    """The trigger's last fire time in [earliest, now], or None."""
    last = None
    fire = trigger.get_next_fire_time(None, earliest)
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire)
    return last


def due_fire_time(
    trigger: CronTrigger, now: datetime, timezone: str, catchup: timedelta | None = None
) -> datetime | None:
    """The fire time a digest posted `now` stands for: the latest one today (or within `catchup`), or None."""
    if catchup is None:
        local = now.astimezone(ZoneInfo(timezone))
        earliest = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        earliest = now - catchup
    return latest_fire_time(trigger, now, earliest)


@dataclass
class ScheduledJobs:
    """What the scheduler runs: the digest for a fire time, the live re-check, retention."""

    digest: Callable[[datetime], Any] | None = None
    recheck: Callable[[], Any] | None = None
    prune: Callable[[], Any] | None = None
    resume: Callable[[datetime | None], Any] | None = None  # take over expired claims (given today's fire time)


class BotScheduler:
    """APScheduler wired to the bot's jobs, with the digest catch-up at start."""

    def __init__(
        self,
        config: Config,
        jobs: ScheduledJobs,
        clock: Callable[[], datetime] = utc_now,
        catchup: timedelta | None = None,
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.clock = clock
        self.catchup = catchup  # None: the rest of the fire time's day
        self.trigger = digest_trigger(config)
        self.retry_after = RETRY_AFTER
        self._retries = 0
        self._scheduler: BackgroundScheduler | None = None

    @property
    def digest_enabled(self) -> bool:
        return self.trigger is not None and self.jobs.digest is not None and bool(self.config.digest_channel)

    def run_due_digest(self) -> Any:
        """Post the digest of the latest due fire time (the claim makes it once); None when none is due."""
        if not self.digest_enabled or self.trigger is None or self.jobs.digest is None:
            return None
        fire = due_fire_time(self.trigger, self.clock(), self.config.digest_timezone, self.catchup)
        if fire is None:
            return None
        outcome = self.jobs.digest(fire)
        if getattr(outcome, "retry", False) and self._scheduler is not None and self._retries < MAX_RETRIES:
            self._retries += 1
            when = datetime.now(ZoneInfo(self.config.digest_timezone)) + self.retry_after
            logger.warning("the digest was not posted; trying again at %s", when.isoformat(timespec="seconds"))
            self._scheduler.add_job(
                _logged(self.run_due_digest, "digest retry"), "date", run_date=when, name="digest retry"
            )
        elif getattr(outcome, "posted", False):
            self._retries = 0
        return outcome

    def resume_expired(self) -> Any:
        """Take over claims a stopped process left unposted: today's due digest (if any) and escalations."""
        if self.jobs.resume is None:
            return None
        fire = None
        if self.digest_enabled and self.trigger is not None:
            fire = due_fire_time(self.trigger, self.clock(), self.config.digest_timezone, self.catchup)
        return self.jobs.resume(fire)

    def start(self) -> None:
        """Start the background scheduler, then catch up on a digest missed while the bot was down."""
        zone = ZoneInfo(self.config.digest_timezone)
        scheduler = BackgroundScheduler(
            timezone=zone,
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
        )
        if self.digest_enabled:
            scheduler.add_job(_logged(self.run_due_digest, "digest"), self.trigger, id="digest", name="digest")
        elif self.trigger is not None:
            logger.warning("the scheduled digest is off: DIGEST_CHANNEL is not set")
        minutes = self.config.recheck_interval_minutes
        if minutes > 0 and self.jobs.recheck is not None:
            trigger = IntervalTrigger(minutes=minutes, timezone=zone)
            scheduler.add_job(_logged(self.jobs.recheck, "re-check"), trigger, id="recheck", name="re-check")
        if self.jobs.resume is not None:
            trigger = IntervalTrigger(seconds=max(1.0, self.config.claim_lease_seconds / 2), timezone=zone)
            scheduler.add_job(_logged(self.resume_expired, "claim check"), trigger, id="claims", name="claim check")
        if self.jobs.prune is not None:
            trigger = CronTrigger(timezone=zone, **PRUNE_AT)
            scheduler.add_job(_logged(self.jobs.prune, "prune"), trigger, id="prune", name="prune")
        scheduler.start()
        self._scheduler = scheduler
        if self.digest_enabled:
            scheduler.add_job(
                _logged(self.run_due_digest, "digest catch-up"), id="digest-catch-up", name="digest catch-up"
            )
            job = scheduler.get_job("digest")
            when = getattr(job, "next_run_time", None)
            logger.debug(  # bot.startup's "digest:" line says it once at INFO
                "digest scheduled (%s, %s) to %s; next at %s",
                self.config.digest_cron,
                self.config.digest_timezone,
                self.config.digest_channel,
                when.isoformat() if when else "never",
            )

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler (waiting for running jobs when `wait`)."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=wait)


def _logged(job: Callable[[], Any], name: str) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return job()
        except Exception:
            logger.exception("scheduled %s failed", name)
            return None

    return run


@dataclass
class Background:
    """What `serve` runs beside the Slack listeners: the scheduler, the nudge worker, the event poller."""

    scheduler: BotScheduler
    worker: NudgeWorker | None
    events: QueuePoller | None = None

    def stop(self) -> None:
        """Stop them: the poller and the worker after what they hold, the scheduler after its running jobs."""
        if self.events is not None:
            self.events.stop()
        if self.worker is not None:
            self.worker.stop()
        self.scheduler.shutdown(wait=False)

    def health(self) -> dict[str, Any]:
        """Extra /healthz fields: the event queue's state when real-time mode is on."""
        return {"events_queue": self.events.health()} if self.events is not None else {}


def start_background(config: Config, services: Services) -> Background:
    """Start the scheduler (digest, re-check, prune), the nudge worker and (EVENTS_QUEUE_URL) the event poller."""
    store = services.store
    jobs = ScheduledJobs(
        digest=lambda fire: post_scheduled_digest(services, fire),
        resume=lambda fire: resume_expired(services, fire),
        prune=lambda: store.prune(config.retention_days, services.clock()),
        recheck=services.rechecker.recheck_open,
    )
    worker = NudgeWorker(services.nudger)
    worker.start()
    scheduler = BotScheduler(config, jobs, clock=services.clock)
    scheduler.start()
    background = Background(scheduler, worker)
    if config.events_queue_url:
        background.events = start_events(config, services)
    atexit.register(background.stop)
    return background
