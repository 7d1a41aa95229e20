"""The role, the two playbooks and the fleet report, run for real against the simulator."""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import (
    BIN_DIR,
    REPO_ROOT,
    PlaybookRun,
    SimulatedFleet,
    ansible_env,
    operations,
    operations_since,
    over_connections,
)

COMPLIANCE = REPO_ROOT / "playbooks" / "compliance.yml"
REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"
ALL_AT_ONCE = {"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100}


def run_with_report(fleet: SimulatedFleet, playbook: str | Path, name: str, *, check: bool = False,
                    extra_vars: dict[str, Any] | None = None) -> tuple[PlaybookRun, dict[str, Any]]:
    out = report_dir(fleet, name)
    run = fleet.play(playbook, check=check, extra_vars=extra_vars,
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)})
    assert (out / "report.json").exists(), run.stdout + run.stderr
    return run, json.loads((out / "report.json").read_text())


def report_dir(fleet: SimulatedFleet, name: str) -> Path:
    return fleet.workdir / f"report-{name}"


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["status"] for h in report["hosts"]}


MIXED: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "good01": {"instances": [{"id": 1, "state": "started"}]},
        "drift01": {
            "service": {"state": "running", "start_mode": "manual"},
            "instances": [{"id": 1, "state": "stopped"}, {"id": 2, "comment": "App relay", "state": "paused"}],
        },
        "svcdown01": {"service": {"state": "stopped", "start_mode": "manual"},
                      "instances": [{"id": 1, "state": "started"}]},
        # Instance 2 is meant to stay stopped (host_vars exception below).
        "exception01": {"instances": [{"id": 1, "state": "stopped"}, {"id": 2, "comment": "Standby", "state": "stopped"}]},
        "broken01": {"instances": [{"id": 1, "state": "stopped", "start_error": "binding conflict"}]},
        "down01": {"unreachable": True},
    },
}
EXCEPTIONS = {"exception01": {"iis_smtp_instance_states": {"Standby": "stopped"}}}


@over_connections()
def test_audit_remediate_audit(sim: Any) -> None:
    fleet = sim(MIXED)
    # Passwords (WS-Management) and the private key (ssh, gone with the run) must stay out of every report.
    secrets = [v["ansible_password"] for v in fleet.hosts().values() if "ansible_password" in v]
    secrets += [Path(v["ansible_ssh_private_key_file"]).read_text().splitlines()[1]
                for v in fleet.hosts().values() if "ansible_ssh_private_key_file" in v]
    compliance = fleet.site_playbook(COMPLIANCE, EXCEPTIONS)
    remediate = fleet.site_playbook(REMEDIATE, EXCEPTIONS)

    report = run_with_report(fleet, compliance, "audit", extra_vars=ALL_AT_ONCE)[1]
    assert statuses(report) == {
        "good01": "compliant", "drift01": "non_compliant", "svcdown01": "non_compliant",
        "exception01": "non_compliant", "broken01": "non_compliant", "down01": "unreachable",
    }
    drift = next(h for h in report["hosts"] if h["host"] == "drift01")
    assert {f["rule"] for f in drift["findings"]} >= {"smtp_instance_stopped", "smtp_instance_paused"}
    assert drift["changes_predicted"] is True and any("App relay" in c for c in drift["changes"])
    exception = next(h for h in report["hosts"] if h["host"] == "exception01")
    assert [(i["id"], i["desired"], i["status"]) for i in exception["instances"]] == [
        (1, "started", "non_compliant"), (2, "stopped", "compliant")]
    down = next(h for h in report["hosts"] if h["host"] == "down01")
    assert down["reason_code"] == "connection_failed" and "127.0.0.1" in str(down["reason"]), down
    after_audit = time.time()

    fixed, report = run_with_report(fleet, remediate, "remediate", extra_vars=ALL_AT_ONCE)
    assert fixed.rc != 0, "a failed and an unreachable host fail the run"
    assert statuses(report) == {
        "good01": "compliant", "drift01": "remediated", "svcdown01": "remediated",
        "exception01": "remediated", "broken01": "failed", "down01": "unreachable",
    }
    broken = next(h for h in report["hosts"] if h["host"] == "broken01")
    assert broken["reason_code"] == "instance_start_failed" and "binding conflict" in broken["reason"]
    junit = ET.fromstring((report_dir(fleet, "remediate") / "report.junit.xml").read_text())
    failing = {(c.get("classname"), c.get("name")) for c in junit.iter("testcase") if c.find("failure") is not None}
    assert failing == {("broken01", "instance 1 ([SMTP Virtual Server #1])"), ("down01", "host")}
    after_remediation = time.time()

    report = run_with_report(fleet, compliance, "audit-again", extra_vars=ALL_AT_ONCE)[1]
    assert statuses(report) == {
        "good01": "compliant", "drift01": "compliant", "svcdown01": "compliant",
        "exception01": "compliant", "broken01": "non_compliant", "down01": "unreachable",
    }
    report = run_with_report(fleet, remediate, "remediate-again", extra_vars=ALL_AT_ONCE)[1]
    assert statuses(report)["drift01"] == "compliant"

    state = fleet.stop()
    for host in ("good01", "drift01", "svcdown01", "exception01", "broken01"):
        assert not [op for op in operations(state, host) if op["time"] < after_audit], f"the audit changed {host}"
    # Compliant hosts get nothing, ever; remediated hosts nothing after their remediation.
    assert operations(state, "good01") == []
    for host in ("drift01", "svcdown01", "exception01"):
        assert operations_since(state, host, after_remediation) == [], host
    assert [i["state"] for i in state["hosts"]["exception01"]["instances"]] == ["started", "stopped"]
    # The start mode is left as it is unless asked for.
    assert state["hosts"]["drift01"]["service"]["start_mode"] == "Manual"
    assert {(op["op"], op["target"], op["command"]) for op in operations(state, "drift01")} == {
        ("instance", "SMTPSVC/1", "start"), ("instance", "SMTPSVC/2", "continue")}

    for path in fleet.workdir.glob("report-*/report.*"):
        text = path.read_text()
        assert not any(s in text for s in secrets), f"a password leaked into {path}"


