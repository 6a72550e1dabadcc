"""The audit service: the one entry point that handlers, the scheduler and the CLI call.

It wires the edges (AWS sessions, clock, stored exemptions) to the pure rule, for one
account or many: the current credentials' account (the default), an explicit list of
accounts (`AWS_ACCOUNT_IDS`), or every active account of the AWS Organization
(`AWS_ORGANIZATION=true`), each reached through `AWS_ROLE_NAME`. Accounts are audited in
parallel, at most `AWS_MAX_CONCURRENCY` at a time; one account's failure is an error for that
account only, never a pass and never hiding the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from botocore.exceptions import BotoCoreError, ClientError

from bot import account_workers, audit, aws
from bot.config import Config
from bot.models import STATUSES, AccountFindings, AuditPolicy, AuditResult, Exemption, RootStatus, Status
from bot.snapshot import account_to_json

if TYPE_CHECKING:
    from bot.store import Store

logger = logging.getLogger(__name__)
UNKNOWN_ACCOUNT = "unknown"


def default_region() -> str:
    """The region of the standard chain (AWS_DEFAULT_REGION, the profile), else us-east-1."""
    try:
        return aws.make_session().region_name or "us-east-1"
    except BotoCoreError:
        return "us-east-1"


T = TypeVar("T")
Exemptions = Mapping[str, Exemption] | Callable[[], Mapping[str, Exemption] | None] | None


def utc_now() -> datetime:
    """The clock edge."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class AccountTarget:
    """One account to audit: reached with the base credentials (role_arn None) or a role."""

    account_id: str
    role_arn: str | None = None
    name: str | None = None


def collect_options(config: Config) -> aws.CollectOptions:
    """Collection tunables from the configuration."""
    return aws.CollectOptions(
        report_deadline_seconds=config.report_deadline_seconds,
        live_check_concurrency=config.live_check_concurrency,
        scope=config.mfa_scope,
    )


def audit_policy(config: Config, now: datetime, exemptions: Mapping[str, Exemption] | None = None) -> AuditPolicy:
    """The rule's knobs for one run."""
    return AuditPolicy(
        now=now,
        grace_period_days=config.grace_period_days,
        tag_mfa_exempt=config.tag_mfa_exempt,
        exemptions=dict(exemptions or {}),
        tag_exemptions=config.tag_exemptions,
        scope=config.mfa_scope,
    )


def failed_account(account_id: str, error: str, alias: str | None = None) -> AccountFindings:
    """Findings for an account that could not be read: an error, never a pass."""
    return AccountFindings(
        account_id=account_id, alias=alias, error=error, report_generated_at=None, root=RootStatus(), users=[]
    )


class TargetsError(Exception):
    """The list of accounts itself could not be had (no account can be audited)."""


def account_targets(config: Config, session: aws.AwsSession) -> tuple[list[AccountTarget], str]:
    """The accounts to audit and the partition, from the configuration.

    The base credentials' own account is read with those credentials, without a role.
    """
    try:
        sts = aws.service_client(session, "sts", config.aws_endpoint_url, config.live_check_concurrency)
        # The base credentials' IAM client (the own account's audit) is made while GetCallerIdentity
        # is on the network; service_client keeps it, and a failure here surfaces when it is used.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="iam-client") as early:
            early.submit(aws.service_client, session, "iam", config.aws_endpoint_url, config.live_check_concurrency)
            own_account, partition = aws.account_identity(sts)
        listed: list[tuple[str, str | None]]
        if config.aws_organization:
            listed = list(aws.organization_accounts(session, config.aws_endpoint_url))
        else:
            listed = [(account_id, None) for account_id in config.aws_account_ids]
    except (ClientError, BotoCoreError) as exc:
        raise TargetsError(aws.describe_error(exc)) from exc
    if not listed:
        return [AccountTarget(own_account)], partition
    targets = []
    for account_id, name in listed:
        role_arn = f"arn:{partition}:iam::{account_id}:role/{config.aws_role_name}"
        targets.append(AccountTarget(account_id, None if account_id == own_account else role_arn, name or None))
    return targets, partition


