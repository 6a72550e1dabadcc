"""Collect one account's facts from IAM and CloudTrail (the boto3 edge). Judging happens in `bot.audit`.

Calls for an account of N users: at most 12 fixed calls (identity, alias, credential report,
ListUsers pages, account summary, virtual MFA devices), 3 per user V the report flags or
CloudTrail names (GetLoginProfile, ListMFADevices, ListUserTags), 1 per user H the report
shows with MFA but no enabled virtual device (ListMFADevices: FIDO or hardware), and the
CloudTrail LookupEvents pages (one lookup per event name since the report): 12 + 3V + H + pages,
whatever N is.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from bot import audit
from bot.models import AccountFacts, IamUser, LiveState, MfaDevice, Scope
from bot.rate import Pacer, Rate

logger = logging.getLogger(__name__)

REPORT_RETRY_CODES = {
    "ReportInProgress",
    "ReportNotPresent",
    "ReportExpired",
    "LimitExceeded",
    "LimitExceededException",
}
THROTTLING_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}

# What can change after the credential report's GeneratedTime and make a user violate: a console
# password created, an MFA device deactivated or deleted (a virtual device must be deactivated
# before it can be deleted, so DeactivateMFADevice names its user even when the deletion cannot).
FRESHNESS_EVENTS = ("CreateLoginProfile", "DeactivateMFADevice", "DeleteVirtualMFADevice")
CLOUDTRAIL_DOCUMENTED_RATE = Rate(2.0, burst=1)  # LookupEvents: 2 requests per second per account and region
CLOUDTRAIL_RATE = CLOUDTRAIL_DOCUMENTED_RATE  # what the collector paces at (the tests' fixture speeds it up)
IAM_REGIONS = {"aws": "us-east-1", "aws-us-gov": "us-gov-west-1", "aws-cn": "cn-north-1"}
REPORT_MAX_AGE = timedelta(hours=4)  # IAM regenerates a credential report older than this


def iam_region(partition: str) -> str:
    """The region IAM (and so its CloudTrail management events) lives in, per partition."""
    return IAM_REGIONS.get(partition, "us-east-1")


class AccountReadError(Exception):
    """One account could not be read; the message is one line naming the cause."""


@dataclass(frozen=True)
class CollectOptions:
    """Tunables of a collection run (from Config)."""

    report_deadline_seconds: float = 60.0
    live_check_concurrency: int = 8
    tag_keys_needed: bool = True
    scope: Scope = "console"


def boto_config(max_pool_connections: int = 10) -> BotoConfig:
    """botocore config: standard retry mode, a connection pool sized for the live-check threads."""
    return BotoConfig(
        retries={"mode": "standard"},  # attempts: AWS_MAX_ATTEMPTS, default 3
        max_pool_connections=max(10, max_pool_connections),
        connect_timeout=10,
        read_timeout=30,
    )


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 timestamps as IAM sends them, parsed by the standard library (UTC when naive).

    botocore's default goes through dateutil: a tenth of the bot's CPU on a large account
    (every user, device and profile carries a date). Anything else falls back to botocore.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return botocore_parse_timestamp(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def make_session(**kwargs: Any) -> boto3.session.Session:
    """A boto3 session from the standard chain (AWS_PROFILE, env keys, SSO, instance role)."""
    session = boto3.session.Session(**kwargs)
    session._session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


def describe_error(exc: BaseException) -> str:
    """One readable line for an AWS failure; names the denied IAM action on AccessDenied."""
    if isinstance(exc, AccountReadError):
        return str(exc)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Error")
        service = exc.response.get("ResponseMetadata", {}).get("ServiceName") or _service_of(exc)
        action = f"{service}:{exc.operation_name}"
        if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
            return f"AccessDenied: {action} was denied (grant it in the audit policy)"
        if code in THROTTLING_CODES:
            return f"throttled by AWS on {action} ({code}) even after retries"
        if code in {"InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch"}:
            return f"AWS rejected the credentials ({code}) on {action}"
        message = exc.response.get("Error", {}).get("Message", "")
        return f"{code} on {action}: {message}".rstrip(": ")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, NoRegionError):
        return "no AWS region set (set AWS_DEFAULT_REGION, e.g. us-east-1)"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url', '')}".rstrip()
    if isinstance(exc, BotoCoreError):
        return f"AWS client error: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _service_of(exc: ClientError) -> str:
    if exc.operation_name in {"GetCallerIdentity", "AssumeRole"}:
        return "sts"
    if exc.operation_name in {"BatchImportFindings", "GetFindings"}:
        return "securityhub"
    if exc.operation_name == "LookupEvents":
        return "cloudtrail"
    return "organizations" if exc.operation_name == "ListAccounts" else "iam"


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def fetch_credential_report(
    iam: Any,
    deadline_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bytes, datetime | None]:
    """Generate (if needed) and read the credential report, polling with backoff until a deadline.

    Raises AccountReadError when the report cannot be had in time (never returns an empty report).
    """
    deadline = clock() + deadline_seconds
    delay = 0.25
    last = "no answer"
    while True:
        try:
            state = iam.generate_credential_report().get("State")
            if state == "COMPLETE":
                response = iam.get_credential_report()
                return response["Content"], response.get("GeneratedTime")
            last = f"report state {state}"
        except ClientError as exc:
            if _code(exc) not in REPORT_RETRY_CODES | THROTTLING_CODES:
                raise
            last = _code(exc)
        remaining = deadline - clock()
        if remaining <= 0:
            raise AccountReadError(
                f"credential report not available after {deadline_seconds:g}s ({last}); audit not trusted"
            )
        sleep(min(delay, remaining))
        delay = min(delay * 2, 5.0)


def list_users(iam: Any) -> list[IamUser]:
    """Every IAM user (ListUsers, paginated 1,000 at a time)."""
    users = []
    for page in iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 1000}):
        for item in page["Users"]:
            users.append(IamUser(item["UserName"], item["Arn"], item["UserId"], item.get("CreateDate")))
    return users


def list_virtual_devices(iam: Any) -> list[dict[str, Any]]:
    """Every virtual MFA device of the account, enabled or not, root's included (paginated).

    Enabled ones carry their user; the others were created but never enabled (`bot.audit`).
    """
    items: list[dict[str, Any]] = []
    paginator = iam.get_paginator("list_virtual_mfa_devices")
    for page in paginator.paginate(AssignmentStatus="Any", PaginationConfig={"PageSize": 1000}):
        items.extend(page["VirtualMFADevices"])
    return items


def _event_user(event: dict[str, Any]) -> str | None:
    """The IAM user an event acted on: `requestParameters.userName` of its CloudTrailEvent JSON."""
    if event.get("CloudTrailEvent"):
        try:
            detail = json.loads(event["CloudTrailEvent"])
        except (TypeError, ValueError):
            detail = {}
        if detail.get("errorCode"):
            return None  # the call failed: nothing changed
        params = detail.get("requestParameters") or {}
        if params.get("userName"):
            return str(params["userName"])
        serial = str(params.get("serialNumber") or "")
        if ":mfa/" in serial:  # DeleteVirtualMFADevice names only the device; by convention, its user
            return serial.rsplit("/", 1)[-1]
    for resource in event.get("Resources") or ():
        if resource.get("ResourceType") == "AWS::IAM::User" and resource.get("ResourceName"):
            return str(resource["ResourceName"])
    return None


def users_changed_since(cloudtrail: Any, since: datetime, pacer: Pacer) -> tuple[frozenset[str], int]:
    """(names of users CloudTrail says changed since `since`, LookupEvents requests made).

    One lookup per FRESHNESS_EVENTS name, every page; each request waits for its slot on `pacer`
    (CloudTrail allows 2 a second per account), hence NextToken by hand rather than a paginator.
    """
    names: set[str] = set()
    requests = 0
    for event_name in FRESHNESS_EVENTS:
        kwargs: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": event_name}],
            "StartTime": since,
            "MaxResults": 50,
        }
        while True:
            pacer.acquire()
            page = cloudtrail.lookup_events(**kwargs)
            requests += 1
            names.update(n for n in map(_event_user, page.get("Events", [])) if n)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return frozenset(names), requests


def live_state(iam: Any, user_name: str) -> LiveState:
    """GetLoginProfile + ListMFADevices for one user, now (NoSuchEntity on the user: deleted)."""
    try:
        profile = iam.get_login_profile(UserName=user_name)["LoginProfile"]
        console_since = profile.get("CreateDate")
        reset_required = bool(profile.get("PasswordResetRequired"))
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
        console_since, reset_required = None, False
    devices = list_mfa_devices(iam, user_name)
    if devices is None:
        return LiveState(exists=False)
    return LiveState(
        exists=True,
        console_since=console_since,
        password_reset_required=reset_required,
        mfa_devices=devices,
    )


def active_access_keys(iam: Any, user_name: str) -> int:
    """How many active access keys the user has now (ListAccessKeys; re-checks with MFA_SCOPE=all)."""
    count = 0
    try:
        for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name):
            count += sum(1 for key in page["AccessKeyMetadata"] if key.get("Status") == "Active")
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    return count


def user_tags(iam: Any, user_name: str) -> dict[str, str]:
    """The user's tags (ListUserTags, paginated); a user deleted meanwhile has none."""
    tags: dict[str, str] = {}
    try:
        for page in iam.get_paginator("list_user_tags").paginate(UserName=user_name):
            tags.update({t["Key"]: t["Value"] for t in page["Tags"]})
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    return tags


