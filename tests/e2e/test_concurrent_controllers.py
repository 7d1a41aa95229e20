"""Two controllers remediating the same hosts at once, end to end.

Two `ansible-playbook` runs start together against one simulated fleet whose
SMTPSVC is stopped everywhere and takes a while to start. The first observe
of each run is answered 3 s late (the observe itself runs at once), so both
runs see SMTPSVC stopped and both plan to start it: one run's start lands
between the other's observe and apply, and the other's agent finds the
service `Start Pending` or `Running`. Neither run may report a failure for a
host that ends as desired.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.e2e.conftest import PlaybookRun, instance_states, play

HOSTS = [f"relay{n:02d}" for n in range(1, 7)]
STOPPED = {
    "service": {"state": "stopped", "start_mode": "manual", "pending_s": 1.5},
    "transition_s": 0.2,
    "faults": {"delay": {"seconds": 3, "on": "observe", "times": 2}},
    "instances": [{"id": 1, "state": "stopped", "auto_start": True},
                  {"id": 2, "comment": "Devices", "state": "stopped", "auto_start": False}],
}
TASKS = play("""
    - name: enforce
      mailops.iis_smtp.virtual_server:
        timeout: 60
""")


def test_two_controllers_on_the_same_hosts_both_succeed(sim: Any) -> None:
    fleet = sim({"hosts": dict.fromkeys(HOSTS, STOPPED)})
    runs: list[PlaybookRun] = []
    lock = threading.Lock()

    def controller() -> None:
        run = fleet.play(TASKS, args=["--forks", str(len(HOSTS))])
        with lock:
            runs.append(run)

    threads = [threading.Thread(target=controller), threading.Thread(target=controller)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = fleet.stop()

    assert len(runs) == 2
    for run in runs:
        for host in HOSTS:
            res = run.result(host, "enforce")["result"]
            assert run.status(host, "enforce") in ("ok", "changed"), (host, res.get("reason"), res.get("msg"))
            assert res["compliant"] is True
        assert run.rc == 0, run.stdout[-3000:]
    for host in HOSTS:
        assert state["hosts"][host]["service"]["state"] == "Running"
        assert instance_states(state, host) == {1: "started", 2: "started"}
        # Whoever lost the race sent nothing Windows had to refuse: one real start per host.
        starts = [op for op in state["hosts"][host]["operations"] if op["op"] == "start_service"]
        assert [op["ok"] for op in starts] == [True], (host, starts)
    # The race did happen: some run planned a start and found it done (or under way) by the other.
    refused = [op for run in runs for host in HOSTS for op in run.result(host, "enforce")["result"]["operations"]
               if op["op"] == "start_service" and not op["ok"]]
    assert refused and all("not Stopped: the control was not sent" in op["error"] for op in refused)
