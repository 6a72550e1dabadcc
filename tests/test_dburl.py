"""DATABASE_URL checked without SQLAlchemy (bot.dburl) agrees with the store's own parse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.dburl import DatabaseUrlError, check_url
from bot.store.db import StoreError, parse_url

URLS = [
    "sqlite:///mfa_bot.db",
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite+pysqlite:///a.db",
    "sqlite:///file:x?mode=ro&uri=true",
    " postgres://app:pw@db.example:5432/mfa ",
    "postgresql://u@[::1]:5432/d?sslmode=require",
    "postgresql+psycopg://u:p@h/d?password=zz",
    "mysql://app:hunter2@db/mfa",
    "app:hunter2@db/mfa",
    "postgresql://app:hunter2@db:x/y",
    "postgresql://h:/d",
    "",
]


def _verdict(check, error: type[Exception], url: str) -> str | None:
    try:
        check(url)
    except error as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("url", URLS)
def test_same_verdict_and_message_as_the_store(url: str) -> None:
    assert _verdict(check_url, DatabaseUrlError, url) == _verdict(parse_url, StoreError, url)


def test_config_does_not_import_sqlalchemy() -> None:
    code = "import sys; from bot.config import load_config; load_config({}); print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
