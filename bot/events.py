"""Real-time IAM events (pure): an EventBridge envelope parsed into a typed event, and what to do about it.

EventBridge delivers each CloudTrail event to SQS as the message body: a JSON envelope with
`detail-type` ("AWS API Call via CloudTrail" or "AWS Console Sign In via CloudTrail"),
`account`, `time`, and the CloudTrail record in `detail` (`eventID`, `eventName`,
`userIdentity`, `requestParameters`, `sourceIPAddress`, `additionalEventData`, `errorCode`).
deploy/events.yaml routes exactly the events named here. Nothing here does I/O: the queue,
IAM, the store and Slack are in `bot.event_queue`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.models import ACCOUNT_ID

API_CALL = "AWS API Call via CloudTrail"
SIGN_IN = "AWS Console Sign In via CloudTrail"
CONSOLE_LOGIN = "ConsoleLogin"
# eventName -> what changed, in words for the alert channel
IAM_CHANGES: dict[str, str] = {
    "CreateLoginProfile": "a console password was created",
    "DeleteLoginProfile": "the console password was deleted",
    "EnableMFADevice": "an MFA device was enabled",
    "DeactivateMFADevice": "an MFA device was deactivated",
    "DeleteVirtualMFADevice": "a virtual MFA device was deleted",
    "DeleteUser": "the IAM user was deleted",
    "TagUser": "tags were added",
    "UntagUser": "tags were removed",
}
EVENT_NAMES = (*IAM_CHANGES, CONSOLE_LOGIN)
FIXED_STATUSES = ("compliant", "no_console", None)  # None: the user no longer exists


class BadEvent(ValueError):
    """A message that is not an event the bot can handle, ever (one line; `event_id` when it had one)."""

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.event_id = event_id


class IgnoredEvent(Exception):
    """A well-formed event the bot has nothing to do with (another event, a sign-in with MFA, root)."""

    def __init__(self, reason: str, event_id: str) -> None:
        super().__init__(reason)
        self.event_id = event_id


@dataclass(frozen=True)
class IamEvent:
    """One CloudTrail event about an IAM user, as the bot needs it."""

    event_id: str
    name: str  # CloudTrail eventName
    account_id: str  # the account the user lives in
    user_name: str  # the IAM user it is about
    actor: str  # who did it (from userIdentity)
    at: datetime | None = None  # CloudTrail eventTime
    source_ip: str | None = None
    tags_added: Mapping[str, str] = field(default_factory=dict)  # TagUser
    tags_removed: tuple[str, ...] = ()  # UntagUser
    error: str | None = None  # the call failed (errorCode; a failed sign-in): nothing changed

    @property
    def is_login(self) -> bool:
        return self.name == CONSOLE_LOGIN

    def what_changed(self) -> str:
        """What happened, in words (tag keys named)."""
        if self.is_login:
            return "signed in to the console without MFA"
        text = IAM_CHANGES.get(self.name, self.name)
        keys = list(self.tags_added) or list(self.tags_removed)
        return f"{text}: {', '.join(keys)}" if keys else text

    def exemption_change(self, tag_key: str) -> str | None:
        """'added' / 'removed' when this event set or removed the exemption tag `tag_key`, else None."""
        if self.name == "TagUser" and tag_key in self.tags_added:
            return "added"
        if self.name == "UntagUser" and tag_key in self.tags_removed:
            return "removed"
        return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _object(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _array(value: Any) -> list[Any]:
    """`value` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def actor_of(identity: Mapping[str, Any]) -> str:
    """Who made the call, from CloudTrail's userIdentity: an ARN when there is one."""
    kind = _text(identity.get("type")) or "Unknown"
    if kind == "AWSService":
        return _text(identity.get("invokedBy")) or "an AWS service"
    return (
        _text(identity.get("arn"))
        or _text(identity.get("principalId"))
        or _text(identity.get("userName"))
        or _text(identity.get("invokedBy"))
        or kind
    )


