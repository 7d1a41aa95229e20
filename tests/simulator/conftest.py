"""What the simulator's tests share: a stepped clock, a scripted host, a running fleet, a pywinrm client.

``ScriptedHost`` stands in for ``model.Host`` (the fleet model has its own
tests); everything between pywinrm and ``run_command`` is the real server.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from winrm.protocol import Protocol

from tests.simulator.server import Simulator
from tests.simulator.wsman import CMD_RESOURCE_URI


class SteppedClock:
    """Time that moves only when told to, or when a host sleeps; also callable, as an engine's clock."""

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

    def __call__(self) -> float:
        return self.now


@dataclass
class Outcome:
    stdout: bytes
    stderr: bytes = b""
    exit_code: int = 0
    delay_s: float = 0
    cut: bool = False
    wsman_fault: str | None = None
    error: str | None = None


@dataclass
class ScriptedHost:
    """Answers every command with ``outcome`` and records what it was asked."""

    name: str
    # As a scenario host: NTLM, and AllowUnencrypted false (Basic over HTTP is refused).
    auth: str = "ntlm"
    scheme: str = "http"
    connection: str = "winrm"
    allow_unencrypted: bool = False
    username: str = "Administrator"
    password: str = field(default_factory=lambda: "Pw-" + uuid.uuid4().hex)
    port: int | None = None
    unreachable: bool = False
    faults: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None
    broken: bool = False
    sleep_s: float = 0
    gate: threading.Event | None = None
    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    reads_stdin: bool = False
    stdin: list[bytes] = field(default_factory=list)

    def fault_fires(self, name: str, action: str | None = None) -> bool:
        left = self.faults.get(name, 0)
        if left:
            self.faults[name] = left - 1
        return bool(left)

    def run_command(self, command: str, arguments: list[str], read_stdin: Callable[[], bytes]) -> Outcome:
        self.calls.append((command, arguments))
        self.stdin.append(read_stdin() if self.reads_stdin else b"")
        # A slow model call, such as an apply waiting for its instances to settle.
        time.sleep(self.sleep_s)
        if self.gate is not None:
            self.gate.wait()
        if self.broken:
            raise KeyError("no such instance")
        return self.outcome or Outcome(f"{command}|{' '.join(arguments)}".encode(), b"warning", 0)

    def run_script(self, script: str, read_stdin: Callable[[], bytes]) -> Outcome:
        """A script a runspace runs (psrp): recorded as the command ``(script)``."""
        return self.run_command("(script)", [script], read_stdin)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def request_log() -> io.StringIO:
    return io.StringIO()


@dataclass
class Running:
    simulator: Simulator
    hosts: dict[str, ScriptedHost]

    def protocol(self, name: str, **overrides: Any) -> Protocol:
        host = self.hosts[name]
        endpoint = self.simulator.endpoints[name]
        kwargs: dict[str, Any] = {
            "transport": host.auth,
            "username": host.username,
            "password": host.password,
            "server_cert_validation": "validate",
            "ca_trust_path": str(self.simulator.ca_path) if self.simulator.ca_path else None,
            "read_timeout_sec": 10,
            "operation_timeout_sec": 5,
        }
        kwargs.update(overrides)
        return Protocol(f"{endpoint.scheme}://127.0.0.1:{endpoint.port}/wsman", **kwargs)


@pytest.fixture
def fleet(workdir: Path, request_log: io.StringIO) -> Iterator[Any]:
    """Factory: start a simulator over the given hosts; stopped at teardown."""
    started: list[Simulator] = []

    def start(*hosts: ScriptedHost, **options: Any) -> Running:
        simulator = Simulator(hosts, workdir, request_log, **options)
        simulator.start()
        started.append(simulator)
        return Running(simulator, {h.name: h for h in hosts})

    yield start
    for simulator in started:
        simulator.stop()


def run(
    protocol: Protocol,
    command: str = "PowerShell",
    arguments: tuple[str, ...] = ("-NoProfile", "-EncodedCommand", "QQA="),
) -> tuple[bytes, bytes, int]:
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, command, arguments)
    result = protocol.get_command_output(shell_id, command_id)
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)
    return result


def log_entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def receive_request(protocol: Protocol, shell_id: str, command_id: str) -> dict[str, Any]:
    """A raw Receive envelope, for tests that must see the reply before pywinrm interprets it."""
    request: dict[str, Any] = {
        "env:Envelope": protocol.build_wsman_header(
            action="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive",
            resource_uri=CMD_RESOURCE_URI,
            shell_id=shell_id,
        )
    }
    request["env:Envelope"]["env:Body"] = {
        "rsp:Receive": {"rsp:DesiredStream": {"@CommandId": command_id, "#text": "stdout stderr"}}}
    return request
