"""IAM events shaped exactly as EventBridge delivers CloudTrail records to SQS (the message body)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

ADMIN_ARN = "arn:aws:iam::123456789012:user/platform-admin"


def _identity(actor_arn: str) -> dict[str, Any]:
    account = actor_arn.split(":")[4]
    if ":assumed-role/" in actor_arn:
        role, session = actor_arn.rsplit("/", 2)[-2:]
        return {
            "type": "AssumedRole",
            "principalId": f"AROAEXAMPLE:{session}",
            "arn": actor_arn,
            "accountId": account,
            "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLE",
                    "arn": f"arn:aws:iam::{account}:role/{role}",
                    "accountId": account,
                    "userName": role,
                },
                "attributes": {"creationDate": "2026-12-02T08:55:00Z", "mfaAuthenticated": "true"},
            },
        }
    return {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE",
        "arn": actor_arn,
        "accountId": account,
        "accessKeyId": "AKIAEXAMPLE",
        "userName": actor_arn.rsplit("/", 1)[-1],
    }


def _time(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def iam_call(
    event_name: str,
    user_name: str,
    account: str = "123456789012",
    actor_arn: str = ADMIN_ARN,
    event_id: str | None = None,
    at: datetime | None = None,
    error_code: str | None = None,
    **request: Any,
) -> dict[str, Any]:
    """An "AWS API Call via CloudTrail" event of iam.amazonaws.com about `user_name`."""
    detail: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": _identity(actor_arn),
        "eventTime": _time(at),
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.20",
        "userAgent": "aws-cli/2.22.0 md/command#iam.create-login-profile",
        "requestParameters": {"userName": user_name, **request},
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": event_id or str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "clientProvidedHostHeader": "iam.amazonaws.com"},
    }
    if error_code:
        detail["errorCode"] = error_code
        detail["errorMessage"] = f"{error_code} for {event_name}"
    return _envelope("AWS API Call via CloudTrail", "aws.iam", account, detail)


def console_login(
    user_name: str,
    account: str = "123456789012",
    event_id: str | None = None,
    at: datetime | None = None,
    source_ip: str = "203.0.113.7",
    mfa_used: str = "No",
    outcome: str = "Success",
) -> dict[str, Any]:
    """An "AWS Console Sign In via CloudTrail" ConsoleLogin of IAM user `user_name`."""
    detail = {
        "eventVersion": "1.09",
        "userIdentity": _identity(f"arn:aws:iam::{account}:user/{user_name}") | {"accessKeyId": ""},
        "eventTime": _time(at),
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": source_ip,
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
        "requestParameters": None,
        "responseElements": {"ConsoleLogin": outcome},
        "additionalEventData": {
            "LoginTo": "https://console.aws.amazon.com/console/home",
            "MobileVersion": "No",
            "MFAUsed": mfa_used,
        },
        "eventID": event_id or str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    return _envelope("AWS Console Sign In via CloudTrail", "aws.signin", account, detail)


def _envelope(detail_type: str, source: str, account: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": detail["eventTime"],
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def body(event: dict[str, Any]) -> str:
    """The SQS message body EventBridge sends: the event as JSON."""
    return json.dumps(event)


def create_queues(endpoint_url: str, name: str = "mfa-bot-events", max_receive: int = 2) -> tuple[str, str]:
    """The queue and its dead-letter queue in a local SQS, as deploy/events.yaml makes them."""
    from bot.demo import demo_client

    sqs = demo_client(endpoint_url, "sqs")
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "60"})
    return queue["QueueUrl"], dlq


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages in the queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    values = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(v) for v in values.values())