GATE: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2022", "transition_s": 0.05},
    "hosts": {
        "good01": {"instances": [{"id": 1, "state": "started"}]},
        "drift01": {"instances": [{"id": 1, "state": "paused"}]},
    },
}


def test_drift_gate_fails_check_mode_only_while_drifted(sim: Any) -> None:
    fleet = sim(GATE)
    gate = {"iis_smtp_fail_on_drift": True}
    plain, report = run_with_report(fleet, COMPLIANCE, "plain")
    assert plain.rc == 0 and statuses(report) == {"good01": "compliant", "drift01": "non_compliant"}

    gated, report = run_with_report(fleet, REMEDIATE, "gated", check=True, extra_vars=gate)
    assert gated.rc != 0, "ansible-playbook --check with the gate must exit non-zero on drift"
    assert statuses(report) == {"good01": "compliant", "drift01": "non_compliant"}
    assert [r["status"] for r in gated.for_host("drift01") if r["action"] == "mailops.iis_smtp.virtual_server"] == ["failed"]

    fixed, report = run_with_report(fleet, REMEDIATE, "fix", extra_vars={"iis_smtp_service_start_mode": "delayed"})
    assert fixed.rc == 0 and statuses(report) == {"good01": "remediated", "drift01": "remediated"}

    clean, report = run_with_report(fleet, COMPLIANCE, "clean",
                                    extra_vars={**gate, "iis_smtp_service_start_mode": "delayed"})
    assert clean.rc == 0 and statuses(report) == {"good01": "compliant", "drift01": "compliant"}
    state = fleet.stop()
    assert all(state["hosts"][h]["service"]["delayed_auto_start"] for h in ("good01", "drift01"))


def test_hosts_the_play_never_reached_are_reported(sim: Any) -> None:
    scenario: dict[str, Any] = {
        "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
        "hosts": {
            "a01": {"instances": [{"id": 1, "state": "stopped", "start_error": "binding conflict"}]},
            **{f"b0{i}": {"service": {"state": "running", "start_mode": "manual"},
                          "instances": [{"id": 1, "state": "stopped"}]} for i in range(1, 4)},
        },
    }
    fleet = sim(scenario)
    run, report = run_with_report(fleet, REMEDIATE, "serial",
                                  extra_vars={"iis_smtp_serial": 1, "iis_smtp_max_fail_percentage": 0})
    assert run.rc != 0
    assert [h["host"] for h in report["hosts"]] == ["a01", "b01", "b02", "b03"]
    assert report["hosts"][0]["status"] == "failed" and report["hosts"][0]["reason_code"] == "instance_start_failed"
    for host in report["hosts"][1:]:
        assert (host["status"], host["reason_code"]) == ("failed", "not_run"), host
        assert host["reason"].startswith("not run:")
    state = fleet.stop()
    assert all(operations(state, h) == [] for h in ("b01", "b02", "b03"))


