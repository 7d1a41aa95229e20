"""The integration targets (tests/integration/targets/) as `make real-host` runs them, against the simulator.

`make real-host INVENTORY=...` runs `ansible-test windows-integration
--inventory` on a user's Windows hosts (tests/integration/run.sh); here the
same script runs the same targets against a simulated fleet with one host of
each connection kind, so the targets cannot rot. One more host fails a step
on purpose: the target must still put it back as it was.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import CONNECTIONS, REPO_ROOT, instance_states, operations

RUN = REPO_ROOT / "tests" / "integration" / "run.sh"
INSTANCES = [
    {"id": 1, "comment": "", "state": "started"},
    # Stopped on purpose: the target picks the first server it can put back, and must leave this one alone.
    {"id": 2, "comment": "Standby", "state": "stopped", "auto_start": False, "bindings": [":2525:"]},
]


def test_the_integration_targets_exercise_and_restore_every_kind_of_host(sim: Any, tmp_path: Path) -> None:
    hosts: dict[str, Any] = {name.replace("-", "_"): dict(keys) for name, keys in CONNECTIONS.items()}
    # The first apply's answer is lost (the host did the work): that step fails, the restore must still run.
    hosts["failing_step"] = {"faults": {"agent_output": {"kind": "garbage", "on": "apply", "times": 1}}}
    fleet = sim({"group": "windows", "defaults": {"transition_s": 0.05, "os": "Windows Server 2022", "instances": INSTANCES},
                 "hosts": hosts})
    inventory = fleet.ini_inventory("windows")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "IT_TREE": str(tmp_path / "tree"), "ANSIBLE_NOCOLOR": "1"}
    env.pop("ANSIBLE_CONFIG", None)
    run = subprocess.run([str(RUN), str(inventory), "virtual_server"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    state = fleet.stop()
    output = run.stdout + run.stderr
    recap = dict(re.findall(r"^(\S+)\s+: (ok=.*)$", run.stdout, re.MULTILINE))

    assert run.returncode != 0, "the failing step fails the run"
    for host in hosts:
        assert instance_states(state, host) == {1: "started", 2: "stopped"}, (host, output[-4000:])
        assert all(op["target"] == "SMTPSVC/1" for op in operations(state, host)), (host, output[-4000:])
        # Every command went through; on the failing host the stop (whose answer was lost), then the restoring start.
        want = {"stop", "start"} if host == "failing_step" else {"stop", "start", "pause", "continue"}
        assert {op["command"] for op in operations(state, host)} == want, (host, output[-4000:])
        assert state["hosts"][host]["service"]["state"] == "Running"
    for host in hosts.keys() - {"failing_step"}:
        assert "failed=0" in recap[host] and "unreachable=0" in recap[host], output[-4000:]
    assert "failed=1" in recap["failing_step"], output[-4000:]
    # The failed step was followed by the restore and the check that the host is as it was.
    failed_at = output.index("fatal: [failing_step]")
    assert re.search(r"TASK \[virtual_server : Assert the host is exactly as it was\][^\n]*\n(?:.*\n)*?ok: \[failing_step\]",
                     output[failed_at:]), output[failed_at:][:4000]
