"""Who is who: IAM users <-> Slack people, and who is an admin.

Identity chain (first answer wins), the same in both directions:
1. a link stored from Slack (`/mfa-check link NAME @person`): IAM user ARN -> Slack user ID;
2. the user's `slack-user-id` tag;
3. the user's `email` tag, looked up in the Slack directory;
4. the IAM user name + `@EMAIL_DOMAIN`, looked up in the Slack directory.

Emails resolve through one cached `users.list` directory (`SlackDirectory`), never one
`users.lookupByEmail` call per person.

The audit reads tags only for violation candidates (console password, no MFA), so a compliant
user can be matched to a person only by a stored link or by name + EMAIL_DOMAIN; that is why
`/mfa-check me` may not find a compliant user known only by an `email` tag.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import WebClient

from bot.config import Config
from bot.models import AuditResult, UserFinding
from bot.slack import SLACK_ERRORS, slack_error
from bot.store.records import IdentityChange

logger = logging.getLogger(__name__)

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
DIRECTORY_TTL_SECONDS = 900.0
DIRECTORY_RETRY_SECONDS = 60.0
ADMIN_GROUP_TTL_SECONDS = 300.0
USERS_LIST_PAGE = 1000

Clock = Callable[[], float]


class EmailLookup(Protocol):
    """Anything that maps an email address to a Slack user ID."""

    def user_id_for_email(self, email: str) -> str | None: ...


class SlackDirectory:
    """Lowercase email -> Slack user ID for every active human, from `users.list`, cached with a TTL.

    Deleted users and bots (including Slackbot) are left out. Pages are read with a cursor,
    `USERS_LIST_PAGE` members at a time. A failed load is logged and retried after a minute;
    the previous directory (if any) is kept meanwhile.
    """

    def __init__(
        self,
        client: WebClient,
        ttl_seconds: float = DIRECTORY_TTL_SECONDS,
        clock: Clock = time.monotonic,
        page_limit: int = USERS_LIST_PAGE,
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._page_limit = page_limit
        self._lock = threading.Lock()
        self._emails: dict[str, str] = {}
        self._expires_at: float | None = None

    def _load(self) -> dict[str, str]:
        emails: dict[str, str] = {}
        cursor: str | None = None
        while True:
            page = self._client.users_list(limit=self._page_limit, cursor=cursor)
            for member in page.get("members") or []:
                if member.get("deleted") or member.get("is_bot") or member.get("id") == "USLACKBOT":
                    continue
                email = ((member.get("profile") or {}).get("email") or "").strip().lower()
                if email and member.get("id"):
                    emails[email] = member["id"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return emails

    def emails(self) -> dict[str, str]:
        """The whole mapping, loading it when missing or older than the TTL."""
        with self._lock:
            now = self._clock()
            if self._expires_at is None or now >= self._expires_at:
                try:
                    self._emails = self._load()
                    self._expires_at = now + self._ttl
                except SLACK_ERRORS as exc:
                    error = slack_error(exc)
                    logger.warning("Slack directory (users.list) could not be read: %s", error)
                    self._expires_at = now + min(self._ttl, DIRECTORY_RETRY_SECONDS)
            return self._emails

    def user_id_for_email(self, email: str) -> str | None:
        """The Slack user ID whose profile email is `email` (case-insensitive), if any."""
        return self.emails().get(email.strip().lower())


class _WithCaller:
    """A directory that also knows one person's email for sure (from users.info); `directory` may be absent."""

    def __init__(self, directory: EmailLookup | None, email: str | None, user_id: str) -> None:
        self._directory = directory
        self._email = (email or "").strip().lower()
        self._user_id = user_id

    def user_id_for_email(self, email: str) -> str | None:
        if self._email and email.strip().lower() == self._email:
            return self._user_id
        return self._directory.user_id_for_email(email) if self._directory is not None else None


LINKED = "link set in Slack"


