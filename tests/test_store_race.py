"""Claims raced by separate PROCESSES, on SQLite and PostgreSQL: exactly one winner, also of
the takeover of a claim whose lease expired. The processes fork from a fresh forkserver that has
imported bot.store once, not 20 fresh interpreters each importing SQLAlchemy and Alembic.

`run_race` is also what benchmarks/race.py runs (20 processes x 20 rounds). The workers open
the store on a fresh database at the same time, so concurrent first-start migrations are
exercised too. Each round, every worker waits at a shared barrier, then all claim at once.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import CLAIM_LEASE, Store

PROCESSES = 20
ROUNDS = 5  # in the test suite; benchmarks/race.py runs 20
CHANNEL = "CRACE"
PERSON = "URACE"
COOLDOWN = timedelta(hours=24)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LATER = T0 + CLAIM_LEASE + timedelta(seconds=1)  # every claim made at T0 has expired
TIMEOUT_S = 120.0


def _worker(url: str, index: int, rounds: int, start: Any, results: Any) -> None:
    """One racing process: open the store, then claim at each barrier release and report."""
    try:
        store = Store.open(url)
        store.last_digest(CHANNEL)  # a warm connection, so the race is about the claim itself
        for r in range(rounds):
            start.wait()
            results.put(("digest", r, store.claim_digest(CHANNEL, f"2026-11-{r + 1:02d}", f"worker-{index}", T0)))
        for r in range(rounds):
            # Round 0 races the first INSERT; later rounds race the conditional UPDATE of an expired window.
            now = T0 + r * 2 * COOLDOWN
            start.wait()
            results.put(("nudge", r, store.claim_nudge_window(PERSON, COOLDOWN, now, f"worker-{index}").won))
        for r in range(rounds):
            # A claim whose holder died (never posted, lease expired): every worker tries to take it over.
            start.wait()
            store.claim_digest(CHANNEL, f"takeover-{r}", f"worker-{index}", T0)
            start.wait()
            results.put(("takeover", r, store.claim_digest(CHANNEL, f"takeover-{r}", f"worker-{index}", LATER)))
        store.close()
    except BaseException:
        results.put(("error", index, traceback.format_exc()))
        start.abort()


def run_race(url: str, processes: int = PROCESSES, rounds: int = ROUNDS) -> dict[str, list[int]]:
    """Race `processes` spawned processes for `rounds` digest claims and nudge windows on `url`.

    Returns the number of winners per round: {"digest": [...], "nudge": [...], "takeover": [...]}.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["bot.store"])
    start = ctx.Barrier(processes, timeout=TIMEOUT_S)
    results = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, i, rounds, start, results)) for i in range(processes)]
    for worker in workers:
        worker.start()
    winners = {"digest": [0] * rounds, "nudge": [0] * rounds, "takeover": [0] * rounds}
    try:
        for _ in range(len(winners) * rounds * processes):
            kind, round_or_index, outcome = results.get(timeout=TIMEOUT_S)
            if kind == "error":
                raise RuntimeError(f"race worker {round_or_index} failed:\n{outcome}")
            winners[kind][round_or_index] += int(outcome)
    except queue.Empty:
        raise RuntimeError(f"race workers gave no answer within {TIMEOUT_S:.0f} s") from None
    finally:
        for worker in workers:
            worker.join(timeout=TIMEOUT_S)
            if worker.is_alive():
                worker.kill()
    return winners


def test_one_winner_per_digest_period_and_nudge_window(store_url: str) -> None:
    winners = run_race(store_url)

    assert winners == {"digest": [1] * ROUNDS, "nudge": [1] * ROUNDS, "takeover": [1] * ROUNDS}
