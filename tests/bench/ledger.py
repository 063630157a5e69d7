"""What counting an app's request in the data ledger costs the local server's event loop
(ApiLedger.add, on the loop's thread, with the real Store on this disk): with the database free,
with a prompt and answer kept too, and while another program holds the database locked (the first
request waits out the store's busy timeout once; the rest wait in memory and are saved from a
worker thread once the lock goes: every one is counted).

Usage: python tests/bench/ledger.py [--requests N] [--dir FOLDER]
(FOLDER: where the database is made, on the disk to measure; a new temporary folder by default.)
Not part of `make bench` (yet): it prints its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from desktop.core.server import RequestRecord  # noqa: E402
from desktop.core.server.ledger import ApiLedger  # noqa: E402
from desktop.core.store import Store  # noqa: E402
from tests.db_lock import hold_lock, release  # noqa: E402

BODY = '{"prompt": [{"role": "user", "content": "' + "x" * 2000 + '"}], "answer": "' + "y" * 2000 + '"}'


def record(i: int, body: str = "") -> RequestRecord:
    return RequestRecord(at=time.time(), client=f"127.0.0.1 app/{i % 3}", method="POST", path="/v1/chat/completions",
                         model="smollm2-135m-instruct-q4_1", status=200, tokens_in=40, tokens_out=12, duration_ms=90,
                         body=body)


def timed(ledger: ApiLedger, n: int, body: str = "") -> list[float]:
    """Milliseconds each of `n` calls of ledger.add held the caller."""
    out = []
    for i in range(n):
        started = time.perf_counter()
        ledger.add(record(i, body))
        out.append((time.perf_counter() - started) * 1000)
    return out


def line(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    return (f"{name}: median {statistics.median(ms):.2f} ms, p90 {ms[int(len(ms) * 0.9)]:.2f} ms, "
            f"max {ms[-1]:.2f} ms ({len(ms)} requests)")


async def main(requests: int, folder: Path) -> None:
    path = folder / "hearth.db"
    store = Store(path)
    ledger = ApiLedger(store, lambda: True)
    print(line("free", timed(ledger, requests)))
    print(line("free, with the prompt and answer kept", timed(ledger, requests, BODY)))
    holder = hold_lock(path)
    locked = timed(ledger, 20)
    print(f"locked by another program: the first request {locked[0]:.0f} ms, the next 19 at most "
          f"{max(locked[1:]):.2f} ms; {ledger.waiting} wait in memory")
    await asyncio.sleep(1.0)
    release(holder)
    deadline = time.monotonic() + 15
    while ledger.waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    counted = sum(u.requests for u in store.api_use())
    print(f"after the lock: {counted} of {2 * requests + 20} requests counted, {ledger.waiting} waiting")
    await ledger.close()
    store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    target = args.dir or Path(tempfile.mkdtemp(prefix="hearth-ledger-"))
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.requests, target))
