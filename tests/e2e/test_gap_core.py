"""Core behaviours that the broader end-to-end tests do not pin, through the real path.

ansible-playbook -> winrm (pywinrm) -> the simulator, as everywhere in tests/e2e:
every field ``virtual_server_info`` promises, the desired states other than
started, the service brought up only when an instance needs it, a transitional
state waited out and decided again, and the second ADSI way of control.
"""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import instance_states, operations, operations_since, over_connections, play, result


def test_info_returns_every_promised_field(sim: Any) -> None:
    fleet = sim({"defaults": {"transition_s": 0.05}, "hosts": {"relay": {
        "os": "Windows Server 2016",
        "service": {"state": "running", "start_mode": "delayed"},
        "iisadmin": {"state": "running", "start_mode": "manual"},
        "instances": [
            {"id": 1, "comment": "", "state": "started", "bindings": ["10.0.0.5:25:", ":587:"]},
            {"id": 4, "comment": "Outbound", "state": "stopped", "auto_start": False, "bindings": [":2525:"]},
        ],
    }}})
    run = fleet.play(play("""
    - name: read
      mailops.iis_smtp.virtual_server_info:
"""))
    state = fleet.stop()

    res = result(run, "relay", "read")
    assert run.status("relay", "read") == "ok"
    assert res["service"] == {"name": "SMTPSVC", "installed": True, "state": "running", "start_mode": "delayed"}
    assert res["iisadmin"]["state"] == "running" and res["iisadmin"]["start_mode"] == "manual"
    assert res["host"]["os"]["build"] == 14393 and "2016" in res["host"]["os"]["caption"], res["host"]
    assert res["host"]["os"]["version"].startswith("10.0."), res["host"]
    servers = {v["id"]: v for v in res["virtual_servers"]}
    assert servers[1]["name"] == "[SMTP Virtual Server #1]" and servers[4]["name"] == "Outbound"
    assert servers[1]["bindings"] == ["10.0.0.5:25:", ":587:"] and servers[4]["bindings"] == [":2525:"]
    assert (servers[1]["auto_start"], servers[4]["auto_start"]) == (True, False)
    assert (servers[4]["state"], servers[4]["state_code"]) == ("stopped", 4)
    [finding] = res["findings"]
    assert (finding["rule"], finding["instance"], finding["severity"]) == ("smtp_instance_stopped", 4, "error")
    # One sentence a person can act on: which instance, what is wrong, what to do.
    assert "Outbound" in finding["message"] and "is stopped" in finding["message"], finding
    assert finding["message"].rstrip().endswith("Start it."), finding
    assert res["compliant"] is False
    assert operations(state, "relay") == []


@over_connections()
def test_stopped_and_paused_are_enforced_by_id_and_by_name(sim: Any) -> None:
    fleet = sim({"defaults": {"transition_s": 0.05}, "hosts": {"relay": {"instances": [
        {"id": 1, "state": "started"},
        {"id": 2, "comment": "Partner relay", "state": "started"},
        {"id": 3, "comment": "Spare", "state": "paused"},
    ]}}})
    task = play("""
    - name: pause one by name
      mailops.iis_smtp.virtual_server:
        instances: [Partner relay]
        state: paused
    - name: stop two by id
      mailops.iis_smtp.virtual_server:
        instances: [1, 3]
        state: stopped
""")
    first = fleet.play(task)
    between = time.time()
    second = fleet.play(task)
    state = fleet.stop()

    assert first.status("relay", "pause one by name") == "changed"
    assert first.status("relay", "stop two by id") == "changed"
    assert [(o["id"], o["command"]) for o in result(first, "relay", "pause one by name")["operations"]] == [
        (2, "pause")]
    assert sorted((o["id"], o["command"]) for o in result(first, "relay", "stop two by id")["operations"]) == [
        (1, "stop"), (3, "stop")]
    assert instance_states(state, "relay") == {1: "stopped", 2: "paused", 3: "stopped"}
    for name in ("pause one by name", "stop two by id"):
        assert second.status("relay", name) == "ok"
    assert operations_since(state, "relay", between) == []


