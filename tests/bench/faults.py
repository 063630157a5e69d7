"""The fault suite, long form: many rounds of a random fault (SIGKILL of the app or of its engine,
SIGSTOP/SIGCONT, another program's exclusive lock, a full disk) at a random moment of a random
workload (chat, regenerate, import, pull), on one HEARTH_HOME whose history grows round after
round; after each, the checks of tests/faults/chaos.py. Prints every round and the count of
faults injected and survived, per kind; the counts go to the results table.

Usage: python tests/bench/faults.py [--rounds N] [--seed N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import machine_line, row, save  # noqa: E402
from tests.faults.chaos import FAULTS, REPO, WORKLOADS, Lab, can_mount  # noqa: E402
from tests.hub_server import Hub  # noqa: E402

# Which workloads each fault can hurt (a paused or locked import or pull only waits).
PAIRS = [(w, f) for f in FAULTS for w in WORKLOADS
         if not (f in ("kill_engine", "pause", "lock") and w in ("import", "pull"))
         and not (f == "disk_full" and w in ("regenerate", "pull"))
         and not (f == "two_windows" and w != "chat")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--quick", action="store_true", help="2 rounds, nothing saved (smoke test)")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    print(machine_line())
    model = Path(os.environ["HEARTH_STARTER_MODEL"])
    pairs = PAIRS if can_mount() else [p for p in PAIRS if p[1] != "disk_full"]
    rng = random.Random(args.seed)
    hub = Hub().start()
    hub.add(REPO, model.name, model)
    hub.faults.throttle = 0.002
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hearth-faults-") as folder:
        lab = Lab(Path(folder) / "home", model, hub.url)
        lab.run_round("chat", "lock", rng)  # a first answer, for regenerate to write again
        for i in range(rounds):
            workload, fault = rng.choice(pairs)
            r = lab.run_round(workload, fault, rng)
            print(f"{i + 1:3}/{rounds} {r} ({r.seconds:.1f} s)", flush=True)
        hub.stop()
        said = sorted(set(lab.full_disk_said))
    elapsed = time.monotonic() - started
    injected = Counter(r.fault for r in lab.rounds if r.injected)
    survived = Counter(r.fault for r in lab.rounds if r.injected and r.survived)
    failed = [str(r) for r in lab.rounds if not r.survived]
    total_in, total_ok = sum(injected.values()), sum(survived.values())
    print(f"\nseed {args.seed}: {total_in} faults injected, {total_ok} survived, in {elapsed:.0f} s")
    for fault in FAULTS:
        print(f"  {fault:12} {survived[fault]:3} of {injected[fault]:3}")
    for line in said:
        print("  full disk said:", line)
    for line in failed:
        print("  " + line)
    names = {"kill_app": "SIGKILL of the app", "kill_engine": "SIGKILL of the engine",
             "pause": "SIGSTOP then SIGCONT", "lock": "another program's exclusive lock",
             "disk_full": "disk full", "two_windows": "Hearth started again beside its window, then killed"}
    rows = [row(f"Faults survived: {names[f]} (of injected)", survived[f], injected[f], reference_name="injected",
                target="all", met=survived[f] == injected[f], digits=0, ratio_of="survived/injected")
            for f in FAULTS if injected[f]]
    rows.append(row("Faults survived, all kinds (of injected)", total_ok, total_in, reference_name="injected",
                    target="all", met=total_ok == total_in, digits=0))
    save("faults", {"seed": args.seed, "rounds": rounds, "seconds": round(elapsed),
                    "failed": failed, "full_disk_said": said}, rows, quick=args.quick)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
