"""Many accounts audited in worker processes, so that the bot's CPU spreads over the machine's cores.

One interpreter auditing 8 accounts at once runs 8 x LIVE_CHECK_CONCURRENCY threads behind one
interpreter lock: each 100 ms call then also waits its turn for the lock. Here the accounts go to
N worker processes (`spawn`: the bot's own process is multi-threaded and is never forked), each
auditing the accounts it is given with threads, AWS_MAX_CONCURRENCY accounts in flight in total;
a worker is given its next account as one of its accounts comes back (the one with fewest in flight
first), so a slow account never holds a queue behind it.

Workers only collect facts (`bot.aws.collect_account`); the parent judges them (stored exemptions,
Security Hub), so the rule and the store stay in one place. Each worker makes its own session
from the standard credential chain and assumes each account's role itself: assumed-role keys
never cross a process boundary, and are never logged.

Failure is never a pass: an account whose worker dies, raises or gives no answer within the
deadline comes back as an error naming what happened, and the other accounts are still audited
(by the workers left; with none left, in the parent's threads).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot import aws
from bot.config import Config
from bot.models import AccountFacts
from bot.rate import Rate

logger = logging.getLogger(__name__)

AUTO_MIN_ACCOUNTS = 8  # `auto` starts workers for this many accounts or more (fewer: the spawn cost is not won back)
AUTO_MIN_CPUS = 4  # and on this many CPUs or more: on 2, workers measured no faster (docs/benchmarks.md)
DEADLINE_MARGIN_SECONDS = 600.0  # an account's deadline: the report's deadline plus this
STOP_WAIT_SECONDS = 5.0


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(config: Config, accounts: int, cpus: int | None = None) -> int:
    """How many worker processes audit `accounts` accounts; 0: threads in this process (as before).

    AUDIT_PROCESSES=auto: one per CPU (at most one per account in flight) when more than one
    account is in flight, there are AUTO_MIN_ACCOUNTS accounts or more and AUTO_MIN_CPUS CPUs or
    more; N >= 2: N (at most one per account in flight); 0 or 1: none.
    """
    in_flight = min(config.aws_max_concurrency, accounts)
    if in_flight <= 1:
        return 0
    setting = config.audit_processes
    if setting == "auto":
        cpus = available_cpus() if cpus is None else cpus
        return min(cpus, in_flight) if cpus >= AUTO_MIN_CPUS and accounts >= AUTO_MIN_ACCOUNTS else 0
    return min(setting, in_flight) if setting > 1 else 0


@dataclass(frozen=True)
class AccountJob:
    """One account for a worker: reached with the base credentials (role_arn None) or a role."""

    account_id: str
    role_arn: str | None
    name: str | None
    partition: str


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to collect (no Slack token, no database URL, no credentials)."""

    endpoint_url: str | None
    external_id: str | None = field(repr=False)  # a secret: never shown
    concurrency: int  # LIVE_CHECK_CONCURRENCY: the connection pool of each client
    options: aws.CollectOptions
    cloudtrail_rate: Rate  # the parent's pacing of LookupEvents (per account)
    log_level: int

    @classmethod
    def of(cls, config: Config, options: aws.CollectOptions) -> WorkerSpec:
        """The spec of `config`'s audit, logging at this process's level."""
        return cls(
            endpoint_url=config.aws_endpoint_url,
            external_id=config.aws_external_id,
            concurrency=config.live_check_concurrency,
            options=options,
            cloudtrail_rate=aws.CLOUDTRAIL_RATE,
            log_level=logging.getLogger().getEffectiveLevel(),
        )


def collect_job(spec: WorkerSpec, session: aws.AwsSession, job: AccountJob) -> AccountFacts:
    """One account's facts (as `bot.service.audit_target` collects them); a failure comes back as its error."""
    try:
        credentials = None
        if job.role_arn:
            sts = aws.service_client(session, "sts", spec.endpoint_url, spec.concurrency)
            credentials = aws.assume_role(sts, job.role_arn, spec.external_id)
        iam = aws.service_client(session, "iam", spec.endpoint_url, spec.concurrency, credentials)
        iam = aws.lean_iam_reads(iam, session, credentials)
    except (ClientError, BotoCoreError) as exc:
        error = aws.describe_error(exc)
        logger.warning("audit of account %s failed: %s", job.account_id, error)
        return AccountFacts(account_id=job.account_id, alias=job.name, partition=job.partition, error=error)
    region = aws.iam_region(job.partition)
    return aws.collect_account(
        iam,
        job.account_id,
        job.partition,
        spec.options,
        make_cloudtrail=lambda: aws.service_client(session, "cloudtrail", spec.endpoint_url, 1, credentials, region),
    )


def failed_facts(job: AccountJob, error: str) -> AccountFacts:
    """An account the workers could not audit: an error, never a pass."""
    return AccountFacts(account_id=job.account_id, alias=job.name, partition=job.partition, error=error)


# --- in the worker process ---------------------------------------------------------------------


