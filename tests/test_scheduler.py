"""The schedule: DIGEST_CRON read as cron means it, the catch-up after a restart, exactly once, bad config refused."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.config import ConfigError
from bot.digest import post_scheduled_digest
from bot.scheduler import BotScheduler, ScheduledJobs, crontab_weekdays, digest_trigger, due_fire_time
from bot.store import Store
from tests.slack_standin import MEMBERS, SlackStandIn
from tests.workflow_helpers import CHANNEL, Clock, account, config_for, make_services, result, violator

REPO = Path(__file__).resolve().parents[1]
FRIDAY_0930 = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def fires(cron: str, zone: str = "UTC", start: datetime = FRIDAY_0930, count: int = 7) -> list[datetime]:
    from bot.config import Config

    trigger = digest_trigger(Config(digest_cron=cron, digest_timezone=zone))
    assert trigger is not None
    out, fire = [], trigger.get_next_fire_time(None, start)
    for _ in range(count):
        out.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    return out


def test_crontab_weekdays_mean_what_cron_means() -> None:
    assert crontab_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_weekdays("0") == crontab_weekdays("7") == crontab_weekdays("sun") == "sun"
    assert crontab_weekdays("5-7") == "sun,fri,sat"
    assert crontab_weekdays("*/2") == "sun,tue,thu,sat"
    assert crontab_weekdays("*") == "*"
    for bad in ("8", "1-", "mon-", "funday", "3-1"):
        with pytest.raises(ValueError):
            crontab_weekdays(bad)


def test_the_default_cron_fires_monday_to_friday_at_nine_in_the_zone() -> None:
    # APScheduler 3's from_crontab would read 1-5 as Tuesday-Saturday.
    week = fires("0 9 * * 1-5", "Europe/Berlin", count=5)
    assert [f.astimezone(ZoneInfo("Europe/Berlin")).strftime("%a %H:%M") for f in week] == [
        "Mon 09:00",
        "Tue 09:00",
        "Wed 09:00",
        "Thu 09:00",
        "Fri 09:00",
    ]
    assert week[0].utcoffset() == timedelta(hours=1)  # 09:00 in Berlin (CET), not UTC


@pytest.mark.parametrize(
    ("cron", "zone", "starts"),
    [
        ("61 9 * * *", "UTC", "DIGEST_CRON '61 9 * * *' is not a valid crontab"),
        ("0 9 * *", "UTC", "DIGEST_CRON must have 5 fields"),
        ("0 9 * * 1-8", "UTC", "DIGEST_CRON '0 9 * * 1-8' is not a valid crontab"),
        ("0 9 * * 1-5", "Mars/Olympus", "DIGEST_TIMEZONE must be an IANA zone"),
    ],
)
def test_an_invalid_schedule_is_one_config_error_line(cron: str, zone: str, starts: str) -> None:
    from bot.config import Config

    with pytest.raises(ConfigError) as caught:
        digest_trigger(Config(digest_cron=cron, digest_timezone=zone))
    assert str(caught.value).startswith(starts) and "\n" not in str(caught.value)


def test_digest_cron_off_schedules_no_digest() -> None:
    from bot.config import Config

    assert digest_trigger(Config(digest_cron=None)) is None


def test_due_fire_time_catches_up_on_today_only() -> None:
    from bot.config import Config

    trigger = digest_trigger(Config(digest_cron="0 9 * * 1-5"))
    assert trigger is not None
    assert due_fire_time(trigger, FRIDAY_0930, "UTC") == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert due_fire_time(trigger, FRIDAY_0930.replace(hour=8, minute=59), "UTC") is None  # not yet; not Thursday's
    assert due_fire_time(trigger, FRIDAY_0930 + timedelta(days=1), "UTC") is None  # Saturday: nothing due
    assert due_fire_time(trigger, FRIDAY_0930, "UTC", catchup=timedelta(minutes=20)) is None  # a shorter window
    berlin = digest_trigger(Config(digest_cron="0 9 * * 1-5", digest_timezone="Europe/Berlin"))
    assert berlin is not None
    fire = due_fire_time(berlin, datetime(2026, 11, 27, 8, 30, tzinfo=UTC), "Europe/Berlin")
    assert fire == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # 09:00 in Berlin


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(members=MEMBERS) as running:
        yield running


def test_two_schedulers_starting_late_on_one_database_post_one_digest(store_url: str, standin: SlackStandIn) -> None:
    """Two bot processes (two stores, one database) started at 09:30 both catch up on 09:00: one digest."""

    def audit():
        return result(account([violator("bob", tags={"slack-user-id": "U0BOB0001"})]))

    stores = [Store.open(store_url), Store.open(store_url)]
    outcomes: list = []
    done = threading.Barrier(3)
    schedulers = []
    try:
        for store in stores:
            services = make_services(store, standin, audit, clock=Clock(FRIDAY_0930))

            def digest(fire: datetime, services=services) -> None:
                outcomes.append(post_scheduled_digest(services, fire))
                done.wait(20)

            scheduler = BotScheduler(services.config, ScheduledJobs(digest=digest), clock=services.clock)
            schedulers.append(scheduler)
        for scheduler in schedulers:
            scheduler.start()
        done.wait(20)
        job = schedulers[0]._scheduler.get_job("digest")
        assert job is not None and job.next_run_time.hour == 9 and job.next_run_time.weekday() < 5
    finally:
        for scheduler in schedulers:
            scheduler.shutdown()
        for store in stores:
            store.close()
    assert sorted(o.posted for o in outcomes) == [False, True]
    assert {o.period_key for o in outcomes} == {"2026-11-27"}
    assert len(standin.calls("chat.postMessage")) == 1


def test_no_digest_channel_means_no_scheduled_digest(standin: SlackStandIn, caplog: pytest.LogCaptureFixture) -> None:
    called = []
    scheduler = BotScheduler(
        config_for(standin, digest_channel=None, recheck_interval_minutes=0),
        ScheduledJobs(digest=called.append, recheck=lambda: None),
        clock=Clock(FRIDAY_0930),
    )
    scheduler.start()
    try:
        assert scheduler._scheduler is not None
        assert {job.id for job in scheduler._scheduler.get_jobs()} == set()
    finally:
        scheduler.shutdown()
    assert not called and "DIGEST_CHANNEL is not set" in caplog.text


def test_recheck_and_prune_are_scheduled(standin: SlackStandIn) -> None:
    scheduler = BotScheduler(
        config_for(standin, recheck_interval_minutes=15, digest_cron=None),
        ScheduledJobs(recheck=lambda: None, prune=lambda: None),
    )
    scheduler.start()
    try:
        assert scheduler._scheduler is not None
        jobs = {job.id: job for job in scheduler._scheduler.get_jobs()}
        assert set(jobs) == {"recheck", "prune"}
        assert jobs["recheck"].trigger.interval == timedelta(minutes=15)
        assert (jobs["prune"].next_run_time.hour, jobs["prune"].next_run_time.minute) == (3, 30)
    finally:
        scheduler.shutdown()


def test_serve_refuses_an_invalid_digest_cron_with_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": "xoxb-secret-value",
        "SLACK_SIGNING_SECRET": "s",
        "DIGEST_CRON": "0 25 * * *",
        "DIGEST_CHANNEL": CHANNEL,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: DIGEST_CRON '0 25 * * *' is not a valid crontab")
    assert "xoxb-secret-value" not in done.stderr + done.stdout


def test_a_digest_that_could_not_be_posted_is_tried_again_the_same_day(standin: SlackStandIn) -> None:
    from bot.digest import DigestOutcome

    calls: list[datetime] = []
    posted = threading.Event()

    def digest(fire: datetime) -> DigestOutcome:
        calls.append(fire)
        if len(calls) == 1:
            return DigestOutcome(False, "2026-11-27", reason="service_unavailable", retry=True)
        posted.set()
        return DigestOutcome(True, "2026-11-27")

    scheduler = BotScheduler(config_for(standin), ScheduledJobs(digest=digest), clock=Clock(FRIDAY_0930))
    scheduler.retry_after = timedelta(milliseconds=200)
    scheduler.start()
    try:
        assert posted.wait(10)
    finally:
        scheduler.shutdown()
    assert calls == [datetime(2026, 11, 27, 9, 0, tzinfo=UTC)] * 2
