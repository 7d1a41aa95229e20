"""The command line as Windows limits it: cmd.exe's 8,191 characters, CreateProcess's 32,767.

Driven with the real pywinrm against the real server and a simulated host,
so what is pinned here is what a WinRM client meets. The old transport put
the whole agent on the command line (23,000 characters and more); these
tests keep that way refused, and the collection's own way (a short
bootstrap, the agent on stdin) served.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.plugins.loader import shell_loader
from winrm.exceptions import WSManFaultError
from winrm.protocol import Protocol

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _protocol, _transport
from tests.simulator.emulator import normalise, read_agent
from tests.simulator.model import Fleet, Host
from tests.simulator.server import MAX_CMD_EXE_CHARS, Simulator

TOO_LONG = b"The command line is too long.\r\n"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Host, Protocol]]:
    host = Fleet.from_dict({"hosts": {"relay01": {"auth": "ntlm", "password": "Pa55-word"}}}).hosts["relay01"]
    simulator = Simulator([host], tmp_path)
    simulator.start()
    endpoint = simulator.endpoints["relay01"]
    protocol = Protocol(f"http://127.0.0.1:{endpoint.port}/wsman", transport="ntlm", username=host.username,
                        password="Pa55-word", read_timeout_sec=10, operation_timeout_sec=5)
    try:
        yield host, protocol
    finally:
        simulator.stop()


def run(protocol: Protocol, command: str, arguments: list[str], stdin: bytes | None = None,
        skip_cmd_shell: bool = False) -> tuple[bytes, bytes, int]:
    shell_id = protocol.open_shell()
    try:
        command_id = protocol.run_command(shell_id, command, arguments, skip_cmd_shell=skip_cmd_shell)
        if stdin is not None:
            protocol.send_command_input(shell_id, command_id, stdin, end=True)
        result = protocol.get_command_output(shell_id, command_id)
        protocol.cleanup_command(shell_id, command_id)
        return result
    finally:
        protocol.close_shell(shell_id)


def split(command_line: str) -> tuple[str, list[str]]:
    """What Ansible's winrm connection sends for an encoded command: the first word, then the rest."""
    words = command_line.split(" ")
    return words[0], words[1:]


def old_agent_command() -> str:
    """How the collection used to call the agent: all of it, and the request, on the command line."""
    request = base64.b64encode(json.dumps(_protocol.observe_request()).encode()).decode()
    script = "& {\n%s\n} '%s'" % (normalise(read_agent()), request)
    return str(shell_loader.get("powershell")._encode_script(script, strict_mode=False, preserve_rc=False))


def test_the_old_agent_command_line_is_too_long_for_cmd_exe(relay: tuple[Host, Protocol]) -> None:
    host, protocol = relay
    command_line = old_agent_command()
    assert len(command_line) > 20000
    stdout, stderr, rc = run(protocol, *split(command_line))
    assert (stdout, stderr, rc) == (b"", TOO_LONG, 1)
    assert host.commands == 0 and host.observes == 0


@pytest.mark.parametrize(("length", "refused"), [(MAX_CMD_EXE_CHARS, False), (MAX_CMD_EXE_CHARS + 1, True)])
def test_cmd_exe_takes_8191_characters_and_not_one_more(relay: tuple[Host, Protocol], length: int,
                                                        refused: bool) -> None:
    host, protocol = relay
    # "PowerShell" + " " + arguments: the line cmd.exe is given.
    argument = "-EncodedCommand " + "A" * (length - len("PowerShell -EncodedCommand "))
    assert len("PowerShell " + argument) == length
    stdout, stderr, rc = run(protocol, "PowerShell", [argument])
    assert rc == 1 and stdout == b""
    if refused:
        assert stderr == TOO_LONG and host.commands == 0
    else:
        # Past cmd.exe: the host sees it, and refuses it as not the bootstrap.
        assert stderr != TOO_LONG and host.commands == 1


def test_without_cmd_exe_createprocess_stops_at_32767(relay: tuple[Host, Protocol]) -> None:
    host, protocol = relay
    stdout, stderr, rc = run(protocol, *split(old_agent_command()), skip_cmd_shell=True)
    assert stderr != TOO_LONG and host.commands == 1
    with pytest.raises(WSManFaultError) as fault:
        run(protocol, "PowerShell", ["-EncodedCommand " + "A" * 32767], skip_cmd_shell=True)
    assert fault.value.wsman_fault_code == 2147942606
    assert "The filename or extension is too long." in str(fault.value)
    assert host.commands == 1


def test_the_collections_call_is_served_with_the_agent_on_stdin(relay: tuple[Host, Protocol]) -> None:
    host, protocol = relay
    command_line, stdin = _transport.build_call(_protocol.observe_request())
    assert len(command_line) < 2000
    stdout, stderr, rc = run(protocol, *split(command_line), stdin=stdin)
    response: dict[str, Any] = _protocol.parse_output(rc, stdout, stderr)
    assert rc == 0 and response["ok"] is True and host.observes == 1


def test_the_bootstrap_without_stdin_runs_nothing(relay: tuple[Host, Protocol]) -> None:
    host, protocol = relay
    command_line, _stdin = _transport.build_call(_protocol.observe_request())
    stdout, stderr, rc = run(protocol, *split(command_line), stdin=b"")
    assert rc == 1 and stdout == b"" and stderr.startswith(b"#< CLIXML")
    assert host.observes == 0
