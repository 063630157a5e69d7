"""Another program holding Hearth's database: a child process that takes SQLite's exclusive
lock on a database and keeps it until told to let go (a backup tool, a second Hearth, a sync
client would do the same)."""

from __future__ import annotations

import subprocess
import sys

HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def hold_lock(path) -> subprocess.Popen:
    """Lock the database at `path` from another process; returns once the lock is held."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def release(holder: subprocess.Popen) -> None:
    """Let the lock go and wait for the holder to end."""
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=10) == 0