def list_mfa_devices(iam: Any, user_name: str) -> tuple[MfaDevice, ...] | None:
    """The user's enabled MFA devices now (ListMFADevices, paginated); None: the user is gone."""
    devices: list[MfaDevice] = []
    try:
        for page in iam.get_paginator("list_mfa_devices").paginate(UserName=user_name):
            devices.extend(audit.mfa_device(d["SerialNumber"], d.get("EnableDate")) for d in page["MFADevices"])
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
        return None
    return tuple(devices)


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


def account_identity(sts: Any) -> tuple[str, str]:
    """(account id, partition) of the credentials in use."""
    identity = sts.get_caller_identity()
    return identity["Account"], identity["Arn"].split(":")[1]


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
) -> None:
    """Fill `changed_since_report` and `fresh_through` from CloudTrail; a failure is a note, never an error."""
    generated = facts.report_generated_at
    if cloudtrail is None:
        facts.fresh_through, facts.cloudtrail_error = generated, "not configured"
        return
    started = now()
    since = generated if generated is not None else started - REPORT_MAX_AGE
    try:
        facts.changed_since_report, _ = users_changed_since(cloudtrail, since, pacer)
    except (ClientError, BotoCoreError) as exc:
        facts.fresh_through, facts.cloudtrail_error = generated, _cloudtrail_code(exc)
        logger.warning("account %s: CloudTrail not readable, findings as of the report: %s",
                       facts.account_id, describe_error(exc))  # fmt: skip
        return
    facts.fresh_through = started


