"""AWS fixtures: one moto server per test session (over HTTP), reset before each test."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from bot.demo import DEMO_CREDENTIALS, demo_client, local_iam_server, seed_demo_account
from tests.iam_proxy import IamProxy

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": DEMO_CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": DEMO_CREDENTIALS["aws_secret_access_key"],
    "AWS_SESSION_TOKEN": DEMO_CREDENTIALS["aws_session_token"],
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_MAX_ATTEMPTS": "2",
}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's IAM/STS server on a loopback port for the whole session; yields its URL."""
    with local_iam_server() as url:
        yield url


@pytest.fixture
def moto_url(moto_server: str) -> str:
    """The moto server, emptied of everything the previous test created."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    return moto_server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Throwaway credentials in the environment; no real AWS profile, no instance metadata."""
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return dict(FAKE_AWS_ENV)


@pytest.fixture
def iam_proxy(moto_url: str) -> Iterator[IamProxy]:
    """A counting, fault-injecting proxy in front of the (reset) moto server."""
    with IamProxy(moto_url) as proxy:
        yield proxy


@pytest.fixture
def demo_account(moto_url: str, aws_env: dict[str, str]) -> str:
    """The demo account seeded into the reset moto server; yields the moto URL."""
    seed_demo_account(demo_client(moto_url))
    return moto_url
