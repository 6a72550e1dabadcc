"""Collect one account's facts from IAM and CloudTrail (the botocore edge). Judging happens in `bot.audit`.

Calls for an account of N users: at most 12 fixed calls (identity, alias, credential report,
ListUsers pages, account summary, virtual MFA devices), 3 per user V the report flags or
CloudTrail names (GetLoginProfile, ListMFADevices, ListUserTags), 1 per user H the report
shows with MFA but no enabled virtual device (ListMFADevices: FIDO or hardware), and the
CloudTrail LookupEvents pages (one lookup per event name since the report): 12 + 3V + H + pages,
whatever N is.

This module runs the collection (`collect_account`: the account-wide reads side by side, then
one live wave); the reads themselves are in `bot.aws_reads`, sessions and clients in
`bot.aws_clients`, and both are re-exported here, so callers keep using `bot.aws`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from bot import audit
from bot.aws_clients import (
    AwsSession,
    Session,
    assume_role,
    boto_config,
    iam_region,
    make_session,
    organization_accounts,
    parse_timestamp,
    service_client,
)
from bot.aws_reads import (
    FRESHNESS_EVENTS,
    REPORT_RETRY_CODES,
    THROTTLING_CODES,
    AccountReadError,
    _code,
    account_identity,
    active_access_keys,
    describe_error,
    fetch_credential_report,
    list_mfa_devices,
    list_users,
    list_virtual_devices,
    live_state,
    user_changes_since,
    user_tags,
)
from bot.iam_query import lean_iam_reads
from bot.models import AccountFacts, IamUser, LiveState, MfaDevice, Scope
from bot.rate import Pacer, Rate

__all__ = [
    "CLOUDTRAIL_DOCUMENTED_RATE",
    "CLOUDTRAIL_RATE",
    "FRESHNESS_EVENTS",
    "REPORT_MAX_AGE",
    "REPORT_RETRY_CODES",
    "THROTTLING_CODES",
    "AccountReadError",
    "AwsSession",
    "CollectOptions",
    "LiveChecks",
    "LiveWave",
    "Session",
    "account_identity",
    "active_access_keys",
    "assume_role",
    "boto_config",
    "collect_account",
    "confirm_users_live",
    "describe_error",
    "fetch_credential_report",
    "iam_region",
    "lean_iam_reads",
    "list_mfa_devices",
    "list_users",
    "list_virtual_devices",
    "live_state",
    "make_session",
    "organization_accounts",
    "parse_timestamp",
    "read_changes_since_report",
    "service_client",
    "user_changes_since",
    "user_tags",
]

logger = logging.getLogger(__name__)

CLOUDTRAIL_DOCUMENTED_RATE = Rate(2.0, burst=1)  # LookupEvents: 2 requests per second per account and region
CLOUDTRAIL_RATE = CLOUDTRAIL_DOCUMENTED_RATE  # what the collector paces at (the tests' fixture speeds it up)
REPORT_MAX_AGE = timedelta(hours=4)  # IAM regenerates a credential report older than this
CLOCK_MARGIN = timedelta(seconds=1)  # how far this host's clock may run ahead of AWS's before a gap lookup


@dataclass(frozen=True)
class CollectOptions:
    """Tunables of a collection run (from Config)."""

    report_deadline_seconds: float = 60.0
    live_check_concurrency: int = 16
    tag_keys_needed: bool = True
    scope: Scope = "console"


@dataclass
class LiveChecks:
    """What the parallel wave found: live states, tags of violation candidates, listed devices."""

    live: dict[str, LiveState]
    tags: dict[str, dict[str, str]]
    devices: dict[str, tuple[MfaDevice, ...]]


def _check_live(iam: Any, user: IamUser, scope: Scope) -> tuple[LiveState, dict[str, str]]:
    state = live_state(iam, user.name)
    needs_tags = (state.console_access or (scope == "all" and state.exists)) and not state.mfa_devices
    return state, (user_tags(iam, user.name) if needs_tags else {})


def _check(
    iam: Any, user: IamUser, devices_only: bool, scope: Scope
) -> tuple[LiveState | None, dict[str, str], tuple[MfaDevice, ...] | None]:
    if devices_only:
        devices = list_mfa_devices(iam, user.name)
        if devices:
            return None, {}, devices
        # No device any more (deactivated since the report), or the user is gone: confirm in full.
    state, tags = _check_live(iam, user, scope)
    return state, tags, None


class LiveWave:
    """One parallel wave of live checks, a bounded pool at a time; users may join while it runs
    (those CloudTrail names join when its lookups end). A user is confirmed in full at most once."""

    def __init__(self, iam: Any, concurrency: int, scope: Scope = "console") -> None:
        self.iam, self.scope = iam, scope
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="iam-live")
        self._jobs: list[tuple[IamUser, Any]] = []
        self._confirmed: set[str] = set()

    def add(self, users: Iterable[IamUser], devices_only: bool = False) -> None:
        """Confirm `users` live (or, `devices_only`, list their MFA devices; confirmed in full if none)."""
        for user in users:
            if user.arn in self._confirmed:
                continue
            if not devices_only:
                self._confirmed.add(user.arn)
            self._jobs.append((user, self._pool.submit(_check, self.iam, user, devices_only, self.scope)))

    def finish(self) -> LiveChecks:
        """Wait for every check; a full live check wins over a device listing of the same user."""
        checks = LiveChecks(live={}, tags={}, devices={})
        try:
            for user, job in self._jobs:
                state, user_tag_map, devices = job.result()
                if state is not None:
                    checks.live[user.arn] = state
                if user_tag_map:
                    checks.tags[user.arn] = user_tag_map
                if devices is not None:
                    checks.devices[user.arn] = devices
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for arn in checks.live:
            checks.devices.pop(arn, None)
        return checks


def confirm_users_live(
    iam: Any,
    users: Iterable[IamUser],
    concurrency: int,
    devices_only: Iterable[IamUser] = (),
    scope: Scope = "console",
) -> LiveChecks:
    """One parallel wave: live state (and tags, for violation candidates) of each of `users`, and
    the MFA devices of each of `devices_only` (confirmed in full if none)."""
    wave = LiveWave(iam, concurrency, scope)
    wave.add(users)
    wave.add(devices_only, devices_only=True)
    return wave.finish()


def _cloudtrail_code(exc: BaseException) -> str:
    """The short cause shown in the freshness note: the AWS error code, else the exception's name."""
    if isinstance(exc, ClientError):
        return _code(exc) or "Error"
    return type(exc).__name__


