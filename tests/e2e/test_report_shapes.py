"""The fleet report for the playbook shapes an administrator writes in a project of their own.

A project as users keep one: an ansible.cfg that enables the report (as the
README says) and names its directory, host_vars beside the playbook, and
playbooks that only read, that are narrowed with --tags, --skip-tags,
--start-at-task, `when:` or run_once, that delegate, that span several
plays, that do not use the collection at all, or that target nothing.
Every host the run targets gets the status its results (or their absence)
say, and the files are what CI systems and AWX read.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import BIN_DIR, SimulatedFleet, ansible_env, operations
from tests.e2e.reporting import REPORT_CALLBACKS, by_host, console_table, rows, run_report, statuses
from tests.unit.reports import read_junit

EXCLUDED = ("no task of this collection ran on this host: --tags, --skip-tags or --start-at-task excluded them "
            "from its play")
COMPLIANCE_BY_NAME = "- ansible.builtin.import_playbook: mailops.iis_smtp.compliance\n"
RUN_ONCE = "the collection's task ran with run_once, on another host of this play only"
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "r01": {"instances": [{"id": 1, "state": "started"}]},
        "r02": {"instances": [{"id": 1, "state": "stopped"}]},
        "r03": {"instances": [{"id": 1, "state": "paused"}]},
    },
}


def project(fleet: SimulatedFleet) -> Path:
    """The administrator's project: ansible.cfg (report enabled, its directory), group_vars, host_vars."""
    cfg = ("[defaults]\ncallbacks_enabled = record_results, mailops.iis_smtp.fleet_report\n"
           "retry_files_enabled = False\n\n[iis_smtp_report]\ndir = ./reports\n")
    (fleet.workdir / "ansible.cfg").write_text(cfg)
    for where in ("group_vars", "host_vars"):
        (fleet.workdir / where).mkdir(exist_ok=True)
    (fleet.workdir / "group_vars" / "all.yml").write_text("iis_smtp_timeout: 30\n")
    return fleet.workdir / "reports"


