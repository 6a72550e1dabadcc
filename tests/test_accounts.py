"""Many accounts: an AWS Organization reached through assumed roles, on moto's server over HTTP."""

from __future__ import annotations

import dataclasses

import boto3
from botocore.stub import Stubber

from bot import aws, service
from bot.demo import DEMO_CREDENTIALS, demo_client
from bot.report import exit_code
from tests.fixtures_aws import MANAGEMENT, org_config


def test_organization_audit_one_denied_account_never_hides_the_others(organization, iam_proxy):
    iam_proxy.fail("AssumeRole", "AccessDenied", status=403, when=organization["sandbox"])
    result = service.run_audit(org_config(iam_proxy.url))
    by_id = {a.account_id: a for a in result.accounts}
    assert set(by_id) == {MANAGEMENT, organization["dev"], organization["prod"], organization["sandbox"]}
    assert organization["retired"] not in by_id  # closed accounts are left out
    sandbox = by_id[organization["sandbox"]]
    assert sandbox.error == "AccessDenied: sts:AssumeRole was denied (grant it in the audit policy)"
    assert sandbox.users == []
    assert by_id[organization["dev"]].alias == "acme-dev"
    assert [u.user_name for u in by_id[organization["dev"]].users if u.status == "violation"] == ["dev-alice"]
    assert [u.status for u in by_id[organization["prod"]].users] == ["compliant"]
    assert {u.user_name for u in by_id[MANAGEMENT].users if u.status == "violation"} == {"bob", "erin", "ivan"}
    assert result.accounts[0].error is not None  # failed accounts come first
    assert exit_code(result) == 2
    assert result.peak_accounts_in_flight == 2
    assert iam_proxy.max_keys_in_flight <= 2


def test_the_management_account_is_read_with_the_base_credentials(organization, iam_proxy):
    service.run_audit(org_config(iam_proxy.url))
    # one AssumeRole per member account, none for the management account
    assert iam_proxy.calls["AssumeRole"] == 3


def test_explicit_account_list_with_external_id(organization, iam_proxy):
    # The role in prod trusts only callers presenting the external id.
    iam_proxy.fail("AssumeRole", "AccessDenied", status=403, when="ExternalId=wrong")
    ids = (organization["dev"], organization["prod"])
    good = org_config(iam_proxy.url, aws_organization=False, aws_account_ids=ids, aws_external_id="s3cret-id")
    assert [a.error for a in service.run_audit(good).accounts] == [None, None]
    bad = dataclasses.replace(good, aws_external_id="wrong")
    assert all("sts:AssumeRole was denied" in a.error for a in service.run_audit(bad).accounts)


def test_one_account_by_id_or_alias(organization, iam_proxy):
    config = org_config(iam_proxy.url)
    by_id = service.run_audit(config, only=organization["prod"])
    assert [a.account_id for a in by_id.accounts] == [organization["prod"]]
    assert iam_proxy.calls["AssumeRole"] == 1
    by_alias = service.run_audit(config, only="acme-dev")
    assert [a.account_id for a in by_alias.accounts] == [organization["dev"]]
    assert service.run_audit(config, only="999999999999").accounts == []


def test_listing_the_organization_failing_is_an_error_not_a_pass(demo_account, iam_proxy):
    demo_client(demo_account, "organizations").create_organization(FeatureSet="ALL")
    iam_proxy.fail("ListAccounts", "AccessDeniedException", status=400)
    result = service.run_audit(org_config(iam_proxy.url))
    assert exit_code(result) == 2
    assert (
        result.accounts[0].error == "AccessDenied: organizations:ListAccounts was denied (grant it in the audit policy)"
    )


def test_every_list_accounts_page_is_read_and_inactive_accounts_left_out():
    session = boto3.session.Session(region_name="us-east-1", **DEMO_CREDENTIALS)
    client = session.client("organizations")
    stub = Stubber(client)

    def account(i: str, status: str, state: str | None = None) -> dict:
        item = {"Id": i * 12, "Arn": f"arn:aws:organizations::1:account/o-x/{i * 12}", "Name": f"acct-{i}",
                "Email": f"{i}@example.com", "Status": status}  # fmt: skip
        if state:
            item["State"] = state
        return item

    stub.add_response(
        "list_accounts", {"Accounts": [account("1", "ACTIVE"), account("2", "SUSPENDED")], "NextToken": "t"}
    )
    stub.add_response(
        "list_accounts",
        {
            "Accounts": [
                account("3", "ACTIVE", "ACTIVE"),
                account("4", "PENDING_CLOSURE"),
                account("5", "ACTIVE", "CLOSED"),
            ]
        },
        {"NextToken": "t"},
    )
    original = session.client
    session.client = lambda *a, **k: client  # type: ignore[method-assign]
    try:
        with stub:
            assert aws.organization_accounts(session, None) == [("1" * 12, "acct-1"), ("3" * 12, "acct-3")]
    finally:
        session.client = original  # type: ignore[method-assign]
    stub.assert_no_pending_responses()


def test_one_account_by_its_organization_name(organization, iam_proxy):
    # "dev" is the account's name in the organization; its IAM alias is "acme-dev".
    result = service.run_audit(org_config(iam_proxy.url), only="dev")
    assert [a.account_id for a in result.accounts] == [organization["dev"]]
    assert iam_proxy.calls["AssumeRole"] == 1
