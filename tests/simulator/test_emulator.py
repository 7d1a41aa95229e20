"""Recognising the bootstrap and the agent on stdin, refusing everything else, the request rules, faults.

Calls are built the way docs/agent-protocol.md says (and, in one test, by
the collection's own transport), then handed to `Host.run_command` exactly as
the WinRM server hands them over: command, arguments, and stdin.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import pytest

from tests.simulator.emulator import (
    RESPONSE_PREFIX,
    agent_variant,
    bootstrap_hash,
    build_call,
    decode_line,
    decode_script,
    extract_request,
    normalise,
    read_agent,
    read_bootstrap,
)
from tests.simulator.model import CommandOutcome, Fleet, Host

AGENT = read_agent()
OBSERVE = {"protocol": 1, "action": "observe"}
TOP_KEYS = {"protocol", "agent_version", "action", "ok", "error", "observation", "steps", "settled", "elapsed_ms"}


def host_of(data: dict[str, Any] | None = None, agent_text: str | None = None) -> Host:
    return Fleet.from_dict({"hosts": {"relay01": data or {}}}, agent_text=agent_text).hosts["relay01"]


def run(host: Host, request: dict[str, Any], agent_text: str = AGENT) -> CommandOutcome:
    command, arguments, stdin = build_call(agent_text, request)
    return host.run_command(command, arguments, lambda: stdin)


def encoded(script: str) -> list[str]:
    payload = base64.b64encode(script.encode("utf-16-le")).decode()
    return [f"-NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand {payload}"]


def raw_request(host: Host, payload: str) -> dict[str, Any]:
    """Send the real (whole) agent with an arbitrary request string, as a broken transport might."""
    command, arguments, _stdin = build_call(AGENT, {"protocol": 1, "action": "apply"})
    stdin = (json.dumps({"agent": normalise(AGENT), "request": payload}) + "\n").encode()
    outcome = host.run_command(command, arguments, lambda: stdin)
    assert outcome.exit_code == 0
    return decode_line(outcome.stdout)


def b64json(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _no_case_twins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key.upper() for key, _value in pairs}) < len({key for key, _value in pairs}):
        raise ValueError("ConvertFrom-Json refuses keys that differ only in case")
    return dict(pairs)


def echoed_action(payload: str) -> str | None:
    """The action the agent echoes: the request's, when the request parses and it is a string."""
    try:
        data = json.loads(base64.b64decode(payload, validate=True), object_pairs_hook=_no_case_twins)
    except ValueError:
        return None
    action = data.get("action") if isinstance(data, dict) else None
    return action if isinstance(action, str) else None


def apply_request(steps: Any, **extra: Any) -> dict[str, Any]:
    return {"protocol": 1, "action": "apply", "steps": steps, "settle_timeout_s": 0, "poll_ms": 10, **extra}


START_1 = {"op": "instance", "id": 1, "command": "start", "via": ["method"]}


# --------------------------------------------------------- the command line


def test_the_response_is_one_base64_json_line() -> None:
    outcome = run(host_of({"instances": [{"id": 1, "comment": "Relais für Scanner"}]}), OBSERVE)
    assert (outcome.exit_code, outcome.stderr, outcome.delay_s, outcome.cut, outcome.wsman_fault) == (0, b"", 0.0, False, None)
    assert outcome.stdout.startswith(RESPONSE_PREFIX.encode()) and outcome.stdout.endswith(b"\r\n")
    assert outcome.stdout.count(b"\n") == 1
    document = json.loads(base64.b64decode(outcome.stdout[len(RESPONSE_PREFIX) :].strip(), validate=True))
    assert set(document) == TOP_KEYS
    assert (document["protocol"], document["agent_version"], document["action"], document["ok"]) == (1, "1.0.0", "observe", True)
    assert document["error"] is None and document["steps"] == [] and document["settled"] is True
    assert document["observation"]["instances"][0]["server_comment"] == "Relais für Scanner"