def test_playbook_by_fqcn_target_variable_and_default_report_dir(sim: Any) -> None:
    fleet = sim({"group": "relays", "hosts": {"r01": {"instances": [{"id": 1, "state": "started"}]}}})
    # A play of the same playbook that does not use the collection stays out of the report.
    by_name = (
        "- name: Unrelated step\n  hosts: localhost\n  gather_facts: false\n"
        "  tasks: [{name: Say hello, ansible.builtin.debug: {msg: hello}}]\n"
        "- ansible.builtin.import_playbook: mailops.iis_smtp.compliance\n"
    )
    default = fleet.play(by_name)
    # The playbook ran (the unrelated play did its step) and still left r01 alone.
    assert default.rc == 0, default.stdout + default.stderr
    assert default.status("localhost", "Say hello") == "ok"
    assert default.for_host("r01") == [], "without iis_smtp_target the playbook targets smtp_servers only"
    assert "r01" not in default.stdout
    run = fleet.play(by_name, extra_vars={"iis_smtp_target": "relays"},
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS})
    report_file = fleet.workdir / "iis_smtp_report" / "report.json"
    assert run.rc == 0 and report_file.exists(), run.stdout + run.stderr
    assert statuses(json.loads(report_file.read_text())) == {"r01": "compliant"}
    table = run.stdout[run.stdout.index("IIS SMTP FLEET REPORT"):].splitlines()
    assert table[1].split()[:2] == ["HOST", "STATUS"] and table[2].split()[:3] == ["r01", "compliant", "1/1"]


ROLE_TASKS = ["mailops.iis_smtp.virtual_servers : Validating arguments against arg spec 'main' - Keep the IIS SMTP "
              "virtual servers of a host in their desired state.",
              "mailops.iis_smtp.virtual_servers : Bring the SMTP virtual servers to their desired state"]
START_MODES: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        # Automatic (Delayed Start), chosen on purpose: the default leaves it so.
        "delayed01": {"service": {"state": "running", "start_mode": "delayed"},
                      "instances": [{"id": 1, "state": "stopped"}]},
        "manual01": {"instances": [{"id": 1, "state": "started"}]},
        "disabled01": {"instances": [{"id": 1, "state": "stopped"}, {"id": 2, "state": "started"}]},
        "refused01": {"instances": [{"id": 1, "state": "stopped"}]},
    },
}
START_MODE_VARS = {
    "manual01": {"iis_smtp_service_start_mode": "manual"},
    "disabled01": {"iis_smtp_service_start_mode": "disabled", "iis_smtp_state": "stopped"},
    "refused01": {"iis_smtp_service_start_mode": "disabled"},
}


def test_the_start_mode_is_left_alone_unless_asked_and_every_mode_is_taken(sim: Any) -> None:
    fleet = sim(START_MODES)
    run, report = run_with_report(fleet, fleet.site_playbook(REMEDIATE, START_MODE_VARS), "modes",
                                  extra_vars=ALL_AT_ONCE)
    state = fleet.stop()
    assert run.rc == 2, run.stdout[-3000:]
    assert statuses(report) == {"delayed01": "remediated", "manual01": "remediated", "disabled01": "remediated",
                                "refused01": "failed"}
    delayed = state["hosts"]["delayed01"]["service"]
    assert (delayed["start_mode"], delayed["delayed_auto_start"]) == ("Auto", True)
    assert [op["op"] for op in operations(state, "delayed01")] == ["instance"]
    assert state["hosts"]["manual01"]["service"]["start_mode"] == "Manual"
    assert state["hosts"]["disabled01"]["service"]["start_mode"] == "Disabled"
    assert [i["state"] for i in state["hosts"]["disabled01"]["instances"]] == ["stopped", "stopped"]
    refused = next(h for h in report["hosts"] if h["host"] == "refused01")
    assert refused["reason_code"] == "invalid_argument" and "contradicts service_start_mode: disabled" in \
        refused["reason"]
    assert state["hosts"]["refused01"]["observes"] == 0, "refused before anything was sent"


