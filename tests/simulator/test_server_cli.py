"""``python -m tests.simulator`` end to end: the real model behind the real server.

Starts the command line as a user would, waits for the inventory, talks to
the hosts it names with pywinrm, stops it with SIGTERM and reads the state
dump and the request log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from winrm.protocol import Protocol

from tests.simulator.emulator import build_call, decode_line, read_agent

REPO_ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
group: relays
defaults: {os: "Windows Server 2019", transition_s: 0.05}
hosts:
  relay01:
    password: "Relay01-Pa55"
    instances:
      - {id: 1, comment: "Default SMTP Virtual Server", state: started}
      - {id: 2, comment: "App relay", state: stopped}
  relay02:
    auth: ntlm
    scheme: https
  relay03:
    unreachable: true
"""


def _wait_for(path: Path, process: subprocess.Popen[str], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"simulator exited {process.returncode}: {process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("simulator wrote no inventory")
        time.sleep(0.05)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    (tmp_path / "scenario.yml").write_text(SCENARIO)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.simulator",
            "--scenario",
            str(tmp_path / "scenario.yml"),
            "--inventory",
            str(tmp_path / "inventory.yml"),
            "--state-dump",
            str(tmp_path / "state.json"),
            "--request-log",
            str(tmp_path / "requests.jsonl"),
        ],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(tmp_path / "inventory.yml", process)
        yield process, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _protocol(variables: dict[str, Any]) -> Protocol:
    options: dict[str, Any] = {
        "transport": variables["ansible_winrm_transport"],
        "username": variables["ansible_user"],
        "password": variables["ansible_password"],
        "server_cert_validation": variables["ansible_winrm_server_cert_validation"],
        # None: trust only what the inventory names, not the environment's bundle.
        "ca_trust_path": variables.get("ansible_winrm_ca_trust_path"),
        "read_timeout_sec": variables["ansible_winrm_read_timeout_sec"],
        "operation_timeout_sec": variables["ansible_winrm_operation_timeout_sec"],
    }
    endpoint = f"{variables['ansible_winrm_scheme']}://{variables['ansible_host']}:{variables['ansible_port']}/wsman"
    return Protocol(endpoint, **options)


def _run(protocol: Protocol, command: str, arguments: list[str], stdin: bytes | None = None) -> tuple[bytes, bytes, int]:
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, command, arguments)
    if stdin is not None:
        protocol.send_command_input(shell_id, command_id, stdin, end=True)
    result = protocol.get_command_output(shell_id, command_id)
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)
    return result


def test_cli_serves_the_scenario_and_dumps_state(simulator: tuple[subprocess.Popen[str], Path]) -> None:
    process, directory = simulator
    inventory_path = directory / "inventory.yml"
    assert inventory_path.stat().st_mode & 0o777 == 0o600
    hosts = yaml.safe_load(inventory_path.read_text())["all"]["children"]["relays"]["hosts"]
    assert list(hosts) == ["relay01", "relay02", "relay03"]
    relay01, relay02 = hosts["relay01"], hosts["relay02"]
    assert relay01["ansible_connection"] == "winrm" and relay01["ansible_shell_type"] == "powershell"
    # The scenario default: NTLM, sealed over plain HTTP.
    assert (relay01["ansible_winrm_transport"], relay01["ansible_winrm_scheme"]) == ("ntlm", "http")
    assert relay01["ansible_password"] == "Relay01-Pa55"
    assert (relay02["ansible_winrm_transport"], relay02["ansible_winrm_scheme"]) == ("ntlm", "https")
    assert Path(relay02["ansible_winrm_ca_trust_path"]).is_file()

    agent = read_agent()
    command, arguments, stdin = build_call(agent, {"protocol": 1, "action": "observe"})
    for variables in (relay01, relay02):
        stdout, dummy, rc = _run(_protocol(variables), command, arguments, stdin)
        assert rc == 0
        response = decode_line(stdout)
        assert response["ok"] is True
    observed = decode_line(_run(_protocol(relay01), command, arguments, stdin)[0])["observation"]
    assert [(i["id"], i["server_state"]) for i in observed["instances"]] == [(1, 2), (2, 4)]

    dummy, stderr, rc = _run(_protocol(relay01), "ipconfig", ["/all"])
    assert rc != 0
    assert b"not supported by the simulator" in stderr

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", hosts["relay03"]["ansible_port"]), timeout=5)

    # SIGUSR1: the state as it is now, and the fleet keeps serving.
    dump_path = directory / "state.json"
    assert not dump_path.exists()
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not dump_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    live = json.loads(dump_path.read_text())["hosts"]
    assert live["relay01"]["observes"] == 2 and live["relay02"]["observes"] == 1
    assert process.poll() is None
    assert _run(_protocol(relay01), command, arguments, stdin)[2] == 0

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    state = json.loads((directory / "state.json").read_text())["hosts"]
    assert state["relay01"]["observes"] == 3 and state["relay02"]["observes"] == 1
    assert state["relay01"]["operations"] == []

    log_text = (directory / "requests.jsonl").read_text()
    assert "Relay01-Pa55" not in log_text and relay02["ansible_password"] not in log_text
    entries = [json.loads(line) for line in log_text.splitlines()]
    commands = [e for e in entries if e.get("action") == "Command"]
    assert [e["command"] for e in commands if e["host"] == "relay01"] == ["PowerShell", "PowerShell", "ipconfig", "PowerShell"]
    assert not os.path.exists(relay02["ansible_winrm_ca_trust_path"])


