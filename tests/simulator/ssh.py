"""Windows OpenSSH as a simulated host plays it, for Ansible's ``ssh`` connection.

Ansible's ssh connection (the real ``ssh`` client) with ``ansible_shell_type:
powershell`` runs each call as one exec request, the collection's command line,
with the agent and its request on stdin. Windows OpenSSH hands that line to
its default shell: ``cmd.exe /c`` unless ``DefaultShell`` names PowerShell,
which then gets it with ``-c``. This module plays that: key authentication
only (a key pair made per run, which the inventory names), a host key made per
run (written to a known_hosts file, so host-key checking can stay on), the
shell's limits on the line, and the line taken apart as that shell would
before ``powershell.exe`` gets it; then the same host model as over WinRM
(``Host.run_command``). Interactive shells, subsystems (sftp) and port
forwarding are refused; nothing the collection needs uses them.

The server is asyncssh, in one event loop on its own thread for every ssh
host of the fleet; a model call runs in a worker thread, since it blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from .server import CMD_LINE_TOO_LONG, MAX_CMD_EXE_CHARS, MAX_CREATEPROCESS_CHARS, CommandOutcomeLike, ConfigError, RequestLog, is_account

# What Windows Server 2022's OpenSSH says it is (asyncssh adds "SSH-2.0-").
SERVER_VERSION = "OpenSSH_for_Windows_8.1"
# How Windows OpenSSH starts its default shell with a command
# (DefaultShellCommandOption: /c for cmd.exe, -c for PowerShell).
SHELL_PREFIX = {"cmd": "cmd.exe /c ", "powershell": "powershell.exe -c "}
# The longest line each shell takes, its own start counted in: cmd.exe's
# 8,191 (KB 830473); PowerShell gets the line through CreateProcess, 32,767
# with its terminating NUL.
SHELL_LIMIT = {"cmd": MAX_CMD_EXE_CHARS, "powershell": MAX_CREATEPROCESS_CHARS}
# Characters either shell would read as more than words of one command line
# (cmd.exe: & | < > ^ % and quotes; PowerShell: also ; $ ` ( ) { } @ , ' and
# quotes). The collection's line has none; anything else is refused rather
# than half understood.
PLAIN_LINE = re.compile(r"[A-Za-z0-9+/=:.\\ _-]+")
LOGIN_TIMEOUT_S = 30
WORKERS = 64


class SshHostLike(Protocol):
    """The part of ``model.Host`` the ssh side uses."""

    @property
    def name(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def port(self) -> int | None: ...

    @property
    def unreachable(self) -> bool: ...

    @property
    def default_shell(self) -> str: ...

    def run_command(self, command: str, arguments: list[str], read_stdin: Callable[[], bytes]) -> CommandOutcomeLike:
        """Run one command line; ``read_stdin`` returns all of stdin."""


@dataclass(frozen=True)
class SshKeys:
    """The files the inventory points at: the client's private key and the hosts' known_hosts."""

    private_key: Path
    known_hosts: Path
    control_dir: Path


@dataclass(frozen=True)
class SshEndpoint:
    name: str
    port: int
    username: str


@dataclass(frozen=True)
class ShellLine:
    """What the default shell makes of an exec request's line: the program and its arguments, or why not."""

    command: str = ""
    arguments: list[str] = field(default_factory=list)
    too_long: bool = False
    refusal: str | None = None


def parse_line(line: str, shell: str) -> ShellLine:
    """The line as Windows OpenSSH's default shell would pass it on to powershell.exe."""
    if len(SHELL_PREFIX[shell]) + len(line) > SHELL_LIMIT[shell]:
        return ShellLine(too_long=True)
    if not PLAIN_LINE.fullmatch(line):
        bad = sorted({char for char in line if not PLAIN_LINE.fullmatch(char)})
        return ShellLine(refusal=f"a command line with characters the {shell} shell interprets ({''.join(bad)!r})")
    words = line.split()
    if not words:
        return ShellLine(refusal="an empty command line")
    return ShellLine(command=words[0], arguments=[" ".join(words[1:])])


class _Connection(asyncssh.SSHServer):
    """One client connection to one host: public-key authentication for the host's account only."""

    def __init__(self, host: SshHostLike, client_key: asyncssh.SSHKey, live: set[asyncssh.SSHServerConnection]):
        self._host = host
        self._client_key = client_key
        self._live = live
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        self._live.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._live.discard(self._connection)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Windows takes a local account in any case and as COMPUTER\user or .\user, as over WinRM.
        return is_account(self._host, username) and key.public_data == self._client_key.public_data


