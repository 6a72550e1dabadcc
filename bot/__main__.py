"""`python -m bot`: see bot.cli.

This file (and the empty bot/__init__.py) is read by any Python 3: the version check runs
before anything written for 3.11 is imported, so an older Python gets one line, not an ImportError.
"""

import sys

REQUIRED = (3, 11)

if sys.version_info < REQUIRED:
    sys.stderr.write(
        "error: mfa-bot needs Python {}.{} or newer; this is Python {}.{}\n".format(*(REQUIRED + sys.version_info[:2]))
    )
    sys.exit(2)

from bot.cli import run  # noqa: E402 - only after the version check
from bot.malloc import limit_malloc_arenas  # noqa: E402

limit_malloc_arenas()  # before any thread starts

if __name__ == "__main__":
    run()
