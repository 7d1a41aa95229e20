"""The playbooks as AWX and Automation Platform run them: through ansible-runner, sliced.

Each job gets what AWX gives one: a private data directory with the project
(a one-line import of a shipped playbook, the project's ansible.cfg enabling
the fleet report), the inventory, ``env/envvars`` (``JOB_ID`` among them) and
``env/extravars``, and the collection installed from the tarball, nothing
else. ``ansible-runner run`` then runs it against the simulator, and the
tests read what AWX reads: the artifacts (``rc``, ``status``, the job events)
and the report.

Job slicing is reproduced as AWX does it (hosts ordered by name, slice k of
N gets hosts k, k + N, ...): N jobs run at once, each reports its own hosts,
and ``mailops.iis_smtp.merge_reports`` makes one fleet report of them, equal
to the report of one unsliced run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import SimulatedFleet
from tests.ecosystem.conftest import clean_env, tool

# Set by AWX in every job's environment; the report directory is named by it.
PROJECT_CFG = """[defaults]
callbacks_enabled = mailops.iis_smtp.fleet_report

[iis_smtp_report]
dir = {reports}/$JOB_ID
"""
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "relay01": {"instances": [{"id": 1, "state": "started"}]},
        "relay02": {"instances": [{"id": 1, "state": "stopped"}, {"id": 2, "comment": "App", "state": "started"}]},
        "relay03": {"instances": [{"id": 1, "state": "paused"}]},
        "relay04": {"instances": [{"id": 1, "state": "started"}]},
    },
}
SLICED_FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2022", "transition_s": 0.05},
    "hosts": {f"smtp{n:02d}": {"instances": [{"id": 1, "state": "stopped" if n % 3 == 0 else "started"}]}
              for n in range(1, 8)},
}
SLICES = 3


@dataclass
class RunnerJob:
    """What AWX keeps of a job: ansible-runner's artifacts, and the report the job wrote."""

    rc: int
    status: str
    events: list[dict[str, Any]]
    stdout: str
    report: dict[str, Any] | None

    @property
    def stats(self) -> dict[str, Any]:
        """The play recap, as the playbook_on_stats event carries it."""
        return dict(next(e for e in self.events if e["event"] == "playbook_on_stats")["event_data"])

    def task_results(self, task: str) -> dict[str, dict[str, Any]]:
        """Host -> result of the task named ``task``, from the job events that carry one (runner_on_ok, ...)."""
        return {e["event_data"]["host"]: e["event_data"]["res"] for e in self.events
                if e["event"].startswith("runner_on_") and "res" in e["event_data"]
                and e["event_data"].get("task") == task}


def private_data_dir(root: Path, job_id: int, playbook: str, inventory: dict[str, Any],
                     installed: Path, reports: Path, extravars: dict[str, Any] | None = None) -> Path:
    """The private data directory AWX would hand ansible-runner for one job."""
    pdd = root / f"job-{job_id}"
    (pdd / "project").mkdir(parents=True)
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump(
        [{"name": "Job", "ansible.builtin.import_playbook": playbook}]))
    (pdd / "project" / "ansible.cfg").write_text(PROJECT_CFG.format(reports=reports))
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (pdd / "inventory" / "hosts.yml").chmod(0o600)
    (pdd / "env").mkdir()
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({
        "JOB_ID": str(job_id),
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_HOME": str(pdd / "ansible-home"),
        "ANSIBLE_LOCAL_TMP": str(pdd / "ansible-tmp"),
    }))
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(extravars or {}))
    return pdd