def read_changes_since_report(
    facts: AccountFacts,
    cloudtrail: Any | None,
    now: Callable[[], datetime],
    pacer: Pacer,
    generated_at: Callable[[], datetime | None] | None = None,
    looked_up_from: datetime | None = None,
) -> None:
    """Fill `changed_since_report` and `fresh_through` from CloudTrail; a failure is a note, never an error.

    The users named are those of events at or after the report's GeneratedTime (`generated_at()`,
    which may wait for the report; default: `facts.report_generated_at`). `looked_up_from` starts
    the lookups there before that time is known (a report being generated now is dated later):
    events before GeneratedTime are then dropped, and were the report older after all (a clock
    ahead of AWS's, a report someone else began), the gap between the two is looked up too.
    """
    report_time = generated_at or (lambda: facts.report_generated_at)
    if cloudtrail is None:
        facts.fresh_through, facts.cloudtrail_error = report_time(), "not configured"
        return
    started = now()
    try:
        if looked_up_from is None:
            generated = report_time()
            changes, _ = user_changes_since(cloudtrail, generated or started - REPORT_MAX_AGE, pacer)
        else:
            changes, _ = user_changes_since(cloudtrail, looked_up_from, pacer)
            generated = report_time()
            if generated is None or generated < looked_up_from:
                gap, _ = user_changes_since(cloudtrail, generated or started - REPORT_MAX_AGE, pacer, looked_up_from)
                changes += gap
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        facts.fresh_through, facts.cloudtrail_error = report_time(), _cloudtrail_code(exc)
        logger.warning("account %s: CloudTrail not readable, findings as of the report: %s",
                       facts.account_id, describe_error(exc))  # fmt: skip
        return
    facts.changed_since_report = frozenset(
        name for name, at in changes if generated is None or at is None or at >= generated
    )
    # CloudTrail was read up to `started`, the report is as of GeneratedTime (later, when the
    # lookups began while it was generated): together they cover up to the later of the two.
    facts.fresh_through = max(started, generated) if generated is not None else started


def _changes_task(
    facts: AccountFacts,
    make_cloudtrail: Callable[[], Any | None],
    report: Future[tuple[bytes, datetime | None]],
    report_begun_at: Future[datetime | None],
    now: Callable[[], datetime],
    pacer: Pacer,
) -> None:
    """The CloudTrail half of a collection: its client, then the lookups, begun as early as is sound.

    A report being generated now (STARTED) is dated after the call that began it, so the lookups
    start from that moment (less a second for clocks) while it is generated; otherwise they wait
    for the report's GeneratedTime. A report that could not be had fails the account elsewhere.
    """
    cloudtrail = make_cloudtrail()
    either: list[Future[Any]] = [report, report_begun_at]
    wait(either, return_when=FIRST_COMPLETED)
    begun = report_begun_at.result() if report_begun_at.done() else None
    read_changes_since_report(
        facts, cloudtrail, now, pacer, generated_at=lambda: report.result()[1],
        looked_up_from=begun - CLOCK_MARGIN if begun is not None else None,
    )  # fmt: skip


