"""The two actions end to end: ansible-playbook -> every Windows connection -> simulated Windows hosts.

Each test starts one simulated fleet whose hosts cover several cases at once,
so a handful of playbook runs exercise every path a user meets; each runs
over every connection kind (``over_connections``: winrm NTLM/HTTP and
Basic/HTTPS, psrp HTTP and HTTPS, ssh).
"""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import instance_states, operations, operations_since, over_connections, play, result

DEFAULTS = {"transition_s": 0.1}

MIXED = {"instances": [
    {"id": 1, "state": "started"},
    {"id": 2, "comment": "App relay", "state": "paused"},
    {"id": 3, "comment": "Scanner relay", "state": "stopped", "auto_start": False, "bindings": [":2525:"]},
]}
SERVICE_STOPPED = {
    "service": {"state": "stopped", "start_mode": "manual"},
    "instances": [{"id": 1, "state": "stopped", "auto_start": True},
                  {"id": 2, "comment": "Devices", "state": "stopped", "auto_start": False}],
}
SERVICE_PAUSED = {"service": {"state": "paused"}, "instances": [{"id": 1, "state": "started"}]}
SERVICE_DISABLED = {"service": {"state": "stopped", "start_mode": "disabled"},
                    "instances": [{"id": 1, "state": "stopped"}]}
UNAVAILABLE = {
    "missing": {"features": {"smtp_server": False}},
    "win2025": {"os": "Windows Server 2025"},
    "nometabase": {"features": {"metabase": False}},
    "denied": {"access": "denied"},
}


@over_connections()
def test_info_on_mixed_and_unavailable_hosts(sim):
    fleet = sim({"defaults": DEFAULTS, "hosts": {"mixed": MIXED, "disabled": SERVICE_DISABLED, **UNAVAILABLE}})
    run = fleet.play(play("""
    - name: read
      mailops.iis_smtp.virtual_server_info:
      ignore_errors: true
    - name: read one
      mailops.iis_smtp.virtual_server_info:
        instances: [App relay]
      when: inventory_hostname == 'mixed'
"""))
    state = fleet.stop()

    mixed = result(run, "mixed", "read")
    assert run.status("mixed", "read") == "ok" and mixed["changed"] is False
    assert mixed["host"]["computer_name"] == "MIXED" and mixed["host"]["smtp_available"] is True
    assert mixed["service"] == {"name": "SMTPSVC", "installed": True, "state": "running", "start_mode": "auto"}
    assert [(v["id"], v["name"], v["state"], v["state_code"]) for v in mixed["virtual_servers"]] == [
        (1, "[SMTP Virtual Server #1]", "started", 2), (2, "App relay", "paused", 6),
        (3, "Scanner relay", "stopped", 4)]
    assert [(f["rule"], f["instance"]) for f in mixed["findings"]] == [
        ("smtp_instance_paused", 2), ("smtp_instance_stopped", 3)]
    assert mixed["compliant"] is False
    one = result(run, "mixed", "read one")
    assert [v["id"] for v in one["virtual_servers"]] == [2]

    disabled = result(run, "disabled", "read")
    # No ServerState can be read while SMTPSVC is stopped: the instance is
    # unknown, and the service's findings say why it cannot run.
    assert [f["rule"] for f in disabled["findings"]] == ["smtp_service_disabled", "smtp_service_not_running"]
    assert (disabled["virtual_servers"][0]["state"], disabled["virtual_servers"][0]["state_code"]) == ("unknown", None)

    for host, rule in [("missing", "smtp_feature_missing"), ("win2025", "smtp_removed_from_os"),
                       ("nometabase", "metabase_unavailable")]:
        res = result(run, host, "read")
        assert run.status(host, "read") == "ok", res
        assert res["virtual_servers"] == [] and res["compliant"] is False
        assert [f["rule"] for f in res["findings"]] == [rule]
    assert result(run, "win2025", "read")["host"]["os"]["build"] == 26100

    denied = result(run, "denied", "read")
    assert run.status("denied", "read") == "failed" and denied["reason"] == "access_denied"
    for host in state["hosts"]:
        assert operations(state, host) == []
    # The collection builds its command line itself: no shell-plugin deprecation on any ansible-core.
    assert "DEPRECATION" not in run.stdout + run.stderr, run.stderr[-2000:]