def _worker_main(
    conn: Connection, spec: WorkerSpec, slots: int, before_each: Callable[[AccountJob], None] | None
) -> None:
    """A worker: audit each (seq, job) received, `slots` at a time, and send back (seq, facts)."""
    logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(spec.log_level, logging.WARNING))
    aws.CLOUDTRAIL_RATE = spec.cloudtrail_rate  # the parent's pacing
    session = aws.make_session()
    send_lock = threading.Lock()

    def one(seq: int, job: AccountJob) -> None:
        try:
            if before_each is not None:
                before_each(job)
            facts = collect_job(spec, session, job)
        except Exception as exc:  # a bug, not an AWS answer: still an error for this account, never a pass
            logger.exception("audit of account %s failed in a worker process", job.account_id)
            facts = failed_facts(job, f"the audit failed in its worker process ({type(exc).__name__})")
        with send_lock:
            try:
                conn.send((seq, facts))
            except (OSError, ValueError):
                pass  # the parent is gone
            except Exception as exc:  # facts that cannot be sent (a bug): the account is an error, never a pass
                conn.send((seq, failed_facts(job, f"its facts could not come back ({type(exc).__name__})")))

    with ThreadPoolExecutor(max_workers=max(1, slots), thread_name_prefix="audit-account") as pool:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            if message is None:
                break
            pool.submit(one, *message)
    conn.close()
    logging.shutdown()
    os._exit(0)  # the interpreter's teardown (a last collection over every object) is not needed


# --- in the parent -----------------------------------------------------------------------------


class _Worker:
    def __init__(self, process: Any, conn: Connection) -> None:
        self.process, self.conn = process, conn
        self.held: dict[int, float] = {}  # seq -> when it was sent (monotonic)
        self.alive = True


class AccountWorkers:
    """N worker processes, started at once, reused for every `collect` until `close()` (a context manager).

    `before_each` (tests only) runs in the worker before each account: a crash or a hang on cue.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        processes: int,
        slots: int,
        before_each: Callable[[AccountJob], None] | None = None,
    ) -> None:
        self.peak_in_flight = 0
        context = multiprocessing.get_context("spawn")  # never fork a multi-threaded process
        self._workers: list[_Worker] = []
        for _ in range(max(1, processes)):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker_main,
                args=(child_end, spec, slots, before_each),
                name="mfa-bot-audit-worker",
                daemon=True,
            )
            try:
                process.start()
            except OSError as exc:  # no process to be had (a limit): the accounts are audited in threads
                logger.warning("no audit worker process started (%s): auditing in threads", exc)
                parent_end.close()
                continue
            finally:
                child_end.close()
            self._workers.append(_Worker(process, parent_end))

    def __enter__(self) -> AccountWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> int:
        """How many workers are still running."""
        return sum(w.alive for w in self._workers)

    def collect(
        self,
        jobs: Sequence[AccountJob],
        max_in_flight: int,
        deadline_seconds: float,
        on_facts: Callable[[int, AccountFacts], None] = lambda i, f: None,
    ) -> list[AccountFacts | None]:
        """Each job's facts, in order, at most `max_in_flight` accounts at once across the workers.

        `on_facts(i, facts)` is called (in this thread) as each account comes back. A job held by a
        worker that dies or passes `deadline_seconds` comes back as an error; a job never sent
        because no worker is left comes back as None (the caller audits it another way).
        """
        results: list[AccountFacts | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))

        def done(seq: int, facts: AccountFacts) -> None:
            results[seq] = facts
            on_facts(seq, facts)

        while True:
            alive = [w for w in self._workers if w.alive]
            in_flight = sum(len(w.held) for w in alive)
            while pending and alive and in_flight < max_in_flight:
                worker = min(alive, key=lambda w: len(w.held))
                seq = pending.popleft()
                if not self._send(worker, (seq, jobs[seq])):
                    pending.appendleft(seq)
                    self._lost(worker, jobs, done, "exited")
                    alive = [w for w in self._workers if w.alive]
                    continue
                worker.held[seq] = time.monotonic()
                in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, in_flight)
            if in_flight == 0:
                return results  # everything came back, or nothing more can be sent
            now = time.monotonic()
            oldest = min(sent for w in alive for sent in w.held.values())
            timeout = max(0.0, oldest + deadline_seconds - now)
            ready = wait([w.conn for w in alive] + [w.process.sentinel for w in alive], timeout)
            for worker in alive:
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._drain(worker, jobs, done)
            now = time.monotonic()
            for worker in alive:
                if worker.alive and any(now - sent >= deadline_seconds for sent in worker.held.values()):
                    worker.process.kill()
                    self._lost(worker, jobs, done, f"gave no answer within {deadline_seconds:g} s and was stopped")

    def _send(self, worker: _Worker, message: object) -> bool:
        try:
            worker.conn.send(message)
        except (OSError, ValueError):  # the worker is gone (a broken pipe)
            return False
        return True

    def _drain(self, worker: _Worker, jobs: Sequence[AccountJob], done: Callable[[int, AccountFacts], None]) -> None:
        """Read whatever `worker` sent; if it is gone, its accounts are errors."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "ready":
                    continue
                seq, facts = message
                if worker.held.pop(seq, None) is not None:
                    done(seq, facts)
        except (EOFError, OSError):
            self._lost(worker, jobs, done, "exited")  # its end of the pipe closed: it is gone or going
            return
        if not worker.process.is_alive():
            self._lost(worker, jobs, done, "exited")

    def _lost(
        self, worker: _Worker, jobs: Sequence[AccountJob], done: Callable[[int, AccountFacts], None], what: str
    ) -> None:
        """`worker` is gone (or stopped): each account it held is an error naming why."""
        worker.alive = False
        worker.process.join(timeout=STOP_WAIT_SECONDS)
        code = worker.process.exitcode
        how = f"{what} (exit code {code})" if what == "exited" else what
        for seq in sorted(worker.held):
            error = f"not audited: its worker process {how}"
            logger.error("account %s: %s", jobs[seq].account_id, error)
            done(seq, failed_facts(jobs[seq], error))
        worker.held.clear()
        worker.conn.close()

    def close(self) -> None:
        """Stop every worker (asked first, then killed)."""
        for worker in self._workers:
            if worker.alive:
                self._send(worker, None)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=STOP_WAIT_SECONDS)
            worker.alive = False
            worker.conn.close()
