"""The fault suite, short form: one round of each fault against each workload it can hurt, on one
HEARTH_HOME that keeps its history from round to round (see chaos.py for what is checked).
The long form, many random rounds with the counts for README.md, is tests/bench/faults.py."""

from __future__ import annotations

import random

import pytest

from tests.faults.chaos import REPO, Lab, can_mount
from tests.hub_server import Hub

pytestmark = pytest.mark.slow

ROUNDS = [
    ("chat", "kill_app"),
    ("chat", "kill_engine"),
    ("chat", "pause"),
    ("chat", "lock"),
    ("regenerate", "kill_app"),
    ("regenerate", "kill_engine"),
    ("regenerate", "lock"),
    ("import", "kill_app"),
    ("pull", "kill_app"),
    ("chat", "disk_full"),
    ("import", "disk_full"),
    ("chat", "two_windows"),
]


@pytest.fixture(scope="module")
def lab(model_file, tmp_path_factory):
    hub = Hub().start()
    hub.add(REPO, model_file.name, model_file)
    hub.faults.throttle = 0.002  # ~30 MB/s: a pull lasts long enough to be cut
    lab = Lab(tmp_path_factory.mktemp("faults") / "home", model_file, hub.url)
    yield lab
    hub.stop()
    print("\n".join(str(r) for r in lab.rounds))
    print("\n".join(f"On a full disk: {said}" for said in lab.full_disk_said))


@pytest.mark.parametrize(("workload", "fault"), ROUNDS, ids=[f"{f}-during-{w}" for w, f in ROUNDS])
def test_nothing_is_lost_after(lab, workload, fault):
    if fault == "disk_full" and not can_mount():
        pytest.skip("a full disk is simulated with a small tmpfs, which needs the right to mount")
    if workload == "regenerate" and not any(r.workload == "chat" for r in lab.rounds):
        lab.run_round("chat", "lock", random.Random(0))  # something to write again
    for seed in range(3):  # the fault must land while the work runs: a round that ends first is run again
        r = lab.run_round(workload, fault, random.Random(seed))
        assert r.survived, str(r)
        if r.injected:
            break
    assert r.injected, f"the {fault} never landed while {workload} ran"