CHECKED: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2022", "transition_s": 0.05},
    "hosts": {
        "good01": {"instances": [{"id": 1, "state": "started"}]},
        "drift01": {"service": {"state": "stopped", "start_mode": "manual"},
                    "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "paused"}]},
    },
}


def test_the_role_knows_check_mode_by_itself(sim: Any) -> None:
    fleet = sim(CHECKED)
    shapes = {
        "play keyword": "- hosts: all\n  gather_facts: false\n  check_mode: true\n"
                        "  roles: [mailops.iis_smtp.virtual_servers]\n",
        "role keyword": "- hosts: all\n  gather_facts: false\n"
                        "  roles: [{role: mailops.iis_smtp.virtual_servers, check_mode: true}]\n",
        "--check": "- hosts: all\n  gather_facts: false\n  roles: [mailops.iis_smtp.virtual_servers]\n",
    }
    for name, playbook in shapes.items():
        run, report = run_with_report(fleet, playbook, name.strip("-").replace(" ", "-"), check=name == "--check")
        assert run.rc == 0, (name, run.stdout[-3000:])
        assert statuses(report) == {"good01": "compliant", "drift01": "non_compliant"}, name
        drift = next(h for h in report["hosts"] if h["host"] == "drift01")
        assert drift["changes_predicted"] and {f["rule"] for f in drift["findings"]} == {
            "smtp_service_not_running"}, (name, drift)
        # One task does the audit: the argument check Ansible adds, then the action, nothing else.
        assert [r["task"] for r in run.for_host("drift01")] == ROLE_TASKS, name
        assert all(r["status"] != "failed" for r in run.results), name
    gated, report = run_with_report(fleet, shapes["play keyword"], "gated",
                                    extra_vars={"iis_smtp_fail_on_drift": True})
    assert gated.rc == 2 and statuses(report) == {"good01": "compliant", "drift01": "non_compliant"}
    state = fleet.stop()
    assert operations(state, "drift01") == [], "an audit changes nothing"
    # A compliant host costs one agent call per run.
    assert state["hosts"]["good01"]["commands"] == len(shapes) + 1


DESIRED: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "standby01": {"instances": [{"id": 1, "state": "started"}, {"id": 2, "comment": "Standby",
                                                                    "state": "stopped"}]},
        "paused01": {"instances": [{"id": 1, "state": "paused"}]},
        "subset01": {"instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "stopped"}]},
    },
}
DESIRED_VARS = {
    "standby01": {"iis_smtp_instance_states": {"Standby": "stopped"}},
    "paused01": {"iis_smtp_state": "paused"},
    "subset01": {"iis_smtp_instances": [1]},
}
READ_AS_THE_ROLE = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Read against the role's desired state
      mailops.iis_smtp.virtual_server_info:
        state: "{{ iis_smtp_state | default('started') }}"
        instances: "{{ iis_smtp_instances | default(omit) }}"
        instance_states: "{{ iis_smtp_instance_states | default(omit) }}"
- hosts: all
  gather_facts: false
  roles: [mailops.iis_smtp.virtual_servers]