@over_connections()
def test_check_mode_predicts_and_changes_nothing(sim):
    fleet = sim({"defaults": DEFAULTS, "hosts": {"mixed": MIXED, "stopped": SERVICE_STOPPED,
                                                 "paused": SERVICE_PAUSED}})
    run = fleet.play(play("""
    - name: enforce
      mailops.iis_smtp.virtual_server:
        service_start_mode: auto
"""), check=True, diff=True)
    state = fleet.stop()

    for host in ("mixed", "stopped", "paused"):
        assert run.status(host, "enforce") == "changed"
        assert operations(state, host) == []
        res = result(run, host, "enforce")
        # An audit: compliant describes the host as found, the prediction is in changed and the diff.
        assert res["operations"] == [] and res["compliant"] is False
    assert instance_states(state, "mixed") == {1: "started", 2: "paused", 3: "stopped"}
    assert state["hosts"]["stopped"]["service"]["state"] == "Stopped"

    mixed = result(run, "mixed", "enforce")
    assert {v["id"]: v["actions"] for v in mixed["virtual_servers"]} == {1: [], 2: ["continue"], 3: ["start"]}
    assert mixed["diff"]["before"]["virtual_servers"] == {
        "1 [SMTP Virtual Server #1]": "started", "2 App relay": "paused", "3 Scanner relay": "stopped"}
    assert set(mixed["diff"]["after"]["virtual_servers"].values()) == {"started"}
    assert '-        "2 App relay": "paused"' in run.stdout
    assert '+        "2 App relay": "started"' in run.stdout

    stopped = result(run, "stopped", "enforce")
    assert stopped["service"]["after"] == {"state": "running", "start_mode": "auto"}
    assert {v["id"]: v["actions"] for v in stopped["virtual_servers"]} == {1: [], 2: ["start"]}


@over_connections()
def test_enforce_then_a_second_run_sends_nothing(sim):
    fleet = sim({"defaults": DEFAULTS, "hosts": {"mixed": MIXED, "stopped": SERVICE_STOPPED,
                                                 "paused": SERVICE_PAUSED}})
    task = play("""
    - name: enforce
      mailops.iis_smtp.virtual_server:
        service_start_mode: auto
        instance_states: "{{ {'Scanner relay': 'stopped'} if inventory_hostname == 'mixed' else {} }}"
""")
    first = fleet.play(task, diff=True)
    between = time.time()
    second = fleet.play(task)
    check = fleet.play(task, check=True)
    state = fleet.stop()

    for host in ("mixed", "stopped", "paused"):
        assert first.status(host, "enforce") == "changed", result(first, host, "enforce")
        assert result(first, host, "enforce")["compliant"] is True
        assert second.status(host, "enforce") == "ok"
        again = result(second, host, "enforce")
        assert again["changed"] is False and again["operations"] == []
        assert check.status(host, "enforce") == "ok"
        assert operations_since(state, host, between) == []

    assert instance_states(state, "mixed") == {1: "started", 2: "started", 3: "stopped"}
    mixed = result(first, "mixed", "enforce")
    assert {v["id"]: (v["desired"], v["after"]["state"]) for v in mixed["virtual_servers"]} == {
        1: ("started", "started"), 2: ("started", "started"), 3: ("stopped", "stopped")}
    assert list(mixed["operations"]) == [{"op": "instance", "ok": True, "id": 2, "command": "continue"}]

    stopped = result(first, "stopped", "enforce")
    assert [o["op"] for o in stopped["operations"]] == ["set_start_mode", "start_service", "instance"]
    assert stopped["service"]["after"] == {"state": "running", "start_mode": "auto"}
    assert state["hosts"]["stopped"]["service"]["state"] == "Running"
    assert instance_states(state, "stopped") == {1: "started", 2: "started"}

    paused = result(first, "paused", "enforce")
    assert [o["op"] for o in paused["operations"]] == ["continue_service"]
    assert instance_states(state, "paused") == {1: "started"}


