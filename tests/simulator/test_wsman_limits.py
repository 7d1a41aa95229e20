"""The WinRM service limits and refusals of a Windows host, as the simulator enforces them.

Every test here fails if the simulator lets through what Windows refuses, or
refuses in another shape than Windows does. The numbers are the defaults of
Windows Server 2012 R2 and later; the sources are in docs/windows-facts.md,
"WinRM service limits the simulator enforces". Clients are real: pywinrm's
``Protocol``, or pyspnego and requests where the test must choose what the
client sends.
"""

from __future__ import annotations

import base64
import io
import ssl
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import spnego
import xmltodict
from spnego._ntlm_raw.messages import AvId, Challenge
from spnego.channel_bindings import GssChannelBindings
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol

from tests.simulator import tls
from tests.simulator.conftest import Running, ScriptedHost, log_entries, run
from tests.simulator.scenario import ScenarioError, parse_scenario
from tests.simulator.server import SOAP_CONTENT_TYPE, UNENCRYPTED_REFUSAL
from tests.simulator.wsman import CMD_RESOURCE_URI, NS_SHELL, NS_TRANSFER

SHELL_NOT_FOUND = 2150858843
SCHEMA_VALIDATION_ERROR = 2150858817
QUOTA_MAX_SHELLS = 2150859173
QUOTA_MAX_OPERATIONS = 2150859174
MAX_ENVELOPE_BYTES = 500 * 1024
IDLE_TIMEOUT_S = 7200


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand, so that hours of idle time pass at once."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def command_envelope(protocol: Protocol, shell_id: str, size: int) -> str:
    """A Command request of exactly ``size`` bytes, padded in its arguments."""

    def build(padding: int) -> str:
        request: dict[str, Any] = {
            "env:Envelope": protocol.build_wsman_header(action=NS_SHELL + "/Command", resource_uri=CMD_RESOURCE_URI, shell_id=shell_id)
        }
        request["env:Envelope"]["env:Body"] = {"rsp:CommandLine": {"rsp:Command": "PowerShell", "rsp:Arguments": "x" * padding}}
        return str(xmltodict.unparse(request))

    text = build(size - len(build(0).encode()))
    assert len(text.encode()) == size
    return text


def create_envelope(protocol: Protocol, idle_timeout: str | None = None) -> str:
    request: dict[str, Any] = {"env:Envelope": protocol.build_wsman_header(action=NS_TRANSFER + "/Create", resource_uri=CMD_RESOURCE_URI)}
    shell: dict[str, str] = {"rsp:InputStreams": "stdin", "rsp:OutputStreams": "stdout stderr"}
    if idle_timeout is not None:
        shell["rsp:IdleTimeOut"] = idle_timeout
    request["env:Envelope"]["env:Body"] = {"rsp:Shell": shell}
    return str(xmltodict.unparse(request))


def refused(stream: io.StringIO, reason: str) -> list[dict[str, Any]]:
    """The request log's entries refused for ``reason``, waiting a little: each line is written just after its answer."""
    deadline = time.monotonic() + 5
    while True:
        found = [entry for entry in log_entries(stream) if entry.get("refused") == reason]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def url(running: Running, name: str) -> str:
    endpoint = running.simulator.endpoints[name]
    return f"{endpoint.scheme}://127.0.0.1:{endpoint.port}/wsman"


def ntlm_post(session: requests.Session, address: str, client: spnego.ContextProxy, body: bytes) -> requests.Response:
    """An NTLM handshake by hand on one kept-alive connection; the AUTHENTICATE leg carries ``body``."""
    negotiate = base64.b64encode(client.step() or b"").decode()
    challenge = session.post(address, data=b"", headers={"Authorization": f"Negotiate {negotiate}"}, timeout=10)
    assert challenge.status_code == 401
    token = base64.b64decode(challenge.headers["WWW-Authenticate"].split(" ", 1)[1])
    authenticate = base64.b64encode(client.step(token) or b"").decode()
    headers = {"Authorization": f"Negotiate {authenticate}", "Content-Type": SOAP_CONTENT_TYPE}
    return session.post(address, data=body, headers=headers, timeout=10)