def _time(value: Any) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_event(body: str | bytes) -> IamEvent:
    """The event in an SQS message body as EventBridge delivers it.

    BadEvent (one line): malformed, it can never be handled (the queue retries it, then dead-letters
    it). IgnoredEvent: a well-formed event that needs nothing from the bot.
    """
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadEvent("the message is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("detail"), dict):
        raise BadEvent("the message is not an EventBridge event (no detail)")
    detail: dict[str, Any] = envelope["detail"]
    event_id = _text(detail.get("eventID"))
    if event_id is None:
        raise BadEvent("the event has no detail.eventID")
    kind, name = envelope.get("detail-type"), _text(detail.get("eventName"))
    if name is None:
        raise BadEvent("the event has no detail.eventName", event_id)
    if kind not in (API_CALL, SIGN_IN) or name not in EVENT_NAMES:
        raise IgnoredEvent(f"not an event the bot handles ({str(kind)[:60]} / {str(name)[:60]})", event_id)
    identity = _object(detail.get("userIdentity"))
    account_id = _text(envelope.get("account")) or _text(detail.get("recipientAccountId"))
    if account_id is None or not ACCOUNT_ID.match(account_id):
        raise BadEvent("the event names no 12-digit account", event_id)
    params = _object(detail.get("requestParameters"))
    error = _text(detail.get("errorCode"))
    if name == CONSOLE_LOGIN:
        if identity.get("type") != "IAMUser":
            raise IgnoredEvent(f"a console sign-in of a {str(identity.get('type'))[:40]}, not an IAM user", event_id)
        user_name = _text(identity.get("userName"))
        response = _object(detail.get("responseElements"))
        if response.get("ConsoleLogin") not in (None, "Success"):
            error = error or f"sign-in {response.get('ConsoleLogin')}"
        extra = _object(detail.get("additionalEventData"))
        if extra.get("MFAUsed") != "No":
            raise IgnoredEvent("a console sign-in with MFA (MFAUsed is not No)", event_id)
    else:
        user_name = _text(params.get("userName"))
        if user_name is None and name == "DeleteVirtualMFADevice":
            serial = _text(params.get("serialNumber")) or ""
            user_name = _text(serial.rsplit("/", 1)[-1])  # the device name (the console names it after the user)
        if user_name is None and identity.get("type") == "IAMUser":
            user_name = _text(identity.get("userName"))  # a user acting on themselves
    if user_name is None:
        raise BadEvent(f"{name} names no IAM user", event_id)
    tags = _array(params.get("tags"))
    added = {str(t.get("key", "")): str(t.get("value", "")) for t in tags if isinstance(t, dict)}
    removed = _array(params.get("tagKeys"))
    return IamEvent(
        event_id=event_id,
        name=name,
        account_id=account_id,
        user_name=user_name,
        actor=actor_of(identity),
        at=_time(detail.get("eventTime")) or _time(envelope.get("time")),
        source_ip=_text(detail.get("sourceIPAddress")),
        tags_added=added if name == "TagUser" else {},
        tags_removed=tuple(str(k) for k in removed) if name == "UntagUser" else (),
        error=error,
    )


@dataclass(frozen=True)
class Plan:
    """What one event leads to, decided from the user's live status and its open episode."""

    open_episode: bool = False  # a new violation: open it, DM the person, alert the channel
    close_episode: bool = False  # not violating any more: close it (digest rows updated)
    thank: bool = False  # fixed (not merely exempted): the person's DM says thank you
    login_alert: bool = False  # a sign-in without MFA by a violator: one alert per episode per day
    exemption: str | None = None  # "added" / "removed": the exemption tag changed outside Slack

    @property
    def nothing(self) -> bool:
        return self == Plan()


def decide(event: IamEvent, status: str | None, episode_open: bool, tag_mfa_exempt: str) -> Plan:
    """The plan for `event` given the user's live `status` (None: deleted) and whether an episode is open. Pure."""
    if event.error is not None:
        return Plan()
    exemption = event.exemption_change(tag_mfa_exempt)
    if status == "violation":
        return Plan(open_episode=not episode_open, login_alert=event.is_login, exemption=exemption)
    if episode_open:
        return Plan(close_episode=True, thank=status in FIXED_STATUSES, exemption=exemption)
    return Plan(exemption=exemption)


def login_alert_key(episode_id: int, event: IamEvent, day: str) -> str:
    """The claim that makes a sign-in alert once per episode and day."""
    return f"login:{event.account_id}:{episode_id}:{day}"