def resolve_with_source(
    finding: UserFinding,
    links: Mapping[str, str],
    directory: EmailLookup | None,
    email_domain: str | None,
    tag_slack_user_id: str = "slack-user-id",
    tag_email: str = "email",
) -> tuple[str | None, str | None]:
    """(Slack user ID, how it was found) by the identity chain; a link set in Slack always wins over tags."""
    linked = links.get(finding.arn)
    if linked:
        return linked, LINKED
    tagged_id = (finding.tags.get(tag_slack_user_id) or "").strip()
    if SLACK_USER_ID.fullmatch(tagged_id):
        return tagged_id, f"{tag_slack_user_id} tag"
    if directory is None:
        return None, None
    tagged_email = (finding.tags.get(tag_email) or "").strip()
    if tagged_email:
        found = directory.user_id_for_email(tagged_email)
        if found:
            return found, f"{tag_email} tag"
    if email_domain:
        found = directory.user_id_for_email(f"{finding.user_name}@{email_domain}")
        return (found, "name + EMAIL_DOMAIN") if found else (None, None)
    return None, None


def resolve_slack_user(
    finding: UserFinding,
    links: Mapping[str, str],
    directory: EmailLookup | None,
    email_domain: str | None,
    tag_slack_user_id: str = "slack-user-id",
    tag_email: str = "email",
) -> str | None:
    """The Slack user ID of an IAM user by the identity chain (link, ID tag, email tag, name+domain)."""
    return resolve_with_source(finding, links, directory, email_domain, tag_slack_user_id, tag_email)[0]


@dataclasses.dataclass(frozen=True)
class IdentityChain:
    """The identity chain's settings bundled: the directory, EMAIL_DOMAIN and the tag keys."""

    directory: EmailLookup | None
    email_domain: str | None = None
    tag_slack_user_id: str = "slack-user-id"
    tag_email: str = "email"

    @classmethod
    def from_config(cls, config: Config, client: WebClient) -> IdentityChain:
        """The bot's chain: one cached Slack directory (users.list), EMAIL_DOMAIN and the configured tag keys."""
        return cls(
            directory=SlackDirectory(client),
            email_domain=config.email_domain,
            tag_slack_user_id=config.tag_slack_user_id,
            tag_email=config.tag_email,
        )

    def resolve(self, finding: UserFinding, links: Mapping[str, str]) -> str | None:
        """Forward: IAM user -> Slack user ID (or None)."""
        return self.resolve_source(finding, links)[0]

    def resolve_source(self, finding: UserFinding, links: Mapping[str, str]) -> tuple[str | None, str | None]:
        """Forward, with how: (Slack user ID, "link set in Slack" / "<key> tag" / "name + EMAIL_DOMAIN")."""
        return resolve_with_source(
            finding, links, self.directory, self.email_domain, self.tag_slack_user_id, self.tag_email
        )

    def annotate(self, result: AuditResult, links: Mapping[str, str]) -> AuditResult:
        """A copy of `result` with `slack_user_id` filled for every user the chain resolves."""
        accounts = [
            dataclasses.replace(
                account,
                users=[
                    dataclasses.replace(u, slack_user_id=u.slack_user_id or self.resolve(u, links))
                    for u in account.users
                ],
            )
            for account in result.accounts
        ]
        return dataclasses.replace(result, accounts=accounts)

    def own_findings(
        self, result: AuditResult, slack_user_id: str, email: str | None, links: Mapping[str, str]
    ) -> list[UserFinding]:
        """Reverse: every IAM user, across accounts, whose chain leads to this Slack person.

        `email` is the caller's own profile email (users.info), trusted even when the cached
        directory is older than their account.
        """
        directory = _WithCaller(self.directory, email, slack_user_id) if self.directory or email else None
        chain = dataclasses.replace(self, directory=directory)
        return [u for a in result.accounts for u in a.users if chain.resolve(u, links) == slack_user_id]


IDENTITY_CHANGED = "identity_changed"
TAGS_READ = frozenset({"violation", "exempt", "grace"})  # the statuses whose tags the audit reads


class IdentityStore(Protocol):
    """The part of the store identity tracking uses."""

    def note_identities(self, current: Mapping[str, tuple[str, str]], now: datetime) -> list[IdentityChange]: ...

    def record_action(
        self, actor: str, action: str, target: str | None, detail: str | None, now: datetime, outcome: str = "ok"
    ) -> int: ...


