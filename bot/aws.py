"""Collect one account's facts from IAM (the boto3 edge). Judging happens in `bot.audit`.

Calls for an account of N users of whom V are flagged: about 8 fixed calls (identity, alias,
credential report, ListUsers pages, account summary, virtual MFA devices) plus 3 per flagged
user (GetLoginProfile, ListMFADevices, ListUserTags), whatever N is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
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
from bot.models import AccountFacts, IamUser, LiveState, MfaDevice

logger = logging.getLogger(__name__)

REPORT_RETRY_CODES = {
    "ReportInProgress",
    "ReportNotPresent",
    "ReportExpired",
    "LimitExceeded",
    "LimitExceededException",
}
THROTTLING_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}


class AccountReadError(Exception):
    """One account could not be read; the message is one line naming the cause."""


@dataclass(frozen=True)
class CollectOptions:
    """Tunables of a collection run (from Config)."""

    report_deadline_seconds: float = 60.0
    live_check_concurrency: int = 8
    tag_keys_needed: bool = True


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


def list_assigned_virtual_devices(iam: Any) -> list[dict[str, Any]]:
    """Every enabled virtual MFA device of the account, root's included (paginated)."""
    items: list[dict[str, Any]] = []
    paginator = iam.get_paginator("list_virtual_mfa_devices")
    for page in paginator.paginate(AssignmentStatus="Assigned", PaginationConfig={"PageSize": 1000}):
        items.extend(page["VirtualMFADevices"])
    return items


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
    devices: list[MfaDevice] = []
    try:
        for page in iam.get_paginator("list_mfa_devices").paginate(UserName=user_name):
            devices.extend(audit.mfa_device(d["SerialNumber"], d.get("EnableDate")) for d in page["MFADevices"])
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
        return LiveState(exists=False)
    return LiveState(
        exists=True,
        console_since=console_since,
        password_reset_required=reset_required,
        mfa_devices=tuple(devices),
    )


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


def _check_live(iam: Any, user: IamUser) -> tuple[LiveState, dict[str, str]]:
    state = live_state(iam, user.name)
    needs_tags = state.console_access and not state.mfa_devices
    return state, (user_tags(iam, user.name) if needs_tags else {})


def confirm_users_live(
    iam: Any, users: Iterable[IamUser], concurrency: int
) -> tuple[dict[str, LiveState], dict[str, dict[str, str]]]:
    """Live state (and tags, for violation candidates) of each user, a bounded pool at a time."""
    users = list(users)
    live: dict[str, LiveState] = {}
    tags: dict[str, dict[str, str]] = {}
    if not users:
        return live, tags
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="iam-live") as pool:
        for user, (state, user_tag_map) in zip(users, pool.map(lambda u: _check_live(iam, u), users)):
            live[user.arn] = state
            if user_tag_map:
                tags[user.arn] = user_tag_map
    return live, tags


def account_identity(sts: Any) -> tuple[str, str]:
    """(account id, partition) of the credentials in use."""
    identity = sts.get_caller_identity()
    return identity["Account"], identity["Arn"].split(":")[1]


def collect_account(
    iam: Any,
    account_id: str,
    partition: str = "aws",
    options: CollectOptions = CollectOptions(),
    sleep: Callable[[float], None] = time.sleep,
) -> AccountFacts:
    """Everything the rule needs about one account; an unreadable account comes back with `error` set."""
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
            virtual = pool.submit(list_assigned_virtual_devices, iam)
            facts.alias = next(iter(aliases.result()), None)
            content, facts.report_generated_at = report.result()
            facts.users = users.result()
            mfa_flag = summary.result().get("AccountMFAEnabled")
            facts.virtual_devices = audit.virtual_devices_by_user(virtual.result())
        facts.report_rows, report_root = audit.parse_credential_report(content)
        facts.root = audit.judge_root(
            None if mfa_flag is None else bool(mfa_flag), facts.virtual_devices, partition, account_id, report_root
        )
        to_confirm = audit.users_to_confirm(facts.users, facts.report_rows)
        facts.live, facts.tags = confirm_users_live(iam, to_confirm, options.live_check_concurrency)
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
) -> Any:
    """A client from one shared session (its service models load once).

    Clients on the session's own credentials are made once per session and reused (thread-safe);
    `credentials` (from assume_role) make a new client. Creating clients from one session is
    not thread-safe, hence the lock.
    """
    kwargs: dict[str, Any] = {"config": boto_config(concurrency), **(credentials or {})}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    region = session.region_name or "us-east-1"
    key = (service_name, endpoint_url, concurrency)
    with _CLIENT_LOCK:
        cache: dict[tuple[Any, ...], Any] = session.__dict__.setdefault("_mfa_bot_clients", {})
        if credentials is None and key in cache:
            return cache[key]
        client = session.client(service_name, region_name=region, **kwargs)
        if credentials is None:
            cache[key] = client
        return client