"""


def test_an_instance_kept_stopped_on_purpose_is_no_finding_anywhere(sim: Any) -> None:
    fleet = sim(DESIRED)
    (fleet.workdir / "host_vars").mkdir()
    for host, data in DESIRED_VARS.items():
        (fleet.workdir / "host_vars" / f"{host}.yml").write_text(json.dumps(data))
    run, report = run_with_report(fleet, READ_AS_THE_ROLE, "desired", check=True)
    assert run.rc == 0, run.stdout[-3000:]
    for host in DESIRED["hosts"]:
        read = run.result(host, "Read against the role's desired state")["result"]
        assert read["compliant"] is True and read["findings"] == [], (host, read)
        audit = run.result(host, ROLE_TASKS[1])["result"]
        assert audit["compliant"] is True and audit["findings"] == [] and audit["changed"] is False, (host, audit)
    assert statuses(report) == {h: "compliant" for h in DESIRED["hosts"]}
    assert all(h["findings"] == [] for h in report["hosts"])
    standby = next(h for h in report["hosts"] if h["host"] == "standby01")
    assert [(i["id"], i["desired"], i["status"]) for i in standby["instances"]] == [
        (1, "started", "compliant"), (2, "stopped", "compliant")]
    assert operations(fleet.stop(), "standby01") == []


def test_a_misspelt_or_retired_role_variable_is_refused_before_anything(sim: Any) -> None:
    fleet = sim({"defaults": {"transition_s": 0.05, "instances": [{"id": 1, "state": "stopped"}]},
                 "hosts": {"typo01": {}, "retired01": {}, "seconds01": {}, "fine01": {}}})
    host_vars = {"typo01": {"iis_smtp_instance_state": {"1": "stopped"}},
                 "retired01": {"iis_smtp_audit": True},
                 "seconds01": {"iis_smtp_timeout": True}}
    run, report = run_with_report(fleet, fleet.site_playbook(REMEDIATE, host_vars), "typo", extra_vars=ALL_AT_ONCE)
    state = fleet.stop()
    assert run.rc == 2
    hosts = {h["host"]: h for h in report["hosts"]}
    assert {h: (r["status"], r["reason_code"]) for h, r in hosts.items()} == {
        "typo01": ("failed", "invalid_argument"), "retired01": ("failed", "invalid_argument"),
        "seconds01": ("failed", "invalid_argument"), "fine01": ("remediated", None)}
    assert "iis_smtp_instance_state is not a variable of the role mailops.iis_smtp.virtual_servers; did you mean " \
           "iis_smtp_instance_states?" in hosts["typo01"]["reason"]
    assert "iis_smtp_audit is no longer a variable" in hosts["retired01"]["reason"]
    assert "timeout: True is not a number of seconds" in hosts["seconds01"]["reason"]
    assert [state["hosts"][h]["observes"] for h in ("typo01", "retired01", "seconds01")] == [0, 0, 0]
    assert [i["state"] for i in state["hosts"]["typo01"]["instances"]] == ["stopped"]


def test_role_variables_may_be_templates_and_an_undefined_one_fails_the_host_alone(sim: Any) -> None:
    # The role's task passes no arguments: the action templates the role's variables itself.
    fleet = sim({"defaults": {"transition_s": 0.05,
                              "instances": [{"id": 1, "state": "stopped"}, {"id": 2, "state": "stopped"}]},
                 "hosts": {"templated01": {}, "undefined01": {}, "plain01": {}}})
    host_vars = {"templated01": {"wanted": [2], "iis_smtp_instances": "{{ wanted }}",
                                 "iis_smtp_timeout": "{{ 20 + 10 }}", "iis_smtp_service_start_mode": "{{ 'delayed' }}"},
                 "undefined01": {"iis_smtp_state": "{{ nowhere_defined }}"}}
    run, report = run_with_report(fleet, fleet.site_playbook(REMEDIATE, host_vars), "templated", extra_vars=ALL_AT_ONCE)
    state = fleet.stop()
    assert run.rc == 2
    hosts = {h["host"]: h for h in report["hosts"]}
    assert {h: (r["status"], r["reason_code"]) for h, r in hosts.items()} == {
        "templated01": ("remediated", None), "undefined01": ("failed", "invalid_argument"),
        "plain01": ("remediated", None)}
    assert "Invalid role variables" in hosts["undefined01"]["reason"]
    assert "nowhere_defined" in hosts["undefined01"]["reason"]
    assert state["hosts"]["undefined01"]["observes"] == 0
    # iis_smtp_instances: [2] from the template: instance 1 left alone; the start mode set as templated.
    assert [i["state"] for i in state["hosts"]["templated01"]["instances"]] == ["stopped", "started"]
    service = state["hosts"]["templated01"]["service"]
    assert (service["start_mode"], service["delayed_auto_start"]) == ("Auto", True)
    assert [i["state"] for i in state["hosts"]["plain01"]["instances"]] == ["started", "started"]


def test_role_metadata_agrees_with_the_collection(tmp_path: Path) -> None:
    meta = yaml.safe_load((REPO_ROOT / "roles" / "virtual_servers" / "meta" / "main.yml").read_text())
    runtime = yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == f">={meta['galaxy_info']['min_ansible_version']}.0"
    # ansible-doc reads the role as users' tools do.
    info = subprocess.run([str(BIN_DIR / "ansible-doc"), "-t", "role", "mailops.iis_smtp.virtual_servers", "--json"],
                          capture_output=True, text=True, check=True, env=ansible_env(tmp_path))
    options = json.loads(info.stdout)["mailops.iis_smtp.virtual_servers"]["entry_points"]["main"]["options"]
    assert set(options) == set(yaml.safe_load((REPO_ROOT / "roles/virtual_servers/defaults/main.yml").read_text()))
    assert options["iis_smtp_service_start_mode"]["default"] == "ignore"
