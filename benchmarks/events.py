"""Benchmark: 1,000 IAM events (10% duplicates) through moto's SQS, handled exactly as `serve` does.

moto's server runs in its own process (IAM and SQS over HTTP); the bot's poller thread, event
handler, store (SQLite) and Slack client run here, against the Slack stand-in. Every event is a
CloudTrail `CreateLoginProfile` shaped as EventBridge delivers it, for its own IAM user (who has
the console password in moto, no MFA, and a Slack person by tag), so each unique event means one
new violation: one DM and one alert. 10% of the messages are second copies of an event
(SQS at-least-once, or two rules): they must change nothing.

Two runs, each with its own 1,000 events and users:
- burst: all 1,000 messages are in the queue before the poller starts: events/s (throughput);
- steady: messages arrive at `--rate` a second: the time from a message being sent (visible in
  the queue) to the person's DM, p50 and p99. Target: p99 under 2 s.
Both: each event handled once (0 duplicate DMs or alerts), none lost.

    python -m benchmarks.events [--events 1000] [--duplicates 0.1] [--rate 10] [--slack-speed 100]

Slack's documented pace (about one message a second, see bot.pacing) would bound a new violation
(a DM and an alert) at 0.5 a second whatever the bot does; `--slack-speed` runs the bot's pacing
that many times faster so the numbers show the bot's own cost (`--slack-speed 1`: Slack's pace).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import Config
from bot.demo import DEMO_CREDENTIALS, demo_client
from bot.event_handler import EventHandler
from bot.event_queue import QueuePoller, sqs_client
from bot.pacing import PacedSlack
from bot.services import build_services
from bot.slack import make_web_client
from bot.store import Store
from tests.eventbridge import body, create_queues, iam_call, queue_depth
from tests.slack_standin import MEMBERS, SlackStandIn

ACCOUNT = "123456789012"
ALERTS = "C0ALERTS1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's server in its own process; returns it and its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("moto's server did not start")


def person_of(index: int, run: str) -> str:
    return f"U{run.upper()[0]}{index:07d}"


def seed_users(iam, run: str, count: int) -> list[str]:
    """`count` IAM users with a console password, no MFA, and a Slack person by tag."""
    names = []
    for i in range(count):
        name = f"{run}-{i:04d}"
        iam.create_user(UserName=name, Tags=[{"Key": "slack-user-id", "Value": person_of(i, run)}])
        iam.create_login_profile(UserName=name, Password="Bench-Password-1!")
        names.append(name)
    return names


def messages_for(names: list[str], duplicates: float, seed: int) -> list[tuple[str, str]]:
    """(eventID, body) for each user, plus second copies of a `duplicates` share, in a shuffled order."""
    rng = random.Random(seed)
    unique = [(f"ev-{name}", body(iam_call("CreateLoginProfile", name, event_id=f"ev-{name}"))) for name in names]
    copies = rng.sample(unique, round(len(unique) * duplicates / (1 - duplicates)))
    sent = unique + copies
    rng.shuffle(sent)
    return sent


def send(sqs, queue_url: str, batch: list[tuple[str, str]], sent_at: dict[str, float]) -> None:
    entries = [{"Id": str(i), "MessageBody": text} for i, (_, text) in enumerate(batch)]
    sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    now = time.monotonic()
    for event_id, _ in batch:
        sent_at.setdefault(event_id, now)  # the first copy's visibility is what the person waits from


def dm_times(standin: SlackStandIn, run: str) -> dict[str, list[float]]:
    """Slack person -> the times their DMs were accepted (this run's people only)."""
    times: dict[str, list[float]] = {}
    for record in standin.accepted("chat.postMessage"):
        channel = str(record.payload.get("channel", ""))
        if channel.startswith("U") and channel[1:2] == run.upper()[0]:  # a DM: the user ID as channel
            times.setdefault(channel, []).append(record.at)
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run(args: argparse.Namespace) -> int:
    moto, url = start_moto()
    try:
        return measure(args, url)
    finally:
        moto.terminate()
        moto.wait(10)


def measure(args: argparse.Namespace, url: str) -> int:
    import os

    os.environ.update(
        AWS_ACCESS_KEY_ID=DEMO_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=DEMO_CREDENTIALS["aws_secret_access_key"],
        AWS_SESSION_TOKEN=DEMO_CREDENTIALS["aws_session_token"],
        AWS_DEFAULT_REGION="us-east-1",
    )
    iam, sqs = demo_client(url), demo_client(url, "sqs")
    unique = round(args.events * (1 - args.duplicates))
    started = time.monotonic()
    names = {run_name: seed_users(iam, run_name, unique) for run_name in ("burst", "steady")}
    print(f"seeded {2 * unique} IAM users in moto in {time.monotonic() - started:.1f} s")
    failures = []
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn(members=MEMBERS) as standin:
        for run_name in ("burst", "steady"):
            queue_url, dlq_url = create_queues(url, name=f"mfa-bot-events-{run_name}", max_receive=5)
            config = Config(
                slack_bot_token="xoxb-bench",
                slack_api_url=standin.api_url,
                digest_channel=ALERTS,
                database_url=f"sqlite:///{Path(tmp) / f'{run_name}.db'}",
                aws_endpoint_url=url,
                events_queue_url=queue_url,
                digest_cron=None,
            )
            client = make_web_client(config)
            store = Store.open(config.database_url)
            services = build_services(config, client, store, slack=PacedSlack.scaled(client, args.slack_speed))
            handler = EventHandler(services)
            poller = QueuePoller(handler.handle, queue_url, sqs_client(config))
            batch = messages_for(names[run_name], args.duplicates, seed=7 if run_name == "burst" else 8)
            sent_at: dict[str, float] = {}
            if run_name == "burst":
                for i in range(0, len(batch), 10):
                    send(sqs, queue_url, batch[i : i + 10], sent_at)
                began = time.monotonic()
                poller.start()
            else:
                poller.start()
                began = time.monotonic()

                def feed(
                    batch: list[tuple[str, str]] = batch,
                    queue_url: str = queue_url,
                    began: float = began,
                    sent_at: dict[str, float] = sent_at,
                ) -> None:
                    interval = 10 / args.rate
                    for i in range(0, len(batch), 10):
                        due = began + (i // 10) * interval
                        time.sleep(max(0.0, due - time.monotonic()))
                        send(sqs, queue_url, batch[i : i + 10], sent_at)

                feeder = threading.Thread(target=feed, daemon=True)
                feeder.start()
            people = {person_of(i, run_name) for i in range(unique)}
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if len(dm_times(standin, run_name)) >= unique and queue_depth(sqs, queue_url) == 0:
                    break
                time.sleep(0.2)
            elapsed = time.monotonic() - began
            time.sleep(1.0)  # anything late (a duplicate) would show now
            poller.stop()
            dms = dm_times(standin, run_name)
            alerts = Counter(
                json.dumps(r.payload.get("blocks", [])).split("CloudTrail event `", 1)[-1].split("`", 1)[0]
                for r in standin.accepted("chat.postMessage")
                if r.payload.get("channel") == ALERTS and f"{run_name}-" in json.dumps(r.payload.get("blocks", []))
            )
            duplicate_dms = sum(len(t) - 1 for t in dms.values())
            duplicate_alerts = sum(n - 1 for n in alerts.values())
            lost = len(people - set(dms))
            handled = sum(1 for name in names[run_name] if (c := store.event_claim(f"ev-{name}")) and c.handled)
            print(f"\n{run_name}: {len(batch)} messages ({len(batch) - unique} duplicates) of {unique} events")
            print(
                f"  handled once: {handled}/{unique} · DMs {len(dms)} · alerts {len(alerts)} · "
                f"duplicate DMs {duplicate_dms} · duplicate alerts {duplicate_alerts} · lost {lost} · "
                f"left in queue {queue_depth(sqs, queue_url)} · dead-lettered {queue_depth(sqs, dlq_url)}"
            )
            print(f"  {len(batch)} messages in {elapsed:.1f} s: {len(batch) / elapsed:.1f} events/s")
            latencies = [
                dms[person_of(i, run_name)][0] - sent_at[f"ev-{name}"]
                for i, name in enumerate(names[run_name])
                if person_of(i, run_name) in dms
            ]
            if run_name == "steady" and latencies:
                p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
                print(
                    f"  arriving at {args.rate:g}/s: visible in the queue -> DM p50 {p50:.2f} s, p99 {p99:.2f} s, "
                    f"max {max(latencies):.2f} s (target p99 < 2 s: {p99 / 2:.2f}x of it)"
                )
                if p99 >= 2:
                    failures.append(f"p99 {p99:.2f} s")
            if duplicate_dms or duplicate_alerts or lost or handled != unique:
                failures.append(f"{run_name}: not each event exactly once")
            services.jobs.shutdown(wait=True)
            store.close()
    print(
        f"\nSlack's documented pace (1 message/s, bot.pacing) allows 0.5 new violations/s; "
        f"this run paced Slack x{args.slack_speed:g}."
    )
    print("RESULT: " + ("PASS" if not failures else "FAIL (" + "; ".join(failures) + ")"))
    return 0 if not failures else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1000, help="messages per run, duplicates included")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of messages that are second copies")
    parser.add_argument("--rate", type=float, default=10.0, help="messages a second in the steady run")
    parser.add_argument("--slack-speed", type=float, default=100.0, help="the bot's Slack pacing, x documented")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each run")
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