def account_credentials(config: Config, base: aws.AwsSession, target: AccountTarget) -> dict[str, str] | None:
    """The credentials that reach one account: None for the base credentials, else the role assumed (may raise)."""
    if not target.role_arn:
        return None
    sts = aws.service_client(base, "sts", config.aws_endpoint_url, config.live_check_concurrency)
    return aws.assume_role(sts, target.role_arn, config.aws_external_id)


def iam_client(config: Config, base: aws.AwsSession, target: AccountTarget) -> Any:
    """An IAM client for one account: the base credentials, or the target's role assumed (may raise)."""
    credentials = account_credentials(config, base, target)
    return aws.service_client(base, "iam", config.aws_endpoint_url, config.live_check_concurrency, credentials)


def import_to_security_hub(
    config: Config,
    base: aws.AwsSession,
    credentials: dict[str, str] | None,
    account: AccountFindings,
    now: datetime,
) -> str | None:
    """Import one audited account's findings into its own Security Hub; the failure as one line, or None."""
    from bot import formats, security_hub

    try:
        client = aws.service_client(base, "securityhub", config.aws_endpoint_url, 1, credentials)
        scope = config.mfa_scope
        findings = [formats.asff_finding(account, u, now, client.meta.region_name, scope) for u in account.users]
        error = security_hub.sync_findings(client, account.account_id, findings, now)
    except (ClientError, BotoCoreError) as exc:
        error = f"Security Hub import failed ({aws.describe_error(exc)})"
    if error:
        logger.warning("account %s: %s", account.account_id, error)
    return error


def cloudtrail_client(config: Config, base: aws.AwsSession, partition: str, credentials: dict[str, str] | None) -> Any:
    """A CloudTrail client for one account, in its partition's IAM region (where IAM's events are)."""
    return aws.service_client(
        base, "cloudtrail", config.aws_endpoint_url, 1, credentials, region=aws.iam_region(partition)
    )


def audit_target(
    config: Config,
    base: aws.AwsSession,
    target: AccountTarget,
    partition: str,
    policy: Callable[[], AuditPolicy],
    on_reads_started: Callable[[], None] | None = None,
) -> AccountFindings:
    """Audit one account; any failure (AssumeRole denied included) comes back as its error.

    The CloudTrail client is made beside the account's first reads (`aws.collect_account`).
    """
    try:
        credentials = account_credentials(config, base, target)
        iam = aws.service_client(base, "iam", config.aws_endpoint_url, config.live_check_concurrency, credentials)
        iam = aws.lean_iam_reads(iam, base, credentials)
    except (ClientError, BotoCoreError) as exc:
        error = aws.describe_error(exc)
        logger.warning("audit of account %s failed: %s", target.account_id, error)
        return failed_account(target.account_id, error, alias=target.name)
    facts = aws.collect_account(
        iam,
        target.account_id,
        partition,
        collect_options(config),
        make_cloudtrail=lambda: cloudtrail_client(config, base, partition, credentials),
        on_reads_started=on_reads_started,
    )
    judged_by = policy()
    findings = audit.judge_account(facts, judged_by)
    if config.security_hub_import and findings.error is None:
        findings.security_hub_error = import_to_security_hub(config, base, credentials, findings, judged_by.now)
    return findings


def _matches(account_id: str, names: tuple[str | None, ...], wanted: str) -> bool:
    """`wanted` is the account's id, or one of its names (alias; organization account name)."""
    return wanted == account_id or wanted in {n for n in names if n}


