"""Keep a threaded process's memory near what it uses: at most two glibc malloc arenas.

glibc gives threads their own malloc arenas (up to 8 per core) and keeps what they free for
reuse by that arena. The audit reads an account with a dozen threads (the account-wide reads side
by side, the live checks 8 at a time), each parsing large AWS answers: freed memory then sits in
one arena while another grows. Two arenas (as `MALLOC_ARENA_MAX=2` would set) cut `check`'s
peak at 10,000 users by about 10 MB, for no measurable time (benchmarks/memory.py). Elsewhere
than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (call before threads start); False where there is no glibc mallopt,
    or when MALLOC_ARENA_MAX is set (glibc has applied it already)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
