"""Windows OpenSSH as a simulated host plays it, through the real ``ssh`` client Ansible's ssh connection runs.

Key authentication for the host's account only, host keys checked against the
run's known_hosts, the default shell's limit on the line (cmd.exe's 8,191
characters with its own ``cmd.exe /c`` counted in; CreateProcess's 32,767 for
PowerShell) and nothing but a plain command line passed on to the host model.
Sources in docs/windows-facts.md, "Windows OpenSSH (ssh)".
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.simulator.emulator import build_call, decode_line, read_agent
from tests.simulator.model import Fleet
from tests.simulator.server import RequestLog
from tests.simulator.ssh import SshSimulator, parse_line

OBSERVE = {"protocol": 1, "action": "observe"}


@dataclass
class Ssh:
    simulator: SshSimulator
    fleet: Fleet
    workdir: Path

    def run(self, host: str, line: str | None, stdin: bytes = b"", *, user: str = "Administrator",
            key: Path | None = None, known_hosts: Path | None = None, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[bytes]:
        keys = self.simulator.keys
        assert keys is not None
        endpoint = self.simulator.endpoints[host]
        command = [
            "ssh", "-p", str(endpoint.port), "-o", f"UserKnownHostsFile={known_hosts or keys.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
            "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no", "-o", "BatchMode=yes",
            "-i", str(key or keys.private_key), "-l", user, *extra, "127.0.0.1",
        ]
        if line is not None:
            command.append(line)
        return subprocess.run(command, input=stdin, capture_output=True, timeout=60, check=False)


@pytest.fixture
def ssh_fleet(tmp_path: Path) -> Iterator[Any]:
    started: list[SshSimulator] = []

    def start(hosts: dict[str, Any], log: io.StringIO | None = None) -> Ssh:
        fleet = Fleet.from_dict({"defaults": {"connection": "ssh"}, "hosts": hosts})
        workdir = tmp_path / f"ssh-{len(started)}"
        workdir.mkdir(mode=0o700)
        simulator = SshSimulator(fleet.hosts.values(), workdir, RequestLog(log) if log is not None else None)
        simulator.start()
        started.append(simulator)
        return Ssh(simulator, fleet, workdir)

    yield start
    for simulator in started:
        simulator.stop()


def logged(log: io.StringIO) -> list[dict[str, Any]]:
    """The request log's lines, waiting a little: each is written just after its answer."""
    deadline = time.monotonic() + 5
    while not log.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    return [json.loads(text) for text in log.getvalue().splitlines()]


def agent_call(request: dict[str, Any]) -> tuple[str, bytes]:
    command, arguments, stdin = build_call(read_agent(), request)
    return " ".join([command, *arguments]), stdin


@pytest.mark.parametrize("shell", ["cmd", "powershell"])
def test_the_bootstrap_runs_through_the_default_shell_as_over_winrm(ssh_fleet: Any, shell: str) -> None:
    log = io.StringIO()
    ssh = ssh_fleet({"relay01": {"default_shell": shell, "instances": [{"id": 1, "state": "stopped"}]}}, log)
    line, stdin = agent_call(OBSERVE)
    done = ssh.run("relay01", line, stdin)
    assert done.returncode == 0, done.stderr
    document = decode_line(done.stdout)
    assert document["ok"] is True and document["observation"]["instances"][0]["server_state"] == 4
    command, arguments, _stdin = build_call(read_agent(), OBSERVE)
    over_winrm = decode_line(ssh.fleet.hosts["relay01"].run_command(command, arguments, lambda: stdin).stdout)
    assert {**document, "elapsed_ms": 0} == {**over_winrm, "elapsed_ms": 0}
    [entry] = logged(log)
    assert (entry["action"], entry["command"], entry["stdin_bytes"], entry["status"]) == ("Exec", "PowerShell", len(stdin), 0)


def test_cmd_exe_takes_8191_characters_with_its_own_start_and_not_one_more() -> None:
    # Windows OpenSSH runs `cmd.exe /c <line>`: 11 of cmd.exe's 8,191 characters are its own.
    fits = "PowerShell " + "A" * (8191 - len("cmd.exe /c ") - len("PowerShell "))
    assert parse_line(fits, "cmd").command == "PowerShell"
    assert parse_line(fits + "A", "cmd").too_long
    # PowerShell as DefaultShell gets the line through CreateProcess (`powershell.exe -c <line>`).
    fits = "PowerShell " + "A" * (32766 - len("powershell.exe -c ") - len("PowerShell "))
    assert not parse_line(fits, "powershell").too_long
    assert parse_line(fits + "A", "powershell").too_long


