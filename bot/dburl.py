"""DATABASE_URL's shape, read with the standard library alone: normalized, checked, masked.

`bot.config` checks the URL before any network call, and `python -m bot check` reads its
configuration before it starts the AWS reads: importing SQLAlchemy (what `bot.store` is built
on, a few hundred milliseconds) there would hold the audit back, so the shape is checked here,
and the store parses the URL again with SQLAlchemy when it opens it (`bot.store.db.parse_url`).
"""

from __future__ import annotations

import re

DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", "postgresql+psycopg"})

# SQLAlchemy's own URL grammar (sqlalchemy.engine.url._parse_url), so both agree on what parses.
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


class DatabaseUrlError(ValueError):
    """DATABASE_URL is not a URL the store can open; the message is one line, password masked."""


def normalize_url(url: str) -> str:
    """Rewrite Heroku-style ``postgres://`` and bare ``postgresql://`` to ``postgresql+psycopg://``."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*://")
# password=, sslpassword=, ... in a query string or a libpq "key=value ..." string
_SECRET_PARAM = re.compile(r"((?:^|[?&;\s])[^=&;?\s]*pass[^=&;\s]*=)[^&;\s]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL as given, with every password (userinfo, ``?password=``, ``?sslpassword=``) as ``***``.

    Works whatever the shape (with or without ``scheme://``). Query secrets are masked first, then
    userinfo up to the last ``@``, so an unescaped ``@`` in a password never leaks a part of it.
    """
    text = url.strip()
    scheme = _SCHEME.match(text)
    head = scheme.group(0) if scheme else ""
    rest = _SECRET_PARAM.sub(r"\1***", text[len(head) :])
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return head + rest


def check_url(url: str) -> str:
    """`url` normalized; DatabaseUrlError unless it is a SQLite or PostgreSQL URL the store supports.

    The same verdicts as `bot.store.db.parse_url` (which needs SQLAlchemy), without any I/O.
    """
    url = normalize_url(url)
    match = _URL.match(url)
    try:
        if match is None:
            raise ValueError(url)
        if match["port"] is not None:  # "host:" too: SQLAlchemy wants a number
            int(match["port"])
    except ValueError:
        raise DatabaseUrlError(f"DATABASE_URL is not a database URL: {mask_url(url)}") from None
    if match["name"] not in DRIVERS:
        raise DatabaseUrlError(f"DATABASE_URL must be sqlite:///PATH or postgresql://..., got {mask_url(url)}")
    return url
