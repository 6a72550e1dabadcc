"""The AWS stand-in's answers to the three per-user IAM reads, straight from moto's state.

GetLoginProfile, ListMFADevices and ListUserTags are most of what an audit asks (three per user
the report flags), and through moto's own dispatcher each costs about 3 ms of the stand-in's CPU,
one interpreter for every caller: a wave of concurrent calls queued on it, which AWS never does.
These answers are the ones moto's dispatcher gives, byte for byte but for the RequestId (the
tests compare the two), built from the same backend objects in a tenth of the time.
"""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

FAST_READS = frozenset({"GetLoginProfile", "ListMFADevices", "ListUserTags"})
FAST_LISTS = frozenset({"ListUsers", "ListVirtualMFADevices"})  # once per account, but 50 ms each in moto
_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
_request_ids = itertools.count(1)


def _request_id() -> str:
    return f"standin-{next(_request_ids):012d}"


def _date(value: datetime) -> str:
    """moto's timestamp format (UTC, microseconds, Z); a naive value is UTC, as moto keeps it."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ok(action: str, result: str) -> tuple[int, bytes]:
    body = (
        f'<{action}Response xmlns="{_NAMESPACE}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{_request_id()}</RequestId></ResponseMetadata></{action}Response>"
    )
    return 200, body.encode()


def _no_such_entity(message: str) -> tuple[int, bytes]:
    text = escape(message)
    body = (
        f'<ErrorResponse xmlns="{_NAMESPACE}"><Error><Type>Sender</Type><Code>NoSuchEntity</Code>'
        f"<Message>{text}</Message><message>{text}</message></Error>"
        f"<RequestId>{_request_id()}</RequestId></ErrorResponse>"
    )
    return 404, body.encode()


def _members(items: str, tag: str) -> str:
    return f"<{tag}>{items}</{tag}>" if items else f"<{tag}/>"


def answer(backend: Any, action: str, user_name: str) -> tuple[int, bytes]:
    """(HTTP status, XML body) of `action` for `user_name` in one account's moto IAM backend."""
    user = backend.users.get(user_name)
    if user is None:
        return _no_such_entity(f"The user with name {user_name} cannot be found.")
    name = escape(user.name)
    if action == "GetLoginProfile":
        if not user.password:
            return _no_such_entity(f"Login profile for {user_name} not found")
        reset = "true" if user.password_reset_required else "false"
        return _ok(
            action,
            f"<LoginProfile><UserName>{name}</UserName><CreateDate>{_date(user.create_date)}</CreateDate>"
            f"<PasswordResetRequired>{reset}</PasswordResetRequired></LoginProfile>",
        )
    if action == "ListMFADevices":
        devices = "".join(
            f"<member><UserName>{escape(user_name)}</UserName><SerialNumber>{escape(d.serial_number)}</SerialNumber>"
            f"<EnableDate>{_date(d.enable_date)}</EnableDate></member>"
            for d in user.mfa_devices.values()
        )
        return _ok(action, _members(devices, "MFADevices") + "<IsTruncated>false</IsTruncated>")
    if action == "ListUserTags":
        tags = _tag_members(backend.tagger.list_tags_for_resource(user.arn)["Tags"])
        return _ok(action, _members(tags, "Tags") + "<IsTruncated>false</IsTruncated>")
    raise ValueError(f"not a fast read: {action}")


def _user_fields(path: str, name: str, user_id: str, arn: str, created: datetime) -> str:
    return (
        f"<Path>{escape(path)}</Path><UserName>{escape(name)}</UserName><UserId>{escape(user_id)}</UserId>"
        f"<Arn>{escape(arn)}</Arn><CreateDate>{_date(created)}</CreateDate>"
    )


def _tag_members(tags: list[dict[str, str]]) -> str:
    return "".join(f"<member><Key>{escape(t['Key'])}</Key><Value>{escape(t['Value'])}</Value></member>" for t in tags)


def list_answer(backend: Any, action: str, params: dict[str, list[str]]) -> tuple[int, bytes] | None:
    """(HTTP status, XML body) of ListUsers or ListVirtualMFADevices as moto answers them, or None
    where this copy does not follow moto (a path prefix, a marker, a page that would be truncated,
    a user with a password last used, root's device): then moto answers itself."""
    if "Marker" in params or "PathPrefix" in params:
        return None
    if action == "ListUsers":
        users = list(backend.users.values())
        if any(u.password_last_used is not None for u in users):
            return None
        members = "".join(f"<member>{_user_fields(u.path, u.name, u.id, u.arn, u.create_date)}</member>" for u in users)
        return _ok(action, _members(members, "Users") + "<IsTruncated>false</IsTruncated>")
    if action != "ListVirtualMFADevices":
        raise ValueError(f"not a fast list: {action}")
    status = params.get("AssignmentStatus", ["Any"])[0]
    devices = list(backend.virtual_mfa_devices.values())
    if status == "Assigned":
        devices = [d for d in devices if d.enable_date]
    elif status == "Unassigned":
        devices = [d for d in devices if not d.enable_date]
    max_items = int(params.get("MaxItems", ["100"])[0])
    if len(devices) >= max_items:  # moto then pages (and marks a full last page truncated)
        return None
    device_members: list[str] = []
    for d in devices:
        seed = base64.b64encode(d.base32_string_seed.encode()).decode()
        png = base64.b64encode(d.qr_code_png).decode()
        member = f"<SerialNumber>{escape(d.serial_number)}</SerialNumber><Base32StringSeed>{seed}</Base32StringSeed>"
        member += f"<QRCodePNG>{png}</QRCodePNG>"
        if d.user_attribute is not None:  # moto serializes the user as they are now (`device.user`)
            u = d.user
            if u is None or u.password_last_used is not None or d.user_attribute.get("PermissionsBoundary"):
                return None
            user = _user_fields(u.path, u.name, u.id, u.arn, u.create_date)
            tags = backend.tagger.list_tags_for_resource(u.arn)["Tags"]
            if tags:
                user += f"<Tags>{_tag_members(tags)}</Tags>"
            member += f"<User>{user}</User>"
        if d.enable_date:
            member += f"<EnableDate>{_date(d.enable_date)}</EnableDate>"
        device_members.append(f"<member>{member}</member>")
    return _ok(action, _members("".join(device_members), "VirtualMFADevices") + "<IsTruncated>false</IsTruncated>")
