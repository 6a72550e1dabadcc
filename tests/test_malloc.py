"""The process caps glibc's malloc arenas, unless MALLOC_ARENA_MAX says otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = "from bot.malloc import limit_malloc_arenas\nprint(limit_malloc_arenas())\n"


def probe(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_arenas_are_capped_on_glibc_unless_malloc_arena_max_is_set() -> None:
    assert probe({"PATH": "/usr/bin:/bin"}) == "True"  # this interpreter runs on glibc
    assert probe({"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "4"}) == "False"  # the operator's choice stands