def test_a_line_too_long_for_cmd_exe_is_refused_before_anything_runs(ssh_fleet: Any) -> None:
    ssh = ssh_fleet({"relay01": {}})
    _line, stdin = agent_call(OBSERVE)
    done = ssh.run("relay01", "PowerShell -EncodedCommand " + "A" * 8200, stdin)
    assert (done.returncode, done.stdout, done.stderr) == (1, b"", b"The command line is too long.\r\n")
    assert ssh.fleet.hosts["relay01"].dump()["commands"] == 0


@pytest.mark.parametrize(
    "line", ["PowerShell -c Get-Process & whoami", 'PowerShell -c "Get-Process"', "PowerShell -c $env:USERNAME"],
    ids=["ampersand", "quotes", "variable"])
def test_a_line_the_shell_would_interpret_is_refused(ssh_fleet: Any, line: str) -> None:
    ssh = ssh_fleet({"relay01": {"default_shell": "powershell"}})
    done = ssh.run("relay01", line)
    assert done.returncode == 1
    assert done.stderr.startswith(b"not supported by the simulator: a command line with characters the powershell shell interprets")
    assert ssh.fleet.hosts["relay01"].dump()["commands"] == 0


def test_any_other_command_is_refused_by_the_host(ssh_fleet: Any) -> None:
    ssh = ssh_fleet({"relay01": {}})
    done = ssh.run("relay01", "whoami")
    assert done.returncode == 1 and done.stderr.startswith(b"not supported by the simulator: command 'whoami'")


def test_interactive_shells_and_sftp_are_refused(ssh_fleet: Any) -> None:
    ssh = ssh_fleet({"relay01": {}})
    shell = ssh.run("relay01", None, extra=("-T",))
    assert shell.returncode == 1 and b"not supported by the simulator: an interactive shell" in shell.stderr
    sftp = ssh.run("relay01", "sftp", extra=("-s",))
    assert sftp.returncode == 255 and b"subsystem request failed" in sftp.stderr


@pytest.mark.parametrize("wrong", ["key", "user"])
def test_a_wrong_key_or_user_is_refused_as_openssh_refuses_it(ssh_fleet: Any, wrong: str) -> None:
    ssh = ssh_fleet({"relay01": {}})
    other = ssh.workdir / "other-key"
    other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    other.chmod(0o600)
    done = ssh.run("relay01", "whoami", key=other if wrong == "key" else None, user="Guest" if wrong == "user" else "Administrator")
    # 255 is how the ssh client says it could not connect; Ansible reports the host unreachable.
    assert done.returncode == 255 and b"Permission denied (publickey)" in done.stderr
    assert ssh.fleet.hosts["relay01"].dump()["commands"] == 0


def test_the_local_account_is_taken_as_windows_spells_it(ssh_fleet: Any) -> None:
    ssh = ssh_fleet({"relay01": {}})
    for user in ("administrator", "RELAY01\\Administrator", ".\\Administrator"):
        assert ssh.run("relay01", "whoami", user=user).returncode == 1, user


def test_a_host_key_other_than_the_known_one_is_refused(ssh_fleet: Any) -> None:
    ssh = ssh_fleet({"relay01": {}})
    endpoint = ssh.simulator.endpoints["relay01"]
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known_hosts = ssh.workdir / "stranger-known-hosts"
    known_hosts.write_text(f"[127.0.0.1]:{endpoint.port} {stranger}\n")
    done = ssh.run("relay01", "whoami", known_hosts=known_hosts)
    assert done.returncode == 255 and b"Host key verification failed" in done.stderr


def test_an_unreachable_host_refuses_the_connection(ssh_fleet: Any) -> None:
    ssh = ssh_fleet({"down01": {"unreachable": True}})
    done = ssh.run("down01", "whoami")
    assert done.returncode == 255 and b"Connection refused" in done.stderr
