"""AWS sessions and clients for the collector, on botocore alone.

One session per process (its loader parses each service model once), a client per service and
region on the base credentials made once and shared by every thread, a client per assumed-role
account made once and used for every call of that account's audit. boto3 is not needed: its
sessions add resources and S3 transfers, and importing it imports s3transfer, a tenth of a
second of every `check`; the clients are botocore's either way.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, Protocol

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.utils import parse_timestamp as botocore_parse_timestamp

IAM_REGIONS = {"aws": "us-east-1", "aws-us-gov": "us-gov-west-1", "aws-cn": "cn-north-1"}


def iam_region(partition: str) -> str:
    """The region IAM (and so its CloudTrail management events) lives in, per partition."""
    return IAM_REGIONS.get(partition, "us-east-1")


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


class AwsSession(Protocol):
    """What the bot needs of a session: `Session` below, or a boto3 Session (tests)."""

    @property
    def region_name(self) -> str | None: ...

    def client(self, service_name: str, region_name: str | None = None, **kwargs: Any) -> Any: ...


class Session:
    """What the bot uses of a boto3 Session (`client`, `region_name`), over one botocore session.

    Credentials and region come from the standard chain (AWS_PROFILE, environment keys, SSO,
    instance role, AWS_DEFAULT_REGION) unless given. Timestamps are parsed by `parse_timestamp`.
    """

    def __init__(
        self,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        region_name: str | None = None,
        profile_name: str | None = None,
    ) -> None:
        self._session = botocore.session.Session(profile=profile_name)
        if aws_access_key_id or aws_secret_access_key or aws_session_token:
            self._session.set_credentials(aws_access_key_id, aws_secret_access_key, aws_session_token)
        if region_name is not None:
            self._session.set_config_variable("region", region_name)
        parsers = self._session.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=parse_timestamp)

    @property
    def region_name(self) -> str | None:
        """The configured region (AWS_DEFAULT_REGION, the profile), or None."""
        region: str | None = self._session.get_config_variable("region")
        return region

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle clients verify TLS with (AWS_CA_BUNDLE, the profile's ca_bundle), or None: botocore's."""
        bundle: str | None = self._session.get_config_variable("ca_bundle")
        return bundle

    def get_credentials(self) -> Any:
        """The session's credentials (botocore's, refreshed as they expire), or None when none are found."""
        return self._session.get_credentials()

    def client(self, service_name: str, region_name: str | None = None, **kwargs: Any) -> Any:
        """A new botocore client (the same keyword arguments as boto3's `Session.client`)."""
        return self._session.create_client(service_name, region_name=region_name, **kwargs)


def make_session(**kwargs: Any) -> Session:
    """A session from the standard chain (AWS_PROFILE, env keys, SSO, instance role)."""
    return Session(**kwargs)


_CLIENT_LOCK = threading.Lock()


def service_client(
    session: AwsSession,
    service_name: str,
    endpoint_url: str | None,
    concurrency: int,
    credentials: dict[str, str] | None = None,
    region: str | None = None,
) -> Any:
    """A client from one shared session (its service models load once).

    Clients on the session's own credentials are made once per session and reused (thread-safe);
    `credentials` (from assume_role) make a new client, which the caller keeps for that account.
    Creating clients from one session is not thread-safe, hence the lock.
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


def organization_accounts(session: AwsSession, endpoint_url: str | None) -> list[tuple[str, str]]:
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
