"""The simulated Windows host: states, transitions, services, features, logs.

Every call goes through `Host.run_command` with the command the transport
really sends (the normalised repository agent, wrapped, UTF-16-LE base64), so
these tests pin the model and the protocol together. Transitional states are
checked with a stepped clock (the clock is the only thing replaced); a few
tests use real time with 50 ms transitions to prove the polling works.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.simulator.conftest import SteppedClock
from tests.simulator.emulator import build_call, decode_line, read_agent
from tests.simulator.model import Fleet, Host, ScenarioError

AGENT = read_agent()
VIAS = ["method", "server_command"]


def host_of(data: dict[str, Any], clock: SteppedClock | None = None, name: str = "relay01") -> Host:
    scenario = {"hosts": {name: data}}
    return Fleet.from_dict(scenario, clock=clock).hosts[name]


def call(host: Host, request: dict[str, Any]) -> dict[str, Any]:
    command, arguments, stdin = build_call(AGENT, request)
    outcome = host.run_command(command, arguments, lambda: stdin)
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stderr == b""
    return decode_line(outcome.stdout)


def observe(host: Host) -> dict[str, Any]:
    document = call(host, {"protocol": 1, "action": "observe"})
    assert document["ok"] is True
    observation: dict[str, Any] = document["observation"]
    return observation


def apply(
    host: Host, steps: list[dict[str, Any]], timeout: int = 0, poll_ms: int = 10, watch: dict[str, list[Any]] | None = None
) -> dict[str, Any]:
    request: dict[str, Any] = {"protocol": 1, "action": "apply", "steps": steps, "settle_timeout_s": timeout, "poll_ms": poll_ms}
    if watch is not None:
        request["watch"] = watch
    document = call(host, request)
    assert document["ok"] is True, document["error"]
    return document


def instance(ident: int, command: str, via: list[str] | None = None) -> dict[str, Any]:
    return {"op": "instance", "id": ident, "command": command, "via": via or VIAS}


def service(op: str, **extra: str) -> dict[str, Any]:
    return {"op": op, "service": "SMTPSVC", **extra}


def states(observation: dict[str, Any]) -> dict[int, int | None]:
    return {item["id"]: item["server_state"] for item in observation["instances"]}


def smtpsvc(observation: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = observation["services"]["SMTPSVC"]
    return result


# --------------------------------------------------------------------- OS


@pytest.mark.parametrize(
    ("given", "caption", "version", "build"),
    [
        ("Windows Server 2012 R2", "Microsoft Windows Server 2012 R2 Standard", "6.3.9600", 9600),
        ("Windows Server 2016", "Microsoft Windows Server 2016 Standard", "10.0.14393", 14393),
        ("2019", "Microsoft Windows Server 2019 Standard", "10.0.17763", 17763),
        ("windows server 2022 datacenter", "Microsoft Windows Server 2022 Datacenter", "10.0.20348", 20348),
        ("Windows Server 2025", "Microsoft Windows Server 2025 Standard", "10.0.26100", 26100),
    ],
)
def test_os_is_reported_as_win32_operatingsystem_does(given: str, caption: str, version: str, build: int) -> None:
    observation = observe(host_of({"os": given}, name="relay-a1"))
    assert observation["os"] == {"caption": caption, "version": version, "build": build, "product_type": 3, "error": None}
    assert observation["computer_name"] == "RELAY-A1"
    assert observation["ps_version"].startswith("5.1.")


def test_a_default_host_is_compliant() -> None:
    observation = observe(host_of({}))
    assert smtpsvc(observation) == {"installed": True, "state": "Running", "start_mode": "Auto", "delayed_auto_start": False, "error": None}
    assert observation["services"]["IISADMIN"]["state"] == "Running"
    assert observation["metabase"] == {"ok": True, "error": None}
    assert observation["is_admin"] is True
    assert observation["instances"] == [{"id": 1, "server_comment": "", "server_state": 2, "bindings": [":25:"], "auto_start": True, "error": None}]


def test_instances_are_sorted_by_id_and_keep_comment_and_bindings() -> None:
    host = host_of(
        {
            "instances": [
                {"id": 3, "comment": "Relais für Scanner", "bindings": ["10.0.0.5:25:", ":587:"]},
                {"id": 1, "comment": "Default SMTP Virtual Server", "state": "stopped"},
            ]
        }
    )
    found = observe(host)["instances"]
    assert [item["id"] for item in found] == [1, 3]
    assert found[1]["server_comment"] == "Relais für Scanner"
    assert found[1]["bindings"] == ["10.0.0.5:25:", ":587:"]
    assert found[0]["auto_start"] is False


# ------------------------------------------------------- instance transitions


@pytest.mark.parametrize(
    ("initial", "command", "transitional", "final", "auto_start"),
    [
        ("stopped", "start", 1, 2, True),
        ("started", "stop", 3, 4, False),
        ("started", "pause", 5, 6, True),
        ("paused", "continue", 7, 2, False),
    ],
)
def test_each_command_passes_through_its_transitional_state(initial: str, command: str, transitional: int, final: int, auto_start: bool) -> None:
    clock = SteppedClock()
    host = host_of({"instances": [{"id": 1, "state": initial, "transition_s": 2}]}, clock)
    document = apply(host, [instance(1, command)])
    assert document["steps"][0]["ok"] is True
    assert document["settled"] is False
    assert states(document["observation"]) == {1: transitional}
    clock.advance(1.9)
    assert states(observe(host)) == {1: transitional}
    clock.advance(0.2)
    after = observe(host)
    assert states(after) == {1: final}
    assert after["instances"][0]["auto_start"] is auto_start


@pytest.mark.parametrize(("initial", "final"), [("starting", 2), ("stopping", 4), ("pausing", 6), ("continuing", 2)])
def test_transitional_scenario_states_settle_after_transition_s(initial: str, final: int) -> None:
    clock = SteppedClock()
    host = host_of({"transition_s": 1, "instances": [{"id": 1, "state": initial}]}, clock)
    assert states(observe(host)) == {1: {"starting": 1, "stopping": 3, "pausing": 5, "continuing": 7}[initial]}
    clock.advance(1)
    assert states(observe(host)) == {1: final}


def test_stuck_transition_never_completes_and_apply_reports_unsettled() -> None:
    clock = SteppedClock()
    host = host_of({"instances": [{"id": 1, "state": "stopped", "stuck": True, "transition_s": 0.1}]}, clock)
    document = apply(host, [instance(1, "start")], timeout=3, poll_ms=500)
    assert document["settled"] is False
    assert states(document["observation"]) == {1: 1}
    clock.advance(3600)
    assert states(observe(host)) == {1: 1}
    refused = apply(host, [instance(1, "stop")], timeout=3)["steps"][0]
    assert refused["ok"] is False
    assert [(attempt["error"]["hresult"], attempt["error"]["type"]) for attempt in refused["attempts"]] == [
        ("0x80070425", "System.Runtime.InteropServices.COMException"),
        (None, "no_effect"),
    ]


def test_apply_polls_in_real_time_until_settled() -> None:
    host = host_of({"instances": [{"id": 1, "state": "stopped", "transition_s": 0.05}, {"id": 2, "state": "started", "transition_s": 0.05}]})
    document = apply(host, [instance(1, "start"), instance(2, "pause")], timeout=30, poll_ms=10)
    assert document["settled"] is True
    assert states(document["observation"]) == {1: 2, 2: 6}


def test_apply_without_steps_waits_out_a_transitional_state() -> None:
    host = host_of({"instances": [{"id": 1, "state": "starting", "transition_s": 0.05}]})
    document = apply(host, [], timeout=30, poll_ms=10)
    assert document["settled"] is True
    assert states(document["observation"]) == {1: 2}
    assert document["steps"] == []


def test_start_error_keeps_the_instance_stopped() -> None:
    host = host_of(
        {
            "instances": [
                {"id": 3, "state": "stopped", "start_error": "binding conflict"},
                {"id": 4, "state": "stopped", "start_error": "other", "start_hresult": "0x8007274c"},
            ]
        }
    )
    document = apply(host, [instance(3, "start", ["method"]), instance(4, "start", ["server_command"])], timeout=3)
    first, second = document["steps"]
    assert first["ok"] is False
    assert first["error"]["message"] == "binding conflict"
    assert first["error"]["hresult"] == "0x80070034"
    # ServerCommand reports nothing back: the write succeeds and ServerState stays where it was.
    assert second["ok"] is False
    assert second["error"] == {"message": "ServerCommand 1 was written; ServerState stayed 4", "hresult": None, "type": "no_effect"}
    assert states(document["observation"]) == {3: 4, 4: 4}
    assert [item["auto_start"] for item in document["observation"]["instances"]] == [False, False]


@pytest.mark.parametrize(
    ("initial", "command", "hresult"),
    [
        ("stopped", "pause", "0x80070426"),
        ("stopped", "continue", "0x80070426"),
        ("paused", "start", "0x80070425"),
        ("started", "continue", None),
        ("started", "start", None),
        ("stopped", "stop", None),
        ("paused", "pause", None),
    ],
)
def test_commands_that_do_not_fit_the_state(initial: str, command: str, hresult: str | None) -> None:
    host = host_of({"instances": [{"id": 1, "state": initial}]})
    before = states(observe(host))
    step = apply(host, [instance(1, command, ["method"])])["steps"][0]
    assert step["ok"] is (hresult is None)
    assert (step["error"] or {}).get("hresult") == hresult
    assert states(observe(host)) == before
    assert host.dump()["operations"][0]["effects"] == []


def test_unknown_instance_id_fails_with_path_not_found() -> None:
    step = apply(host_of({}), [instance(9, "start")])["steps"][0]
    assert [attempt["error"]["hresult"] for attempt in step["attempts"]] == ["0x80070003", "0x80070003"]


# ----------------------------------------------------------- service states


def test_stopped_service_reads_empty_server_state() -> None:
    host = host_of({"service": {"state": "stopped", "start_mode": "manual"}, "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "stopped"}]})
    observation = observe(host)
    assert smtpsvc(observation)["state"] == "Stopped"
    assert smtpsvc(observation)["start_mode"] == "Manual"
    assert states(observation) == {1: None, 2: None}
    assert [item["auto_start"] for item in observation["instances"]] == [True, False]


def test_start_service_brings_up_auto_start_instances_only() -> None:
    clock = SteppedClock()
    host = host_of(
        {
            "service": {"state": "stopped"},
            "iisadmin": {"state": "stopped", "start_mode": "manual"},
            "instances": [
                {"id": 1, "state": "started"},
                {"id": 2, "state": "stopped"},
                {"id": 3, "auto_start": True, "state": "stopped", "start_error": "busy"},
            ],
        },
        clock,
    )
    document = apply(host, [service("start_service")], timeout=5, poll_ms=100, watch={"services": ["SMTPSVC"], "instances": []})
    assert document["steps"][0] == {
        "op": "start_service",
        "id": None,
        "command": None,
        "ok": True,
        "attempts": [{"via": "service", "ok": True, "error": None}],
        "error": None,
        "state": "Running",
    }
    assert smtpsvc(document["observation"])["state"] == "Running"
    assert document["observation"]["services"]["IISADMIN"]["state"] == "Running"
    assert states(document["observation"]) == {1: 1, 2: 4, 3: 4}
    assert host.dump()["operations"][0]["effects"] == ["IISADMIN Stopped -> Start Pending", "SMTPSVC Stopped -> Start Pending"]
    clock.advance(1)
    assert states(observe(host)) == {1: 2, 2: 4, 3: 4}


def test_starting_an_instance_while_the_service_is_stopped_restarts_the_service() -> None:
    clock = SteppedClock()
    host = host_of(
        {"service": {"state": "stopped"}, "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "stopped"}, {"id": 3, "state": "stopped"}]}, clock
    )
    document = apply(host, [instance(2, "start", ["method"])])
    assert document["steps"][0]["ok"] is True
    assert smtpsvc(document["observation"])["state"] == "Start Pending"
    clock.advance(1)
    observation = observe(host)
    assert states(observation) == {1: 2, 2: 2, 3: 4}
    assert [item["auto_start"] for item in observation["instances"]] == [True, True, False]
    effects = host.dump()["operations"][0]["effects"]
    assert "SMTPSVC Stopped -> Start Pending" in effects


def test_stopping_an_instance_while_the_service_is_stopped_keeps_it_down_on_restart() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped"}, "instances": [{"id": 1, "state": "started"}]}, clock)
    document = apply(host, [instance(1, "stop", ["method"]), service("start_service")])
    assert [step["ok"] for step in document["steps"]] == [True, True]
    clock.advance(1)
    observation = observe(host)
    assert states(observation) == {1: 4}
    assert observation["instances"][0]["auto_start"] is False


def test_pause_and_continue_need_a_running_service() -> None:
    host = host_of({"service": {"state": "stopped"}})
    step = apply(host, [instance(1, "pause", ["method"])])["steps"][0]
    assert step["error"]["hresult"] == "0x80070426"


def test_disabled_service_refuses_to_start_until_its_start_mode_changes() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped", "start_mode": "disabled"}}, clock)
    document = apply(
        host,
        [
            service("start_service"),
            instance(1, "start", ["method"]),
            service("set_start_mode", start_mode="auto"),
            service("start_service"),
        ],
        timeout=5,
    )
    oks = [step["ok"] for step in document["steps"]]
    assert oks == [False, False, True, True]
    for failed in document["steps"][:2]:
        assert failed["error"]["hresult"] == "0x80070422"
        assert failed["error"]["message"].startswith("The service cannot be started, either because it is disabled")
    assert smtpsvc(document["observation"]) == {"installed": True, "state": "Running", "start_mode": "Auto", "delayed_auto_start": False, "error": None}


def test_paused_service_shows_started_instances_paused_until_continued() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "paused"}, "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "stopped"}]}, clock)
    observation = observe(host)
    assert smtpsvc(observation)["state"] == "Paused"
    assert states(observation) == {1: 6, 2: 4}
    refused = apply(host, [instance(2, "start", ["method"])])["steps"][0]
    assert refused["error"]["hresult"] == "0x80070425"
    document = apply(host, [service("continue_service")], timeout=5)
    assert document["steps"][0]["state"] == "Running"
    assert smtpsvc(document["observation"])["state"] == "Running"
    assert states(document["observation"]) == {1: 2, 2: 4}


@pytest.mark.parametrize(
    ("start_from", "mode", "start_mode", "delayed"),
    [
        ("manual", "auto", "Auto", False),
        ("manual", "delayed-auto", "Auto", True),
        ("delayed", "auto", "Auto", False),
        ("auto", "demand", "Manual", False),
        ("delayed", "demand", "Manual", True),
        ("auto", "disabled", "Disabled", False),
    ],
)
def test_set_start_mode_as_sc_exe_does(start_from: str, mode: str, start_mode: str, delayed: bool) -> None:
    host = host_of({"service": {"start_mode": start_from}})
    document = apply(host, [service("set_start_mode", start_mode=mode)])
    assert document["steps"][0]["ok"] is True
    assert smtpsvc(document["observation"])["start_mode"] == start_mode
    assert smtpsvc(document["observation"])["delayed_auto_start"] is delayed
    assert smtpsvc(document["observation"])["state"] == "Running"


def test_disabled_iisadmin_makes_smtpsvc_fail_its_dependency() -> None:
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "disabled"}})
    step = apply(host, [service("start_service")])["steps"][0]
    assert step["error"]["hresult"] == "0x8007042C"


# ------------------------------------------- Windows: services and their pending states
#
# These call the Windows model directly, as the agent's Windows calls would
# reach it; each pins one behaviour of docs/windows-facts.md and fails if the
# simulator answers more kindly than Windows does.


def stopped_host(clock: SteppedClock, **service: Any) -> Host:
    return host_of({"service": {"state": "stopped", **service}, "instances": [{"id": 1, "state": "started"}]}, clock)


def test_model_service_start_returns_while_the_service_is_start_pending() -> None:
    clock = SteppedClock()
    windows = stopped_host(clock, pending_s=2).windows
    assert windows.service_start("SMTPSVC", []) is None
    assert windows.win32_service("SMTPSVC")["state"] == "Start Pending"
    assert windows.controller_status("SMTPSVC") == "StartPending"
    clock.advance(1.9)
    assert windows.win32_service("SMTPSVC")["state"] == "Start Pending"
    clock.advance(0.2)
    assert windows.win32_service("SMTPSVC")["state"] == "Running"


def test_model_pending_lasts_a_short_while_by_default() -> None:
    clock = SteppedClock()
    windows = stopped_host(clock).windows
    windows.service_start("SMTPSVC", [])
    clock.advance(0.1)
    assert windows.win32_service("SMTPSVC")["state"] == "Start Pending"
    clock.advance(0.2)
    assert windows.win32_service("SMTPSVC")["state"] == "Running"


def test_model_a_stuck_service_stays_start_pending() -> None:
    clock = SteppedClock()
    windows = stopped_host(clock, stuck=True).windows
    windows.service_start("SMTPSVC", [])
    clock.advance(3600)
    assert windows.win32_service("SMTPSVC")["state"] == "Start Pending"


@pytest.mark.parametrize("advance", [0.0, 5.0], ids=["start-pending", "running"])
def test_model_start_on_a_service_that_is_not_stopped_fails_with_1056(advance: float) -> None:
    clock = SteppedClock()
    windows = stopped_host(clock).windows
    windows.service_start("SMTPSVC", [])
    clock.advance(advance)
    assert windows.service_start("SMTPSVC", []) == {
        "message": "An instance of the service is already running.",
        "hresult": "0x80070420",
        "type": "System.ComponentModel.Win32Exception",
    }


def test_model_start_on_a_paused_service_fails_with_1056() -> None:
    windows = host_of({"service": {"state": "paused"}}).windows
    assert (windows.service_start("SMTPSVC", []) or {})["hresult"] == "0x80070420"


def test_model_continue_on_a_pending_service_fails_with_1061() -> None:
    clock = SteppedClock()
    windows = host_of({"service": {"state": "paused"}}, clock).windows
    assert windows.service_continue("SMTPSVC", []) is None
    assert windows.win32_service("SMTPSVC")["state"] == "Continue Pending"
    failure = windows.service_continue("SMTPSVC", []) or {}
    assert (failure["hresult"], failure["message"]) == ("0x80070425", "The service cannot accept control messages at this time.")
    stopped = stopped_host(clock).windows
    stopped.service_start("SMTPSVC", [])
    assert (stopped.service_continue("SMTPSVC", []) or {})["hresult"] == "0x80070425"


def test_model_continue_on_a_stopped_service_fails_with_1062() -> None:
    windows = stopped_host(SteppedClock()).windows
    assert (windows.service_continue("SMTPSVC", []) or {})["hresult"] == "0x80070426"


def test_model_instances_take_no_control_while_smtpsvc_is_start_pending() -> None:
    clock = SteppedClock()
    windows = stopped_host(clock).windows
    windows.service_start("SMTPSVC", [])
    assert (windows.adsi_method(1, "stop", []) or {})["hresult"] == "0x80070425"


def test_model_smtpsvc_start_waits_for_iisadmin_which_starts_first() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped", "pending_s": 1}, "iisadmin": {"state": "stopped", "start_mode": "manual", "pending_s": 2}}, clock)
    windows = host.windows
    assert windows.service_start("SMTPSVC", []) is None
    assert (windows.win32_service("IISADMIN")["state"], windows.win32_service("SMTPSVC")["state"]) == ("Start Pending", "Start Pending")
    clock.advance(2)
    assert (windows.win32_service("IISADMIN")["state"], windows.win32_service("SMTPSVC")["state"]) == ("Running", "Start Pending")
    clock.advance(1)
    assert windows.win32_service("SMTPSVC")["state"] == "Running"


def test_model_smtpsvc_stays_start_pending_behind_a_stuck_iisadmin() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "manual", "stuck": True}}, clock)
    host.windows.service_start("SMTPSVC", [])
    clock.advance(3600)
    assert host.windows.win32_service("SMTPSVC")["state"] == "Start Pending"


def test_model_smtpsvc_start_with_iisadmin_disabled_fails_with_1068() -> None:
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "disabled"}})
    failure = host.windows.service_start("SMTPSVC", []) or {}
    assert (failure["hresult"], failure["message"]) == ("0x8007042C", "The dependency service or group failed to start.")
    assert host.windows.win32_service("SMTPSVC")["state"] == "Stopped"


# -------------------------------------------------- Windows: the metabase and IISADMIN


def test_model_metabase_bind_with_iisadmin_disabled_fails_with_0x80070422() -> None:
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "disabled"}})
    failure = host.windows.metabase_bind() or {}
    assert failure["hresult"] == "0x80070422"
    assert host.windows.win32_service("IISADMIN")["state"] == "Stopped"


def test_model_metabase_bind_demand_starts_a_stopped_iisadmin() -> None:
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "manual"}})
    assert host.windows.metabase_bind() is None
    assert host.windows.win32_service("IISADMIN")["state"] == "Running"
    assert [(event["event"], event["service"]) for event in host.dump()["events"]] == [("demand_start", "IISADMIN")]


def test_model_smtpsvc_cannot_run_without_iisadmin_in_a_scenario() -> None:
    with pytest.raises(ScenarioError, match=r"SMTPSVC cannot be Running while IISADMIN, which it depends on, is Stopped"):
        host_of({"iisadmin": {"state": "stopped"}})


# ------------------------------------------------ Windows: ServerCommand and ServerState


def test_model_server_command_written_while_smtpsvc_is_stopped_does_nothing() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped"}, "instances": [{"id": 1, "state": "stopped"}]}, clock)
    windows = host.windows
    effects: list[str] = []
    assert windows.write_server_command(1, "start", effects) is None
    clock.advance(5)
    assert windows.win32_service("SMTPSVC")["state"] == "Stopped"
    windows.service_start("SMTPSVC", [])
    clock.advance(5)
    # Volatile and never read: the service comes back without the instance.
    assert (windows.win32_service("SMTPSVC")["state"], windows.server_state(1)) == ("Running", 4)
    assert "nobody reads it" in effects[0]


def test_model_server_command_takes_effect_only_once_smtpsvc_reads_it() -> None:
    clock = SteppedClock()
    windows = host_of({"instances": [{"id": 1, "state": "stopped", "transition_s": 1}]}, clock).windows
    assert windows.write_server_command(1, "start", []) is None
    assert windows.server_state(1) == 4
    clock.advance(0.1)
    assert windows.server_state(1) == 1


def test_model_server_state_is_empty_once_smtpsvc_stopped_and_stale_while_it_starts() -> None:
    clock = SteppedClock()
    windows = stopped_host(clock, pending_s=1).windows
    assert windows.server_state(1) is None
    windows.service_start("SMTPSVC", [])
    assert windows.server_state(1) == 4
    clock.advance(1)
    assert windows.server_state(1) == 1


# ------------------------------------------------------------ the agent on top of it


def test_agent_start_service_waits_until_smtpsvc_runs_and_says_so() -> None:
    clock = SteppedClock()
    host = stopped_host(clock, pending_s=2)
    document = apply(host, [service("start_service")], timeout=10, poll_ms=100)
    step = document["steps"][0]
    assert (step["ok"], step["state"]) == (True, "Running")
    assert clock.now >= 102.0
    assert smtpsvc(document["observation"])["state"] == "Running"


def test_agent_start_service_wait_is_bounded_by_the_settle_deadline() -> None:
    clock = SteppedClock()
    host = stopped_host(clock, stuck=True)
    document = apply(host, [service("start_service")], timeout=3, poll_ms=500)
    step = document["steps"][0]
    assert (step["ok"], step["state"]) == (True, "StartPending")
    assert document["settled"] is False
    assert 103.0 <= clock.now < 104.0


def test_agent_sends_no_start_to_a_service_that_is_not_stopped() -> None:
    host = host_of({})
    step = apply(host, [service("start_service")])["steps"][0]
    assert step == {
        "op": "start_service",
        "id": None,
        "command": None,
        "ok": False,
        "attempts": [{"via": "service", "ok": False, "error": step["error"]}],
        "error": {"message": "SMTPSVC is Running, not Stopped: the control was not sent", "hresult": None, "type": "wrong_state"},
        "state": "Running",
    }
    assert host.dump()["operations"] == []


def test_agent_sends_no_continue_to_a_service_that_is_not_paused() -> None:
    host = stopped_host(SteppedClock())
    step = apply(host, [service("continue_service")])["steps"][0]
    assert (step["error"]["type"], step["state"]) == ("wrong_state", "Stopped")
    assert host.dump()["operations"] == []


def test_agent_can_start_iisadmin_alone() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "manual"}}, clock)
    document = apply(host, [{"op": "start_service", "service": "IISADMIN"}], timeout=5)
    assert document["steps"][0]["state"] == "Running"
    assert [smtpsvc(document["observation"])["state"], document["observation"]["services"]["IISADMIN"]["state"]] == ["Stopped", "Running"]
    assert host.dump()["operations"][0]["target"] == "IISADMIN"


def test_agent_server_command_is_ok_only_when_server_state_moves() -> None:
    clock = SteppedClock()
    host = host_of({"control": "server_command", "instances": [{"id": 1, "state": "stopped"}, {"id": 2, "state": "stopped", "start_error": "in use"}]}, clock)
    document = apply(host, [instance(1, "start", ["server_command"]), instance(2, "start", ["server_command"])], timeout=10)
    moved, ignored = document["steps"]
    assert moved["ok"] is True
    assert ignored["ok"] is False
    assert ignored["error"] == {"message": "ServerCommand 1 was written; ServerState stayed 4", "hresult": None, "type": "no_effect"}
    # Watched briefly (about 2 s), not for the whole settle timeout.
    assert clock.now < 103.0


def test_agent_writes_no_server_command_while_smtpsvc_is_not_running() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped"}, "instances": [{"id": 1, "state": "stopped"}]}, clock)
    step = apply(host, [instance(1, "start", ["server_command"])], timeout=3)["steps"][0]
    assert step["error"] == {
        "message": "SMTPSVC is Stopped: only a running SMTPSVC reads ServerCommand; it was not written",
        "hresult": None,
        "type": "wrong_state",
    }
    assert host.dump()["operations"] == []
    assert smtpsvc(observe(host))["state"] == "Stopped"


def test_agent_observe_does_not_bind_the_metabase_while_iisadmin_is_stopped() -> None:
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "manual"}})
    observation = observe(host)
    assert observation["metabase"] == {
        "ok": False,
        "error": {
            "message": "IISADMIN state: Stopped; the metabase was not read, because binding it would start IISADMIN",
            "hresult": None,
            "type": "iisadmin_not_running",
        },
    }
    assert observation["instances"] == []
    assert observation["services"]["IISADMIN"]["state"] == "Stopped"
    dump = host.dump()
    assert dump["events"] == [] and dump["iisadmin"]["state"] == "Stopped"


def test_agent_observe_names_a_disabled_iisadmin_without_binding() -> None:
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "stopped", "start_mode": "disabled"}})
    observation = observe(host)
    assert observation["metabase"]["error"]["type"] == "iisadmin_not_running"
    assert observation["services"]["IISADMIN"]["start_mode"] == "Disabled"


def test_agent_reports_server_state_null_while_smtpsvc_is_not_running() -> None:
    clock = SteppedClock()
    host = stopped_host(clock, pending_s=1)
    host.windows.service_start("SMTPSVC", [])
    # Windows still reads the 4 SMTPSVC last wrote; the agent does not pass it on.
    assert host.windows.server_state(1) == 4
    observation = observe(host)
    assert (smtpsvc(observation)["state"], states(observation)) == ("Start Pending", {1: None})
    clock.advance(1)
    assert states(observe(host)) == {1: 1}


def test_agent_reports_an_unreadable_instance_and_keeps_the_others() -> None:
    host = host_of({"instances": [{"id": 1}, {"id": 2, "read_error": "The RPC server is unavailable."}, {"id": 3, "state": "stopped"}]})
    observation = observe(host)
    assert observation["metabase"]["ok"] is True
    assert states(observation) == {1: 2, 2: None, 3: 4}
    unreadable = observation["instances"][1]
    assert unreadable["error"] == {"message": "The RPC server is unavailable.", "hresult": "0x80004005", "type": "System.Runtime.InteropServices.COMException"}
    assert (unreadable["server_comment"], unreadable["auto_start"]) == (None, None)


def test_agent_settle_waits_only_for_the_services_it_watches() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped"}, "iisadmin": {"state": "start pending", "stuck": True}}, clock)
    watched = apply(host, [], timeout=30, poll_ms=500, watch={"services": ["SMTPSVC"], "instances": []})
    assert watched["settled"] is True and clock.now == 100.0
    everything = apply(host, [], timeout=30, poll_ms=500)
    assert everything["settled"] is False and clock.now >= 130.0


def test_agent_settle_waits_only_for_the_instances_it_watches() -> None:
    clock = SteppedClock()
    host = host_of({"instances": [{"id": 1, "state": "stopped", "transition_s": 1}, {"id": 2, "state": "starting", "stuck": True}]}, clock)
    document = apply(host, [instance(1, "start", ["method"])], timeout=30, poll_ms=100, watch={"services": ["SMTPSVC"], "instances": [1]})
    assert document["settled"] is True
    assert states(document["observation"]) == {1: 2, 2: 1}
    assert clock.now < 102.0


def test_agent_watch_on_a_started_service_does_not_wait_for_its_start() -> None:
    clock = SteppedClock()
    host = stopped_host(clock, stuck=True)
    document = apply(host, [service("start_service")], timeout=2, poll_ms=500, watch={"services": [], "instances": []})
    # The step itself still waits (bounded); the settle loop then has nothing to wait for.
    assert document["steps"][0]["state"] == "StartPending"
    assert document["settled"] is True


# ------------------------------------------------------- features and access


@pytest.mark.parametrize(
    "data",
    [
        {"features": {"smtp_server": False}},
        {"os": "Windows Server 2025", "features": {"smtp_server": True}},
    ],
)
def test_missing_smtp_server_feature(data: dict[str, Any]) -> None:
    host = host_of({**data, "instances": [{"id": 1}]})
    observation = observe(host)
    assert smtpsvc(observation) == {"installed": False, "state": None, "start_mode": None, "delayed_auto_start": None, "error": None}
    assert observation["metabase"]["ok"] is False
    assert observation["metabase"]["error"]["hresult"] == "0x80070003"
    assert observation["metabase"]["error"]["message"] == "The system cannot find the path specified."
    assert observation["instances"] == []
    document = apply(host, [service("start_service"), instance(1, "start", ["method"]), service("set_start_mode", start_mode="auto")])
    assert [step["ok"] for step in document["steps"]] == [False, False, False]
    assert document["steps"][1]["error"]["hresult"] == "0x80070003"
    assert host.dump()["instances"] == []


def test_missing_metabase_compatibility() -> None:
    host = host_of({"features": {"metabase": False}})
    observation = observe(host)
    assert observation["metabase"]["error"]["hresult"] == "0x80005000"
    assert observation["instances"] == []
    assert smtpsvc(observation)["installed"] is True
    step = apply(host, [instance(1, "stop")])["steps"][0]
    assert step["error"]["hresult"] == "0x80005000"


def test_access_denied_reads_services_but_not_the_metabase_and_changes_nothing() -> None:
    host = host_of({"access": "denied", "service": {"state": "stopped", "start_mode": "manual"}})
    observation = observe(host)
    assert observation["is_admin"] is False
    assert smtpsvc(observation)["state"] == "Stopped"
    assert observation["metabase"]["error"]["hresult"] == "0x80070005"
    document = apply(host, [service("set_start_mode", start_mode="auto"), service("start_service"), instance(1, "start")])
    assert [step["ok"] for step in document["steps"]] == [False, False, False]
    assert "Access is denied." in document["steps"][0]["error"]["message"]
    assert document["steps"][1]["error"]["hresult"] == "0x80070005"
    assert document["steps"][2]["attempts"][0]["error"]["hresult"] == "0x80070005"
    assert smtpsvc(document["observation"])["start_mode"] == "Manual"
    assert smtpsvc(document["observation"])["state"] == "Stopped"


@pytest.mark.parametrize(
    ("control", "via", "attempts", "ok"),
    [
        ("both", ["method", "server_command"], [("method", None)], True),
        ("both", ["server_command"], [("server_command", None)], True),
        ("method", ["server_command", "method"], [("server_command", "0x80070057"), ("method", None)], True),
        ("server_command", ["method", "server_command"], [("method", "0x80020006"), ("server_command", None)], True),
        ("server_command", ["method"], [("method", "0x80020006")], False),
    ],
)
def test_control_modes_decide_which_way_works(control: str, via: list[str], attempts: list[tuple[str, str | None]], ok: bool) -> None:
    host = host_of({"control": control, "instances": [{"id": 1, "state": "stopped", "transition_s": 0}]}, SteppedClock())
    document = apply(host, [instance(1, "start", via)], timeout=5)
    step = document["steps"][0]
    assert step["ok"] is ok
    assert [(a["via"], (a["error"] or {}).get("hresult")) for a in step["attempts"]] == attempts
    assert states(document["observation"]) == {1: 2 if ok else 4}
    logged = [(op["via"], op["ok"]) for op in host.dump()["operations"]]
    assert logged == [(via_name, hresult is None) for via_name, hresult in attempts]


# ----------------------------------------------------------------- the log


def test_every_control_operation_is_logged_and_observes_are_counted_apart() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped", "start_mode": "manual"}, "instances": [{"id": 1, "state": "stopped"}]}, clock)
    observe(host)
    observe(host)
    apply(host, [service("set_start_mode", start_mode="delayed-auto"), service("start_service"), instance(1, "start", ["server_command"])], timeout=5)
    dump = host.dump()
    assert dump["observes"] == 2
    assert dump["applies"] == 1
    ops = dump["operations"]
    assert [(op["op"], op["target"], op["command"], op["via"], op["ok"]) for op in ops] == [
        ("set_start_mode", "SMTPSVC", "delayed-auto", "service", True),
        ("start_service", "SMTPSVC", None, "service", True),
        ("instance", "SMTPSVC/1", "start", "server_command", True),
    ]
    assert all(op["error"] is None for op in ops)
    # The start waited for SMTPSVC to run before the ServerCommand was written.
    assert ops[0]["time"] == ops[1]["time"] == 1_700_000_100.0 < ops[2]["time"]


def test_a_compliant_host_gets_no_operations_from_observes() -> None:
    host = host_of({})
    for _attempt in range(3):
        observe(host)
    apply(host, [], timeout=0)
    dump = host.dump()
    assert dump["operations"] == []
    assert (dump["observes"], dump["applies"]) == (3, 1)


def test_reboot_after_first_observe_changes_what_an_apply_meets() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"start_mode": "manual"}, "instances": [{"id": 1, "state": "started"}], "faults": {"reboot_after_observe": True}}, clock)
    first = observe(host)
    assert smtpsvc(first)["state"] == "Running"
    assert states(first) == {1: 2}
    second = observe(host)
    assert smtpsvc(second)["state"] == "Stopped"
    assert states(second) == {1: None}
    apply(host, [service("start_service")], timeout=5)
    clock.advance(1)
    third = observe(host)
    assert states(third) == {1: 2}
    dump = host.dump()
    assert [event["event"] for event in dump["events"]] == ["reboot"]
    assert dump["faults_fired"] == {"reboot_after_observe": 1}


def test_reboot_with_automatic_start_brings_back_auto_start_instances() -> None:
    clock = SteppedClock()
    host = host_of(
        {
            "service": {"start_mode": "delayed"},
            "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "paused"}],
            "faults": {"reboot_after_observe": {"times": 2}},
        },
        clock,
    )
    assert states(observe(host)) == {1: 2, 2: 6}
    assert states(observe(host)) == {1: 1, 2: 4}
    clock.advance(1)
    assert states(observe(host)) == {1: 2, 2: 4}
    assert len(host.dump()["events"]) == 2


# -------------------------------------------------------------------- dump


def test_dump_has_final_state_and_no_password() -> None:
    fleet = Fleet.from_dict(
        {
            "hosts": {
                "relay01": {"password": "S3cret-never-shown", "instances": [{"id": 1, "comment": "A", "state": "paused"}]},
                "relay02": {"service": {"state": "stopped"}},
            }
        }
    )
    dump = fleet.dump()
    assert list(dump["hosts"]) == ["relay01", "relay02"]
    first = dump["hosts"]["relay01"]
    assert first["instances"] == [{"id": 1, "comment": "A", "state": "paused", "state_code": 6, "auto_start": False, "bindings": [":25:"]}]
    assert first["service"]["state"] == "Running"
    assert first["iisadmin"]["installed"] is True
    assert dump["hosts"]["relay02"]["instances"][0]["state"] is None
    text = json.dumps(dump)
    for host in fleet.hosts.values():
        assert host.password not in text
        assert host.password not in repr(host)


def test_default_passwords_are_random_per_run() -> None:
    first = Fleet.from_dict({"hosts": {"a": {}, "b": {}}})
    second = Fleet.from_dict({"hosts": {"a": {}}})
    passwords = {first.hosts["a"].password, first.hosts["b"].password, second.hosts["a"].password}
    assert len(passwords) == 3
    assert all(len(password) >= 16 for password in passwords)


def test_concurrent_calls_on_one_host_are_all_served_and_counted() -> None:
    host = host_of({"instances": [{"id": 1, "state": "started", "transition_s": 0}]})
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for _round in range(5):
                if index % 2:
                    observe(host)
                else:
                    apply(host, [instance(1, "stop" if index % 4 else "start")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    dump = host.dump()
    assert (dump["observes"], dump["applies"], dump["commands"]) == (20, 20, 40)
    assert len(dump["operations"]) == 20


# ---------------------------------------------------------------- scenarios


def test_scenario_keys_reach_the_host() -> None:
    fleet = Fleet.from_dict(
        {
            "group": "relays",
            "defaults": {"auth": "ntlm", "scheme": "https", "username": "ops", "os": 2022},
            "hosts": {"relay01": {"port": 55985, "unreachable": True, "faults": {"http_401": True}}},
        }
    )
    host = fleet.hosts["relay01"]
    assert fleet.group == "relays"
    assert (host.auth, host.scheme, host.username, host.port, host.unreachable) == ("ntlm", "https", "ops", 55985, True)
    assert host.faults == {"http_401": True}
    assert observe(host)["os"]["build"] == 20348


def test_generate_builds_numbered_hosts_after_the_named_ones() -> None:
    fleet = Fleet.from_dict(
        {
            "defaults": {"service": {"start_mode": "manual"}},
            "hosts": {"edge": {}},
            "generate": [{"prefix": "relay", "count": 3, "template": {"service": {"state": "stopped"}}}],
        }
    )
    assert list(fleet.hosts) == ["edge", "relay001", "relay002", "relay003"]
    assert fleet.group == "smtp_servers"
    generated = observe(fleet.hosts["relay002"])
    assert smtpsvc(generated)["state"] == "Stopped"
    assert smtpsvc(generated)["start_mode"] == "Manual"
    assert generated["computer_name"] == "RELAY002"


def test_defaults_merge_mappings_key_by_key() -> None:
    fleet = Fleet.from_dict({"defaults": {"service": {"start_mode": "delayed"}}, "hosts": {"relay01": {"service": {"state": "stopped"}}}})
    observed = smtpsvc(observe(fleet.hosts["relay01"]))
    assert (observed["state"], observed["start_mode"], observed["delayed_auto_start"]) == ("Stopped", "Auto", True)


def test_load_reads_yaml_and_names_the_file_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "fleet.yml"
    good.write_text(
        "defaults: {os: 'Windows Server 2016'}\nhosts:\n  relay01:\n    instances:\n      - {id: 2, comment: App relay, state: paused, transition_s: 2}\n",
        encoding="utf-8",
    )
    host = Fleet.load(str(good)).hosts["relay01"]
    assert states(observe(host)) == {2: 6}
    bad = tmp_path / "bad.yml"
    bad.write_text("hosts:\n  relay01: {servce: {}}\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"bad\.yml: host 'relay01': unknown key 'servce'"):
        Fleet.load(str(bad))
    broken = tmp_path / "broken.yml"
    broken.write_text("hosts: [\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        Fleet.load(str(broken))
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        Fleet.load(str(tmp_path / "missing.yml"))


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ({"hosts": {"a": {}}, "extra": 1}, r"scenario: unknown key 'extra'"),
        ({"hosts": {"relay07": {"colour": "red"}}}, r"host 'relay07': unknown key 'colour'"),
        ({"defaults": {"bogus": 1}, "hosts": {"a": {}}}, r"defaults: unknown key 'bogus'"),
        ({"hosts": {"a": {"os": "Windows Server 2008"}}}, r"host 'a': os 'Windows Server 2008' is not one of"),
        ({"hosts": {"a": {"service": {"state": "asleep"}}}}, r"host 'a'\.service\.state: 'asleep' is not one of"),
        ({"hosts": {"a": {"service": {"start_mode": "boot"}}}}, r"host 'a'\.service\.start_mode"),
        ({"hosts": {"a": {"service": {"mode": "auto"}}}}, r"host 'a'\.service: unknown key 'mode'"),
        ({"hosts": {"a": {"service": {"pending_s": -1}}}}, r"host 'a'\.service\.pending_s: expected a number >= 0"),
        ({"hosts": {"a": {"iisadmin": {"stuck": "yes"}}}}, r"host 'a'\.iisadmin\.stuck: expected true or false"),
        (
            {"hosts": {"a": {"service": {"state": "start pending"}, "iisadmin": {"state": "stop pending"}}}},
            r"SMTPSVC cannot be Start Pending while IISADMIN, which it depends on, is Stop Pending",
        ),
        ({"hosts": {"a": {"instances": [{"id": 1, "read_error": ""}]}}}, r"instances\[0\]\.read_error: expected a non-empty"),
        ({"hosts": {"a": {"features": {"ftp": True}}}}, r"host 'a'\.features: unknown key 'ftp'"),
        ({"hosts": {"a": {"features": {"metabase": "no"}}}}, r"host 'a'\.features\.metabase: expected true or false"),
        ({"hosts": {"a": {"instances": [{"id": 1}, {"id": 1}]}}}, r"host 'a'\.instances: duplicate id"),
        ({"hosts": {"a": {"instances": [{"comment": "x"}]}}}, r"host 'a'\.instances\[0\]: missing key 'id'"),
        ({"hosts": {"a": {"instances": [{"id": 0}]}}}, r"instances\[0\]\.id: expected an integer >= 1"),
        ({"hosts": {"a": {"instances": [{"id": 1, "state": "running"}]}}}, r"instances\[0\]\.state: 'running'"),
        ({"hosts": {"a": {"instances": [{"id": 1, "colour": 1}]}}}, r"instances\[0\]: unknown key 'colour'"),
        ({"hosts": {"a": {"instances": [{"id": 1, "start_hresult": "34"}]}}}, r"start_hresult: expected 0x"),
        ({"hosts": {"a": {"instances": [{"id": 1, "transition_s": -1}]}}}, r"transition_s: expected a number"),
        ({"hosts": {"a": {"auth": "kerberos"}}}, r"host 'a'\.auth: 'kerberos' is not one of basic, ntlm"),
        ({"hosts": {"a": {"scheme": "ftp"}}}, r"host 'a'\.scheme"),
        ({"hosts": {"a": {"access": "maybe"}}}, r"host 'a'\.access"),
        ({"hosts": {"a": {"control": "wmi"}}}, r"host 'a'\.control: 'wmi' is not one of"),
        ({"hosts": {"a": {"port": 70000}}}, r"host 'a'\.port: 70000 is not a TCP port"),
        ({"hosts": {"a": {"port": 5000}, "b": {"port": 5000}}}, r"two hosts ask for the same port"),
        ({"hosts": {"a": {"password": ""}}}, r"host 'a'\.password: expected a non-empty one-line string"),
        ({"hosts": {"a": {"faults": {"boom": True}}}}, r"host 'a'\.faults: unknown key 'boom'"),
        ({"hosts": {"a": {"faults": {"delay": {}}}}}, r"faults\.delay: missing key 'seconds'"),
        ({"hosts": {"a": {"faults": {"delay": {"seconds": 1, "on": "always"}}}}}, r"faults\.delay\.on: 'always'"),
        ({"hosts": {"a": {"faults": {"cut": {"times": 0}}}}}, r"faults\.cut\.times: expected an integer >= 1"),
        ({"hosts": {"a": {"faults": {"agent_output": {"kind": "noise"}}}}}, r"agent_output\.kind: 'noise'"),
        ({"hosts": {"a": {"faults": {"wsman_fault": {"code": 5}}}}}, r"wsman_fault: unknown key 'code'"),
        (
            {"hosts": {"a": {"faults": {"service_start_error": {"message": "x", "on": "observe"}}}}},
            r"service_start_error\.on: a service is only started by an apply",
        ),
        ({"hosts": {"a": {"faults": {"reboot_after_observe": {"on": "apply"}}}}}, r"reboot_after_observe\.on"),
        ({"hosts": {"bad name": {}}}, r"hosts: 'bad name' is not a valid host name"),
        ({"hosts": {"relay001": {}}, "generate": [{"prefix": "relay", "count": 2}]}, r"host 'relay001': defined twice"),
        ({"generate": [{"prefix": "relay"}]}, r"generate\[0\]: missing key 'count'"),
        ({"generate": [{"prefix": "relay", "count": 2, "template": {"zone": 1}}]}, r"host 'relay001': unknown key"),
        ({"group": "smtp-servers", "hosts": {"a": {}}}, r"group: 'smtp-servers' is not a valid inventory group"),
        ({"hosts": {}}, r"scenario: no hosts"),
        ([], r"scenario: expected a mapping"),
    ],
)
def test_bad_scenarios_are_refused_precisely(scenario: Any, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        Fleet.from_dict(scenario)