def test_service_is_started_only_when_an_instance_needs_it(sim: Any) -> None:
    down = {"service": {"state": "stopped", "start_mode": "manual"},
            "instances": [{"id": 1, "state": "stopped", "auto_start": False},
                          {"id": 2, "comment": "Second", "state": "stopped", "auto_start": False}]}
    fleet = sim({"defaults": {"transition_s": 0.05}, "hosts": {"keep_down": down, "bring_up": down}})
    run = fleet.play(play("""
    - name: enforce
      mailops.iis_smtp.virtual_server:
        state: "{{ 'stopped' if inventory_hostname == 'keep_down' else 'started' }}"
        instances: [2]
"""))
    state = fleet.stop()

    assert run.status("keep_down", "enforce") == "ok"
    assert operations(state, "keep_down") == []
    assert state["hosts"]["keep_down"]["service"]["state"] == "Stopped"

    assert run.status("bring_up", "enforce") == "changed"
    assert [op["op"] for op in operations(state, "bring_up")][0] == "start_service"
    assert state["hosts"]["bring_up"]["service"]["state"] == "Running"
    # Only the targeted instance is brought up: instance 1 is not auto_start and was not asked for.
    assert instance_states(state, "bring_up") == {1: "stopped", 2: "started"}


def test_transitional_state_is_waited_out_then_decided_again(sim: Any) -> None:
    # The transitions begin when the simulator loads the scenario and outlast
    # ansible-playbook's start-up by a wide margin, so the first observe meets them.
    fleet = sim({"hosts": {
        # Stopping when first seen: wait until it is stopped, then start it.
        "stopping": {"instances": [{"id": 1, "state": "stopping", "transition_s": 8}]},
        # Starting when first seen: wait, and nothing more is needed.
        "starting": {"instances": [{"id": 1, "state": "starting", "transition_s": 8}]},
    }})
    run = fleet.play(play("""
    - name: enforce
      mailops.iis_smtp.virtual_server:
        timeout: 30
"""))
    state = fleet.stop()

    stopping = result(run, "stopping", "enforce")
    assert run.status("stopping", "enforce") == "changed", stopping
    [server] = stopping["virtual_servers"]
    assert server["before"]["state"] == "stopping" and server["after"]["state"] == "started", server
    assert [(op["command"], op["ok"]) for op in operations(state, "stopping")] == [("start", True)]
    assert instance_states(state, "stopping") == {1: "started"}

    starting = result(run, "starting", "enforce")
    assert run.status("starting", "enforce") == "ok", starting
    assert starting["virtual_servers"][0]["after"]["state"] == "started"
    assert operations(state, "starting") == []
    assert instance_states(state, "starting") == {1: "started"}
    assert state["hosts"]["starting"]["applies"] >= 1, "the wait is a real apply with no steps"


def test_instances_that_answer_only_one_adsi_way_are_still_controlled(sim: Any) -> None:
    drifted = {"instances": [{"id": 1, "state": "stopped"}, {"id": 2, "comment": "Relay", "state": "paused"}]}
    fleet = sim({"defaults": {"transition_s": 0.05}, "hosts": {
        "method_only": {**drifted, "control": "method"},
        "server_command_only": {**drifted, "control": "server_command"},
    }})
    run = fleet.play(play("""
    - name: enforce
      mailops.iis_smtp.virtual_server:
"""))
    state = fleet.stop()

    for host in ("method_only", "server_command_only"):
        assert run.status(host, "enforce") == "changed", result(run, host, "enforce")
        assert result(run, host, "enforce")["compliant"] is True
        assert instance_states(state, host) == {1: "started", 2: "started"}
        assert sorted(op["command"] for op in operations(state, host) if op["ok"]) == ["continue", "start"]
