"""Waiting for a migration: one loop over query-migrate for every caller."""

import time

from harness.common import HarnessError

MIGRATION_TIMEOUT = 600
# The statuses that end a migration for good without completing it
FAILED = ("failed", "cancelled")


def wait_migration(g, timeout=MIGRATION_TIMEOUT, what="migration", *,
                   want=("completed",), fail=FAILED, cancel=True, check=None):
    """Poll g's query-migrate until its status is one of @want; return
    query-migrate's result.  A status in @fail (and not in @want) raises
    HarnessError at once, naming @what and QEMU's error-desc; so does the
    @timeout, after migrate_cancel when @cancel.  @check, if given, is
    called before each poll and may raise (e.g. QEMU exited)."""
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        info = g.cmd("query-migrate")
        status = info.get("status")
        if status in want:
            return info
        if status in fail:
            raise HarnessError(f"{what} {status}: {info.get('error-desc', '')}")
        if time.monotonic() > deadline:
            if cancel:
                g.cmd("migrate_cancel")
            raise HarnessError(f"{what} is '{status}', not {'/'.join(want)}, "
                               f"after {timeout} s")
        time.sleep(0.05)
