"""Two controllers remediating one simulated host at once: the collection's engine on the model, no WinRM.

The engine's calls go through `Host.run_command` exactly as the transport
builds them, and their answers through the collection's own parsing, so the
race between two runs can be set up call by call: the second controller
observes, then the first one does all its work, then the second applies the
plan it made from what it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._engine import EnforceArgs, enforce
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._protocol import parse_output
from tests.simulator.conftest import SteppedClock
from tests.simulator.emulator import build_call, read_agent
from tests.simulator.model import Fleet, Host

AGENT = read_agent()
STOPPED_HOST = {
    "service": {"state": "stopped", "start_mode": "manual", "pending_s": 1},
    "instances": [{"id": 1, "state": "stopped", "auto_start": True}, {"id": 2, "state": "stopped", "auto_start": False}],
}


def channel(host: Host) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def call(request: dict[str, Any]) -> dict[str, Any]:
        command, arguments, stdin = build_call(AGENT, request)
        outcome = host.run_command(command, arguments, lambda: stdin)
        return parse_output(outcome.exit_code, outcome.stdout, outcome.stderr)

    return call


def test_the_controller_that_loses_the_race_to_start_smtpsvc_does_not_fail() -> None:
    clock = SteppedClock()
    host = Fleet.from_dict({"hosts": {"relay01": STOPPED_HOST}}, clock=clock).hosts["relay01"]
    first_result: dict[str, Any] = {}
    late = channel(host)

    def second(request: dict[str, Any]) -> dict[str, Any]:
        # The second controller has observed SMTPSVC stopped; before its
        # apply reaches the host, the first controller does all its work.
        if request["action"] == "apply" and not first_result:
            first_result.update(enforce(channel(host), clock, EnforceArgs()))
        return late(request)

    second_result = enforce(second, clock, EnforceArgs())

    assert "failed" not in first_result, first_result.get("msg")
    assert first_result["changed"] is True and first_result["compliant"] is True
    assert "failed" not in second_result, second_result.get("msg")
    assert second_result["compliant"] is True and second_result["changed"] is False
    refused = second_result["operations"][0]
    assert (refused["op"], refused["ok"]) == ("start_service", False)
    assert "SMTPSVC is Running, not Stopped" in refused["error"]
    dump = host.dump()
    assert [item["state"] for item in dump["instances"]] == ["started", "started"]
    # Only the first controller's controls reached Windows: one start, one instance command.
    assert [(op["op"], op["target"]) for op in dump["operations"]] == [("start_service", "SMTPSVC"), ("instance", "SMTPSVC/2")]


def test_a_controller_that_finds_smtpsvc_start_pending_waits_and_goes_on() -> None:
    clock = SteppedClock()
    host = Fleet.from_dict({"hosts": {"relay01": STOPPED_HOST}}, clock=clock).hosts["relay01"]
    late = channel(host)
    started: list[bool] = []

    def second(request: dict[str, Any]) -> dict[str, Any]:
        # Someone else's Start() landed between this controller's observe and its apply.
        if request["action"] == "apply" and not started:
            started.append(host.windows.service_start("SMTPSVC", []) is None)
        return late(request)

    result = enforce(second, clock, EnforceArgs())
    assert started == [True]
    assert "failed" not in result, result.get("msg")
    assert result["compliant"] is True
    assert [(op["op"], op["ok"]) for op in result["operations"]] == [("start_service", False), ("instance", True)]