def collect_account(
    iam: Any,
    account_id: str,
    partition: str = "aws",
    options: CollectOptions = CollectOptions(),
    sleep: Callable[[float], None] = time.sleep,
    cloudtrail: Any | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> AccountFacts:
    """Everything the rule needs about one account; an unreadable account comes back with `error` set.

    `cloudtrail` (a client in the partition's IAM region) closes the report's blind spot; None
    or unreadable: the facts are as of the report, and `cloudtrail_error` says why.
    """
    facts = AccountFacts(account_id=account_id, partition=partition)
    try:
        # The account-wide reads are independent: run them side by side, so the report's
        # generation wait overlaps the rest (a user created meanwhile is seen next run; one
        # deleted meanwhile is dropped by the live check).
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="iam-read") as pool:
            aliases = pool.submit(lambda: iam.list_account_aliases().get("AccountAliases", []))
            report = pool.submit(fetch_credential_report, iam, options.report_deadline_seconds, sleep=sleep)
            users = pool.submit(list_users, iam)
            summary = pool.submit(lambda: iam.get_account_summary()["SummaryMap"])
            virtual = pool.submit(list_virtual_devices, iam)
            facts.alias = next(iter(aliases.result()), None)
            content, facts.report_generated_at = report.result()
            # CloudTrail from the report's GeneratedTime on (paced: about a second), while the
            # other reads finish and the live wave of the users the report flags runs.
            pacer = Pacer(CLOUDTRAIL_RATE, clock=clock, sleep=sleep)
            changes = pool.submit(read_changes_since_report, facts, cloudtrail, now, pacer)
            facts.users = users.result()
            summary_map = summary.result()
            virtual_items = virtual.result()
            facts.virtual_devices = audit.virtual_devices_by_user(virtual_items)
            facts.pending_virtual_names = audit.pending_virtual_device_names(virtual_items)
            facts.report_rows, report_root = audit.parse_credential_report(content)
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
            to_list = audit.users_to_list_devices(facts.users, facts.report_rows, facts.virtual_devices, to_confirm)
            wave = LiveWave(iam, options.live_check_concurrency, options.scope)
            try:
                wave.add(to_confirm)
                wave.add(to_list, devices_only=True)
                changes.result()
                wave.add(u for u in facts.users if u.name in facts.changed_since_report)
            finally:
                checks = wave.finish()
        facts.live, facts.tags, facts.devices = checks.live, checks.tags, checks.devices
    except (ClientError, BotoCoreError, AccountReadError, audit.ReportFormatError) as exc:
        facts.error = describe_error(exc)
        logger.warning("audit of account %s failed: %s", account_id, facts.error)
    return facts


