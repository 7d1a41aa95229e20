"""The fleet report at the edges of a run: hosts a `when:` left out, plays a stopped playbook never reached.

A host the collection deliberately skipped is neither failed nor compliant;
a host targeted only by a play that never started is still reported, with
the reason it was not run.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from tests.e2e.conftest import SimulatedFleet, operations

REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"
SKIPPED_REASON = "every task of this collection was skipped on this host"
STOPPED_REASON = "not run: the playbook stopped before this play ran"
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "r01": {"instances": [{"id": 1, "state": "stopped"}]},
        "r02": {"instances": [{"id": 1, "state": "stopped"}]},
        "r03": {"instances": [{"id": 1, "state": "started"}]},
    },
}


def report_of(fleet: SimulatedFleet, playbook: str, name: str, *, check: bool = False,
              extra_vars: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    out = fleet.workdir / f"report-{name}"
    run = fleet.play(playbook, check=check, extra_vars=extra_vars,
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)})
    assert (out / "report.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads((out / "report.json").read_text())


def rows(report: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(h["host"], h["status"], h["reason"]) for h in report["hosts"]]


def test_hosts_a_when_excluded_are_skipped_not_failed(sim: Any) -> None:
    fleet = sim(FLEET)
    playbook = """
- name: Role under a when
  hosts: all
  gather_facts: false
  roles:
    - role: mailops.iis_smtp.virtual_servers
      when: inventory_hostname != 'r02'
- name: Included role under a when
  hosts: all
  gather_facts: false
  tasks:
    - name: role
      ansible.builtin.include_role:
        name: mailops.iis_smtp.virtual_servers
      when: inventory_hostname == 'r03'
"""
    run, report = report_of(fleet, playbook, "when", check=True, extra_vars={"iis_smtp_fail_on_drift": True})
    assert run.rc != 0, "r01 drifted and the gate is on"
    assert [(h["host"], h["status"]) for h in report["hosts"]] == [
        ("r01", "non_compliant"), ("r02", "skipped"), ("r03", "compliant")]
    assert report["hosts"][1]["reason"] == SKIPPED_REASON
    assert report["summary"]["hosts_by_status"]["skipped"] == 1
    junit = ET.fromstring((fleet.workdir / "report-when" / "report.junit.xml").read_text())
    skipped = [(c.get("classname"), c.get("name")) for c in junit.iter("testcase") if c.find("skipped") is not None]
    assert skipped == [("r02", "host")]
    assert junit.find("testsuite").get("skipped") == "1"  # type: ignore[union-attr]

    run, report = report_of(fleet, playbook.replace("!= 'r02'", "== 'r03'"), "only-r03")
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert rows(report) == [("r01", "skipped", SKIPPED_REASON), ("r02", "skipped", SKIPPED_REASON),
                            ("r03", "compliant", None)]
    assert report["summary"]["ok"] is True

    # Only the include itself is skipped: no task of the role ever reports.
    included_only = playbook[playbook.index("- name: Included role"):]
    run, report = report_of(fleet, included_only, "include-only")
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert rows(report) == [("r01", "skipped", SKIPPED_REASON), ("r02", "skipped", SKIPPED_REASON),
                            ("r03", "compliant", None)]
    state = fleet.stop()
    assert operations(state, "r01") == [] and operations(state, "r02") == []


def test_a_skipped_action_task_is_skipped_and_a_never_reached_host_still_failed(sim: Any) -> None:
    fleet = sim({**FLEET, "hosts": {**FLEET["hosts"],
                                    "r02": {"instances": [{"id": 1, "state": "stopped",
                                                           "start_error": "binding conflict"}]}}})
    playbook = """
- hosts: all
  gather_facts: false
  serial: 1
  order: sorted
  max_fail_percentage: 0
  tasks:
    - name: Enforce
      mailops.iis_smtp.virtual_server:
      when: inventory_hostname != 'r01'
"""
    run, report = report_of(fleet, playbook, "batches")
    assert run.rc != 0, "r02 cannot start, which stops the serial run"
    statuses = {h["host"]: (h["status"], h["reason_code"]) for h in report["hosts"]}
    assert statuses["r01"] == ("skipped", "skipped")
    assert statuses["r02"][0] == "failed" and statuses["r02"][1] != "not_run"
    assert statuses["r03"] == ("failed", "not_run")
    assert report["summary"]["ok"] is False


STOPS_EARLY = """
- name: First wave
  hosts: r01
  gather_facts: false
  max_fail_percentage: 0
  tasks:
    - name: Enforce
      mailops.iis_smtp.virtual_server:
- name: Unrelated step
  hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: hello}
- name: Second wave
  hosts: "{{ second_wave | default('r02') }}"
  gather_facts: false
  roles:
    - mailops.iis_smtp.virtual_servers
"""


def test_hosts_of_plays_the_stopped_playbook_never_reached_are_reported(sim: Any) -> None:
    scenario = {**FLEET, "hosts": {**FLEET["hosts"],
                                   "r01": {"instances": [{"id": 1, "state": "stopped",
                                                          "start_error": "binding conflict"}]}}}
    fleet = sim(scenario)
    run, report = report_of(fleet, STOPS_EARLY, "default-target")
    assert run.rc != 0
    assert "Second wave" not in run.stdout, "the second play must not have started"
    assert [(h["host"], h["status"], h["reason_code"]) for h in report["hosts"]] == [
        ("r01", "failed", "instance_start_failed"), ("r02", "failed", "not_run")]
    second = report["hosts"][1]
    assert (second["play"], second["reason"]) == ("Second wave", STOPPED_REASON)

    # The templated pattern takes the run's extra vars, as ansible-playbook would.
    run, report = report_of(fleet, STOPS_EARLY, "extra-vars", extra_vars={"second_wave": "r02:r03"})
    assert rows(report)[1:] == [("r02", "failed", STOPPED_REASON), ("r03", "failed", STOPPED_REASON)]
    assert report["summary"]["hosts_by_status"]["failed"] == 3
    state = fleet.stop()
    assert operations(state, "r02") == [] and operations(state, "r03") == []


def test_plays_that_ran_keep_their_own_results(sim: Any) -> None:
    fleet = sim(FLEET)
    run, report = report_of(fleet, STOPS_EARLY, "all-ran", extra_vars={"second_wave": "r02,r03"})
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert [(h["host"], h["status"], h["play"]) for h in report["hosts"]] == [
        ("r01", "remediated", "First wave"), ("r02", "remediated", "Second wave"), ("r03", "compliant", "Second wave")]
