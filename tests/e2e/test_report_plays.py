"""The fleet report under the ways users narrow and split a run.

`--limit`, a role pulled in with include_role, a host targeted by two plays,
serial batches that abort: each host the run targets appears exactly once.
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import SimulatedFleet

REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "r01": {"instances": [{"id": 1, "state": "started"}]},
        "r02": {"instances": [{"id": 1, "state": "stopped"}]},
        "r03": {"instances": [{"id": 1, "state": "paused"}]},
    },
}


def report_of(fleet: SimulatedFleet, playbook: str, name: str, args: list[str] | None = None,
              check: bool = False) -> tuple[Any, dict[str, Any]]:
    out = fleet.workdir / f"report-{name}"
    run = fleet.play(playbook, args=args, check=check,
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)})
    assert (out / "report.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads((out / "report.json").read_text())


def test_limit_include_role_and_two_plays(sim: Any) -> None:
    fleet = sim(FLEET)
    playbook = """
- name: Audit
  hosts: all
  gather_facts: false
  tasks:
    - name: read
      mailops.iis_smtp.virtual_server_info:
- name: Remediate
  hosts: all
  gather_facts: false
  serial: 1
  tasks:
    - name: role
      ansible.builtin.include_role:
        name: mailops.iis_smtp.virtual_servers
"""
    run, report = report_of(fleet, playbook, "limit", args=["--limit", "r02,r03"])
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert [(h["host"], h["status"]) for h in report["hosts"]] == [("r02", "remediated"), ("r03", "remediated")]


def test_included_role_play_that_aborts_in_its_first_batch_still_reports_every_host(sim: Any) -> None:
    fleet = sim({"defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
                 "hosts": {"a01": {"instances": [{"id": 1, "state": "stopped"}]}, "b01": {"instances": [{"id": 1, "state": "stopped"}]}}})
    playbook = """
- name: Remediate
  hosts: all
  gather_facts: false
  serial: 1
  order: sorted
  max_fail_percentage: 0
  tasks:
    - name: site check
      ansible.builtin.assert:
        that: inventory_hostname != 'a01'
        fail_msg: a01 is in maintenance
    - name: role
      ansible.builtin.include_role:
        name: mailops.iis_smtp.virtual_servers
"""
    run, report = report_of(fleet, playbook, "aborted")
    assert run.rc != 0
    assert [(h["host"], h["status"]) for h in report["hosts"]] == [("a01", "failed"), ("b01", "failed")]
    assert report["hosts"][0]["reason"] == "a01 is in maintenance"
    assert report["hosts"][1]["reason_code"] == "not_run"


def test_a_read_before_the_change_is_not_taken_for_the_read_back(sim: Any) -> None:
    # The README's pattern: read (and show) the findings, then enforce.
    fleet = sim(FLEET)
    playbook = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Read the SMTP virtual servers
      mailops.iis_smtp.virtual_server_info:
      register: smtp
    - name: Enforce
      mailops.iis_smtp.virtual_server:
"""
    run, report = report_of(fleet, playbook, "read-first")
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    hosts = {h["host"]: h for h in report["hosts"]}
    assert {h: r["status"] for h, r in hosts.items()} == {
        "r01": "compliant", "r02": "remediated", "r03": "remediated"}
    assert [(i["before"], i["after"], i["status"]) for i in hosts["r02"]["instances"]] == [
        ("stopped", "started", "remediated")]
    assert report["summary"]["instances_by_state"] == {"started": 3}


def test_paused_targets_behind_a_paused_service_are_compliant(sim: Any) -> None:
    fleet = sim({"defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
                 "hosts": {"p01": {"service": {"state": "paused"}, "instances": [{"id": 1, "state": "started"}]}}})
    playbook = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Keep it paused
      mailops.iis_smtp.virtual_server:
        state: paused
"""
    run, report = report_of(fleet, playbook, "paused")
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = run.result("p01", "Keep it paused")["result"]
    assert result["changed"] is False and result["compliant"] is True and result["operations"] == []
    assert [(h["host"], h["status"]) for h in report["hosts"]] == [("p01", "compliant")]
    assert fleet.stop()["hosts"]["p01"]["service"]["state"] == "Paused"