def assume_role(
    sts: Any, role_arn: str, external_id: str | None, session_name: str = "mfa-bot-audit"
) -> dict[str, str]:
    """Temporary credentials of the role (one STS AssumeRole call), as client keyword arguments."""
    kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name}
    if external_id:
        kwargs["ExternalId"] = external_id
    creds = sts.assume_role(**kwargs)["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def organization_accounts(session: boto3.session.Session, endpoint_url: str | None) -> list[tuple[str, str]]:
    """(account id, name) of every ACTIVE account of the organization (every ListAccounts page).

    Suspended, pending-closure and closed accounts are left out: nobody can sign in to them.
    """
    kwargs: dict[str, Any] = {"config": boto_config()}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    org = session.client("organizations", region_name=session.region_name or "us-east-1", **kwargs)
    accounts = []
    for page in org.get_paginator("list_accounts").paginate():
        for account in page["Accounts"]:
            state = account.get("State", account.get("Status"))
            if account.get("Status", "ACTIVE") == "ACTIVE" and state == "ACTIVE":
                accounts.append((account["Id"], account.get("Name", "")))
    return accounts


_CLIENT_LOCK = threading.Lock()


def service_client(
    session: boto3.session.Session,
    service_name: str,
    endpoint_url: str | None,
    concurrency: int,
    credentials: dict[str, str] | None = None,
    region: str | None = None,
) -> Any:
    """A client from one shared session (its service models load once).

    Clients on the session's own credentials are made once per session and reused (thread-safe);
    `credentials` (from assume_role) make a new client. Creating clients from one session is
    not thread-safe, hence the lock.
    """
    kwargs: dict[str, Any] = {"config": boto_config(concurrency), **(credentials or {})}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    region = region or session.region_name or "us-east-1"
    key = (service_name, endpoint_url, concurrency, region)
    with _CLIENT_LOCK:
        cache: dict[tuple[Any, ...], Any] = session.__dict__.setdefault("_mfa_bot_clients", {})
        if credentials is None and key in cache:
            return cache[key]
        client = session.client(service_name, region_name=region, **kwargs)
        if credentials is None:
            cache[key] = client
        return client