@over_connections()
def test_failures_are_named_and_bad_input_changes_nothing(sim):
    fleet = sim({"defaults": DEFAULTS, "hosts": {
        "broken": {"instances": [{"id": 1, "state": "started"},
                                 {"id": 3, "comment": "Broken", "state": "stopped", "auto_start": False,
                                  "start_error": "The network address is in use."}]},
        "stuck": {"instances": [{"id": 2, "comment": "Stuck", "state": "stopped", "auto_start": False,
                                 "stuck": True}]},
        "disabled": SERVICE_DISABLED,
        "clean": {"instances": [{"id": 1, "state": "stopped", "auto_start": False}]},
        **UNAVAILABLE,
    }})
    run = fleet.play(play("""
    - name: enforce
      mailops.iis_smtp.virtual_server:
        timeout: 3
      ignore_errors: true
      when: inventory_hostname != 'clean'
    - name: bad state
      mailops.iis_smtp.virtual_server:
        state: running
      ignore_errors: true
    - name: bad id
      mailops.iis_smtp.virtual_server:
        instance_states: {0: started}
      ignore_errors: true
    - name: bad timeout
      mailops.iis_smtp.virtual_server:
        timeout: 0
      ignore_errors: true
    - name: unknown name
      mailops.iis_smtp.virtual_server:
        instances: [Nope]
      ignore_errors: true
""", hosts="clean:broken:stuck:disabled:missing:win2025:nometabase:denied") + """
- hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: not windows
      mailops.iis_smtp.virtual_server_info:
      ignore_errors: true
    - name: local powershell
      mailops.iis_smtp.virtual_server:
      vars:
        ansible_shell_type: powershell
      ignore_errors: true
- hosts: clean
  gather_facts: false
  tasks:
    - name: become
      mailops.iis_smtp.virtual_server:
      become: true
      become_method: ansible.builtin.runas
      become_user: SYSTEM
      ignore_errors: true
""")
    state = fleet.stop()

    broken = result(run, "broken", "enforce")
    assert run.status("broken", "enforce") == "failed"
    assert broken["reason"] == "instance_start_failed"
    assert broken["msg"].startswith("SMTP virtual server 3 (Broken) did not reach started within 3 s: "
                                    "last state stopped; Windows error 0x80070034")
    assert [o["ok"] for o in broken["operations"]] == [False]

    stuck = result(run, "stuck", "enforce")
    assert stuck["reason"] == "timeout"
    assert stuck["msg"] == "SMTP virtual server 2 (Stuck) did not reach started within 3 s: last state starting"

    disabled = result(run, "disabled", "enforce")
    assert disabled["reason"] == "service_disabled" and operations(state, "disabled") == []

    for host, reason in [("missing", "smtp_feature_missing"), ("win2025", "smtp_removed_from_os"),
                         ("nometabase", "metabase_unavailable"), ("denied", "access_denied")]:
        res = result(run, host, "enforce")
        assert run.status(host, "enforce") == "failed" and res["reason"] == reason, res
        assert operations(state, host) == []

    assert result(run, "clean", "bad state")["reason"] == "invalid_argument"
    assert "running" in result(run, "clean", "bad state")["msg"]
    assert result(run, "clean", "bad id")["reason"] == "invalid_instances"
    assert "ids start at 1" in result(run, "clean", "bad id")["msg"]
    assert result(run, "clean", "bad timeout")["reason"] == "invalid_argument"
    unknown = result(run, "clean", "unknown name")
    assert unknown["reason"] == "invalid_instances" and "'Nope'" in unknown["msg"]
    assert operations(state, "clean") == [] and instance_states(state, "clean") == {1: "stopped"}
    assert state["hosts"]["clean"]["observes"] == 1

    local = result(run, "localhost", "not windows")
    assert local["reason"] == "not_windows"
    # A powershell shell on the local connection would run PowerShell on the controller.
    local_powershell = result(run, "localhost", "local powershell")
    assert local_powershell["reason"] == "not_windows" and "local connection" in local_powershell["msg"]
    become = result(run, "clean", "become")
    assert become["reason"] == "become_unsupported" and "remove become" in become["msg"]
    assert state["hosts"]["clean"]["commands"] == 1


@over_connections()
def test_transport_failures_through_the_real_connection(sim, connection: dict[str, Any]):
    ssh = connection["connection"] == "ssh"
    fleet = sim({"defaults": DEFAULTS, "hosts": {
        "refused": {"unreachable": True},
        # Over ssh the account is refused as OpenSSH refuses it (host_vars below); over WS-Management, with 401.
        "badauth": {} if ssh else {"faults": {"http_401": True}},
        **({} if ssh else {"fault": {"faults": {"wsman_fault": True}}}),
        "garbage": {"faults": {"agent_output": {"kind": "garbage"}}},
        "truncated": {"faults": {"agent_output": {"kind": "truncated"}}},
        "nonzero": {"faults": {"agent_output": {"kind": "nonzero_exit"}}},
    }})
    playbook = fleet.workdir / "read.yml"
    playbook.write_text(play("""
    - name: read
      mailops.iis_smtp.virtual_server_info:
      ignore_errors: true
"""))
    run = fleet.play(fleet.site_playbook(playbook, {"badauth": {"ansible_user": "Guest"}} if ssh else {}))
    fleet.stop()
    expected = {"refused": "connection_failed", "badauth": "auth_failed",
                "garbage": "agent_output_invalid", "truncated": "agent_output_invalid",
                "nonzero": "agent_exit_nonzero", **({} if ssh else {"fault": "winrm_fault"})}
    got = {host: result(run, host, "read").get("reason") for host in expected}
    assert got == expected, {h: result(run, h, "read").get("msg") for h in expected}
    for host in expected:
        # Ansible's own word for a host it could not talk to: the recap and the exit code say so.
        want = "unreachable" if host in ("refused", "badauth") else "failed"
        assert run.status(host, "read") == want, host
        assert ssh or fleet.password(host) not in result(run, host, "read")["msg"]
    assert run.rc == 4
