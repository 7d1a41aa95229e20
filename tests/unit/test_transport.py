"""Transport: how the agent is wrapped, encoded, run and decoded, with Ansible's real powershell shell."""

from __future__ import annotations

import base64
import json
import re

import pytest
from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.loader import shell_loader
from requests.exceptions import ConnectionError as RequestsConnectionError
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _transport as t

from .hosts import observation, response

AGENT = "param([string]$RequestB64)\nWrite-Output 'x'"


class RecordingConnection:
    """Only records exec_command and answers what it was told to; the transport is under test."""

    def __init__(self, outputs, shell="powershell"):
        self._shell = shell_loader.get(shell)
        self.outputs = list(outputs)
        self.commands = []
        self.resets = 0

    def exec_command(self, cmd, in_data=None, sudoable=True):
        self.commands.append((cmd, in_data, sudoable))
        item = self.outputs.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def reset(self):
        self.resets += 1


def line(doc):
    return b"MAILOPS-AGENT-1:" + base64.b64encode(json.dumps(doc).encode("utf-8")) + b"\r\n"


def decoded_script(command):
    assert command.startswith("PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand ")
    return base64.b64decode(command.split()[-1]).decode("utf-16-le")


def test_normalise_strips_blank_and_comment_lines():
    text = "  # header\r\n\tparam($a)  \n\n   # note\n  $x = '#not a comment'\n"
    assert t.normalise_agent(text) == "param($a)\n$x = '#not a comment'"


def test_wrap_puts_the_request_in_a_base64_literal():
    script = t.wrap_agent(AGENT, {"protocol": 1, "action": "observe", "name": "x'; Remove-Item C:\\ #"})
    match = re.fullmatch(r"& \{\n(.*)\n\} '([A-Za-z0-9+/=]+)'", script, re.S)
    assert match and match.group(1) == AGENT
    assert json.loads(base64.b64decode(match.group(2)))["name"] == "x'; Remove-Item C:\\ #"


def test_non_ascii_survives_the_request_encoding():
    payload = t.encode_request({"name": "Relais Müller ✉"})
    assert json.loads(base64.b64decode(payload).decode("utf-8")) == {"name": "Relais Müller ✉"}


def test_build_command_is_the_encoded_wrapped_agent():
    command = t.build_command(shell_loader.get("powershell"), {"protocol": 1, "action": "observe"}, AGENT)
    assert decoded_script(command) == t.wrap_agent(AGENT, {"protocol": 1, "action": "observe"})


def test_shipped_agent_fits_the_windows_command_line_with_a_full_batch():
    steps = [{"op": "instance", "id": i, "command": "continue", "via": ["method", "server_command"]}
             for i in range(1000, 1016)]
    request = {"protocol": 1, "action": "apply", "steps": steps, "settle_timeout_s": 3600, "poll_ms": 500}
    command = t.build_command(shell_loader.get("powershell"), request)
    assert len(command) < t.MAX_COMMAND_CHARS
    assert decoded_script(command).startswith("& {\nparam(")


def test_too_long_a_command_is_refused_before_sending():
    big = "x" * 20000
    with pytest.raises(t.AgentError) as err:
        t.build_command(shell_loader.get("powershell"), {"protocol": 1, "action": "observe"}, big)
    assert err.value.code == "request_too_large"


def test_call_runs_one_command_and_decodes_the_response():
    doc = response(observation())
    conn = RecordingConnection([(0, b"noise before\r\n" + line(doc), b"")])
    assert t.call(conn, {"protocol": 1, "action": "observe"}, AGENT) == doc
    (cmd, in_data, sudoable), = conn.commands
    assert in_data is None and sudoable is False
    assert "'" + t.encode_request({"protocol": 1, "action": "observe"}) + "'" in decoded_script(cmd)


def test_response_line_wins_over_a_nonzero_exit():
    doc = response(observation())
    assert t.parse_output(1, line(doc), b"") == doc