def start_job(pdd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([tool("ansible-runner"), "run", str(pdd), "--playbook", "site.yml",
                             "--ident", pdd.name], env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish_job(pdd: Path, process: subprocess.Popen[str], reports: Path, job_id: int) -> RunnerJob:
    out = process.communicate(timeout=600)[0]
    artifacts = pdd / "artifacts" / pdd.name
    assert (artifacts / "status").is_file(), out
    events = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    events.sort(key=lambda e: int(e["counter"]))
    report_file = reports / str(job_id) / "report.json"
    return RunnerJob(
        rc=int((artifacts / "rc").read_text()),
        status=(artifacts / "status").read_text().strip(),
        events=events,
        stdout=(artifacts / "stdout").read_text(),
        report=json.loads(report_file.read_text()) if report_file.is_file() else None,
    )


def runner_job(root: Path, job_id: int, playbook: str, inventory: dict[str, Any], installed: Path,
               reports: Path, extravars: dict[str, Any] | None = None) -> RunnerJob:
    pdd = private_data_dir(root, job_id, playbook, inventory, installed, reports, extravars)
    return finish_job(pdd, start_job(pdd), reports, job_id)


def statuses(report: dict[str, Any] | None) -> dict[str, str]:
    assert report is not None, "the job wrote no report"
    return {h["host"]: h["status"] for h in report["hosts"]}


def fleet_inventory(fleet: SimulatedFleet, hosts: list[str] | None = None) -> dict[str, Any]:
    """The simulator's inventory, restricted to ``hosts`` as a slice's inventory is."""
    every = fleet.hosts()
    keep = sorted(every) if hosts is None else hosts
    return {"all": {"children": {"smtp_servers": {"hosts": {h: every[h] for h in keep}}}}}


def localhost_inventory() -> dict[str, Any]:
    return {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                            "ansible_python_interpreter": sys.executable}}}}


def awx_slice(hosts: list[str], number: int, count: int) -> list[str]:
    """The hosts AWX gives slice ``number`` (1 to ``count``): ordered by name, every count-th from number."""
    return sorted(hosts)[number - 1::count]


def test_compliance_and_remediation_run_through_ansible_runner(installed_collections: Path, sim: Any,
                                                               tmp_path: Path) -> None:
    fleet = sim(FLEET)
    reports = tmp_path / "reports"
    inventory = fleet_inventory(fleet)
    enforce = "Bring the SMTP virtual servers to their desired state"

    audit = runner_job(tmp_path, 101, "mailops.iis_smtp.compliance", inventory, installed_collections, reports)
    assert (audit.rc, audit.status) == (0, "successful"), audit.stdout
    kinds = [e["event"] for e in audit.events]
    assert kinds[0] == "playbook_on_start"
    assert {"playbook_on_play_start", "runner_on_ok", "playbook_on_stats"} <= set(kinds)
    predicted = audit.task_results(enforce)
    assert {h: r["changed"] for h, r in predicted.items()} == {
        "relay01": False, "relay02": True, "relay03": True, "relay04": False}
    assert audit.stats["failures"] == {} and audit.stats["dark"] == {}
    assert statuses(audit.report) == {"relay01": "compliant", "relay02": "non_compliant",
                                      "relay03": "non_compliant", "relay04": "compliant"}
    assert audit.report is not None and audit.report["check_mode"] is True

    gate = runner_job(tmp_path, 102, "mailops.iis_smtp.compliance", inventory, installed_collections, reports,
                      {"iis_smtp_fail_on_drift": True})
    assert (gate.rc, gate.status) == (2, "failed"), gate.stdout
    assert sorted(gate.stats["failures"]) == ["relay02", "relay03"]
    assert statuses(gate.report) == statuses(audit.report)

    repair = runner_job(tmp_path, 103, "mailops.iis_smtp.remediate", inventory, installed_collections, reports)
    assert (repair.rc, repair.status) == (0, "successful"), repair.stdout
    assert {h for h, r in repair.task_results(enforce).items() if r["changed"]} == {"relay02", "relay03"}
    assert statuses(repair.report) == {"relay01": "compliant", "relay02": "remediated",
                                       "relay03": "remediated", "relay04": "compliant"}

    again = runner_job(tmp_path, 104, "mailops.iis_smtp.compliance", inventory, installed_collections, reports,
                       {"iis_smtp_fail_on_drift": True})
    assert (again.rc, again.status) == (0, "successful"), again.stdout
    assert set(statuses(again.report).values()) == {"compliant"}
    state = fleet.stop()
    assert {h: [i["state"] for i in data["instances"]] for h, data in state["hosts"].items()} == {
        "relay01": ["started"], "relay02": ["started", "started"], "relay03": ["started"], "relay04": ["started"]}