@pytest.mark.parametrize("split", ["one string", "words", "two strings"])
def test_arguments_may_arrive_as_one_string_or_several(split: str) -> None:
    command, (arguments,), stdin = build_call(AGENT, OBSERVE)
    words = arguments.split(" ")
    given: Any = {"one string": arguments, "words": words, "two strings": [" ".join(words[:3]), " ".join(words[3:])]}[split]
    document = decode_line(host_of().run_command(command, given, lambda: stdin).stdout)
    assert document["ok"] is True


def test_the_old_agent_on_the_command_line_is_not_the_bootstrap() -> None:
    # Short enough for cmd.exe only in this direct call; the server refuses it
    # as too long first (test_server_cmd_line).
    script = "& {\n%s\n} '%s'" % (normalise(AGENT), b64json(OBSERVE))
    host = host_of()
    assert "not the mailops bootstrap" in not_supported(host.run_command("PowerShell", encoded(script)))
    assert host.dump()["operations"] == []


def test_recognition_ignores_indentation_blank_lines_and_comments() -> None:
    decorated = "\n\n".join("    " + line + "   \n# note" for line in AGENT.splitlines())
    assert decode_line(run(host_of(), OBSERVE, agent_text=decorated).stdout)["ok"] is True


def test_an_injected_agent_text_replaces_the_repository_file() -> None:
    stand_in = "param([string]$RequestB64)\n$response = @{ agent_version = '9.9.9' }\n"
    host = host_of(agent_text=stand_in)
    assert decode_line(run(host, OBSERVE, agent_text=stand_in).stdout)["agent_version"] == "9.9.9"
    refused = run(host, OBSERVE, agent_text=AGENT)
    assert refused.exit_code == 1
    assert b"differs from plugins/plugin_utils/agent.ps1" in refused.stderr


def not_supported(outcome: CommandOutcome) -> str:
    assert outcome.exit_code == 1
    assert outcome.stdout == b""
    text = outcome.stderr.decode()
    assert text.startswith("not supported by the simulator: ")
    return text


def test_other_powershell_is_refused_with_a_clear_error() -> None:
    bootstrap = "$ErrorActionPreference = 'Stop'\n$exec_wrapper_str = $input | Out-String\n&$exec_wrapper"
    host = host_of()
    text = not_supported(host.run_command("PowerShell", encoded(bootstrap)))
    assert "not the mailops bootstrap" in text and "$ErrorActionPreference" in text
    assert host.dump()["operations"] == []


@pytest.mark.parametrize(
    ("command", "arguments", "expected"),
    [
        ("cmd.exe", ["/c", "dir"], "command 'cmd.exe'"),
        ("PowerShell", ["-NoProfile", "-Command", "Get-Date"], "PowerShell without -EncodedCommand"),
        ("PowerShell", ["-EncodedCommand", "@@@"], "not base64 UTF-16-LE"),
    ],
)
def test_commands_that_are_not_encoded_powershell_are_refused(command: str, arguments: list[str], expected: str) -> None:
    assert expected in not_supported(host_of().run_command(command, arguments))


def test_an_edited_agent_is_not_taken_for_the_agent() -> None:
    edited = AGENT.replace("Set-StrictMode -Version 2", "Set-StrictMode -Version 1")
    assert edited != AGENT
    assert "differs from plugins/plugin_utils/agent.ps1" in not_supported(run(host_of(), OBSERVE, agent_text=edited))


def test_bootstrap_errors_come_back_as_powershell_errors() -> None:
    command, arguments, stdin = build_call(AGENT, OBSERVE)
    host = host_of()
    cases = {
        b"{not json\n": "Invalid JSON primitive",
        b'{"request": "e30="}\n': "The property 'agent' cannot be found",
        stdin.replace(b"Set-StrictMode -Version 2", b"Set-StrictMode -Version 1"): "does not match the hash",
        b"": "Invalid JSON primitive",
    }
    for given, message in cases.items():
        outcome = host.run_command(command, arguments, functools.partial(bytes, given))
        assert outcome.exit_code == 1 and outcome.stdout == b""
        assert outcome.stderr.startswith(b"#< CLIXML\r\n") and message.encode() in outcome.stderr
    assert host.dump()["operations"] == [] and host.observes == 0


