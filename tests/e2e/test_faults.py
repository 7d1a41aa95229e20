"""Broken, slow and overloaded hosts, through the real ansible-playbook.

One simulated fleet holds a host per fault beside healthy hosts, so a single
remediation run (and the audit after it) shows at once that every faulty host
is reported with its own reason, that the healthy ones are not disturbed, that
the fleet report names every host, and that the collection never moved an
instance away from its desired state. A second fleet pins the retry rule: a
poll that loses its connection is sent once more, nothing else is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO_ROOT, PlaybookRun, SimulatedFleet, operations, operations_since

REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
COMPLIANCE = REPO_ROOT / "playbooks" / "compliance.yml"
REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"
# Every host in one batch and no early stop: the report must still name them all.
ALL_AT_ONCE = {"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100, "iis_smtp_timeout": 4}
# pywinrm wants the read timeout above the operation timeout; both small so
# that a slow host costs seconds, not the inventory's 30.
SHORT_TIMEOUTS = {"ansible_winrm_read_timeout_sec": 3, "ansible_winrm_operation_timeout_sec": 2}

DRIFTED: dict[str, Any] = {"instances": [{"id": 1, "state": "started"},
                                         {"id": 2, "comment": "App relay", "state": "stopped"}]}


def faulty(fault: dict[str, Any]) -> dict[str, Any]:
    """A drifted host (so remediation has something to send) with one injected fault."""
    return {**DRIFTED, "faults": fault}


FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.1},
    "hosts": {
        "good": {"instances": [{"id": 1, "state": "started"}]},
        "drift": DRIFTED,
        "refused": {"unreachable": True},
        "rejected": {"faults": {"http_401": True}},
        "wsman_observe": faulty({"wsman_fault": {"on": "observe"}}),
        "wsman_apply": faulty({"wsman_fault": {"on": "apply"}}),
        "slow": faulty({"delay": {"seconds": 6}}),
        "cut_observe": faulty({"cut": {"on": "observe"}}),
        "cut_apply": faulty({"cut": {"on": "apply"}}),
        "garbage": faulty({"agent_output": {"kind": "garbage"}}),
        "truncated": faulty({"agent_output": {"kind": "truncated", "on": "apply"}}),
        "nonzero": faulty({"agent_output": {"kind": "nonzero_exit"}}),
        "wont_start": {"instances": [{"id": 1, "state": "started"},
                                     {"id": 2, "comment": "Broken", "state": "stopped",
                                      "start_error": "binding conflict"}]},
        "stuck": {"instances": [{"id": 1, "state": "started"},
                                {"id": 2, "comment": "Stuck", "state": "stopped", "stuck": True}]},
        "service_fails": {"service": {"state": "stopped", "start_mode": "auto"},
                          "instances": [{"id": 1, "state": "started"}],
                          "faults": {"service_start_error": "The service did not respond to the start or "
                                                            "control request in a timely fashion."}},
        "service_stuck": {"service": {"state": "stopped", "start_mode": "auto", "stuck": True},
                          "instances": [{"id": 1, "state": "started"}]},
        "iisadmin_stopped": {"service": {"state": "stopped", "start_mode": "manual"},
                             "iisadmin": {"state": "stopped", "start_mode": "manual"},
                             "instances": [{"id": 1, "state": "started"}]},
        "iisadmin_disabled": {"service": {"state": "stopped", "start_mode": "manual"},
                              "iisadmin": {"state": "stopped", "start_mode": "disabled"},
                              "instances": [{"id": 1, "state": "started"}]},
        "rebooted": {"service": {"state": "running", "start_mode": "manual"},
                     "instances": [{"id": 1, "state": "started"}, {"id": 2, "comment": "Spare", "state": "stopped"}],
                     "faults": {"reboot_after_observe": True}},
    },
}

# host -> (report status, reason code, words the user must see in the reason)
EXPECTED: dict[str, tuple[str, str | None, str]] = {
    "good": ("compliant", None, ""),
    "drift": ("remediated", None, ""),
    "refused": ("unreachable", "connection_failed", "could not talk to the host (connection refused)"),
    "rejected": ("unreachable", "auth_failed", "the host rejected the credentials"),
    "wsman_observe": ("failed", "winrm_fault", "the host answered with a WS-Management fault"),
    "wsman_apply": ("failed", "winrm_fault", "the host answered with a WS-Management fault"),
    "slow": ("unreachable", "connection_failed", "could not talk to the host (no answer within the read timeout)"),
    "cut_observe": ("unreachable", "connection_failed", "(connection cut mid-response)"),
    "cut_apply": ("unreachable", "connection_failed", "(connection cut mid-response)"),
    "garbage": ("failed", "agent_output_invalid", "no MAILOPS-AGENT-1: line in the agent output"),
    "truncated": ("failed", "agent_output_invalid", "the agent response did not decode to JSON"),
    "nonzero": ("failed", "agent_exit_nonzero", "the agent exited with code 1 without a response"),
    "wont_start": ("failed", "instance_start_failed",
                   "SMTP virtual server 2 (Broken) did not reach started within 4 s: last state stopped; "
                   "Windows error 0x80070034 (binding conflict)"),
    "stuck": ("failed", "timeout", "SMTP virtual server 2 (Stuck) did not reach started within 4 s: "
                                   "last state starting"),
    "service_fails": ("failed", "service_start_failed",
                      "the SMTPSVC service step start_service failed: Windows error 0x80131501"),
    "service_stuck": ("failed", "timeout", "the SMTPSVC service is still starting (Start Pending) after 4 s"),
    "iisadmin_stopped": ("remediated", None, ""),
    "iisadmin_disabled": ("failed", "iisadmin_disabled", "The IIS Admin service (IISADMIN) is disabled"),
    "rebooted": ("remediated", None, ""),
}
# What the audit after remediation must say of each host that still answers.
AUDIT_AFTER: dict[str, tuple[str, str | None]] = {
    "good": ("compliant", None), "drift": ("compliant", None), "rebooted": ("compliant", None),
    "refused": ("unreachable", "connection_failed"), "rejected": ("unreachable", "auth_failed"),
    "wsman_observe": ("failed", "winrm_fault"), "wsman_apply": ("non_compliant", "drift"),
    "slow": ("unreachable", "connection_failed"), "cut_observe": ("unreachable", "connection_failed"),
    "cut_apply": ("compliant", None), "garbage": ("failed", "agent_output_invalid"),
    "truncated": ("compliant", None), "nonzero": ("failed", "agent_exit_nonzero"),
    "wont_start": ("non_compliant", "drift"), "stuck": ("non_compliant", "drift"),
    "service_fails": ("non_compliant", "drift"), "service_stuck": ("non_compliant", "drift"),
    "iisadmin_stopped": ("compliant", None), "iisadmin_disabled": ("failed", "iisadmin_disabled"),
}


def run_with_report(fleet: SimulatedFleet, playbook: Path, name: str) -> tuple[PlaybookRun, dict[str, Any]]:
    out = fleet.workdir / f"report-{name}"
    run = fleet.play(playbook, extra_vars=ALL_AT_ONCE,
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)})
    assert (out / "report.json").exists(), run.stdout + run.stderr
    return run, json.loads((out / "report.json").read_text())


def by_host(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hosts = [h["host"] for h in report["hosts"]]
    assert len(hosts) == len(set(hosts)), f"a host appears twice in the report: {hosts}"
    return {h["host"]: h for h in report["hosts"]}


def assert_no_traceback(run: PlaybookRun, report: dict[str, Any]) -> None:
    for text in (run.stdout, run.stderr, json.dumps(report)):
        assert "Traceback" not in text and "exception:" not in text.lower(), text[-3000:]


def assert_not_moved_away(scenario: dict[str, Any], state: dict[str, Any], host: str) -> None:
    """Desired is started everywhere: nothing was stopped or paused, and no started instance is down."""
    commands = {(op["op"], op["command"]) for op in operations(state, host)}
    assert not commands & {("instance", "stop"), ("instance", "pause")}, (host, commands)
    assert {c for o, c in commands if o == "set_start_mode"} <= {"auto"}, (host, commands)
    was = {i["id"]: i["state"] for i in scenario["hosts"][host].get("instances", [{"id": 1, "state": "started"}])}
    now = {i["id"]: i["state"] for i in state["hosts"][host]["instances"]}
    service_was_up = scenario["hosts"][host].get("service", {}).get("state", "running") == "running"
    for inst_id, before in was.items():
        if before == "started" and service_was_up:
            assert now[inst_id] == "started", f"{host}: instance {inst_id} was started, now {now[inst_id]}"


def test_every_fault_is_reported_by_name_and_moves_nothing_away(sim: Any) -> None:
    fleet = sim(FLEET)
    slow_vars = {"slow": SHORT_TIMEOUTS}
    run, report = run_with_report(fleet, fleet.site_playbook(REMEDIATE, slow_vars), "remediate")
    after_remediation = time.time()
    audit, audit_report = run_with_report(fleet, fleet.site_playbook(COMPLIANCE, slow_vars), "audit")
    state = fleet.stop()

    assert run.rc != 0, "failed and unreachable hosts fail the run"
    assert_no_traceback(run, report)
    assert_no_traceback(audit, audit_report)
    hosts = by_host(report)
    assert set(hosts) == set(FLEET["hosts"]), "the report names every host of the inventory"
    for host, (status, code, words) in EXPECTED.items():
        got = hosts[host]
        assert (got["status"], got["reason_code"]) == (status, code), (host, got)
        assert words in (got["reason"] or ""), (host, got["reason"])
        task = run.result(host, "mailops.iis_smtp.virtual_servers : Bring the SMTP virtual servers to their "
                                "desired state")
        if code is not None:
            # A host Ansible could not talk to is unreachable to Ansible itself, not failed.
            want = "unreachable" if status == "unreachable" else "failed"
            assert task["status"] == want and task["result"]["reason"] == code, (host, task)
        assert_not_moved_away(FLEET, state, host)

    # Faults that stop the command before it runs leave the host exactly as it was.
    for host in ("refused", "rejected", "wsman_observe", "wsman_apply", "slow", "cut_observe", "garbage",
                 "nonzero"):
        assert operations(state, host) == [], host
    assert state["hosts"]["rejected"]["observes"] == 0 and state["hosts"]["nonzero"]["observes"] == 0
    assert state["hosts"]["wsman_apply"]["faults_fired"]["wsman_fault"] == 1
    assert [i["state"] for i in state["hosts"]["wsman_apply"]["instances"]] == ["started", "stopped"]
    # A response lost after the host acted: the start happened, the user is told the call failed.
    assert [(op["command"], op["ok"]) for op in operations(state, "cut_apply")] == [("start", True)]
    assert [(op["command"], op["ok"]) for op in operations(state, "wont_start")] == [("start", False)] * 2
    assert [i["state"] for i in state["hosts"]["stuck"]["instances"]] == ["started", "starting"]
    assert state["hosts"]["service_fails"]["service"]["state"] == "Stopped"
    assert state["hosts"]["service_stuck"]["service"]["state"] == "Start Pending"
    # Looking started nothing: no metabase bind demand-started IISADMIN; the run started it, alone, first.
    for host in FLEET["hosts"]:
        assert [e for e in state["hosts"][host]["events"] if e["event"] == "demand_start"] == [], host
    started = [(op["op"], op["target"]) for op in operations(state, "iisadmin_stopped")]
    assert started == [("start_service", "IISADMIN"), ("start_service", "SMTPSVC")]
    assert operations(state, "iisadmin_disabled") == []

    # The host rebooted under us: the plan made before the reboot still converged it, and its last look agreed.
    rebooted = state["hosts"]["rebooted"]
    assert [e["event"] for e in rebooted["events"]] == ["reboot"]
    assert [i["state"] for i in rebooted["instances"]] == ["started", "started"]
    assert rebooted["service"]["start_mode"] == "Manual", "the start mode is left as it is"
    assert run.result("rebooted", "mailops.iis_smtp.virtual_servers : Bring the SMTP virtual servers to their "
                                  "desired state")["result"]["compliant"] is True

    # The audit after remediation: every host named again, and the audit itself sent nothing.
    audited = by_host(audit_report)
    assert {h: (r["status"], r["reason_code"]) for h, r in audited.items()} == AUDIT_AFTER
    for host in FLEET["hosts"]:
        assert operations_since(state, host, after_remediation) == [], host


POLLING: dict[str, Any] = {
    # Still starting when the first observe arrives, so the engine polls (an apply with no steps).
    "defaults": {"os": "Windows Server 2022",
                 "instances": [{"id": 1, "comment": "Relay", "state": "starting", "transition_s": 8}]},
    "hosts": {
        "cut_once": {"faults": {"cut": {"on": "apply", "times": 1}}},
        "cut_twice": {"faults": {"cut": {"on": "apply", "times": 2}}},
        "cut_always": {"faults": {"cut": {"on": "apply"}}},
        "garbage_once": {"faults": {"agent_output": {"kind": "garbage", "on": "apply", "times": 1}}},
        "wsman_once": {"faults": {"wsman_fault": {"on": "apply", "times": 1}}},
    },
}


def commands_sent(fleet: SimulatedFleet, host: str) -> list[dict[str, Any]]:
    return fleet.requests(host, "Command")


def test_a_lost_poll_is_retried_once_and_nothing_else_is(sim: Any) -> None:
    fleet = sim(POLLING)
    run = fleet.play("""