def track_identities(
    store: IdentityStore, chain: IdentityChain, result: AuditResult, links: Mapping[str, str], now: datetime
) -> list[IdentityChange]:
    """Note the Slack person each IAM user resolves to; a change since the last audit goes to the audit trail.

    A new `slack-user-id` or `email` tag can redirect an IAM user's DMs to someone else: every such
    change is written (action `identity_changed`, target the ARN) and `/mfa-check user NAME` shows it.
    Only users whose tags the audit read are compared (a compliant user's tags are not read), and
    a user who resolves to nobody now keeps the last person (a directory outage is not a change).
    """
    current: dict[str, tuple[str, str]] = {}
    for account in result.accounts:
        if account.error:
            continue
        for user in account.users:
            if user.status not in TAGS_READ:
                continue
            person, source = chain.resolve_source(user, links)
            if person and source:
                current[user.arn] = (person, source)
    if not current:
        return []
    changes = store.note_identities(current, now)
    for change in changes:
        store.record_action("audit", IDENTITY_CHANGED, change.arn, change.detail, now, outcome="changed")
        logger.warning("the Slack person of an IAM user changed: %s", change.detail)
    return changes


def user_email(client: WebClient, slack_user_id: str) -> str | None:
    """A person's profile email from users.info (needs users:read.email), or None."""
    try:
        response = client.users_info(user=slack_user_id)
    except SLACK_ERRORS as exc:
        error = slack_error(exc)
        logger.warning("users.info failed: %s", error)
        return None
    user: Mapping[str, Any] = response.get("user") or {}
    return ((user.get("profile") or {}).get("email") or "").strip() or None


def slack_user_exists(client: WebClient, slack_user_id: str) -> bool | None:
    """True if users.info knows an active person by this ID, False if not, None if Slack can't say."""
    try:
        response = client.users_info(user=slack_user_id)
    except SlackApiError as exc:
        if exc.response.get("error") in {"user_not_found", "user_not_visible"}:
            return False
        logger.warning("users.info failed: %s", exc.response.get("error"))
        return None
    except (SlackClientError, OSError) as exc:
        logger.warning("users.info failed: %s", type(exc).__name__)
        return None
    user: Mapping[str, Any] = response.get("user") or {}
    return not user.get("deleted") and not user.get("is_bot")


class Roles:
    """Who is an admin: ADMIN_USER_IDS, plus the members of ADMIN_USERGROUP (cached with a TTL).

    The user group may be given by ID (S0123ABCD) or handle (`security-admins`). When Slack
    cannot be asked, the last known members stay admins until the next successful read; the
    configured IDs always are.
    """

    def __init__(
        self,
        admin_user_ids: Iterable[str],
        client: WebClient | None = None,
        usergroup: str | None = None,
        ttl_seconds: float = ADMIN_GROUP_TTL_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self._ids = frozenset(admin_user_ids)
        self._client = client
        self._usergroup = (usergroup or "").strip().lstrip("@") or None
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._members: frozenset[str] = frozenset()
        self._expires_at: float | None = None

    def _usergroup_id(self, client: WebClient, group: str) -> str | None:
        if re.match(r"^S[A-Z0-9]{2,}$", group):
            return group
        for item in client.usergroups_list().get("usergroups") or []:
            if item.get("handle") == group:
                return item.get("id")
        logger.warning("ADMIN_USERGROUP: no user group with handle %r", group[:40])
        return None

    def _group_members(self) -> frozenset[str]:
        if self._client is None or self._usergroup is None:
            return frozenset()
        with self._lock:
            now = self._clock()
            if self._expires_at is not None and now < self._expires_at:
                return self._members
            try:
                group_id = self._usergroup_id(self._client, self._usergroup)
                users = self._client.usergroups_users_list(usergroup=group_id).get("users") if group_id else []
                self._members = frozenset(users or [])
                self._expires_at = now + self._ttl
            except SLACK_ERRORS as exc:
                error = slack_error(exc)
                logger.warning("ADMIN_USERGROUP could not be read (%s); keeping the last known members", error)
                self._expires_at = now + min(self._ttl, DIRECTORY_RETRY_SECONDS)
            return self._members

    def is_admin(self, slack_user_id: str) -> bool:
        """True when the person may run admin commands."""
        return slack_user_id in self._ids or slack_user_id in self._group_members()
