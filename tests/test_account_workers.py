"""Accounts audited in worker processes (bot/account_workers.py): the same findings as the threads,
and a worker that raises, dies or hangs is an error for the accounts it held, never a pass.

Through moto's server over HTTP, each member account reached through its assumed role. Spawned
interpreters cost about half a second each: each test starts its workers once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import pytest

from bot import account_workers, report, service
from bot.account_workers import AccountJob, AccountWorkers, WorkerSpec, worker_count
from bot.config import Config, ConfigError, load_config
from tests.fixtures_aws import MANAGEMENT, ROLE, org_config


def _document(result) -> dict:
    """The `check --json` document, without what depends on the moment CloudTrail was read."""
    document = json.loads(report.to_json(result))
    for account in document["accounts"]:
        account.pop("fresh_through", None)
    return document


def test_the_process_path_finds_exactly_what_the_threads_find(organization, iam_proxy, monkeypatch):
    iam_proxy.fail("AssumeRole", "AccessDenied", status=403, when=organization["sandbox"])
    config = org_config(iam_proxy.url, audit_processes=0)
    started: list[int] = []
    real = AccountWorkers
    monkeypatch.setattr(account_workers, "AccountWorkers", lambda *a, **k: started.append(a[1]) or real(*a, **k))
    now = service.utc_now()
    threads = service.run_audit(config, now=now)
    assert started == []
    iam_proxy.calls.clear()
    processes = service.run_audit(dataclasses.replace(config, audit_processes=2), now=now)
    assert started == [2]  # two worker processes did it
    assert _document(processes) == _document(threads)
    by_id = {a.account_id: a for a in processes.accounts}
    denied = "AccessDenied: sts:AssumeRole was denied (grant it in the audit policy)"
    assert by_id[organization["sandbox"]].error == denied
    assert [u.user_name for u in by_id[organization["dev"]].users if u.status == "violation"] == ["dev-alice"]
    assert {u.user_name for u in by_id[MANAGEMENT].users if u.status == "violation"} == {"bob", "erin", "ivan"}
    assert report.exit_code(processes) == 2
    assert processes.peak_accounts_in_flight == 2  # AWS_MAX_CONCURRENCY across the workers, not per worker
    assert iam_proxy.max_keys_in_flight <= 2
    assert iam_proxy.calls["AssumeRole"] == 3  # each worker assumed the roles itself: one per member account


def test_check_as_a_process_with_workers_prints_what_the_threads_find(organization, iam_proxy, aws_env):
    # `python -m bot check`: workers spawned from the bot's own entry point (its __main__ re-imported in each).
    from tests.test_cli import run_bot

    threads = _document(service.run_audit(org_config(iam_proxy.url, audit_processes=0)))
    iam_proxy.calls.clear()
    env = {"AWS_ENDPOINT_URL": iam_proxy.url, "AWS_ORGANIZATION": "true", "AWS_ROLE_NAME": ROLE,
           "AWS_MAX_CONCURRENCY": "2", "AUDIT_PROCESSES": "2", "REPORT_DEADLINE_SECONDS": "5"}  # fmt: skip
    done = run_bot("check", "--json", env={**aws_env, **env})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    printed = json.loads(done.stdout)
    for account in printed["accounts"]:
        account.pop("fresh_through", None)
    assert printed["accounts"] == threads["accounts"]
    assert printed["summary"] == threads["summary"]
    assert iam_proxy.calls["AssumeRole"] == 3


def _fault(faults: dict[str, str], job: AccountJob) -> None:
    """Runs in the worker before each account: raise, die or hang on cue."""
    what = faults.get(job.account_id)
    if what == "raise":
        raise RuntimeError("a bug")
    if what == "die":
        os._exit(3)
    if what == "hang":
        time.sleep(120)


def test_a_worker_that_raises_dies_or_hangs_is_an_error_for_its_accounts_never_a_pass(organization, iam_proxy):
    config = org_config(iam_proxy.url)
    spec = WorkerSpec.of(config, service.collect_options(config))
    ids = organization
    faults = {ids["dev"]: "raise", ids["sandbox"]: "die", ids["retired"]: "hang"}

    def job(account_id: str) -> AccountJob:
        role = None if account_id == MANAGEMENT else f"arn:aws:iam::{account_id}:role/{ROLE}"
        return AccountJob(account_id, role, None, "aws")

    # One account at a time, so each goes to the first worker still alive: management (audited),
    # dev (raises: an error, the worker lives on), sandbox (its worker dies), prod (audited by the
    # other worker), retired (hangs: stopped at the deadline), management again (no worker left).
    order = [MANAGEMENT, ids["dev"], ids["sandbox"], ids["prod"], ids["retired"], MANAGEMENT]
    seen: list[int] = []
    with AccountWorkers(spec, processes=2, slots=2, before_each=functools.partial(_fault, faults)) as pool:
        facts = pool.collect([job(a) for a in order], 1, deadline_seconds=6, on_facts=lambda i, f: seen.append(i))
        assert pool.alive == 0
    management, dev, sandbox, prod, retired, again = facts
    assert management is not None and management.error is None
    assert {u.name for u in management.users} >= {"bob", "erin", "ivan"}
    assert dev is not None and dev.error == "the audit failed in its worker process (RuntimeError)"
    assert sandbox is not None and sandbox.error == "not audited: its worker process exited (exit code 3)"
    assert prod is not None and prod.error is None and [u.name for u in prod.users] == ["prod-carol"]
    assert retired is not None
    assert retired.error == "not audited: its worker process gave no answer within 6 s and was stopped"
    assert again is None  # never sent: the caller audits it in its own threads
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert [f.account_id for f in facts if f is not None] == order[:5]


def test_run_audit_names_the_accounts_a_dead_worker_held_and_audits_the_rest(organization, iam_proxy, monkeypatch):
    real = AccountWorkers

    def dying_on_dev(spec, processes, slots):
        return real(spec, processes, slots, before_each=functools.partial(_fault, {organization["dev"]: "die"}))

    monkeypatch.setattr(account_workers, "AccountWorkers", dying_on_dev)
    result = service.run_audit(org_config(iam_proxy.url, audit_processes=2, aws_max_concurrency=2))
    by_id = {a.account_id: a for a in result.accounts}
    assert by_id[organization["dev"]].error.startswith("not audited: its worker process exited")
    assert by_id[organization["dev"]].users == []
    others = [by_id[a] for a in (MANAGEMENT, organization["prod"], organization["sandbox"])]
    for account in others:  # audited (by the other worker, or in threads), or held by the dead one: named
        assert account.error is None or account.error.startswith("not audited: its worker process exited")
    assert any(account.error is None for account in others)
    assert report.exit_code(result) == 2  # never a pass


def test_worker_count_follows_audit_processes():
    auto = Config(aws_max_concurrency=8)
    assert worker_count(auto, accounts=51, cpus=4) == 4
    assert worker_count(auto, accounts=51, cpus=16) == 8  # at most one per account in flight
    assert worker_count(auto, accounts=51, cpus=2) == 0  # on 2 CPUs threads measured faster
    assert worker_count(auto, accounts=account_workers.AUTO_MIN_ACCOUNTS - 1, cpus=4) == 0
    assert worker_count(dataclasses.replace(auto, aws_max_concurrency=1), accounts=51, cpus=4) == 0
    assert worker_count(dataclasses.replace(auto, audit_processes=0), accounts=51, cpus=2) == 0
    assert worker_count(dataclasses.replace(auto, audit_processes=1), accounts=51, cpus=2) == 0
    assert worker_count(dataclasses.replace(auto, audit_processes=3), accounts=51, cpus=2) == 3
    assert worker_count(dataclasses.replace(auto, audit_processes=3), accounts=2, cpus=2) == 2
    assert worker_count(dataclasses.replace(auto, audit_processes=3), accounts=1, cpus=2) == 0


@pytest.mark.parametrize(("raw", "value"), [("", "auto"), ("auto", "auto"), ("AUTO", "auto"), ("0", 0), ("4", 4)])
def test_audit_processes_is_parsed(raw, value):
    assert load_config({"AUDIT_PROCESSES": raw}, dotenv_path=None).audit_processes == value


@pytest.mark.parametrize(
    ("raw", "message"),
    [("many", "AUDIT_PROCESSES must be auto or a whole number, got 'many'"),
     ("-1", "AUDIT_PROCESSES must be auto or at least 0, got -1"),
     ("1.5", "AUDIT_PROCESSES must be auto or a whole number, got '1.5'")],
)  # fmt: skip
def test_a_bad_audit_processes_is_one_line(raw, message):
    with pytest.raises(ConfigError) as caught:
        load_config({"AUDIT_PROCESSES": raw}, dotenv_path=None)
    assert str(caught.value) == message


def test_what_goes_to_the_workers_holds_no_slack_token_or_database_url_and_never_shows_the_external_id():
    config = Config(
        slack_bot_token="xoxb-secret-token", database_url="postgresql://u:pw@db/x", aws_external_id="ext-secret"
    )
    spec = WorkerSpec.of(config, service.collect_options(config))
    assert spec.external_id == "ext-secret"  # needed to assume the roles
    assert "ext-secret" not in repr(spec)
    assert not {"xoxb-secret-token", "pw"} & {str(v) for v in dataclasses.asdict(spec).values()}