class SshSimulator:
    """The ssh listeners of a fleet, their keys and known_hosts, and the loop that serves them."""

    def __init__(self, hosts: Iterable[SshHostLike], workdir: Path, request_log: RequestLog | None = None):
        self._hosts = list(hosts)
        for host in self._hosts:
            if host.default_shell not in SHELL_PREFIX:
                raise ConfigError(f"host {host.name}: default_shell {host.default_shell!r} is not one of {', '.join(SHELL_PREFIX)}")
        self._workdir = workdir
        self._request_log = request_log
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._servers: list[asyncssh.SSHAcceptor] = []
        # Open client connections: ssh's ControlPersist keeps one per host for a minute after a run.
        self._live: set[asyncssh.SSHServerConnection] = set()
        self._refusing: list[socket.socket] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ssh-model")
        self.endpoints: dict[str, SshEndpoint] = {}
        self.keys: SshKeys | None = None

    def start(self) -> None:
        if not self._hosts:
            return
        self._thread = threading.Thread(target=self._loop.run_forever, name="ssh-loop", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    async def _start(self) -> None:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        private_key = self._workdir / "ssh-client-key"
        _write_private(private_key, client_key.export_private_key())
        known: list[str] = []
        for host in self._hosts:
            if host.unreachable:
                port = self._refuse(host.port or 0)
            else:
                server = await asyncssh.create_server(
                    lambda host=host: _Connection(host, client_key, self._live),
                    "127.0.0.1",
                    host.port or 0,
                    server_host_keys=[host_key],
                    server_version=SERVER_VERSION,
                    process_factory=lambda process, host=host: self._serve(host, process),
                    encoding=None,
                    login_timeout=LOGIN_TIMEOUT_S,
                    allow_scp=False,
                )
                self._servers.append(server)
                port = int(server.sockets[0].getsockname()[1])
            self.endpoints[host.name] = SshEndpoint(host.name, port, host.username)
            known.append(f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n")
        known_hosts = self._workdir / "ssh-known-hosts"
        known_hosts.write_text("".join(known))
        control_dir = self._workdir / "cp"
        control_dir.mkdir(mode=0o700, exist_ok=True)
        self.keys = SshKeys(private_key, known_hosts, control_dir)

    def _refuse(self, port: int) -> int:
        # Bound but never listening: every connection attempt is refused.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", port))
        self._refusing.append(sock)
        return int(sock.getsockname()[1])

    async def _serve(self, host: SshHostLike, process: asyncssh.SSHServerProcess[bytes]) -> None:
        log: dict[str, Any] = {"time": round(time.time(), 3), "host": host.name, "action": "Exec"}
        try:
            status = await self._exec(host, process, log)
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            status = None
        log["status"] = status
        if self._request_log is not None:
            self._request_log.write(log)

    async def _exec(self, host: SshHostLike, process: asyncssh.SSHServerProcess[bytes], log: dict[str, Any]) -> int | None:
        # Subsystems (sftp) never get here: with no sftp_factory asyncssh refuses the request itself.
        if process.command is None:
            return self._finish(process, b"", b"not supported by the simulator: an interactive shell (only exec requests run here)\r\n", 1)
        line = process.command
        log["command_line_chars"] = len(line)
        parsed = parse_line(line, host.default_shell)
        if parsed.too_long:
            # Refused by the shell before anything runs: no process reads stdin.
            log["refused"] = "command line too long"
            return self._finish(process, CMD_LINE_TOO_LONG.stdout, CMD_LINE_TOO_LONG.stderr, CMD_LINE_TOO_LONG.exit_code)
        if parsed.refusal is not None:
            log["refused"] = parsed.refusal
            return self._finish(process, b"", f"not supported by the simulator: {parsed.refusal}\r\n".encode(), 1)
        log["command"] = parsed.command
        stdin = await process.stdin.read()
        log["stdin_bytes"] = len(stdin)
        outcome = await self._loop.run_in_executor(
            self._executor, host.run_command, parsed.command, parsed.arguments, lambda: bytes(stdin)
        )
        if outcome.delay_s:
            await asyncio.sleep(outcome.delay_s)
        if outcome.cut:
            # The connection drops in the middle of the answer; the command has run.
            process.stdout.write(outcome.stdout[: len(outcome.stdout) // 2])
            await process.stdout.drain()
            process.channel.get_connection().abort()
            return None
        return self._finish(process, outcome.stdout, outcome.stderr, outcome.exit_code)

    @staticmethod
    def _finish(process: asyncssh.SSHServerProcess[bytes], stdout: bytes, stderr: bytes, status: int) -> int:
        process.stdout.write(stdout)
        process.stderr.write(stderr)
        # SSH carries the exit status as a uint32, as WinRS does.
        process.exit(status & 0xFFFFFFFF)
        return status

    def stop(self) -> None:
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._thread = None
        self._loop.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        for sock in self._refusing:
            sock.close()
        self._refusing.clear()

    async def _close(self) -> None:
        """Stop listening and drop every client connection, as a host shutting down does."""
        for server in self._servers:
            server.close()
        for conn in list(self._live):
            conn.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


def _write_private(path: Path, data: bytes) -> None:
    """The ssh client refuses a private key that others can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
