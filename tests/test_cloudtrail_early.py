"""CloudTrail lookups begun while the credential report is generated: the same users as lookups
begun from the report's GeneratedTime, whatever the clocks say (plain fakes, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from bot import aws
from bot.models import AccountFacts
from bot.rate import Pacer, Rate

GENERATED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


class FakeTrail:
    """LookupEvents over a list of (event name, user, time): filtered by name and time, one page."""

    def __init__(self, events: list[tuple[str, str, datetime]]) -> None:
        self.events = events
        self.requests: list[dict[str, Any]] = []

    def lookup_events(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        name = kwargs["LookupAttributes"][0]["AttributeValue"]
        start, end = kwargs["StartTime"], kwargs.get("EndTime")
        hits = [
            {"EventName": n, "EventTime": t, "Resources": [{"ResourceType": "AWS::IAM::User", "ResourceName": u}]}
            for n, u, t in self.events
            if n == name and t >= start and (end is None or t <= end)
        ]
        return {"Events": hits}


def pacer() -> Pacer:
    return Pacer(Rate(1000.0, burst=1000))


def facts() -> AccountFacts:
    return AccountFacts(account_id="111122223333", partition="aws")


def test_events_before_the_report_are_dropped_and_no_gap_is_read():
    trail = FakeTrail([
        ("CreateLoginProfile", "old-news", GENERATED - timedelta(milliseconds=400)),  # in the report already
        ("DeactivateMFADevice", "judy", GENERATED + timedelta(seconds=1)),
        ("DeleteVirtualMFADevice", "peggy", GENERATED),
    ])  # fmt: skip
    found = facts()
    now = GENERATED + timedelta(seconds=2)
    aws.read_changes_since_report(
        found, trail, lambda: now, pacer(), generated_at=lambda: GENERATED,
        looked_up_from=GENERATED - timedelta(seconds=1),
    )  # fmt: skip
    assert found.changed_since_report == {"judy", "peggy"}
    assert len(trail.requests) == 3  # one per event name: the report came after the lookups' start
    assert found.fresh_through == now and found.cloudtrail_error is None


def test_a_report_older_than_the_early_start_has_its_gap_looked_up():
    # This host's clock runs 90 s ahead of AWS's (or someone else began the report): the early
    # lookups started after GeneratedTime, so what happened in between is read as well.
    early = GENERATED + timedelta(seconds=90)
    trail = FakeTrail([
        ("CreateLoginProfile", "mallory", GENERATED + timedelta(seconds=30)),  # in the gap
        ("DeactivateMFADevice", "judy", GENERATED + timedelta(seconds=120)),
    ])  # fmt: skip
    found = facts()
    aws.read_changes_since_report(found, trail, lambda: early, pacer(), generated_at=lambda: GENERATED,
                                  looked_up_from=early)  # fmt: skip
    assert found.changed_since_report == {"mallory", "judy"}
    gap = [r for r in trail.requests if "EndTime" in r]
    assert len(gap) == 3 and all(r["StartTime"] == GENERATED and r["EndTime"] == early for r in gap)


def test_lookups_done_before_the_report_is_dated_are_fresh_through_the_report():
    # AWS took 20 s to generate the report; the lookups ran meanwhile: the report covers the rest.
    trail = FakeTrail([])
    found = facts()
    begun = GENERATED - timedelta(seconds=20)
    aws.read_changes_since_report(found, trail, lambda: begun, pacer(), generated_at=lambda: GENERATED,
                                  looked_up_from=begun - timedelta(seconds=1))  # fmt: skip
    assert found.fresh_through == GENERATED and found.changed_since_report == frozenset()


def test_without_an_early_start_the_lookups_begin_at_the_report():
    trail = FakeTrail([("CreateLoginProfile", "judy", GENERATED + timedelta(seconds=5))])
    found = facts()
    aws.read_changes_since_report(found, trail, lambda: GENERATED, pacer(), generated_at=lambda: GENERATED)
    assert found.changed_since_report == {"judy"}
    assert [r["StartTime"] for r in trail.requests] == [GENERATED] * 3


def _stubbed_iam() -> tuple[Any, Stubber]:
    client = boto3.client("iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def test_the_first_report_answer_is_told_once_with_when_it_was_asked():
    iam, stub = _stubbed_iam()
    stub.add_response("generate_credential_report", {"State": "STARTED"})
    stub.add_response("generate_credential_report", {"State": "COMPLETE"})
    stub.add_response("get_credential_report", {"Content": b"user\n", "GeneratedTime": GENERATED})
    told: list[tuple[str | None, datetime]] = []
    asked = iter([GENERATED - timedelta(seconds=3), GENERATED + timedelta(seconds=1)])
    with stub:
        content, generated = aws.fetch_credential_report(
            iam, 5.0, sleep=lambda _: None, on_first_answer=lambda s, at: told.append((s, at)), now=lambda: next(asked)
        )
    assert (content, generated) == (b"user\n", GENERATED)
    assert told == [("STARTED", GENERATED - timedelta(seconds=3))]


def test_a_first_answer_that_is_an_error_is_told_as_none():
    iam, stub = _stubbed_iam()
    stub.add_client_error("generate_credential_report", "LimitExceeded")
    stub.add_response("generate_credential_report", {"State": "COMPLETE"})
    stub.add_response("get_credential_report", {"Content": b"user\n", "GeneratedTime": GENERATED})
    told: list[str | None] = []
    with stub:
        aws.fetch_credential_report(iam, 5.0, sleep=lambda _: None, on_first_answer=lambda s, at: told.append(s))
    assert told == [None]


@pytest.mark.parametrize("code", ["AccessDenied", "ReportNotPresent"])
def test_a_report_failure_still_tells_the_waiting_lookups(code):
    iam, stub = _stubbed_iam()
    stub.add_client_error("generate_credential_report", code)
    told: list[str | None] = []
    with stub, pytest.raises((ClientError, aws.AccountReadError)):
        aws.fetch_credential_report(iam, 0.0, sleep=lambda _: None, on_first_answer=lambda s, at: told.append(s))
    assert told == [None]
