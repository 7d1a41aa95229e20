"""The WS-Management server, driven by the real client: pywinrm's ``Protocol``.

``ScriptedHost`` (conftest) stands in for ``model.Host``; everything between
pywinrm and ``run_command`` is the real server: real sockets, HTTP, TLS,
Basic and NTLM with message encryption.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import xmltodict
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError

from tests.simulator import tls
from tests.simulator.conftest import Outcome, ScriptedHost, log_entries, receive_request, run
from tests.simulator.server import ConfigError, Simulator
from tests.simulator.wsman import CMD_RESOURCE_URI, WsmanFault, parse_duration


@pytest.mark.parametrize(
    ("auth", "scheme"),
    [("basic", "http"), ("ntlm", "http"), ("basic", "https"), ("ntlm", "https")],
)
def test_round_trip(fleet: Any, auth: str, scheme: str) -> None:
    # Basic over HTTP needs the host to allow unencrypted messages.
    running = fleet(ScriptedHost("relay01", auth=auth, scheme=scheme, allow_unencrypted=auth == "basic"))
    stdout, stderr, rc = run(running.protocol("relay01"))
    assert (stdout, stderr, rc) == (
        b"PowerShell|-NoProfile -EncodedCommand QQA=",
        b"warning",
        0,
    )
    assert running.hosts["relay01"].calls == [("PowerShell", ["-NoProfile -EncodedCommand QQA="])]


def test_ntlm_over_http_encrypts_messages(fleet: Any, request_log: io.StringIO) -> None:
    running = fleet(ScriptedHost("relay01", auth="ntlm"))
    protocol = running.protocol("relay01", message_encryption="always")
    shell_id = protocol.open_shell()
    assert protocol.transport.encryption is not None
    for _round in range(3):
        command_id = protocol.run_command(shell_id, "PowerShell", ["-x"])
        assert protocol.get_command_output(shell_id, command_id)[0] == b"PowerShell|-x"
        protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)
    # One handshake (two 401s) serves every later request on the kept-alive connection.
    assert [e["status"] for e in log_entries(request_log)].count(401) == 2


def test_ntlm_host_challenges_an_unauthenticated_request(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", auth="ntlm"))
    endpoint = running.simulator.endpoints["relay01"]
    response = requests.post(
        f"http://127.0.0.1:{endpoint.port}/wsman",
        data=b"x",
        headers={"Content-Type": 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted"'},
        timeout=5,
    )
    assert response.status_code == 401
    assert "NTLM" in response.headers["WWW-Authenticate"]


def test_untrusted_certificate_is_refused(fleet: Any, tmp_path: Path) -> None:
    running = fleet(ScriptedHost("relay01", scheme="https"))
    other_ca = tls.write_ca(tmp_path, "other.pem")
    with pytest.raises(requests.exceptions.SSLError):
        run(running.protocol("relay01", ca_trust_path=str(other_ca)))
    assert running.hosts["relay01"].calls == []


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_wrong_password_is_401(fleet: Any, auth: str) -> None:
    running = fleet(ScriptedHost("relay01", auth=auth, allow_unencrypted=True))
    with pytest.raises(InvalidCredentialsError):
        run(running.protocol("relay01", password="not-the-password"))
    assert running.hosts["relay01"].calls == []


def test_basic_challenge_names_the_realm(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", auth="basic", allow_unencrypted=True))
    endpoint = running.simulator.endpoints["relay01"]
    response = requests.post(f"http://127.0.0.1:{endpoint.port}/wsman", data=b"<x/>", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="WSMAN"'


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_http_401_fault_rejects_good_credentials(fleet: Any, auth: str) -> None:
    running = fleet(ScriptedHost("relay01", auth=auth, allow_unencrypted=True, faults={"http_401": 1}))
    with pytest.raises(InvalidCredentialsError):
        run(running.protocol("relay01"))
    # The fault fired once, as configured; the same credentials now pass.
    assert run(running.protocol("relay01"))[2] == 0


def test_model_error_is_a_fault_and_a_traceback(fleet: Any, capfd: pytest.CaptureFixture[str]) -> None:
    running = fleet(ScriptedHost("relay01", broken=True))
    with pytest.raises(WSManFaultError) as caught:
        run(running.protocol("relay01"))
    assert caught.value.reason == "simulator internal error: KeyError: 'no such instance'"
    assert caught.value.code == 500
    assert "Traceback" in capfd.readouterr().err


def test_unsupported_action_is_a_clear_fault(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    protocol = running.protocol("relay01")
    request = {
        "env:Envelope": protocol.build_wsman_header(
            action="http://schemas.xmlsoap.org/ws/2004/09/transfer/Get",
            resource_uri=CMD_RESOURCE_URI,
        )
    }
    request["env:Envelope"]["env:Body"] = {}
    with pytest.raises(WSManFaultError) as caught:
        protocol.send_message(xmltodict.unparse(request))
    assert caught.value.reason == "not supported by the simulator: action http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
    assert caught.value.wsman_fault_code is not None


def test_a_resource_other_than_the_cmd_and_powershell_shells_is_unsupported(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    protocol = running.protocol("relay01")
    request = {
        "env:Envelope": protocol.build_wsman_header(
            action="http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
            resource_uri="http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_Service",
        )
    }
    request["env:Envelope"]["env:Body"] = {}
    with pytest.raises(
        WSManFaultError,
        match="not supported by the simulator: resource URI http://schemas.microsoft.com/wbem/wsman/1/wmi",
    ):
        protocol.send_message(xmltodict.unparse(request))


def test_fault_outcome_raises_wsman_fault(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", outcome=Outcome(b"", wsman_fault="injected: WinRM is unwell")))
    with pytest.raises(WSManFaultError) as caught:
        run(running.protocol("relay01"))
    assert caught.value.reason == "injected: WinRM is unwell"


def test_fault_outcome_over_encrypted_ntlm(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", auth="ntlm", outcome=Outcome(b"", wsman_fault="injected")))
    with pytest.raises(WSManFaultError, match="^injected"):
        run(running.protocol("relay01"))


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_cut_response_is_a_connection_error(fleet: Any, auth: str) -> None:
    running = fleet(ScriptedHost("relay01", auth=auth, allow_unencrypted=True, outcome=Outcome(b"x" * 1000, cut=True)))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        run(running.protocol("relay01"))


def test_cut_hits_the_first_receive_only(fleet: Any) -> None:
    # Basic: a cut closes the connection, and an NTLM session would go with it.
    running = fleet(ScriptedHost("relay01", auth="basic", allow_unencrypted=True, outcome=Outcome(b"lost", exit_code=4, cut=True)))
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "PowerShell", ["-x"])
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        protocol.get_command_output(shell_id, command_id)
    assert protocol.get_command_output(shell_id, command_id) == (b"", b"", 4)


def test_delay_beyond_read_timeout_times_out(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", outcome=Outcome(b"late", delay_s=4)))
    with pytest.raises(requests.exceptions.ReadTimeout):
        run(running.protocol("relay01", read_timeout_sec=2, operation_timeout_sec=1))


def test_unreachable_host_refuses_connections(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", unreachable=True), ScriptedHost("relay02"))
    port = running.simulator.endpoints["relay01"].port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        run(running.protocol("relay01"))
    assert run(running.protocol("relay02"))[2] == 0


def test_large_output_arrives_over_several_receives(fleet: Any, request_log: io.StringIO) -> None:
    stdout = bytes(range(256)) * 1200
    stderr = b"e" * 70_000
    running = fleet(ScriptedHost("relay01", outcome=Outcome(stdout, stderr, 7)))
    assert run(running.protocol("relay01")) == (stdout, stderr, 7)
    receives = [e for e in log_entries(request_log) if e.get("action") == "Receive"]
    assert len(receives) > 1


def test_stdin_is_accepted_until_end(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "PowerShell", ["-"])
    protocol.send_command_input(shell_id, command_id, b"first")
    protocol.send_command_input(shell_id, command_id, b"last", end=True)
    with pytest.raises(WSManFaultError, match="input stream is already closed"):
        protocol.send_command_input(shell_id, command_id, b"more")
    assert protocol.get_command_output(shell_id, command_id)[2] == 0


def test_deleted_shell_is_gone(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell()
    protocol.close_shell(shell_id, close_session=False)
    with pytest.raises(WSManFaultError, match="shell was not found"):
        protocol.run_command(shell_id, "PowerShell", ["-x"])
    assert running.simulator.services["relay01"].open_shells == 0


def test_request_log_has_no_secrets(fleet: Any, request_log: io.StringIO) -> None:
    hosts = [ScriptedHost("relay01", auth="basic", allow_unencrypted=True), ScriptedHost("relay02")]
    running = fleet(*hosts)
    for host in hosts:
        run(running.protocol(host.name))
    text = request_log.getvalue()
    for host in hosts:
        assert host.password not in text
        assert base64.b64encode(f"{host.username}:{host.password}".encode()).decode() not in text
    assert "Authorization" not in text and "Basic " not in text
    commands = [e for e in log_entries(request_log) if e.get("action") == "Command"]
    assert {e["host"] for e in commands} == {"relay01", "relay02"}
    assert all(e["command"] == "PowerShell" and len(e["args_sha256"]) == 12 for e in commands)
    assert {e["action"] for e in log_entries(request_log) if "action" in e} == {
        "Create",
        "Command",
        "Receive",
        "Signal",
        "Delete",
    }


def test_hosts_sharing_a_user_name_keep_their_own_ntlm_password(fleet: Any) -> None:
    hosts = [ScriptedHost(f"relay0{i}", auth="ntlm") for i in range(3)]
    running = fleet(*hosts)
    for host in hosts:
        assert run(running.protocol(host.name))[2] == 0
    with pytest.raises(InvalidCredentialsError):
        run(running.protocol("relay00", password=hosts[1].password))


def test_ntlm_user_files_are_private(fleet: Any, workdir: Path) -> None:
    fleet(
        ScriptedHost("relay01", auth="ntlm"),
        ScriptedHost("relay02", auth="ntlm", username="CORP\\svc"),
    )
    files = sorted(workdir.glob("ntlm-users-*"))
    assert len(files) == 2
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert files[1].read_text().startswith("CORP:svc:")


def test_concurrent_clients_on_many_hosts(fleet: Any) -> None:
    hosts = [ScriptedHost(f"relay{i:02d}", auth="ntlm" if i % 2 else "basic", allow_unencrypted=True) for i in range(30)]
    running = fleet(*hosts)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda h: run(running.protocol(h.name)), hosts * 2))
    assert all(r[0] == b"PowerShell|-NoProfile -EncodedCommand QQA=" for r in results)
    assert all(len(h.calls) == 2 for h in hosts)


def test_client_disconnects_are_quiet(fleet: Any, capfd: pytest.CaptureFixture[str]) -> None:
    running = fleet(ScriptedHost("relay01"), ScriptedHost("relay02", scheme="https"))
    for name in ("relay01", "relay02"):
        with socket.create_connection(("127.0.0.1", running.simulator.endpoints[name].port)) as sock:
            sock.sendall(b"POST /wsman HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    with socket.create_connection(("127.0.0.1", running.simulator.endpoints["relay01"].port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(b"POST /wsman HTTP/1.1\r\n")
    assert run(running.protocol("relay01"))[2] == 0
    assert run(running.protocol("relay02"))[2] == 0
    assert capfd.readouterr().err == ""


def test_bad_configuration_is_refused_before_binding(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="host relay01: auth 'kerberos'"):
        Simulator([ScriptedHost("relay01", auth="kerberos")], workdir)
    with pytest.raises(ConfigError, match="port 40000 is already used by host relay01"):
        Simulator(
            [ScriptedHost("relay01", port=40000), ScriptedHost("relay02", port=40000)],
            workdir,
        )
    with pytest.raises(ConfigError, match="NTLM password cannot contain ':'"):
        Simulator([ScriptedHost("relay01", auth="ntlm", password="a:b")], workdir)


def test_command_slower_than_the_read_timeout_arrives_through_several_receives(fleet: Any, request_log: io.StringIO) -> None:
    running = fleet(ScriptedHost("relay01", sleep_s=4, outcome=Outcome(b"settled", b"", 3)))
    protocol = running.protocol("relay01", read_timeout_sec=3, operation_timeout_sec=1)
    assert run(protocol) == (b"settled", b"", 3)
    receives = [e for e in log_entries(request_log) if e.get("action") == "Receive"]
    assert len(receives) > 1
    assert all(e["status"] == 500 and e["timed_out"] for e in receives[:-1])
    assert receives[-1]["status"] == 200


def test_receive_of_a_running_command_is_the_timed_out_fault_pywinrm_retries_on(fleet: Any) -> None:
    gate = threading.Event()
    running = fleet(ScriptedHost("relay01", gate=gate))
    protocol = running.protocol("relay01", read_timeout_sec=3, operation_timeout_sec=1)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "PowerShell", ["-x"])
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw(shell_id, command_id)
    gate.set()
    assert protocol.get_command_output(shell_id, command_id) == (b"PowerShell|-x", b"warning", 0)
    protocol.close_shell(shell_id)


def test_timed_out_fault_has_the_windows_shape(fleet: Any) -> None:
    gate = threading.Event()
    running = fleet(ScriptedHost("relay01", gate=gate))
    protocol = running.protocol("relay01", read_timeout_sec=3, operation_timeout_sec=1)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "PowerShell", ["-x"])
    request = receive_request(protocol, shell_id, command_id)
    # The transport's error carries the HTTP status and body before Protocol interprets them.
    with pytest.raises(WinRMTransportError) as caught:
        protocol.transport.send_message(xmltodict.unparse(request))
    gate.set()
    assert caught.value.code == 500
    fault = xmltodict.parse(caught.value.response_text)["s:Envelope"]["s:Body"]["s:Fault"]
    assert fault["s:Code"]["s:Value"] == "s:Receiver"
    assert fault["s:Code"]["s:Subcode"]["s:Value"] == "w:TimedOut"
    assert fault["s:Detail"]["f:WSManFault"]["@Code"] == "2150858793"
    assert "OperationTimeout" in fault["s:Reason"]["s:Text"]["#text"]


def test_signal_of_a_running_command_drops_its_outcome(fleet: Any) -> None:
    gate = threading.Event()
    running = fleet(ScriptedHost("relay01", gate=gate))
    protocol = running.protocol("relay01", read_timeout_sec=3, operation_timeout_sec=1)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "PowerShell", ["-x"])
    protocol.cleanup_command(shell_id, command_id)
    with pytest.raises(WSManFaultError, match=f"command with CommandId {command_id} was not found"):
        protocol.get_command_output_raw(shell_id, command_id)
    protocol.close_shell(shell_id)
    workers = [t for t in threading.enumerate() if t.name == f"winrs-relay01-{command_id[:8]}"]
    assert len(workers) == 1 and workers[0].daemon
    gate.set()
    workers[0].join(timeout=10)
    assert not workers[0].is_alive()
    assert running.hosts["relay01"].calls == [("PowerShell", ["-x"])]
    assert running.simulator.services["relay01"].open_shells == 0


def test_delay_after_a_slow_command_still_times_out(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", sleep_s=1.5, outcome=Outcome(b"late", delay_s=5)))
    with pytest.raises(requests.exceptions.ReadTimeout):
        run(running.protocol("relay01", read_timeout_sec=3, operation_timeout_sec=1))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT20.000S", 20.0), ("PT1S", 1.0), ("PT0.5S", 0.5), ("PT2M", 120.0), ("PT1H1M1S", 3661.0), ("P1DT0S", 86400.0), ("P0D", 0.0)],
)
def test_operation_timeout_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["20", "PT", "P", "PTS", "PT-1S", "PT1.S", "1S"])
def test_bad_operation_timeout_is_refused(text: str) -> None:
    with pytest.raises(WsmanFault, match="is not an xs:duration"):
        parse_duration(text)


def test_bad_operation_timeout_on_receive_is_a_clear_fault(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "PowerShell", ["-x"])
    request = receive_request(protocol, shell_id, command_id)
    request["env:Envelope"]["env:Header"]["w:OperationTimeout"] = "twenty seconds"
    with pytest.raises(WSManFaultError, match="w:OperationTimeout 'twenty seconds' is not an xs:duration"):
        protocol.send_message(xmltodict.unparse(request))
    assert protocol.get_command_output(shell_id, command_id)[2] == 0