def test_stdin_is_read_with_the_console_code_page() -> None:
    # UTF-8 on stdin reaches PowerShell as OEM text: the agent no longer matches its hash.
    agent = AGENT + "\n$note = 'Relais f\u00fcr Ger\u00e4te'"
    command, arguments, _stdin = build_call(agent, OBSERVE)
    utf8 = (json.dumps({"agent": normalise(agent), "request": b64json(OBSERVE)}, ensure_ascii=False) + "\n").encode()
    outcome = host_of(agent_text=agent).run_command(command, arguments, lambda: utf8)
    assert outcome.exit_code == 1 and b"does not match the hash" in outcome.stderr


def test_decode_and_extract_are_inverse_of_build() -> None:
    command, arguments, stdin = build_call(AGENT, OBSERVE)
    digest = bootstrap_hash(decode_script(command, arguments), read_bootstrap())
    literal = extract_request(stdin, digest, AGENT)
    assert json.loads(base64.b64decode(literal)) == OBSERVE


# ---------------------------------------------------------- request rules


@pytest.mark.parametrize(
    ("payload", "type_name", "message"),
    [
        ("!!notbase64", "bad_request", "the request is not base64 of JSON"),
        (base64.b64encode(b"{not json").decode(), "bad_request", "the request is not base64 of JSON"),
        (b64json([1, 2]), "bad_request", "the request is not a JSON object"),
        (b64json({"protocol": 2, "action": "observe"}), "unsupported_protocol", "protocol 2 is not supported; this agent speaks 1"),
        (b64json({"action": "observe"}), "unsupported_protocol", "protocol  is not supported"),
        (b64json({"protocol": True, "action": "observe"}), "unsupported_protocol", "protocol True is not supported"),
        (b64json({"protocol": 1, "action": "reboot"}), "bad_request", "action must be observe or apply"),
        (b64json({"protocol": 1, "action": "apply", "steps": [], "poll_ms": 10}), "bad_request", "settle_timeout_s must be an integer >= 0"),
        (b64json(apply_request([], settle_timeout_s=1.5)), "bad_request", "settle_timeout_s must be an integer >= 0"),
        (b64json(apply_request([], poll_ms=0)), "bad_request", "poll_ms must be an integer >= 1"),
        (b64json(apply_request({"op": "start_service"})), "bad_request", "steps must be a list"),
        (b64json(apply_request([START_1, {"op": "reboot"}])), "bad_request", "step 2: op must be one of: set_start_mode, "),
        (b64json(apply_request(["start"])), "bad_request", "step 1: op must be one of"),
        (b64json(apply_request([{**START_1, "id": 0}])), "bad_request", "step 1: id must be an integer >= 1"),
        (b64json(apply_request([{**START_1, "id": True}])), "bad_request", "step 1: id must be an integer >= 1"),
        (b64json(apply_request([{**START_1, "id": "1"}])), "bad_request", "step 1: id must be an integer >= 1"),
        (b64json(apply_request([{**START_1, "command": "Start"}])), "bad_request", "step 1: command must be one of: start, stop, pause, continue"),
        (b64json(apply_request([{**START_1, "via": []}])), "bad_request", "step 1: via must be a non-empty list"),
        (b64json(apply_request([{**START_1, "via": "method"}])), "bad_request", "step 1: via must be a non-empty list"),
        (b64json(apply_request([{**START_1, "via": ["wmi"]}])), "bad_request", "step 1: via entries must be one of: method, server_command"),
        (b64json(apply_request([{"op": "continue_service", "service": "W3SVC"}])), "bad_request", "step 1: service must be SMTPSVC"),
        (b64json(apply_request([{"op": "continue_service", "service": "IISADMIN"}])), "bad_request", "step 1: service must be SMTPSVC"),
        (b64json(apply_request([{"op": "start_service", "service": "W3SVC"}])), "bad_request", "step 1: service must be one of: SMTPSVC, IISADMIN"),
        # Exact values: a one-element list is not its element, whatever -contains makes of it.
        (b64json({"protocol": 1, "action": ["observe"]}), "bad_request", "action must be observe or apply"),
        (b64json(apply_request([{"op": ["start_service"], "service": "SMTPSVC"}])), "bad_request", "step 1: op must be one of"),
        (b64json(apply_request([{"op": "start_service", "service": ["SMTPSVC"]}])), "bad_request", "step 1: service must be one of"),
        (b64json(apply_request([{"op": "continue_service", "service": ["SMTPSVC"]}])), "bad_request", "step 1: service must be SMTPSVC"),
        (b64json(apply_request([{**START_1, "command": ["start"]}])), "bad_request", "step 1: command must be one of"),
        (b64json(apply_request([{**START_1, "via": [["method"]]}])), "bad_request", "step 1: via entries must be one of"),
        (b64json(apply_request([{**START_1, "id": [1]}])), "bad_request", "step 1: id must be an integer >= 1"),
        (
            b64json(apply_request([{"op": "set_start_mode", "service": "SMTPSVC", "start_mode": ["auto"]}])),
            "bad_request",
            "step 1: start_mode must be one of",
        ),
        # Keys are case-sensitive, though PowerShell's property lookup is not.
        (b64json({"protocol": 1, "Action": "observe"}), "bad_request", "action must be observe or apply"),
        (b64json({"Protocol": 1, "action": "observe"}), "unsupported_protocol", "protocol  is not supported"),
        (b64json(apply_request([{"OP": "start_service", "service": "SMTPSVC"}])), "bad_request", "step 1: op must be one of"),
        (b64json(apply_request([{**START_1, "VIA": ["method"], "via": None}])), "bad_request", "the request is not base64 of JSON: Cannot convert"),
        (
            base64.b64encode(b'{"protocol": 1, "action": "observe", "ACTION": "apply"}').decode(),
            "bad_request",
            "the request is not base64 of JSON: Cannot convert the JSON string because a dictionary that was converted "
            "from the string contains the duplicated keys 'action' and 'ACTION'.",
        ),
        # What the settle wait watches: two lists of closed-set values.
        (b64json(apply_request([], watch=["SMTPSVC"])), "bad_request", "watch must be an object"),
        (b64json(apply_request([], watch={"services": ["SMTPSVC"]})), "bad_request", "watch must have the lists services and instances"),
        (b64json(apply_request([], watch={"services": "SMTPSVC", "instances": []})), "bad_request", "watch must have the lists"),
        (b64json(apply_request([], watch={"services": ["W3SVC"], "instances": []})), "bad_request", "watch services must be one of: SMTPSVC, IISADMIN"),
        (b64json(apply_request([], watch={"services": [["SMTPSVC"]], "instances": []})), "bad_request", "watch services must be one of"),
        (b64json(apply_request([], watch={"services": [], "instances": [0]})), "bad_request", "watch instances must be an integer >= 1"),
        (b64json(apply_request([], watch={"services": [], "instances": ["1"]})), "bad_request", "watch instances must be an integer >= 1"),
        (b64json(apply_request([], watch={"Services": [], "instances": []})), "bad_request", "watch must have the lists"),
        (
            b64json(apply_request([{"op": "set_start_mode", "service": "SMTPSVC", "start_mode": "Automatic"}])),
            "bad_request",
            "step 1: start_mode must be one of: auto, delayed-auto, demand, disabled",
        ),
    ],
)
def test_malformed_requests_get_the_agents_refusal_and_change_nothing(payload: str, type_name: str, message: str) -> None:
    host = host_of({"instances": [{"id": 1, "state": "stopped"}]})
    document = raw_request(host, payload)
    assert set(document) == TOP_KEYS
    assert document["ok"] is False
    # The agent echoes the request's action whenever it is a string, even in a refusal.
    assert document["action"] == echoed_action(payload) and document["observation"] is None
    assert document["steps"] == [] and document["settled"] is False
    assert document["error"]["type"] == type_name
    assert document["error"]["hresult"] is None
    assert document["error"]["message"].startswith(message)
    dump = host.dump()
    assert dump["operations"] == [] and dump["instances"][0]["state"] == "stopped"
    assert (dump["rejected_requests"], dump["applies"], dump["observes"]) == (1, 0, 0)