def run_in_project(fleet: SimulatedFleet, playbook: str, *, args: list[str] | None = None,
                   check: bool = False) -> tuple[Any, dict[str, Any]]:
    out = project(fleet)
    # The harness names its own callbacks in the environment; the project's ansible.cfg says the same.
    run = fleet.play(playbook, args=args, check=check, env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS})
    assert (out / "report.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads((out / "report.json").read_text())


def test_a_playbook_that_only_reads_is_judged_by_what_it_read(sim: Any) -> None:
    # The README's first example.
    fleet = sim(FLEET)
    run, report = run_in_project(fleet, """
- hosts: all
  gather_facts: false
  tasks:
    - name: Read the SMTP virtual servers
      mailops.iis_smtp.virtual_server_info:
      register: smtp

    - name: Show the findings
      ansible.builtin.debug:
        var: smtp.findings
""")
    assert run.rc == 0, run.stdout[-3000:]
    assert rows(report) == [("r01", "compliant", None), ("r02", "non_compliant", "drift"),
                            ("r03", "non_compliant", "drift")]
    hosts = by_host(report)
    assert [f["rule"] for f in hosts["r02"]["findings"]] == ["smtp_instance_stopped"]
    assert hosts["r02"]["reason"].startswith("SMTP virtual server 1 ([SMTP Virtual Server #1]) is stopped")
    assert [(i["after"], i["desired"], i["status"]) for i in hosts["r03"]["instances"]] == [
        ("paused", "started", "non_compliant")]
    assert hosts["r01"]["os"] == "Microsoft Windows Server 2019 Standard"
    assert "no result" not in json.dumps(report)


NARROWED = """
- name: Role with a tag
  hosts: all
  gather_facts: false
  roles:
    - role: mailops.iis_smtp.virtual_servers
      tags: [smtp]
- name: Site
  hosts: all
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug: {msg: hello}
      tags: [hello]
    - name: Enforce
      mailops.iis_smtp.virtual_server:
      tags: [smtp]
    - name: Say goodbye
      ansible.builtin.debug: {msg: goodbye}
      tags: [bye]
"""


def test_tasks_left_out_by_tags_or_start_at_task_leave_the_host_skipped(sim: Any) -> None:
    fleet = sim(FLEET)
    for args in (["--tags", "hello"], ["--skip-tags", "smtp"], ["--start-at-task", "Say goodbye"]):
        run, report = run_in_project(fleet, NARROWED, args=args)
        assert run.rc == 0, (args, run.stdout[-3000:])
        assert [(h["host"], h["status"], h["reason"]) for h in report["hosts"]] == [
            (h, "skipped", EXCLUDED) for h in ("r01", "r02", "r03")], args
        assert report["summary"]["ok"] is True
    state = fleet.stop()
    assert all(operations(state, h) == [] and state["hosts"][h]["observes"] == 0 for h in FLEET["hosts"])


def test_a_when_on_some_tasks_takes_the_status_from_what_ran(sim: Any) -> None:
    fleet = sim(FLEET)
    run, report = run_in_project(fleet, """
- hosts: all
  gather_facts: false
  tasks:
    - name: Enforce on r01 only
      mailops.iis_smtp.virtual_server:
      when: inventory_hostname == 'r01'
    - name: Read the others
      mailops.iis_smtp.virtual_server_info:
      when: inventory_hostname != 'r01'
""", check=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert statuses(report) == {"r01": "compliant", "r02": "non_compliant", "r03": "non_compliant"}
    assert [r["action"] for r in by_host(report)["r01"]["runs"]] == ["virtual_server"]
    assert [r["action"] for r in by_host(report)["r02"]["runs"]] == ["virtual_server_info"]


def test_run_once_leaves_the_other_hosts_skipped_not_failed(sim: Any) -> None:
    fleet = sim(FLEET)
    run, report = run_in_project(fleet, """
- hosts: all
  gather_facts: false
  order: sorted
  tasks:
    - name: Read one relay
      mailops.iis_smtp.virtual_server_info:
      run_once: true
""")
    assert run.rc == 0, run.stdout[-3000:]
    assert [(h["host"], h["status"], h["reason"]) for h in report["hosts"]] == [
        ("r01", "compliant", None), ("r02", "skipped", RUN_ONCE), ("r03", "skipped", RUN_ONCE)]


def test_delegation_is_refused_and_reported_under_the_host_that_asked(sim: Any) -> None:
    fleet = sim(FLEET)
    run, report = run_in_project(fleet, """
- hosts: r01
  gather_facts: false
  tasks:
    - name: Enforce through another host
      mailops.iis_smtp.virtual_server:
      delegate_to: r02
      ignore_errors: true
    - name: Read through itself
      mailops.iis_smtp.virtual_server_info:
      delegate_to: "{{ inventory_hostname }}"
""")
    refused = run.result("r01", "Enforce through another host")["result"]
    assert refused["reason"] == "delegation_unsupported" and "act on r02 and report it as r01" in refused["msg"]
    assert rows(report) == [("r01", "compliant", None)], "the read through itself is r01's latest word"
    assert [r["reason_code"] for r in report["hosts"][0]["runs"]] == ["delegation_unsupported", None]
    state = fleet.stop()
    assert state["hosts"]["r02"]["observes"] == 0 and operations(state, "r02") == []


SEVERAL_PLAYS = """
- name: Audit
  hosts: all
  gather_facts: false
  check_mode: true
  roles: [mailops.iis_smtp.virtual_servers]
- name: Fix
  hosts: r02
  gather_facts: false
  roles: [mailops.iis_smtp.virtual_servers]
- name: Check
  hosts: all
  gather_facts: false
  tasks:
    - name: Read back
      mailops.iis_smtp.virtual_server_info:
"""


def test_several_plays_keep_what_each_did_and_the_latest_state(sim: Any) -> None:
    fleet = sim(FLEET)
    run, report = run_in_project(fleet, SEVERAL_PLAYS)
    assert run.rc == 0, run.stdout[-3000:]
    hosts = by_host(report)
    assert statuses(report) == {"r01": "compliant", "r02": "remediated", "r03": "non_compliant"}
    fixed = hosts["r02"]
    assert [(r["play"], r["action"], r["check_mode"], r["status"]) for r in fixed["runs"]] == [
        ("Audit", "virtual_server", True, "non_compliant"), ("Fix", "virtual_server", False, "remediated"),
        ("Check", "virtual_server_info", False, "compliant")]
    assert fixed["play"] == "Check" and fixed["changes"] == ["instance 1 ([SMTP Virtual Server #1]): stopped -> "
                                                             "started (start)"]
    assert [(i["before"], i["after"], i["status"]) for i in fixed["instances"]] == [("stopped", "started",
                                                                                     "remediated")]
    assert [r["play"] for r in hosts["r03"]["runs"]] == ["Audit", "Check"]
    assert hosts["r03"]["changes"] == [], "r03 was never changed: nothing of r02's is put on it"


def test_a_playbook_without_the_collection_writes_no_report_and_replaces_none(sim: Any) -> None:
    fleet = sim(FLEET)
    _run, report = run_in_project(fleet, SEVERAL_PLAYS)
    out = fleet.workdir / "reports"
    before = {name: (out / name).read_bytes() for name in ("report.json", "report.junit.xml", "report.html")}
    unrelated = fleet.play("- hosts: localhost\n  gather_facts: false\n  tasks: [{ansible.builtin.debug: {msg: hi}}]\n",
                           env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS})
    assert unrelated.rc == 0 and "IIS SMTP FLEET REPORT" not in unrelated.stdout
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    assert report["summary"]["hosts"] == 3


def test_a_target_that_matches_no_host_fails_the_gate(sim: Any) -> None:
    fleet = sim(FLEET)
    gated, report = run_report(fleet, COMPLIANCE_BY_NAME, "empty-gated",
                               extra_vars={"iis_smtp_target": "nomatch*", "iis_smtp_fail_on_drift": True})
    assert gated.rc == 2, gated.stdout[-3000:] + gated.stderr[-3000:]
    assert report["summary"] == {**report["summary"], "hosts": 0, "ok": False}
    assert [p["reason_code"] for p in report["problems"]] == ["no_hosts_matched"]
    assert "matched no host" in gated.stderr + gated.stdout
    junit = read_junit((fleet.workdir / "report-empty-gated" / "report.junit.xml").read_text())
    assert [(c.classname, c.name) for suite in junit for c in suite] == [("run", "no_hosts_matched")]
    plain, report = run_report(fleet, COMPLIANCE_BY_NAME, "empty",
                               extra_vars={"iis_smtp_target": "nomatch*"})
    assert plain.rc == 0 and report["summary"]["ok"] is True and report["problems"] == []


HOSTILE: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "bell01": {"instances": [{"id": 1, "comment": "Relay \x07 bell", "state": "stopped"}]},
        "escape01": {"instances": [{"id": 1, "comment": "\x1b[31mRed\x1b[0m\x1b]0;title\x07", "state": "paused"}]},
        "lines01": {"instances": [{"id": 1, "comment": "two\nlines", "state": "stopped",
                                   "start_error": "The service did not start: " + "because " * 60 + "end"}]},
        "good01": {"instances": [{"id": 1, "state": "started"}]},
    },
}