def test_non_ascii_instance_names_come_back_intact():
    obs = observation()
    obs["instances"][0]["server_comment"] = "Relais für Geräte"
    assert t.parse_output(0, line(response(obs)), "")["observation"]["instances"][0]["server_comment"] == \
        "Relais für Geräte"


@pytest.mark.parametrize("rc,stdout,stderr,code,quoted", [
    (0, b"garbage out", b"", "agent_output_invalid", "garbage out"),
    (0, b"", b"", "agent_output_invalid", "(empty)"),
    (0, b"MAILOPS-AGENT-1:eyJwcm90b2NvbCI6", b"", "agent_output_invalid", "eyJwcm90b2NvbCI6"),
    (0, b"MAILOPS-AGENT-1:!!!notbase64", b"", "agent_output_invalid", "!!!notbase64"),
    (0, b"MAILOPS-AGENT-1:" + base64.b64encode(b"[1, 2]"), b"", "agent_output_invalid", "[1, 2]"),
    (1, b"", b"powershell.exe : The term is not recognized", "agent_exit_nonzero", "term is not recognized"),
    (0, line({"protocol": 2, "ok": True}), b"", "protocol_mismatch", "protocol 2"),
    (0, line({"ok": True}), b"", "protocol_mismatch", "protocol None"),
])
def test_bad_output(rc, stdout, stderr, code, quoted):
    with pytest.raises(t.AgentError) as err:
        t.parse_output(rc, stdout, stderr)
    assert err.value.code == code
    assert quoted in err.value.message


def test_quotes_at_most_200_characters():
    with pytest.raises(t.AgentError) as err:
        t.parse_output(0, "x" * 5000, "")
    assert "x" * 200 + "..." in err.value.message and "x" * 201 not in err.value.message


def test_not_windows_when_the_shell_is_not_powershell():
    conn = RecordingConnection([], shell="sh")
    with pytest.raises(t.AgentError) as err:
        t.call(conn, {"protocol": 1, "action": "observe"}, AGENT)
    assert err.value.code == "not_windows" and "'sh'" in err.value.message
    assert conn.commands == []


def _wsman_fault():
    return WSManFaultError(500, "The WS-Management service cannot process the request.", "<xml/>",
                           "Internal Server Error", wsman_fault_code=2150858843)


@pytest.mark.parametrize("exc,code", [
    (AnsibleConnectionFailure("ntlm: the specified credentials were rejected by the server"), "auth_failed"),
    (InvalidCredentialsError("basic: the specified credentials were rejected by the server"), "auth_failed"),
    (_wsman_fault(), "winrm_fault"),
    (AnsibleConnectionFailure("basic: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded"),
     "connection_failed"),
    (AnsibleError("the connection attempt timed out"), "connection_failed"),
    (RequestsConnectionError("Connection refused"), "connection_failed"),
    (WinRMOperationTimeoutError(), "connection_failed"),
    (RuntimeError("something odd"), "connection_failed"),
])
def test_connection_errors_map_to_protocol_codes(exc, code):
    conn = RecordingConnection([exc])
    with pytest.raises(t.AgentError) as err:
        t.call(conn, {"protocol": 1, "action": "observe"}, AGENT)
    assert err.value.code == code


def test_connection_failure_message_quotes_the_cause():
    err = t.classify_exception(AnsibleConnectionFailure("plain failure"))
    assert err.message == "could not talk to the host: plain failure"