def test_cli_refuses_a_bad_scenario(tmp_path: Path) -> None:
    (tmp_path / "scenario.yml").write_text("hosts:\n  relay01: {auth: kerberos}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.simulator",
            "--scenario",
            str(tmp_path / "scenario.yml"),
            "--inventory",
            str(tmp_path / "inventory.yml"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "kerberos" in result.stderr
    assert not (tmp_path / "inventory.yml").exists()


def test_cli_writes_psrp_and_ssh_hosts_with_their_keys(tmp_path: Path) -> None:
    (tmp_path / "scenario.yml").write_text(
        "hosts:\n"
        "  ps01: {connection: psrp, scheme: https}\n"
        "  ssh01: {connection: ssh}\n"
        "  winrm01: {}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--scenario", str(tmp_path / "scenario.yml"),
         "--inventory", str(tmp_path / "inventory.yml")],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(tmp_path / "inventory.yml", process)
        hosts = yaml.safe_load((tmp_path / "inventory.yml").read_text())["all"]["children"]["smtp_servers"]["hosts"]
        assert list(hosts) == ["ps01", "ssh01", "winrm01"]
        ps01, ssh01 = hosts["ps01"], hosts["ssh01"]
        assert (ps01["ansible_connection"], ps01["ansible_psrp_auth"], ps01["ansible_psrp_protocol"]) == ("psrp", "ntlm", "https")
        assert ps01["ansible_psrp_cert_validation"] == "validate" and Path(ps01["ansible_psrp_ca_cert"]).is_file()
        assert (ssh01["ansible_connection"], ssh01["ansible_shell_type"]) == ("ssh", "powershell")
        assert "ansible_password" not in ssh01 and ssh01["ansible_ssh_host_key_checking"] is True
        key = Path(ssh01["ansible_ssh_private_key_file"])
        assert key.stat().st_mode & 0o777 == 0o600
        assert "StrictHostKeyChecking=yes" in ssh01["ansible_ssh_common_args"]
        known_hosts = ssh01["ansible_ssh_common_args"].split("UserKnownHostsFile=")[1].split()[0]
        assert Path(known_hosts).read_text().startswith(f"[127.0.0.1]:{ssh01['ansible_port']} ssh-ed25519 ")
        assert hosts["winrm01"]["ansible_connection"] == "winrm"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    # The run's key and CA go with it.
    assert not key.exists() and not Path(ps01["ansible_psrp_ca_cert"]).exists()


@pytest.mark.parametrize(
    ("host", "message"),
    [("{connection: telnet}", "connection"), ("{connection: ssh, default_shell: bash}", "default_shell"),
     ("{connection: ssh, faults: {http_401: true}}", "a WS-Management fault; this host's connection is ssh")],
    ids=["connection", "default-shell", "wsman-fault-on-ssh"])
def test_cli_refuses_a_bad_connection_key(tmp_path: Path, host: str, message: str) -> None:
    (tmp_path / "scenario.yml").write_text(f"hosts:\n  relay01: {host}\n")
    result = subprocess.run(
        [sys.executable, "-m", "tests.simulator", "--scenario", str(tmp_path / "scenario.yml"),
         "--inventory", str(tmp_path / "inventory.yml")],
        cwd=REPO_ROOT, capture_output=True, check=False, text=True, timeout=60,
    )
    assert result.returncode == 2 and message in result.stderr