def collect_account(
    iam: Any,
    account_id: str,
    partition: str = "aws",
    options: CollectOptions = CollectOptions(),
    sleep: Callable[[float], None] = time.sleep,
    cloudtrail: Any | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
    make_cloudtrail: Callable[[], Any] | None = None,
    on_reads_started: Callable[[], None] | None = None,
) -> AccountFacts:
    """Everything the rule needs about one account; an unreadable account comes back with `error` set.

    `cloudtrail` (a client in the partition's IAM region) closes the report's blind spot; None
    or unreadable: the facts are as of the report, and `cloudtrail_error` says why. Or
    `make_cloudtrail` makes that client in a read thread while the report is generated (client
    creation is CPU the reads need not wait for). `on_reads_started` is called once the
    account-wide reads are on their way (`check` then opens its store: CPU that would have
    slowed them down).
    """
    facts = AccountFacts(account_id=account_id, partition=partition)
    report_begun_at: Future[datetime | None] = Future()

    def first_answer(state: str | None, sent_at: datetime) -> None:
        report_begun_at.set_result(sent_at if state == "STARTED" else None)

    try:
        # The account-wide reads are independent: run them side by side, so the report's
        # generation wait overlaps the rest (a user created meanwhile is seen next run; one
        # deleted meanwhile is dropped by the live check), CloudTrail's paced lookups included.
        with ThreadPoolExecutor(max_workers=6, thread_name_prefix="iam-read") as pool:
            report = pool.submit(
                fetch_credential_report, iam, options.report_deadline_seconds, sleep=sleep,
                on_first_answer=first_answer, now=now,
            )  # fmt: skip
            users = pool.submit(list_users, iam)
            virtual = pool.submit(list_virtual_devices, iam)
            aliases = pool.submit(lambda: iam.list_account_aliases().get("AccountAliases", []))
            summary = pool.submit(lambda: iam.get_account_summary()["SummaryMap"])
            pacer = Pacer(CLOUDTRAIL_RATE, clock=clock, sleep=sleep)
            make_trail = make_cloudtrail or (lambda: cloudtrail)
            changes = pool.submit(_changes_task, facts, make_trail, report, report_begun_at, now, pacer)
            if on_reads_started is not None:
                on_reads_started()
            facts.alias = next(iter(aliases.result()), None)
            content, facts.report_generated_at = report.result()
            facts.report_rows, report_root = audit.parse_credential_report(content)
            wave = LiveWave(iam, options.live_check_concurrency, options.scope)
            try:
                # The users the report flags are confirmed from now on, while ListUsers and the
                # virtual devices (the slowest reads) finish; the rest join the wave below.
                wave.add(audit.users_the_report_flags(facts.report_rows, options.scope))
                facts.users = users.result()
                summary_map = summary.result()
                virtual_items = virtual.result()
                facts.virtual_devices = audit.virtual_devices_by_user(virtual_items)
                facts.pending_virtual_names = audit.pending_virtual_device_names(virtual_items)
                facts.root = audit.judge_root(
                    audit.summary_flag(summary_map, "AccountMFAEnabled"),
                    facts.virtual_devices,
                    partition,
                    account_id,
                    report_root,
                    password_present=audit.summary_flag(summary_map, "AccountPasswordPresent"),
                    access_keys_present=audit.summary_flag(summary_map, "AccountAccessKeysPresent"),
                )
                to_confirm = audit.users_to_confirm(facts.users, facts.report_rows, scope=options.scope)
                wave.add(to_confirm)
                wave.add(
                    audit.users_to_list_devices(facts.users, facts.report_rows, facts.virtual_devices, to_confirm),
                    devices_only=True,
                )
                changes.result()
                wave.add(u for u in facts.users if u.name in facts.changed_since_report)
            finally:
                checks = wave.finish()
        facts.live, facts.tags, facts.devices = checks.live, checks.tags, checks.devices
    except (ClientError, BotoCoreError, ResponseParserError, AccountReadError, audit.ReportFormatError) as exc:
        facts.error = describe_error(exc)
        logger.warning("audit of account %s failed: %s", account_id, facts.error)
    return facts