class TestChannel:
    OBSERVE = {"protocol": 1, "action": "observe"}
    APPLY = {"protocol": 1, "action": "apply", "steps": [{"op": "start_service", "service": "SMTPSVC"}]}
    WAIT = {"protocol": 1, "action": "apply", "steps": [], "settle_timeout_s": 5, "poll_ms": 500}

    def ok(self):
        return (0, line(response(observation())), b"")

    def test_first_call_is_not_retried(self):
        conn = RecordingConnection([AnsibleConnectionFailure("refused"), self.ok()])
        channel = t.Channel(conn, AGENT)
        with pytest.raises(t.AgentError):
            channel(self.OBSERVE)
        assert len(conn.commands) == 1 and conn.resets == 0

    @pytest.mark.parametrize("request_", [OBSERVE, WAIT])
    def test_later_polls_are_retried_once_after_a_reset(self, request_):
        conn = RecordingConnection([self.ok(), AnsibleConnectionFailure("reset by peer"), self.ok()])
        channel = t.Channel(conn, AGENT)
        channel(self.OBSERVE)
        assert channel(request_)["ok"] is True
        assert len(conn.commands) == 3 and conn.resets == 1

    def test_second_failure_is_reported(self):
        conn = RecordingConnection([self.ok(), AnsibleConnectionFailure("a"), AnsibleConnectionFailure("b")])
        channel = t.Channel(conn, AGENT)
        channel(self.OBSERVE)
        with pytest.raises(t.AgentError) as err:
            channel(self.OBSERVE)
        assert "b" in err.value.message and len(conn.commands) == 3

    def test_steps_are_never_sent_twice(self):
        conn = RecordingConnection([self.ok(), AnsibleConnectionFailure("reset"), self.ok()])
        channel = t.Channel(conn, AGENT)
        channel(self.OBSERVE)
        with pytest.raises(t.AgentError):
            channel(self.APPLY)
        assert len(conn.commands) == 2

    @pytest.mark.parametrize("exc", [InvalidCredentialsError("401"), _wsman_fault()])
    def test_permanent_failures_are_not_retried(self, exc):
        conn = RecordingConnection([self.ok(), exc, self.ok()])
        channel = t.Channel(conn, AGENT)
        channel(self.OBSERVE)
        with pytest.raises(t.AgentError):
            channel(self.OBSERVE)
        assert len(conn.commands) == 2

    def test_invalid_output_is_not_retried(self):
        conn = RecordingConnection([self.ok(), (0, b"garbage", b""), self.ok()])
        channel = t.Channel(conn, AGENT)
        channel(self.OBSERVE)
        with pytest.raises(t.AgentError) as err:
            channel(self.OBSERVE)
        assert err.value.code == "agent_output_invalid" and len(conn.commands) == 2

    def test_a_failing_reset_is_reported_as_its_own_error(self):
        class ReconnectRefused(RecordingConnection):
            def reset(self):
                raise InvalidCredentialsError("401 on reconnect")

        conn = ReconnectRefused([self.ok(), AnsibleConnectionFailure("reset by peer")])
        channel = t.Channel(conn, AGENT)
        channel(self.OBSERVE)
        with pytest.raises(t.AgentError) as err:
            channel(self.OBSERVE)
        assert err.value.code == "auth_failed"

    def test_loads_the_shipped_agent_once(self):
        conn = RecordingConnection([self.ok(), self.ok()])
        channel = t.Channel(conn)
        channel(self.OBSERVE)
        channel(self.OBSERVE)
        first, second = (decoded_script(c[0]) for c in conn.commands)
        assert t.load_agent() in first and first == second


def refusal(kind, message):
    return {"protocol": 1, "agent_version": "1.0.0", "action": "observe", "ok": False,
            "error": {"message": message, "hresult": None, "type": kind}, "observation": None,
            "steps": [], "settled": False, "elapsed_ms": 1}


def test_a_refused_protocol_is_a_protocol_mismatch():
    conn = RecordingConnection([(0, line(refusal("unsupported_protocol",
                                                 "protocol 2 is not supported; this agent speaks 1")), b"")])
    with pytest.raises(t.AgentError) as err:
        t.call(conn, {"protocol": 1, "action": "observe"}, AGENT)
    assert err.value.code == "protocol_mismatch"
    assert "protocol 2 is not supported; this agent speaks 1" in err.value.message


def test_other_refusals_reach_the_engine_as_responses():
    doc = refusal("bad_request", "action must be observe or apply")
    assert t.parse_output(0, line(doc), b"") == doc
