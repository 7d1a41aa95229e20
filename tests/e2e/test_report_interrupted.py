"""A run that does not finish never leaves the previous run's report looking current, and one without a report fails.

Each test first leaves a finished, green report behind (as the run before
would have), then runs again in a way that does not end normally: SIGINT or
SIGTERM while a slow host still answers, a play keyword that cannot be
templated, a report directory that cannot be written, a full disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BIN_DIR, REPO_ROOT, SimulatedFleet, ansible_env
from tests.e2e.reporting import report_env, run_report
from tests.unit.reports import read_junit

REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
ALL_AT_ONCE = {"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100}
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "fast01": {"instances": [{"id": 1, "state": "started"}]},
        "fast02": {"instances": [{"id": 1, "state": "started"}]},
        # Answers its first call 20 s late: the run is still busy with it when it is stopped.
        "slow01": {"instances": [{"id": 1, "state": "stopped"}], "faults": {"delay": {"seconds": 20, "times": 1}}},
    },
}


def green_report(fleet: SimulatedFleet) -> Path:
    """The previous run: finished, every host compliant."""
    _run, report = run_report(fleet, REMEDIATE, "shared", extra_vars=ALL_AT_ONCE, args=["--limit", "fast01,fast02"])
    assert report["complete"] is True and report["summary"]["ok"] is True
    return fleet.workdir / "report-shared"


def start(fleet: SimulatedFleet, playbook: Path, out: Path) -> subprocess.Popen[str]:
    env = {**ansible_env(fleet.workdir), **report_env(out)}
    cmd = [str(BIN_DIR / "ansible-playbook"), "-i", str(fleet.inventory), str(playbook), "-e", json.dumps(ALL_AT_ONCE)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(fleet.workdir))


def wait_until(what: str, ready: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.2)


def report_of(out: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_writes_what_it_knows_marked_incomplete(sim: Any, signum: signal.Signals) -> None:
    fleet = sim(FLEET)
    out = green_report(fleet)
    proc = start(fleet, REMEDIATE, out)
    # At playbook start the green report is replaced by one marked incomplete.
    wait_until("the incomplete report", lambda: report_of(out)["complete"] is False)
    assert report_of(out)["summary"]["ok"] is False
    # The fast hosts have answered; the slow one is still waiting for its first answer.
    wait_until("the slow host's call", lambda: '"slow01"' in fleet.request_log.read_text())
    time.sleep(4)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, stdout[-3000:]
    report = report_of(out)
    assert report["complete"] is False, stdout[-3000:] + stderr[-3000:]
    assert report["incomplete_reason"] == f"interrupted by {signum.name}"
    assert report["summary"]["ok"] is False
    hosts = {h["host"]: h for h in report["hosts"]}
    assert (hosts["fast01"]["status"], hosts["fast02"]["status"]) == ("compliant", "compliant"), "what is known"
    assert (hosts["slow01"]["status"], hosts["slow01"]["reason_code"]) == ("failed", "not_run")
    junit = read_junit((out / "report.junit.xml").read_text())
    errors = [(c.classname, c.name) for suite in junit for c in suite if c.result and c.result[0]._tag == "error"]
    assert errors == [("run", "complete")]
    assert f"interrupted by {signum.name}" in (out / "report.html").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.junit.xml"]


def test_a_play_keyword_error_leaves_an_incomplete_report(sim: Any) -> None:
    fleet = sim(FLEET)
    out = green_report(fleet)
    playbook = fleet.workdir / "broken.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  serial: \"{{ batch_size_nobody_set }}\"\n"
                        "  roles: [mailops.iis_smtp.virtual_servers]\n")
    run = fleet.play(playbook, env=report_env(out))
    assert run.rc != 0 and "batch_size_nobody_set" in run.stderr
    report = report_of(out)
    assert report["complete"] is False and report["summary"]["ok"] is False
    assert report["incomplete_reason"].startswith("ansible-playbook stopped before the end of the playbook")
    assert {h["status"] for h in report["hosts"]} == {"failed"}
    assert fleet.stop()["hosts"]["slow01"]["observes"] == 0


def test_a_report_directory_that_cannot_be_written_fails_the_run_before_anything(sim: Any) -> None:
    fleet = sim(FLEET)
    blocker = fleet.workdir / "not-a-directory"
    blocker.write_text("a file where the report directory should be\n")
    run = fleet.play(REMEDIATE, extra_vars=ALL_AT_ONCE, env=report_env(blocker / "reports"))
    assert run.rc == 1, run.stdout[-3000:]
    assert "IIS SMTP fleet report: cannot write the report to" in run.stderr and "Not a directory" in run.stderr
    state = fleet.stop()
    assert [state["hosts"][h]["observes"] for h in FLEET["hosts"]] == [0, 0, 0], "nothing ran without a report"


def test_a_full_disk_at_the_end_fails_the_run_and_keeps_no_half_report(sim: Any) -> None:
    fleet = sim({"hosts": {"fast01": {"instances": [{"id": 1, "state": "started"}]}}})
    out = fleet.workdir / "report-full"
    # The disk fills up during the run: a play before the collection's makes the JUnit file's
    # temporary name lead to /dev/full, where every write ends with ENOSPC.
    playbook = fleet.workdir / "fills-up.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Fill the disk
      ansible.builtin.file:
        src: /dev/full
        dest: {out}/.report.junit.xml.tmp
        state: link
- hosts: fast01
  gather_facts: false
  roles: [mailops.iis_smtp.virtual_servers]
""")
    run = fleet.play(playbook, env=report_env(out))
    assert run.rc == 1, run.stdout[-3000:]
    assert "No space left on device" in run.stderr and "The run has no report.json" in run.stderr
    # The files are still the ones written at the start, marked incomplete; no half of the new ones.
    assert report_of(out)["complete"] is False
    junit = read_junit((out / "report.junit.xml").read_text())
    assert [(c.classname, c.name) for suite in junit for c in suite][0] == ("run", "complete")
    assert not [p for p in os.listdir(out) if p.startswith(".")]
