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

from tests.simulator.emulator import build_call, decode_line, read_agent
from tests.simulator.model import Fleet, Host, ScenarioError

AGENT = read_agent()
VIAS = ["method", "server_command"]


class SteppedClock:
    """Time that moves only when told to (or when the host sleeps)."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


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


def apply(host: Host, steps: list[dict[str, Any]], timeout: int = 0, poll_ms: int = 10) -> dict[str, Any]:
    document = call(host, {"protocol": 1, "action": "apply", "steps": steps, "settle_timeout_s": timeout, "poll_ms": poll_ms})
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
    refused = apply(host, [instance(1, "stop")])["steps"][0]
    assert refused["ok"] is False
    assert refused["error"]["hresult"] == "0x80070425"


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
    document = apply(host, [instance(3, "start", ["method"]), instance(4, "start", ["server_command"])])
    first, second = document["steps"]
    assert first["ok"] is False
    assert first["error"]["message"] == "binding conflict"
    assert first["error"]["hresult"] == "0x80070034"
    assert second["error"]["hresult"] == "0x8007274C"
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
    document = apply(host, [service("start_service")])
    assert document["steps"][0] == {
        "op": "start_service",
        "id": None,
        "command": None,
        "ok": True,
        "attempts": [{"via": "service", "ok": True, "error": None}],
        "error": None,
    }
    assert smtpsvc(document["observation"])["state"] == "Running"
    assert document["observation"]["services"]["IISADMIN"]["state"] == "Running"
    assert states(document["observation"]) == {1: 1, 2: 4, 3: 4}
    clock.advance(1)
    assert states(observe(host)) == {1: 2, 2: 4, 3: 4}


def test_starting_an_instance_while_the_service_is_stopped_restarts_the_service() -> None:
    clock = SteppedClock()
    host = host_of(
        {"service": {"state": "stopped"}, "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "stopped"}, {"id": 3, "state": "stopped"}]}, clock
    )
    document = apply(host, [instance(2, "start")])
    assert document["steps"][0]["ok"] is True
    assert smtpsvc(document["observation"])["state"] == "Running"
    clock.advance(1)
    observation = observe(host)
    assert states(observation) == {1: 2, 2: 2, 3: 4}
    assert [item["auto_start"] for item in observation["instances"]] == [True, True, False]
    effects = host.dump()["operations"][0]["effects"]
    assert "SMTPSVC Stopped -> Running" in effects


def test_stopping_an_instance_while_the_service_is_stopped_keeps_it_down_on_restart() -> None:
    clock = SteppedClock()
    host = host_of({"service": {"state": "stopped"}, "instances": [{"id": 1, "state": "started"}]}, clock)
    document = apply(host, [instance(1, "stop"), service("start_service")])
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
    )
    oks = [step["ok"] for step in document["steps"]]
    assert oks == [False, False, True, True]
    for failed in document["steps"][:2]:
        assert failed["error"]["hresult"] == "0x80070422"
        assert failed["error"]["message"].startswith("The service cannot be started, either because it is disabled")
    assert smtpsvc(document["observation"]) == {"installed": True, "state": "Running", "start_mode": "Auto", "delayed_auto_start": False, "error": None}


def test_paused_service_shows_started_instances_paused_until_continued() -> None:
    host = host_of({"service": {"state": "paused"}, "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "stopped"}]})
    observation = observe(host)
    assert smtpsvc(observation)["state"] == "Paused"
    assert states(observation) == {1: 6, 2: 4}
    refused = apply(host, [instance(2, "start")])["steps"][0]
    assert refused["error"]["hresult"] == "0x80070425"
    document = apply(host, [service("continue_service")])
    assert smtpsvc(document["observation"])["state"] == "Running"
    assert states(document["observation"]) == {1: 2, 2: 4}


def test_continue_service_on_a_stopped_service_fails() -> None:
    step = apply(host_of({"service": {"state": "stopped"}}), [service("continue_service")])["steps"][0]
    assert step["error"]["hresult"] == "0x80070426"


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
    assert document["steps"][2]["error"]["hresult"] == "0x80070005"
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
    host = host_of({"control": control, "instances": [{"id": 1, "state": "stopped", "transition_s": 0}]})
    document = apply(host, [instance(1, "start", via)])
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
    apply(host, [service("set_start_mode", start_mode="delayed-auto"), service("start_service"), instance(1, "start", ["server_command"])])
    dump = host.dump()
    assert dump["observes"] == 2
    assert dump["applies"] == 1
    ops = dump["operations"]
    assert [(op["op"], op["target"], op["command"], op["via"], op["ok"]) for op in ops] == [
        ("set_start_mode", "SMTPSVC", "delayed-auto", "service", True),
        ("start_service", "SMTPSVC", None, "service", True),
        ("instance", "SMTPSVC/1", "start", "server_command", True),
    ]
    assert all(op["time"] == 1_700_000_100.0 and op["error"] is None for op in ops)


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
    apply(host, [service("start_service")])
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