def test_unknown_request_and_step_keys_are_ignored() -> None:
    request = apply_request([{**START_1, "note": "x"}], future_key=True)
    document = decode_line(run(host_of({"instances": [{"id": 1, "state": "stopped"}]}), request).stdout)
    assert document["ok"] is True and document["steps"][0]["ok"] is True


# ------------------------------------------------------------------ faults


def test_wsman_fault_answers_instead_of_running_the_command() -> None:
    host = host_of({"instances": [{"id": 1, "state": "stopped"}], "faults": {"wsman_fault": True}})
    outcome = run(host, apply_request([START_1]))
    assert outcome.wsman_fault and "WS-Management" in outcome.wsman_fault
    assert outcome.stdout == b""
    assert host.dump()["operations"] == []


def test_faults_honour_on_and_times() -> None:
    host = host_of({"faults": {"wsman_fault": {"message": "quota exceeded", "on": "observe", "times": 2}}})
    assert run(host, apply_request([])).wsman_fault is None
    assert [run(host, OBSERVE).wsman_fault for _attempt in range(3)] == ["quota exceeded", "quota exceeded", None]
    assert host.dump()["faults_fired"] == {"wsman_fault": 2}


def test_delay_and_cut_are_reported_to_the_server_after_the_work_is_done() -> None:
    host = host_of(
        {
            "instances": [{"id": 1, "state": "stopped", "transition_s": 0}],
            "faults": {"delay": {"seconds": 7.5, "on": "apply"}, "cut": {"on": "apply", "times": 1}},
        }
    )
    observed = run(host, OBSERVE)
    assert (observed.delay_s, observed.cut) == (0.0, False)
    applied = run(host, apply_request([START_1]))
    assert (applied.delay_s, applied.cut) == (7.5, True)
    assert decode_line(applied.stdout)["steps"][0]["ok"] is True
    assert host.dump()["instances"][0]["state"] == "started"
    assert run(host, apply_request([])).cut is False


