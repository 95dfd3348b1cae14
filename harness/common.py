"""What every module of the harness shares: paths, the error, the log."""

import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(TOP, "build"))


class HarnessError(Exception):
    """A step of the harness failed; the message says which and what to do."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)