- hosts: all
  gather_facts: false
  tasks:
    - name: enforce
      mailops.iis_smtp.virtual_server:
        timeout: 30
      ignore_errors: true
""")
    state = fleet.stop()
    results = {h: run.result(h, "enforce") for h in POLLING["hosts"]}
    assert "Traceback" not in run.stdout + run.stderr

    # Retried once on a fresh shell, and the retry answered: the host converged by itself.
    once = results["cut_once"]
    assert once["status"] == "ok", once
    assert once["result"]["compliant"] is True and once["result"]["operations"] == []
    sent = commands_sent(fleet, "cut_once")
    assert len(sent) == 3, "observe, the lost poll, its one retry"
    assert sent[2]["shell_id"] != sent[1]["shell_id"], "the retry reconnects"
    assert state["hosts"]["cut_once"]["applies"] == 2
    assert state["hosts"]["cut_once"]["faults_fired"]["cut"] == 1

    # Lost twice, or every time: one retry, then a named failure.
    for host in ("cut_twice", "cut_always"):
        res = results[host]
        assert res["status"] == "unreachable" and res["result"]["reason"] == "connection_failed", res
        assert "(connection cut mid-response)" in res["result"]["msg"]
        assert len(commands_sent(fleet, host)) == 3, host
        assert state["hosts"][host]["faults_fired"]["cut"] == 2

    # Not a connection problem: reported at once, never repeated.
    for host, reason in (("garbage_once", "agent_output_invalid"), ("wsman_once", "winrm_fault")):
        res = results[host]
        assert res["status"] == "failed" and res["result"]["reason"] == reason, res
        assert len(commands_sent(fleet, host)) == 2, host

    for host in POLLING["hosts"]:
        assert operations(state, host) == [], "polling never sends a control operation"
