"""The IAM, STS and CloudTrail reads the collector makes, and what their failures mean.

Each function takes a botocore client and makes the calls its docstring names; none keeps state.
The per-user reads (ListMFADevices, ListUserTags, ListAccessKeys) follow IsTruncated/Marker by
hand rather than through a botocore paginator: the same calls, for less CPU per call (a live
wave makes hundreds of them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

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
