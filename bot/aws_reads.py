"""The IAM, STS and CloudTrail reads the collector makes, and what their failures mean.

Each function takes a botocore client and makes the calls its docstring names; none keeps state.
The IAM list reads follow IsTruncated/Marker by hand rather than through a botocore paginator:
the same calls, for less CPU per call (a live wave makes hundreds of them), and no paginator
model to load (botocore lists its data directory for it: hundreds of system calls, each a
chance for another thread to take the interpreter lock, up to half a second at start-up).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from bot import audit
from bot.models import IamUser, LiveState, MfaDevice
from bot.rate import Pacer

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


class AccountReadError(Exception):
    """One account could not be read; the message is one line naming the cause."""


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
    if isinstance(exc, ResponseParserError):  # its text quotes the answer: never echoed
        return "AWS sent an answer that could not be parsed (ResponseParserError); audit not trusted"
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


REPORT_FIRST_POLL_SECONDS = 0.1  # then doubling, at most REPORT_MAX_POLL_SECONDS apart
REPORT_MAX_POLL_SECONDS = 5.0


def fetch_credential_report(
    iam: Any,
    deadline_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_first_answer: Callable[[str | None, datetime], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[bytes, datetime | None]:
    """Generate (if needed) and read the credential report, polling with backoff until a deadline.

    `on_first_answer(state, sent_at)` hears the first GenerateCredentialReport answer's state (None
    for an error) and when it was sent (`now()`): STARTED means a report dated after that moment is
    on its way. Raises AccountReadError when the report cannot be had in time (never returns an
    empty report).
    """
    deadline = clock() + deadline_seconds
    delay = REPORT_FIRST_POLL_SECONDS
    last = "no answer"
    waiting = [on_first_answer] if on_first_answer is not None else []

    def tell(state: str | None, sent_at: datetime) -> None:
        while waiting:
            waiting.pop()(state, sent_at)

    while True:
        sent_at = now()
        try:
            try:
                state = iam.generate_credential_report().get("State")
            except ClientError:
                tell(None, sent_at)
                raise
            tell(state, sent_at)
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
        delay = min(delay * 2, REPORT_MAX_POLL_SECONDS)


def list_users(iam: Any) -> list[IamUser]:
    """Every IAM user (ListUsers, 1,000 a page)."""
    users = []
    for page in _pages(lambda **kw: iam.list_users(**kw), MaxItems=1000):
        for item in page["Users"]:
            users.append(IamUser(item["UserName"], item["Arn"], item["UserId"], item.get("CreateDate")))
    return users


def list_virtual_devices(iam: Any) -> list[dict[str, Any]]:
    """Every virtual MFA device of the account, enabled or not, root's included (1,000 a page).

    Enabled ones carry their user; the others were created but never enabled (`bot.audit`).
    """
    items: list[dict[str, Any]] = []
    for page in _pages(lambda **kw: iam.list_virtual_mfa_devices(**kw), AssignmentStatus="Any", MaxItems=1000):
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


def user_changes_since(
    cloudtrail: Any, since: datetime, pacer: Pacer, until: datetime | None = None
) -> tuple[list[tuple[str, datetime | None]], int]:
    """((user, event time) of each FRESHNESS_EVENTS event from `since` (to `until`), LookupEvents requests made).

    One lookup per event name, every page; each request waits for its slot on `pacer` (CloudTrail
    allows 2 a second per account), hence NextToken by hand rather than a paginator.
    """
    changes: list[tuple[str, datetime | None]] = []
    requests = 0
    for event_name in FRESHNESS_EVENTS:
        kwargs: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": event_name}],
            "StartTime": since,
            "MaxResults": 50,
        }
        if until is not None:
            kwargs["EndTime"] = until
        while True:
            pacer.acquire()
            page = cloudtrail.lookup_events(**kwargs)
            requests += 1
            for event in page.get("Events", []):
                name = _event_user(event)
                if name:
                    changes.append((name, _event_time(event)))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return changes, requests


def _event_time(event: dict[str, Any]) -> datetime | None:
    """An event's EventTime as an aware datetime (botocore parses it), or None when absent or odd."""
    value = event.get("EventTime")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _pages(call: Callable[..., dict[str, Any]], **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of an IAM list call: `call(**params)`, then again from each truncated page's Marker."""
    while True:
        page = call(**params)
        yield page
        if not page.get("IsTruncated") or not page.get("Marker"):
            return
        params["Marker"] = page["Marker"]


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
        for page in _pages(lambda **kw: iam.list_access_keys(**kw), UserName=user_name):
            count += sum(1 for key in page["AccessKeyMetadata"] if key.get("Status") == "Active")
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    return count


def user_tags(iam: Any, user_name: str) -> dict[str, str]:
    """The user's tags (ListUserTags, paginated); a user deleted meanwhile has none."""
    tags: dict[str, str] = {}
    try:
        for page in _pages(lambda **kw: iam.list_user_tags(**kw), UserName=user_name):
            tags.update({t["Key"]: t["Value"] for t in page["Tags"]})
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    return tags


def list_mfa_devices(iam: Any, user_name: str) -> tuple[MfaDevice, ...] | None:
    """The user's enabled MFA devices now (ListMFADevices, paginated); None: the user is gone."""
    devices: list[MfaDevice] = []
    try:
        for page in _pages(lambda **kw: iam.list_mfa_devices(**kw), UserName=user_name):
            devices.extend(audit.mfa_device(d["SerialNumber"], d.get("EnableDate")) for d in page["MFADevices"])
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
        return None
    return tuple(devices)


def account_identity(sts: Any) -> tuple[str, str]:
    """(account id, partition) of the credentials in use."""
    identity = sts.get_caller_identity()
    return identity["Account"], identity["Arn"].split(":")[1]
