"""Race 20 processes for one digest claim, one nudge window and one takeover of an expired claim, 20 rounds.

    python -m benchmarks.race [--processes 20] [--runs 20] [--pg URL]

PostgreSQL comes from --pg or TEST_DATABASE_URL (skipped when neither is set); the race runs
in a throw-away schema. Prints the winners of each run; exits 1 unless every run had exactly 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures_db import PG_ENV, pg_admin_engine_for, pg_schema_url, sqlite_url
from tests.test_store_race import run_race


def _report(name: str, winners: dict[str, list[int]], seconds: float) -> bool:
    ok = True
    for kind, per_run in winners.items():
        exact = sum(1 for n in per_run if n == 1)
        ok = ok and exact == len(per_run)
        print(f"{name:<10} {kind:<8} winners per run: {per_run}  -> {exact}/{len(per_run)} runs with exactly 1")
    print(f"{name:<10} {seconds:.1f} s")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    """Run the races and print the winners per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pg", default=os.environ.get(PG_ENV, ""), help=f"PostgreSQL URL (default: ${PG_ENV})")
    args = parser.parse_args(argv)

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        winners = run_race(sqlite_url(Path(tmp)), args.processes, args.runs)
        ok = _report("sqlite", winners, time.monotonic() - started) and ok
    if args.pg:
        admin = pg_admin_engine_for(args.pg)
        try:
            with pg_schema_url(admin, args.pg) as url:
                started = time.monotonic()
                winners = run_race(url, args.processes, args.runs)
                ok = _report("postgresql", winners, time.monotonic() - started) and ok
        finally:
            admin.dispose()
    else:
        print(f"postgresql skipped: pass --pg URL or set {PG_ENV}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