def test_slices_report_their_own_hosts_and_merge_into_one_fleet_report(
        installed_collections: Path, sim: Any, tmp_path: Path) -> None:
    fleet = sim(SLICED_FLEET)
    hosts = sorted(fleet.hosts())
    slices_dir, fleet_dir = tmp_path / "slices", tmp_path / "fleet"
    whole = runner_job(tmp_path, 300, "mailops.iis_smtp.compliance", fleet_inventory(fleet), installed_collections,
                       tmp_path / "unsliced")
    assert whole.status == "successful", whole.stdout

    def sliced_run(first_job: int) -> dict[int, list[str]]:
        parts = {first_job + k: awx_slice(hosts, k, SLICES) for k in range(1, SLICES + 1)}
        # AWX runs the slices as separate jobs at the same time.
        started = {}
        for job_id, part in parts.items():
            pdd = private_data_dir(tmp_path, job_id, "mailops.iis_smtp.compliance", fleet_inventory(fleet, part),
                                   installed_collections, slices_dir)
            started[job_id] = (pdd, start_job(pdd))
        for job_id, (pdd, process) in started.items():
            job = finish_job(pdd, process, slices_dir, job_id)
            assert job.status == "successful", job.stdout
            # Each slice saw, ran and reported its own hosts and no other.
            assert sorted(statuses(job.report)) == parts[job_id]
            assert {e["event_data"]["host"] for e in job.events if e["event"] == "runner_on_ok"} == set(parts[job_id])
        return parts

    parts = sliced_run(100)
    assert sorted(h for part in parts.values() for h in part) == hosts
    assert [len(part) for part in parts.values()] == [3, 2, 2]

    merge_vars = {"iis_smtp_report_slices": [f"{slices_dir}/*"], "iis_smtp_report_dest": str(fleet_dir)}
    merged_job = runner_job(tmp_path, 200, "mailops.iis_smtp.merge_reports", localhost_inventory(),
                            installed_collections, slices_dir, merge_vars)
    assert (merged_job.rc, merged_job.status) == (0, "successful"), merged_job.stdout
    merged = json.loads((fleet_dir / "report.json").read_text())
    assert [h["host"] for h in merged["hosts"]] == hosts
    assert whole.report is not None
    assert merged["hosts"] == whole.report["hosts"] and merged["summary"] == whole.report["summary"]
    assert merged["summary"]["hosts_by_status"]["non_compliant"] == 2
    assert sorted(s["hosts"] for s in merged["slices"] if s["hosts"]) == [2, 2, 3]
    assert (fleet_dir / "report.junit.xml").is_file() and (fleet_dir / "report.html").is_file()

    # Merged again: the merge job itself leaves no report among the sources (it runs no collection action).
    again = runner_job(tmp_path, 201, "mailops.iis_smtp.merge_reports", localhost_inventory(),
                       installed_collections, slices_dir, {**merge_vars, "iis_smtp_report_prune": True,
                                                           "iis_smtp_fail_on_problems": True})
    merge_result = again.task_results("Merge the slices' reports")["localhost"]
    assert merge_result["hosts"] == len(hosts) and merge_result["ok"] is False
    remerged = json.loads((fleet_dir / "report.json").read_text())
    assert remerged["hosts"] == merged["hosts"] and remerged["summary"] == merged["summary"]
    assert (again.rc, again.status) == (2, "failed"), again.stdout
    # Pruned: the next sliced run merges cleanly, every host once again.
    assert sorted(os.listdir(slices_dir)) == []
    sliced_run(400)
    last = runner_job(tmp_path, 500, "mailops.iis_smtp.merge_reports", localhost_inventory(),
                      installed_collections, slices_dir, merge_vars)
    assert last.status == "successful", last.stdout
    assert [h["host"] for h in json.loads((fleet_dir / "report.json").read_text())["hosts"]] == hosts
