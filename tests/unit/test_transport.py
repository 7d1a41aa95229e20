"""Transport: how the agent is wrapped, encoded, run and decoded, with Ansible's real powershell shell."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.loader import shell_loader
from requests.exceptions import ConnectionError as RequestsConnectionError
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _protocol as p
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


def sent_payload(in_data):
    """The stdin line: the agent and the base64 request."""
    assert in_data.endswith(b"\n") and in_data.count(b"\n") == 1
    payload = json.loads(in_data.decode("ascii"))
    assert set(payload) == {"agent", "request"}
    return payload


def sent_request(in_data):
    return json.loads(base64.b64decode(sent_payload(in_data)["request"]))


def test_normalise_strips_blank_and_comment_lines():
    text = "  # header\r\n\tparam($a)  \n\n   # note\n  $x = '#not a comment'\n"
    assert t.normalise_agent(text) == "param($a)\n$x = '#not a comment'"


def test_stdin_carries_the_request_as_base64_data():
    stdin = t.build_stdin(AGENT, {"protocol": 1, "action": "observe", "name": "x'; Remove-Item C:\\ #"})
    payload = sent_payload(stdin)
    assert payload["agent"] == AGENT
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", payload["request"])
    assert json.loads(base64.b64decode(payload["request"]))["name"] == "x'; Remove-Item C:\\ #"


def test_stdin_is_ascii_whatever_the_names():
    stdin = t.build_stdin("# Relais f\u00fcr Ger\u00e4te\nparam($a)", {"name": "Relais M\u00fcller \u2709"})
    stdin.decode("ascii")
    payload = sent_payload(stdin)
    assert payload["agent"].startswith("# Relais f\u00fcr")
    assert json.loads(base64.b64decode(payload["request"]).decode("utf-8")) == {"name": "Relais M\u00fcller \u2709"}


def test_command_line_is_the_bootstrap_with_the_agent_hash():
    command, _stdin = t.build_call({"protocol": 1, "action": "observe"}, AGENT)
    script = decoded_script(command)
    assert script == t.bootstrap_script(AGENT)
    assert t.agent_sha256(AGENT) in script
    assert hashlib.sha256(AGENT.encode()).hexdigest().upper() == t.agent_sha256(AGENT)


def test_command_line_does_not_grow_with_the_request():
    steps = [{"op": "instance", "id": i, "command": "continue", "via": ["method", "server_command"]}
             for i in range(1, 2001)]
    request = {"protocol": 1, "action": "apply", "steps": steps, "settle_timeout_s": 3600, "poll_ms": 500}
    big, stdin = t.build_call(request)
    small = t.build_call({"protocol": 1, "action": "observe"})[0]
    # Same length: the bootstraps differ only in the hash of the agent each carries.
    assert len(big) == len(small) <= t.MAX_COMMAND_CHARS
    assert big == t.build_call({"protocol": 1, "action": "apply", "steps": [], "settle_timeout_s": 1, "poll_ms": 1})[0]
    assert sent_request(stdin)["steps"] == steps


def test_too_long_a_bootstrap_is_refused_before_sending(tmp_path):
    bootstrap = tmp_path / "bootstrap.ps1"
    bootstrap.write_text("'AGENT_SHA256'\n" + "$x = 1\n" * 2000)
    with pytest.raises(p.AgentError) as err:
        t.build_call({"protocol": 1, "action": "observe"}, AGENT, bootstrap_path=str(bootstrap))
    assert err.value.code == "request_too_large"


def test_call_runs_one_command_with_stdin_and_decodes_the_response():
    doc = response(observation())
    conn = RecordingConnection([(0, b"noise before\r\n" + line(doc), b"")])
    assert t.call(conn, {"protocol": 1, "action": "observe"}, AGENT) == doc
    (cmd, in_data, sudoable), = conn.commands
    assert sudoable is False
    assert decoded_script(cmd) == t.bootstrap_script(AGENT)
    assert sent_request(in_data) == {"protocol": 1, "action": "observe"}


def test_response_line_wins_over_a_nonzero_exit():
    doc = response(observation())
    assert p.parse_output(1, line(doc), b"") == doc


def test_non_ascii_instance_names_come_back_intact():
    obs = observation()
    obs["instances"][0]["server_comment"] = "Relais für Geräte"
    assert p.parse_output(0, line(response(obs)), "")["observation"]["instances"][0]["server_comment"] == \
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
    with pytest.raises(p.AgentError) as err:
        p.parse_output(rc, stdout, stderr)
    assert err.value.code == code
    assert quoted in err.value.message


def test_quotes_at_most_200_characters():
    with pytest.raises(p.AgentError) as err:
        p.parse_output(0, "x" * 5000, "")
    assert "x" * 200 + "..." in err.value.message and "x" * 201 not in err.value.message


def test_not_windows_when_the_shell_is_not_powershell():
    conn = RecordingConnection([], shell="sh")
    with pytest.raises(p.AgentError) as err:
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
    with pytest.raises(p.AgentError) as err:
        t.call(conn, {"protocol": 1, "action": "observe"}, AGENT)
    assert err.value.code == code


def test_connection_failure_message_quotes_the_cause():
    err = t.classify_exception(AnsibleConnectionFailure("plain failure"))
    assert err.message == "could not talk to the host: plain failure"


class TestChannel:
    OBSERVE = {"protocol": 1, "action": "observe"}

    def ok(self):
        return (0, line(response(observation())), b"")

    def test_a_failure_is_raised_once_and_not_retried(self):
        conn = RecordingConnection([AnsibleConnectionFailure("refused"), self.ok()])
        channel = t.Channel(conn, AGENT)
        with pytest.raises(p.AgentError) as err:
            channel(self.OBSERVE)
        assert err.value.code == "connection_failed"
        assert len(conn.commands) == 1 and conn.resets == 0

    def test_reset_reconnects(self):
        conn = RecordingConnection([])
        t.Channel(conn, AGENT).reset()
        assert conn.resets == 1

    def test_a_failing_reset_is_reported_as_its_own_error(self):
        class ReconnectRefused(RecordingConnection):
            def reset(self):
                raise InvalidCredentialsError("401 on reconnect")

        with pytest.raises(p.AgentError) as err:
            t.Channel(ReconnectRefused([]), AGENT).reset()
        assert err.value.code == "auth_failed"

    def test_loads_the_shipped_agent_once(self):
        conn = RecordingConnection([self.ok(), self.ok()])
        channel = t.Channel(conn)
        channel(self.OBSERVE)
        channel(self.OBSERVE)
        first, second = (sent_payload(c[1])["agent"] for c in conn.commands)
        assert first == t.load_agent(action="observe") and first == second
        assert len(first) < len(t.load_agent()), "an observe call ships the agent without its apply-only lines"


def refusal(kind, message):
    return {"protocol": 1, "agent_version": "1.0.0", "action": "observe", "ok": False,
            "error": {"message": message, "hresult": None, "type": kind}, "observation": None,
            "steps": [], "settled": False, "elapsed_ms": 1}


def test_a_refused_protocol_is_a_protocol_mismatch():
    conn = RecordingConnection([(0, line(refusal("unsupported_protocol",
                                                 "protocol 2 is not supported; this agent speaks 1")), b"")])
    with pytest.raises(p.AgentError) as err:
        t.call(conn, {"protocol": 1, "action": "observe"}, AGENT)
    assert err.value.code == "protocol_mismatch"
    assert "protocol 2 is not supported; this agent speaks 1" in err.value.message


def test_other_refusals_reach_the_engine_as_responses():
    doc = refusal("bad_request", "action must be observe or apply")
    assert p.parse_output(0, line(doc), b"") == doc