# ----------------------------------------------------------------- MaxEnvelopeSizekb


@pytest.mark.parametrize(("auth", "scheme"), [("ntlm", "http"), ("basic", "https")])
def test_an_envelope_over_max_envelope_size_is_a_bare_413(fleet: Any, request_log: io.StringIO, auth: str, scheme: str) -> None:
    running = fleet(ScriptedHost("relay01", auth=auth, scheme=scheme))
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell()
    # 500 KiB exactly passes; over NTLM the HTTP body is larger, the limit is on the decrypted envelope.
    assert b"CommandResponse" in protocol.send_message(command_envelope(protocol, shell_id, MAX_ENVELOPE_BYTES))
    with pytest.raises(WinRMTransportError) as caught:
        protocol.send_message(command_envelope(protocol, shell_id, MAX_ENVELOPE_BYTES + 1))
    # No SOAP fault in it, so pywinrm reports the bare status, as against Windows.
    assert (caught.value.code, caught.value.response_text) == (413, "")
    assert [entry["status"] for entry in refused(request_log, "envelope larger than MaxEnvelopeSizekb")] == [413]
    # The connection and the shell are still good.
    protocol.close_shell(shell_id)


# ----------------------------------------------------------------- MaxShellsPerUser


def test_the_31st_shell_of_a_user_gets_the_quota_fault(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    protocol = running.protocol("relay01")
    shells = [protocol.open_shell() for _number in range(30)]
    with pytest.raises(WSManFaultError) as caught:
        protocol.open_shell()
    fault = caught.value
    assert (fault.code, fault.fault_code, fault.fault_subcode, fault.wsman_fault_code) == (500, "s:Sender", "w:QuotaLimit", QUOTA_MAX_SHELLS)
    assert fault.reason == (
        "The WS-Management service cannot process the request. The maximum number of concurrent shells for this user "
        "has been exceeded. Close existing shells or raise the quota for this user."
    )
    assert "This user is allowed a maximum number of 30 concurrent shells, which has been exceeded." in fault.response
    # Deleting one shell makes room for exactly one.
    protocol.close_shell(shells.pop(), close_session=False)
    shells.append(protocol.open_shell())
    with pytest.raises(WSManFaultError, match="maximum number of concurrent shells"):
        protocol.open_shell()
    for shell_id in shells:
        protocol.close_shell(shell_id, close_session=False)
    assert running.simulator.services["relay01"].open_shells == 0


# ----------------------------------------------------------------- MaxConcurrentOperationsPerUser


def test_every_command_holds_an_operation_until_its_shell_is_deleted(fleet: Any) -> None:
    # Basic over HTTP is the cheapest way through 1,500 requests.
    running = fleet(ScriptedHost("relay01", auth="basic", allow_unencrypted=True))
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell()
    # The shell holds one operation and each Command one more; a Signal does not give it back.
    protocol.cleanup_command(shell_id, protocol.run_command(shell_id, "PowerShell", ["-x"]))
    for _number in range(1500 - 2):
        protocol.run_command(shell_id, "PowerShell", ["-x"])
    with pytest.raises(WSManFaultError) as caught:
        protocol.run_command(shell_id, "PowerShell", ["-x"])
    fault = caught.value
    # Where Ansible's winrm connection reads the code before it re-creates its shell.
    assert (fault.wmierror_code, fault.wsman_fault_code, fault.fault_subcode) == (QUOTA_MAX_OPERATIONS, None, "w:InternalError")
    assert fault.reason == (
        "The WS-Management service cannot process the request. This user is allowed a maximum number of 1500 concurrent "
        "operations, which has been exceeded. Close existing operations for this user, or raise the quota for this user."
    )
    # The quota is the user's, not the shell's: a new shell is refused too while the old one lives.
    with pytest.raises(WSManFaultError) as again:
        protocol.open_shell()
    assert again.value.wmierror_code == QUOTA_MAX_OPERATIONS
    # What Ansible does next: delete the shell and start over in a new one.
    protocol.close_shell(shell_id, close_session=False)
    fresh = protocol.open_shell()
    assert protocol.get_command_output(fresh, protocol.run_command(fresh, "PowerShell", ["-x"]))[2] == 0


# ----------------------------------------------------------------- IdleTimeOut


@pytest.mark.parametrize(
    ("asked", "effective"),
    [(None, "PT7200.000S"), ("PT60S", "PT60.000S"), ("PT0S", "PT7200.000S"), ("PT3H", "PT7200.000S")],
)
def test_create_answers_with_the_idle_timeout_the_shell_gets(fleet: Any, asked: str | None, effective: str) -> None:
    running = fleet(ScriptedHost("relay01"))
    protocol = running.protocol("relay01")
    answer = xmltodict.parse(protocol.send_message(create_envelope(protocol, asked)))
    assert answer["s:Envelope"]["s:Body"]["rsp:Shell"]["rsp:IdleTimeOut"] == effective


def test_a_shell_unused_longer_than_its_idle_timeout_is_deleted(fleet: Any) -> None:
    clock = FakeClock()
    running = fleet(ScriptedHost("relay01"), clock=clock)
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell()
    clock.advance(IDLE_TIMEOUT_S)
    # Used just in time: its idle time starts again.
    assert protocol.get_command_output(shell_id, protocol.run_command(shell_id, "PowerShell", ["-x"]))[2] == 0
    clock.advance(IDLE_TIMEOUT_S + 0.5)
    with pytest.raises(WSManFaultError) as caught:
        protocol.run_command(shell_id, "PowerShell", ["-x"])
    fault = caught.value
    assert (fault.wsman_fault_code, fault.fault_subcode) == (SHELL_NOT_FOUND, "w:InvalidSelectors")
    assert fault.reason.startswith(f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found")
    assert running.simulator.services["relay01"].open_shells == 0


def test_idle_shells_stop_counting_against_the_shell_quota(fleet: Any) -> None:
    clock = FakeClock()
    running = fleet(ScriptedHost("relay01"), clock=clock)
    protocol = running.protocol("relay01")
    for _number in range(30):
        protocol.open_shell()
    clock.advance(IDLE_TIMEOUT_S + 0.5)
    assert protocol.open_shell()


def test_a_shorter_idle_timeout_asked_for_is_the_one_kept(fleet: Any) -> None:
    clock = FakeClock()
    running = fleet(ScriptedHost("relay01"), clock=clock)
    protocol = running.protocol("relay01")
    shell_id = protocol.open_shell(idle_timeout="PT60S")
    clock.advance(60.5)
    with pytest.raises(WSManFaultError, match="shell was not found"):
        protocol.run_command(shell_id, "PowerShell", ["-x"])


def test_an_idle_timeout_that_is_no_duration_is_a_schema_fault(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    # pywinrm passes its idle_timeout through as it is: milliseconds are not an xs:duration.
    with pytest.raises(WSManFaultError) as caught:
        running.protocol("relay01").open_shell(idle_timeout=3600000)
    assert (caught.value.fault_subcode, caught.value.wsman_fault_code) == ("w:SchemaValidationError", SCHEMA_VALIDATION_ERROR)
    assert running.simulator.services["relay01"].open_shells == 0


# ----------------------------------------------------------------- AllowUnencrypted


def test_basic_over_http_is_refused_even_with_the_right_password(fleet: Any, request_log: io.StringIO) -> None:
    running = fleet(ScriptedHost("relay01", auth="basic"), ScriptedHost("relay02", auth="basic", allow_unencrypted=True))
    with pytest.raises(InvalidCredentialsError):
        run(running.protocol("relay01"))
    assert running.hosts["relay01"].calls == []
    assert {entry["status"] for entry in refused(request_log, UNENCRYPTED_REFUSAL)} == {401}
    # The opt-in lets it through.
    assert run(running.protocol("relay02"))[2] == 0


def test_an_unsealed_ntlm_body_over_http_is_refused(fleet: Any, request_log: io.StringIO) -> None:
    running = fleet(ScriptedHost("relay01"))
    with pytest.raises(InvalidCredentialsError):
        run(running.protocol("relay01", message_encryption="never"))
    assert running.hosts["relay01"].calls == []
    assert {entry["status"] for entry in refused(request_log, UNENCRYPTED_REFUSAL)} == {401}


def test_scenario_hosts_use_ntlm_and_refuse_unencrypted_unless_told() -> None:
    hosts = parse_scenario({"hosts": {"a": {}, "b": {"auth": "basic", "allow_unencrypted": True}}}).hosts
    assert [(host.auth, host.allow_unencrypted) for host in hosts] == [("ntlm", False), ("basic", True)]
    with pytest.raises(ScenarioError, match=r"host 'a'\.allow_unencrypted: expected true or false, got 'yes'"):
        parse_scenario({"hosts": {"a": {"allow_unencrypted": "yes"}}})


# ----------------------------------------------------------------- NTLM accounts and channel binding


def test_the_ntlm_challenge_names_the_simulated_computer(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    host = running.hosts["relay01"]
    client = spnego.client(host.username, host.password, protocol="ntlm")
    with requests.Session() as session:
        negotiate = base64.b64encode(client.step() or b"").decode()
        answer = session.post(url(running, "relay01"), data=b"", headers={"Authorization": f"Negotiate {negotiate}"}, timeout=10)
    challenge = Challenge.unpack(base64.b64decode(answer.headers["WWW-Authenticate"].split(" ", 1)[1]))
    assert challenge.target_name == "RELAY01"
    assert challenge.target_info is not None
    assert (challenge.target_info[AvId.nb_computer_name], challenge.target_info[AvId.nb_domain_name]) == ("RELAY01", "RELAY01")


TRANSPORTS = [("ntlm", "http"), ("basic", "https")]


@pytest.mark.parametrize(("auth", "scheme"), TRANSPORTS)
@pytest.mark.parametrize("username", ["Administrator", "administrator", "RELAY01\\Administrator", "relay01\\ADMINISTRATOR", ".\\Administrator"])
def test_the_local_account_is_taken_in_every_spelling(fleet: Any, auth: str, scheme: str, username: str) -> None:
    running = fleet(ScriptedHost("relay01", auth=auth, scheme=scheme))
    assert run(running.protocol("relay01", username=username))[2] == 0


@pytest.mark.parametrize(("auth", "scheme"), TRANSPORTS)
@pytest.mark.parametrize("username", ["OTHER\\Administrator", "RELAY02\\Administrator", "RELAY01\\Guest"])
def test_another_domain_or_account_is_refused(fleet: Any, auth: str, scheme: str, username: str) -> None:
    running = fleet(ScriptedHost("relay01", auth=auth, scheme=scheme))
    with pytest.raises(InvalidCredentialsError):
        run(running.protocol("relay01", username=username))
    assert running.hosts["relay01"].calls == []


def server_bindings(port: int) -> GssChannelBindings:
    """The RFC 5929 tls-server-end-point binding of the certificate the listener presents."""
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port)))
    return GssChannelBindings(application_data=b"tls-server-end-point:" + tls.channel_binding_hash(der))


@pytest.mark.parametrize(("sent", "status"), [("right", 200), ("none", 200), ("wrong", 401)])
def test_channel_binding_over_https_is_relaxed(fleet: Any, sent: str, status: int) -> None:
    running = fleet(ScriptedHost("relay01", scheme="https"))
    host = running.hosts["relay01"]
    bindings = {
        "right": server_bindings(running.simulator.endpoints["relay01"].port),
        # CbtHardeningLevel Relaxed lets a client that binds to nothing in.
        "none": None,
        "wrong": GssChannelBindings(application_data=b"tls-server-end-point:" + bytes(32)),
    }[sent]
    client = spnego.client(host.username, host.password, protocol="ntlm", channel_bindings=bindings)
    with requests.Session() as session:
        # Only the simulator's CA: the environment's bundle would override session.verify.
        session.trust_env = False
        session.verify = str(running.simulator.ca_path)
        answer = ntlm_post(session, url(running, "relay01"), client, create_envelope(running.protocol("relay01")).encode())
    assert answer.status_code == status
    assert running.simulator.services["relay01"].open_shells == (1 if status == 200 else 0)
