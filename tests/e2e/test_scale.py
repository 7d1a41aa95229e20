"""Two hundred simulated hosts, twenty forks: every host lands in the report.

The shape of a real fleet: most hosts compliant, some drifted in different
ways, a few broken. What is checked is completeness and correctness at
scale (every host once, with the right status, and the simulator agreeing),
never how long it took; `make bench` measures that.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.e2e.conftest import REPO_ROOT, operations

REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
HOSTS = 200
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05,
                 "instances": [{"id": 1, "state": "started"}, {"id": 2, "comment": "App relay", "state": "started"}]},
    "generate": [
        {"prefix": "ok", "count": 150},
        {"prefix": "paused", "count": 20,
         "template": {"instances": [{"id": 1, "state": "started"}, {"id": 2, "comment": "App relay",
                                                                    "state": "paused"}]}},
        {"prefix": "svcdown", "count": 20, "template": {"service": {"state": "stopped", "start_mode": "manual"}}},
        {"prefix": "broken", "count": 5,
         "template": {"instances": [{"id": 1, "state": "stopped", "start_error": "binding conflict"}]}},
        {"prefix": "down", "count": 5, "template": {"unreachable": True}},
    ],
}


def test_two_hundred_hosts_twenty_forks_complete_report(sim: Any) -> None:
    fleet = sim(FLEET)
    assert len(fleet.hosts()) == HOSTS
    out = fleet.workdir / "report"
    run = fleet.play(REMEDIATE, args=["--forks", "20"],
                     extra_vars={"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100,
                                 "iis_smtp_timeout": 10},
                     env={"ANSIBLE_CALLBACKS_ENABLED": "record_results,mailops.iis_smtp.fleet_report",
                          "IIS_SMTP_REPORT_DIR": str(out)})
    state = fleet.stop()
    report = json.loads((out / "report.json").read_text())

    names = [h["host"] for h in report["hosts"]]
    assert sorted(names) == sorted(fleet.hosts()) and len(set(names)) == HOSTS
    expected = {"ok": "compliant", "paused": "remediated", "svcdown": "remediated", "broken": "failed",
                "down": "unreachable"}
    got = Counter((h["host"].rstrip("0123456789"), h["status"]) for h in report["hosts"])
    assert got == Counter({("ok", "compliant"): 150, ("paused", "remediated"): 20, ("svcdown", "remediated"): 20,
                           ("broken", "failed"): 5, ("down", "unreachable"): 5}), got
    assert report["summary"]["hosts"] == HOSTS
    assert report["summary"]["hosts_by_status"] == {"compliant": 150, "remediated": 40, "non_compliant": 0,
                                                    "failed": 5, "unreachable": 5, "skipped": 0}
    assert "Traceback" not in run.stdout + run.stderr

    for host, data in state["hosts"].items():
        kind = host.rstrip("0123456789")
        if kind == "ok":
            assert operations(state, host) == [], host
        if expected[kind] == "remediated":
            assert [i["state"] for i in data["instances"]] == ["started", "started"], host
    # Paused: continue; service down: start it (its start mode is left alone); broken: start, retried once.
    assert sum(len(operations(state, h)) for h in state["hosts"]) == 20 + 20 + 5 * 2