def test_windows_text_never_breaks_the_console_table_or_the_junit_file(sim: Any) -> None:
    fleet = sim(HOSTILE)
    run, report = run_report(fleet, "- ansible.builtin.import_playbook: mailops.iis_smtp.remediate\n", "hostile",
                             extra_vars={"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100})
    table = console_table(run.stdout)
    assert len(table) == 1 + len(HOSTILE["hosts"]) + 1, table
    assert [line.split()[0] for line in table[1:-1]] == sorted(HOSTILE["hosts"])
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", "\n".join(table))
    assert statuses(report) == {"bell01": "remediated", "escape01": "remediated", "lines01": "failed",
                                "good01": "compliant"}
    junit_text = (fleet.workdir / "report-hostile" / "report.junit.xml").read_text()
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", junit_text)
    junit = read_junit(junit_text)
    names = {(c.classname, c.name) for suite in junit for c in suite}
    assert ("bell01", "instance 1 (Relay \\x07 bell)") in names
    assert ("escape01", "instance 1 (\\x1b[31mRed\\x1b[0m\\x1b]0;title\\x07)") in names
    # The JSON keeps what Windows said, escaped as JSON escapes it.
    assert json.loads((fleet.workdir / "report-hostile" / "report.json").read_text())["hosts"][0]["instances"][0][
        "name"] == "Relay \x07 bell"


def test_every_failure_in_the_report_has_a_reason_code(sim: Any) -> None:
    fleet = sim({"defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
                 "hosts": {"badvar01": {}, "site01": {}, "down01": {"unreachable": True},
                           "latin01": {"auth": "basic", "scheme": "https", "password": "Pässwörd-€uro"}}})
    (fleet.workdir / "host_vars").mkdir()
    (fleet.workdir / "host_vars" / "badvar01.yml").write_text("iis_smtp_state: running\n")
    run, report = run_report(fleet, """
- hosts: all
  gather_facts: false
  tasks:
    - name: Site check
      ansible.builtin.assert:
        that: inventory_hostname != 'site01'
        fail_msg: site01 is in maintenance
    - name: Role
      ansible.builtin.include_role:
        name: mailops.iis_smtp.virtual_servers
""", "codes")
    assert run.rc == 4
    assert rows(report) == [("badvar01", "failed", "invalid_argument"), ("down01", "unreachable", "connection_failed"),
                            ("latin01", "unreachable", "credentials_unencodable"),
                            ("site01", "failed", "task_failed")]
    latin = by_host(report)["latin01"]["reason"]
    assert "cannot be sent with Basic authentication" in latin and "€" not in latin
    assert all(h["reason_code"] for h in report["hosts"])


def test_awx_gets_every_verdict_and_the_counts_as_job_artifacts(sim: Any, tmp_path: Path) -> None:
    # ansible-runner, as AWX runs a job: its stdout callback reads the custom stats before any other callback.
    fleet = sim(FLEET)
    private = tmp_path / "runner"
    for where in ("project", "inventory", "env"):
        (private / where).mkdir(parents=True)
    (private / "inventory" / "hosts.yml").write_text(fleet.inventory.read_text())
    (private / "project" / "site.yml").write_text(COMPLIANCE_BY_NAME)
    (private / "env" / "extravars").write_text(json.dumps({"iis_smtp_target": "all", "iis_smtp_fail_on_drift": True}))
    env = ansible_env(tmp_path)
    env.update({"ANSIBLE_CALLBACKS_ENABLED": "mailops.iis_smtp.fleet_report",
                "IIS_SMTP_REPORT_DIR": str(tmp_path / "report")})
    job = subprocess.run([str(BIN_DIR / "ansible-runner"), "run", str(private), "-p", "site.yml", "--ident", "job1"],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert job.returncode == 2, job.stdout[-3000:] + job.stderr[-3000:]
    events = [json.loads(p.read_text()) for p in (private / "artifacts" / "job1" / "job_events").glob("*.json")]
    stats = next(e for e in events if e.get("event") == "playbook_on_stats")
    artifacts = stats["event_data"]["artifact_data"]["iis_smtp"]
    assert artifacts["hosts"] == {"r01": {"status": "compliant", "reason_code": None},
                                  "r02": {"status": "non_compliant", "reason_code": "drift"},
                                  "r03": {"status": "non_compliant", "reason_code": "drift"}}
    assert artifacts["hosts_by_status"]["non_compliant"] == 2 and artifacts["ok"] is False
    assert artifacts["report_dir"] == str(tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {h: v["status"] for h, v in artifacts["hosts"].items()} == statuses(report)
