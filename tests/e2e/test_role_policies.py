"""Role policies: a host-wide exception, the start mode left alone by default, and one set where asked.

Run for real: the ready playbooks, per-host settings in host_vars as users
write them, the fleet report callback, the simulator's operation log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO_ROOT, SimulatedFleet, operations, operations_since

COMPLIANCE = REPO_ROOT / "playbooks" / "compliance.yml"
REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"
ALL_AT_ONCE = {"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100}

FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        # The whole host is a cold standby: every instance is meant to be stopped.
        "standby01": {"instances": [{"id": 1, "state": "stopped"}, {"id": 2, "comment": "Spare", "state": "stopped"}]},
        # Someone left one standby instance running: remediation stops it.
        "standby02": {"instances": [{"id": 1, "state": "started"}]},
        # Start mode is someone else's business on this host (the default).
        "ignored01": {"service": {"state": "running", "start_mode": "manual"},
                      "instances": [{"id": 1, "state": "stopped"}]},
        "normal01": {"service": {"state": "running", "start_mode": "manual"},
                     "instances": [{"id": 1, "state": "started"}]},
    },
}
HOST_VARS = {
    "standby01": {"iis_smtp_state": "stopped"},
    "standby02": {"iis_smtp_state": "stopped"},
    "ignored01": {"iis_smtp_service_start_mode": "ignore"},
    "normal01": {"iis_smtp_service_start_mode": "auto"},
}


def run_report(fleet: SimulatedFleet, playbook: Path, name: str) -> dict[str, Any]:
    out = fleet.workdir / f"report-{name}"
    run = fleet.play(fleet.site_playbook(playbook, HOST_VARS), extra_vars=ALL_AT_ONCE,
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)})
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {h["host"]: h for h in json.loads((out / "report.json").read_text())["hosts"]}


def test_host_wide_exception_and_ignored_start_mode(sim: Any) -> None:
    fleet = sim(FLEET)
    audit = run_report(fleet, COMPLIANCE, "audit")
    after_audit = time.time()
    fixed = run_report(fleet, REMEDIATE, "remediate")
    after_remediation = time.time()
    again = run_report(fleet, COMPLIANCE, "audit-again")
    state = fleet.stop()

    assert {h: r["status"] for h, r in audit.items()} == {
        "standby01": "compliant", "standby02": "non_compliant",
        "ignored01": "non_compliant", "normal01": "non_compliant"}
    assert [(i["id"], i["desired"], i["status"]) for i in audit["standby01"]["instances"]] == [
        (1, "stopped", "compliant"), (2, "stopped", "compliant")]
    assert {h: r["status"] for h, r in fixed.items()} == {
        "standby01": "compliant", "standby02": "remediated", "ignored01": "remediated", "normal01": "remediated"}
    assert {h: r["status"] for h, r in again.items()} == {h: "compliant" for h in FLEET["hosts"]}

    for host in FLEET["hosts"]:
        assert not [op for op in operations(state, host) if op["time"] < after_audit], host
        assert operations_since(state, host, after_remediation) == [], host
    assert operations(state, "standby01") == []
    assert [(op["op"], op["command"]) for op in operations(state, "standby02")] == [("instance", "stop")]
    assert [i["state"] for i in state["hosts"]["standby02"]["instances"]] == ["stopped"]
    # `ignore` (the default) leaves the start mode alone; `auto` where asked sets it.
    assert [(op["op"], op["command"]) for op in operations(state, "ignored01")] == [("instance", "start")]
    assert state["hosts"]["ignored01"]["service"]["start_mode"] == "Manual"
    assert [(op["op"], op["command"]) for op in operations(state, "normal01")] == [("set_start_mode", "auto")]
    assert state["hosts"]["normal01"]["service"]["start_mode"] == "Auto"