def test_faults_with_on_any_also_hit_commands_that_are_not_the_agent() -> None:
    host = host_of({"faults": {"delay": {"seconds": 2}}})
    outcome = host.run_command("cmd.exe", ["/c", "ver"])
    assert (outcome.exit_code, outcome.delay_s) == (1, 2.0)


def test_agent_output_garbage_has_no_response_line_but_the_apply_ran() -> None:
    host = host_of({"instances": [{"id": 1, "state": "stopped", "transition_s": 0}], "faults": {"agent_output": {"kind": "garbage", "on": "apply"}}})
    outcome = run(host, apply_request([START_1]))
    assert outcome.exit_code == 0 and outcome.stdout
    assert RESPONSE_PREFIX.encode() not in outcome.stdout
    with pytest.raises(ValueError):
        decode_line(outcome.stdout)
    assert host.dump()["instances"][0]["state"] == "started"


def test_agent_output_truncated_cuts_the_line_in_half() -> None:
    host = host_of({"faults": {"agent_output": {"kind": "truncated"}}})
    whole = len(run(host_of(), OBSERVE).stdout)
    outcome = run(host, OBSERVE)
    assert outcome.stdout.startswith(RESPONSE_PREFIX.encode())
    assert not outcome.stdout.endswith(b"\r\n")
    assert abs(len(outcome.stdout) - whole // 2) <= 2
    with pytest.raises(ValueError):
        decode_line(outcome.stdout)


def test_agent_output_nonzero_exit_runs_nothing() -> None:
    host = host_of({"instances": [{"id": 1, "state": "stopped"}], "faults": {"agent_output": {"kind": "nonzero_exit", "times": 1}}})
    outcome = run(host, apply_request([START_1]))
    assert (outcome.exit_code, outcome.stdout) == (1, b"")
    assert b"exit code 1" in outcome.stderr
    assert host.dump()["operations"] == []
    assert decode_line(run(host, OBSERVE).stdout)["ok"] is True


def test_service_start_error_fails_start_service_the_given_number_of_times() -> None:
    host = host_of({"service": {"state": "stopped"}, "faults": {"service_start_error": {"message": "Error 1053: no timely response", "times": 1}}})
    start = apply_request([{"op": "start_service", "service": "SMTPSVC"}], settle_timeout_s=5)
    first = decode_line(run(host, start).stdout)
    assert first["steps"][0]["error"]["message"] == "Error 1053: no timely response"
    assert first["observation"]["services"]["SMTPSVC"]["state"] == "Stopped"
    second = decode_line(run(host, start).stdout)
    assert second["steps"][0]["ok"] is True
    assert second["observation"]["services"]["SMTPSVC"]["state"] == "Running"


def test_service_start_error_short_form_also_fails_the_implicit_restart() -> None:
    host = host_of({"service": {"state": "stopped"}, "faults": {"service_start_error": "cannot start"}})
    step = decode_line(run(host, apply_request([START_1])).stdout)["steps"][0]
    assert step["error"]["message"] == "cannot start"


def test_http_401_is_counted_through_fault_fires() -> None:
    host = host_of({"faults": {"http_401": {"times": 2}}})
    assert host.faults == {"http_401": {"times": 2}}
    assert [host.fault_fires("http_401") for _attempt in range(3)] == [True, True, False]
    assert host_of().fault_fires("http_401") is False


def test_the_collections_transport_and_the_simulator_agree() -> None:
    from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _protocol, _transport

    host = host_of({"instances": [{"id": 2, "state": "stopped", "transition_s": 0}]})
    request = {
        "protocol": 1,
        "action": "apply",
        "steps": [{"op": "instance", "id": 2, "command": "start", "via": ["method"]}],
        "settle_timeout_s": 5,
        "poll_ms": 10,
    }
    command_line, stdin = _transport.build_call(request)
    # What the winrm connection plugin's exec_command does with an encoded command.
    parts = command_line.split(" ")
    outcome = host.run_command(parts[0], parts[1:], lambda: stdin)
    document = _protocol.parse_output(outcome.exit_code, outcome.stdout, outcome.stderr)
    assert document["ok"] is True
    assert document["observation"]["instances"][0]["server_state"] == 2


def test_the_observe_agent_observes_and_refuses_apply() -> None:
    host = host_of({"instances": [{"id": 1, "state": "stopped"}]})
    observe = agent_variant(AGENT, "observe")
    assert len(observe) < len(normalise(AGENT)) and "Invoke-Step" not in observe
    document = decode_line(run(host, OBSERVE).stdout)
    assert document["ok"] and document["observation"]["instances"][0]["server_state"] == 4
    # The apply request with the agent cut for observe: that agent knows observe only.
    command, arguments, _stdin = build_call(AGENT, OBSERVE)
    apply = {"protocol": 1, "action": "apply", "steps": [], "settle_timeout_s": 1, "poll_ms": 1}
    stdin = (json.dumps({"agent": observe, "request": b64json(apply)}) + "\n").encode()
    refused = decode_line(host.run_command(command, arguments, lambda: stdin).stdout)
    assert (refused["ok"], refused["error"]["type"], refused["error"]["message"]) == (
        False, "bad_request", "action must be observe")
    assert host.dump()["operations"] == [] and host.dump()["applies"] == 0
    # Anything else cut from the agent is not the agent.
    cut = observe.replace("Get-OsInfo\n", "", 1) if "Get-OsInfo\n" in observe else observe[:-10]
    command, arguments, stdin = build_call(cut, OBSERVE)
    assert "differs from plugins/plugin_utils/agent.ps1" in host.run_command(command, arguments, lambda: stdin).stderr.decode()