class _InFlight:
    """Counts accounts being audited at once (the peak is reported in logs and benchmarks)."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def run_audit(
    config: Config,
    session: aws.AwsSession | None = None,
    now: datetime | None = None,
    exemptions: Exemptions = None,
    only: str | None = None,
    on_reads_started: Callable[[], None] | None = None,
) -> AuditResult:
    """Audit every configured account (or `only` the one with that id or alias) and return the findings.

    An `only` that names no configured account yields an AuditResult with no accounts.
    `exemptions` may be a callable: it is called (once) when the first account is judged.
    `on_reads_started` is called as each account's first reads are on their way.
    """
    now = now or utc_now()
    try:
        base = session or aws.make_session()
        targets, partition = account_targets(config, base)
    except (TargetsError, BotoCoreError) as exc:
        message = str(exc) if isinstance(exc, TargetsError) else aws.describe_error(exc)
        return AuditResult(generated_at=now, accounts=[failed_account(UNKNOWN_ACCOUNT, message)])
    # The policy (stored exemptions) is needed only to judge: built when the first account's facts
    # are in, so a store still opening (`check`) never holds the AWS reads back.
    policy = _once(lambda: audit_policy(config, now, exemptions() if callable(exemptions) else exemptions))
    in_flight = _InFlight()

    def one(target: AccountTarget) -> AccountFindings:
        with in_flight:
            return audit_target(config, base, target, partition, policy, on_reads_started)

    named = [t for t in targets if only is None or _matches(t.account_id, (t.name,), only)]
    # An alias is known only once the account is read: then read them all and keep its account.
    by_alias = only is not None and not named and not only.isdigit()
    selected = targets if by_alias else named
    processes = account_workers.worker_count(config, len(selected)) if session is None else 0
    if processes:  # many accounts at once: in worker processes, the CPU spread over the cores
        accounts, peak = _audit_in_workers(config, base, selected, partition, policy, processes, on_reads_started, one)
        in_flight.peak = max(in_flight.peak, peak)
    else:
        workers = max(1, min(config.aws_max_concurrency, len(selected)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit-account") as pool:
            accounts = list(pool.map(one, selected))
    if by_alias and only is not None:
        accounts = [a for a in accounts if _matches(a.account_id, (a.alias,), only)]
    accounts.sort(key=lambda a: (a.error is None, a.label.lower()))
    return AuditResult(generated_at=now, accounts=accounts, peak_accounts_in_flight=in_flight.peak)


def _audit_in_workers(
    config: Config,
    base: aws.AwsSession,
    targets: list[AccountTarget],
    partition: str,
    policy: Callable[[], AuditPolicy],
    processes: int,
    on_reads_started: Callable[[], None] | None,
    in_process: Callable[[AccountTarget], AccountFindings],
) -> tuple[list[AccountFindings], int]:
    """`run_audit`'s fan-out over worker processes (`bot.account_workers`): they collect each account's
    facts, judged here as they come back (the policy, the store, Security Hub stay in this process).

    Returns the findings in `targets`' order and the peak of accounts in flight. A worker's failure
    is an error for the accounts it held; accounts no worker was left to take are audited here.
    With SECURITY_HUB_IMPORT, this process assumes each account's role once more for the import.
    """
    jobs = [account_workers.AccountJob(t.account_id, t.role_arn, t.name, partition) for t in targets]
    spec = account_workers.WorkerSpec.of(config, collect_options(config))
    deadline = config.report_deadline_seconds + account_workers.DEADLINE_MARGIN_SECONDS
    found: list[AccountFindings | None] = [None] * len(targets)

    def judge(i: int, facts: Any) -> None:
        judged_by = policy()
        account = found[i] = audit.judge_account(facts, judged_by)
        if config.security_hub_import and account.error is None:
            try:
                credentials = account_credentials(config, base, targets[i])
            except (ClientError, BotoCoreError) as exc:
                account.security_hub_error = f"Security Hub import failed ({aws.describe_error(exc)})"
                return
            account.security_hub_error = import_to_security_hub(config, base, credentials, account, judged_by.now)

    slots = config.aws_max_concurrency
    judged: list[Future[None]] = []
    with (
        ThreadPoolExecutor(max_workers=slots, thread_name_prefix="audit-judge") as judging,
        account_workers.AccountWorkers(spec, processes, slots) as pool,
    ):
        if on_reads_started is not None:
            on_reads_started()
        collected = pool.collect(jobs, slots, deadline, lambda i, facts: judged.append(judging.submit(judge, i, facts)))
        for job in judged:
            job.result()  # a failure to judge (the store) is raised, as on the threads' path
        peak = pool.peak_in_flight
    left = [i for i, facts in enumerate(collected) if facts is None]
    if left:
        with ThreadPoolExecutor(max_workers=min(slots, len(left)), thread_name_prefix="audit-account") as threads:
            for i, account in zip(left, threads.map(in_process, [targets[i] for i in left])):
                found[i] = account
    return [account for account in found if account is not None], peak


def record_result(store: Store, result: AuditResult, started_at: datetime, finished_at: datetime) -> None:
    """Write each account's scan to the store, move its violation episodes and keep its findings.

    A failed account gets its scan row (with the error) but never touches its episodes nor its
    kept findings (the App Home's snapshot): an audit that could not read an account must not
    mark anyone fixed. A violation that became exempt is closed as "exempted", never "fixed"; a
    tag exemption is written to the audit trail the first time an audit sees it
    (`record_tag_exemptions`).
    """
    for account in result.accounts:
        counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
        for user in account.users:
            counts[user.status] += 1
        store.record_scan(account.account_id, started_at, finished_at, counts, account.error)
        if account.error is None:
            violating = [(u.arn, u.user_name) for u in account.by_status("violation")]
            exempted = [u.arn for u in account.by_status("exempt")]
            store.sync_episodes(account.account_id, violating, finished_at, exempted=exempted)
            store.save_snapshot(account.account_id, result.generated_at, account_to_json(account), finished_at)
    record_tag_exemptions(store, result, finished_at)


TAG_EXEMPTION_ACTION = "tag_exemption"
AUDIT_ACTOR = "audit"


def record_tag_exemptions(store: Store, result: AuditResult, now: datetime) -> int:
    """Audit-trail each tag exemption (set outside Slack) the first time an audit sees it, or its value changed.

    Returns how many were written. Target: the user's ARN; detail: the reason the finding shows.
    """
    seen = {u.arn: u.reason or "" for a in result.accounts if not a.error for u in a.users if u.exempt_by_tag}
    if not seen:
        return 0
    known = store.latest_actions(TAG_EXEMPTION_ACTION, seen)
    written = 0
    for arn, reason in sorted(seen.items()):
        if arn in known and known[arn].detail == reason:
            continue
        store.record_action(AUDIT_ACTOR, TAG_EXEMPTION_ACTION, arn, reason, now, outcome="exempt")
        written += 1
    return written


@runtime_checkable
class StoreOpening(Protocol):
    """A store that opens in the background (`check`): `start()` begins (once), `result()` waits."""

    def start(self) -> None:
        """Begin opening the store (no-op once begun)."""

    def result(self) -> Store:
        """The open store (begun now if it was not); raises what opening it raised."""


def run_recorded_audit(
    config: Config,
    store: Store | StoreOpening | Future[Store] | None,
    session: aws.AwsSession | None = None,
    only: str | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> AuditResult:
    """The audit as the bot runs it: stored exemptions honoured, the result recorded as history.

    `store` may still be opening (`check`): the AWS reads start at once, a `StoreOpening` is started
    once the first account's reads are on their way, and the store is waited for only when the
    first account is judged.
    """
    started = clock()

    def exemptions() -> dict[str, Exemption] | None:
        opened = _opened(store)
        return {arn: e.to_policy() for arn, e in opened.active_exemptions(started).items()} if opened else None

    reads_started = store.start if isinstance(store, StoreOpening) else None
    result = run_audit(
        config, session=session, now=started, exemptions=exemptions, only=only, on_reads_started=reads_started
    )
    opened = _opened(store)
    if opened is not None:
        record_result(opened, result, started, clock())
    return result


def _opened(store: Store | StoreOpening | Future[Store] | None) -> Store | None:
    return store.result() if isinstance(store, StoreOpening | Future) else store


def _once(make: Callable[[], T]) -> Callable[[], T]:
    """`make()` called on first use only (thread-safe); every later call returns the same value."""
    lock = threading.Lock()
    made: list[T] = []

    def get() -> T:
        with lock:
            if not made:
                made.append(make())
            return made[0]

    return get
