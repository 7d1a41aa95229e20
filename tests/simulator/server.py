"""The simulator's WS-Management (WinRM) server: one HTTP listener per simulated host.

The collection must be exercised through the real client stack (Ansible's
``winrm`` connection, pywinrm, requests, pyspnego), so the simulated fleet has
to speak the same wire protocol as a Windows host: SOAP 1.2 envelopes with
WS-Addressing on ``POST /wsman``, the WinRS shell actions (Create, Command,
Send, Receive, Signal, Delete), Basic or NTLM authentication (NTLM with
message encryption over HTTP), and HTTP or HTTPS. What a command *does* is the
host model's business (``host.run_command``); this module only carries it.
Whatever the simulator does not implement is answered with a WS-Management
fault that says so, never silently accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import os
import selectors
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Protocol, Self
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import spnego
from spnego._ntlm import NTLMProxy
from spnego._ntlm_raw.messages import Authenticate, AvId, Challenge, MessageType, NTClientChallengeV2, TargetInfo
from spnego.channel_bindings import GssChannelBindings

from . import psrp, tls
from .wsman import (
    ACTIONS,
    ANONYMOUS,
    CMD_RESOURCE_URI,
    COMMAND_STATE_DONE,
    COMMAND_STATE_RUNNING,
    ERROR_WSMAN_INVALID_SELECTORS,
    ERROR_WSMAN_OPERATION_TIMEDOUT,
    NS_SHELL,
    NS_TRANSFER,
    PSRP_RESOURCE_URI,
    TIMED_OUT_MESSAGE,
    Reply,
    Request,
    WsmanFault,
    envelope,
    fault_envelope,
    operation_timeout_s,
    operations_quota_fault,
    parse_duration,
    parse_request,
    qname,
    shells_quota_fault,
    stream_elements,
    unsupported,
)

# cmd.exe's longest command line; WinRS runs every command through cmd.exe
# unless the client sets WINRS_SKIP_CMD_SHELL (pywinrm and Ansible never do).
MAX_CMD_EXE_CHARS = 8191
# Without cmd.exe, CreateProcess's limit (32,767 with its terminating NUL).
MAX_CREATEPROCESS_CHARS = 32766
# HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), 2147942606.
ERROR_FILENAME_EXCED_RANGE = 0x800700CE
FILENAME_TOO_LONG_MESSAGE = "The filename or extension is too long."

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
MIME_BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"

# One Receive answer stays well inside the client's MaxEnvelopeSize (153,600
# bytes): output is handed out in slices, the way WinRS streams it.
RECEIVE_BUDGET = 96 * 1024
MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT_S = 300.0
TLS_HANDSHAKE_TIMEOUT_S = 30.0

SUPPORTED_AUTH = ("basic", "ntlm")
SUPPORTED_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class WinrmLimits:
    """The WinRM service settings a host enforces: Windows Server 2012 R2+ defaults (docs/windows-facts.md)."""

    # MaxEnvelopeSizekb: the largest SOAP envelope a request may carry, after NTLM decryption.
    max_envelope_kb: int = 500
    # winrs MaxShellsPerUser.
    max_shells_per_user: int = 30
    # MaxConcurrentOperationsPerUser: open shells plus every Command started in them.
    max_operations_per_user: int = 1500
    # winrs IdleTimeout (ms / 1000): the longest a shell may stay unused, and the cap on what a Create asks for.
    idle_timeout_s: float = 7200.0
    # The Microsoft.PowerShell session configuration's quotas (psrp), on top of the service's:
    # MaxShellsPerUser, and MaxConcurrentCommandsPerShell (pipelines not yet stopped).
    psrp_max_shells_per_user: int = 25
    psrp_max_commands_per_shell: int = 1000


WINDOWS_DEFAULTS = WinrmLimits()


class CommandOutcomeLike(Protocol):
    """What ``Host.run_command`` returns (``model.CommandOutcome``)."""

    @property
    def stdout(self) -> bytes: ...

    @property
    def stderr(self) -> bytes: ...

    @property
    def exit_code(self) -> int: ...

    @property
    def delay_s(self) -> float: ...

    @property
    def cut(self) -> bool: ...

    @property
    def wsman_fault(self) -> str | None: ...


class HostLike(Protocol):
    """The part of ``model.Host`` the server uses."""

    @property
    def name(self) -> str: ...

    @property
    def auth(self) -> str: ...

    @property
    def scheme(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def port(self) -> int | None: ...

    @property
    def allow_unencrypted(self) -> bool: ...

    # winrm or psrp (the inventory's ansible_connection); the server serves both shell kinds either way.
    @property
    def connection(self) -> str: ...

    @property
    def unreachable(self) -> bool: ...

    def fault_fires(self, name: str, action: str | None = None) -> bool:
        """Whether the connection-level fault ``name`` (``http_401``) fires now."""

    def run_command(self, command: str, arguments: list[str], read_stdin: Callable[[], bytes]) -> CommandOutcomeLike:
        """Run one command; ``read_stdin`` blocks until the client closes stdin and returns all of it."""

    def run_script(self, script: str, read_stdin: Callable[[], bytes]) -> psrp.OutcomeLike:
        """Run one script in a runspace (psrp) with its pipeline input."""


class ConfigError(ValueError):
    """A host cannot be served as configured; raised before any port is bound."""


# --------------------------------------------------------------------------- shells


@dataclass
class _Command:
    """One WinRS command: its input, and its outcome once the host model has produced it.

    The worker thread writes ``stdout`` ... ``fault`` and then sets ``done``;
    readers look at them only after ``done`` is set.
    """

    command_id: str
    done: threading.Event = field(default_factory=threading.Event)
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    delay_s: float = 0.0
    cut: bool = False
    fault: WsmanFault | None = None
    stdin: list[bytes] = field(default_factory=list)
    stdin_closed: bool = False
    # Set when stdin is closed or the command is signalled or its shell deleted.
    stdin_done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    delivered: bool = False
    out_pos: int = 0
    err_pos: int = 0

    def finish(self, outcome: CommandOutcomeLike) -> None:
        if outcome.wsman_fault:
            self.fault = WsmanFault(outcome.wsman_fault)
        else:
            self.stdout = bytes(outcome.stdout)
            self.stderr = bytes(outcome.stderr)
            # WinRS reports the process exit code as a DWORD: -1 arrives as 4294967295.
            self.exit_code = int(outcome.exit_code) & 0xFFFFFFFF
            self.delay_s = float(outcome.delay_s or 0)
            self.cut = bool(outcome.cut)
        self.done.set()

    def fail(self, fault: WsmanFault) -> None:
        self.fault = fault
        self.done.set()

    def read_stdin(self) -> bytes:
        """Everything the client sends on stdin, once it closes it; what a process reading stdin sees.

        A process that reads stdin waits until the client closes it, as on
        Windows; a command signalled or deleted meanwhile never gets it.
        """
        self.stdin_done.wait()
        if self.abandoned:
            raise StdinAbandoned(self.command_id)
        return b"".join(self.stdin)

    def abandon(self) -> None:
        self.abandoned = True
        self.stdin_done.set()


class StdinAbandoned(Exception):
    """The command was signalled or its shell deleted while it waited for stdin."""


@dataclass(frozen=True)
class _Outcome:
    """An outcome the server itself produces, without the host model."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    delay_s: float = 0.0
    cut: bool = False
    wsman_fault: str | None = None


# What cmd.exe answers to a line over its limit (KB 830473; pywinrm #184).
CMD_LINE_TOO_LONG = _Outcome(b"", b"The command line is too long.\r\n", 1)


@dataclass
class _Shell:
    shell_id: str
    idle_timeout_s: float
    # Clock reading of the last request on the shell; unused past idle_timeout_s, it is deleted.
    last_used: float
    commands: dict[str, _Command] = field(default_factory=dict)
    # Operations held against MaxConcurrentOperationsPerUser: the shell itself and
    # every Command started in it. WinRS releases a Command's only with its shell
    # (a Signal does not release it), hence Ansible re-creates the shell on the fault.
    operations: int = 1
    resource_uri: str = CMD_RESOURCE_URI
    # A PowerShell shell's runspace pool (psrp.py); None for a cmd shell.
    pool: psrp.RunspacePool | None = None

    def close(self) -> None:
        """Its commands end with it: none of them will read stdin now."""
        for command in self.commands.values():
            command.abandon()
        if self.pool is not None:
            self.pool.close()


class HostService:
    """The WinRS state of one host (its open shells) and the actions on it.

    Shells are shared by every connection to the host: a client that loses its
    TCP connection keeps its shell, as on Windows.
    """

    def __init__(self, host: HostLike, limits: WinrmLimits = WINDOWS_DEFAULTS, clock: Callable[[], float] = time.monotonic):
        self.host = host
        self.limits = limits
        # Injectable so that a test can let two hours of idle time pass at once.
        self._clock = clock
        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}

    @property
    def open_shells(self) -> int:
        with self._lock:
            self._reap()
            return len(self._shells)

    def handle(self, xml: bytes, log: dict[str, Any]) -> Reply:
        relates_to = ""
        try:
            request = parse_request(xml)
            relates_to = request.message_id
            action = ACTIONS.get(request.action_uri)
            log["action"] = action or request.action_uri
            log["shell_id"] = request.shell_id
            if request.resource_uri not in (CMD_RESOURCE_URI, PSRP_RESOURCE_URI):
                raise unsupported(f"resource URI {request.resource_uri or '(none)'}")
            if action is None:
                raise unsupported(f"action {request.action_uri or '(none)'}")
            handler: Callable[[Request, dict[str, Any]], Reply] = getattr(self, f"_do_{action.lower()}")
            with self._lock:
                self._reap()
            if action == "Command":
                return self._counted_command(handler, request, log)
            return handler(request, log)
        except WsmanFault as fault:
            log["fault"] = fault.message
            return Reply(500, fault_envelope(fault, relates_to, self.host.name))

    def _reap(self) -> None:
        """Delete the shells unused for longer than their IdleTimeOut, as WinRS does on its own. Lock held."""
        now = self._clock()
        for shell in [shell for shell in self._shells.values() if now - shell.last_used > shell.idle_timeout_s]:
            self._shells.pop(shell.shell_id).close()

    def _counted_command(self, handler: Callable[[Request, dict[str, Any]], Reply], request: Request, log: dict[str, Any]) -> Reply:
        """Run the Command handler if the user has an operation left; the shell holds it from then on."""
        with self._lock:
            shell = self._shell(request)
            self._check_operations()
            shell.operations += 1
        try:
            return handler(request, log)
        except WsmanFault:
            # Refused before anything started: nothing is held.
            with self._lock:
                shell.operations -= 1
            raise

    def _check_operations(self) -> None:
        """Lock held. Every shell of the host is this user's: a host has one account."""
        limit = self.limits.max_operations_per_user
        if sum(shell.operations for shell in self._shells.values()) >= limit:
            raise operations_quota_fault(limit)

    def _shell(self, request: Request) -> _Shell:
        """The request's shell, which the request uses (restarting its idle time). Lock held.

        A shell exists only under the resource URI it was created with.
        """
        shell = self._shells.get(request.shell_id or "")
        if shell is None or shell.resource_uri != request.resource_uri:
            raise WsmanFault(
                f"The request for the Windows Remote Shell with ShellId {request.shell_id} failed because the shell was not found "
                "on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the "
                "server. Provide the correct ShellId or create a new shell and retry the operation.",
                code=ERROR_WSMAN_INVALID_SELECTORS,
                subcode="w:InvalidSelectors",
                sender=True,
            )
        shell.last_used = self._clock()
        return shell

    def _command(self, request: Request, command_id: str | None) -> _Command:
        command = self._shell(request).commands.get(command_id or "")
        if command is None:
            raise WsmanFault(
                f"The request for the Windows Remote Shell with ShellId {request.shell_id} failed because the "
                f"command with CommandId {command_id} was not found.",
                code=ERROR_WSMAN_INVALID_SELECTORS,
                subcode="w:InvalidSelectors",
                sender=True,
            )
        return command

    def _do_create(self, request: Request, log: dict[str, Any]) -> Reply:
        idle_timeout_s = self._idle_timeout_s(request)
        powershell = request.resource_uri == PSRP_RESOURCE_URI
        with self._lock:
            self._check_shell_quotas(powershell)
        # A runspace pool answers its opening messages at once; the client's ShellId is kept, as on Windows.
        pool, shell_id = (
            psrp.open_pool(self.host, request, self.limits.psrp_max_commands_per_shell) if powershell else (None, str(uuid.uuid4()).upper())
        )
        with self._lock:
            self._check_shell_quotas(powershell)
            if shell_id in self._shells:
                raise WsmanFault(f"a shell with ShellId {shell_id} already exists", subcode="w:AlreadyExists", sender=True)
            self._shells[shell_id] = _Shell(
                shell_id, idle_timeout_s=idle_timeout_s, last_used=self._clock(), resource_uri=request.resource_uri, pool=pool
            )
        log["shell_id"] = shell_id
        streams = (psrp.INPUT_STREAMS, psrp.OUTPUT_STREAMS) if powershell else ("stdin", "stdout stderr")
        body = (
            "<x:ResourceCreated>"
            f"<a:Address>{ANONYMOUS}</a:Address>"
            "<a:ReferenceParameters>"
            f"<w:ResourceURI>{request.resource_uri}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters>"
            "</x:ResourceCreated>"
            "<rsp:Shell>"
            f"<rsp:ShellId>{shell_id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{request.resource_uri}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(self.host.username)}</rsp:Owner>"
            "<rsp:ClientIP>127.0.0.1</rsp:ClientIP>"
            f"<rsp:IdleTimeOut>PT{idle_timeout_s:.3f}S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{streams[0]}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{streams[1]}</rsp:OutputStreams>"
            "</rsp:Shell>"
        )
        return Reply(200, envelope(NS_TRANSFER + "/CreateResponse", request.message_id, body))

    def _check_shell_quotas(self, powershell: bool) -> None:
        """MaxShellsPerUser of the service for every shell, and the PowerShell plugin's own for runspace pools. Lock held."""
        if len(self._shells) >= self.limits.max_shells_per_user:
            raise shells_quota_fault(self.limits.max_shells_per_user)
        limit = self.limits.psrp_max_shells_per_user
        if powershell and sum(shell.pool is not None for shell in self._shells.values()) >= limit:
            raise psrp.shells_quota_fault(limit)
        self._check_operations()

    def _idle_timeout_s(self, request: Request) -> float:
        """The IdleTimeOut the shell gets: what the client asks for, at most the configured one; 0 or none is that one."""
        asked = request.body.findtext(f"{qname(NS_SHELL, 'Shell')}/{qname(NS_SHELL, 'IdleTimeOut')}")
        limit = self.limits.idle_timeout_s
        if asked is None:
            return limit
        seconds = parse_duration(asked, "rsp:IdleTimeOut")
        return min(seconds, limit) if seconds > 0 else limit

    def _do_command(self, request: Request, log: dict[str, Any]) -> Reply:
        with self._lock:
            pool = self._shell(request).pool
        if pool is not None:
            return pool.command(request, log)
        line = request.body.find(qname(NS_SHELL, "CommandLine"))
        if line is None:
            raise WsmanFault(
                "the Command request has no rsp:CommandLine",
                subcode="w:SchemaValidationError",
                sender=True,
            )
        command = (line.findtext(qname(NS_SHELL, "Command")) or "").strip()
        arguments = [node.text or "" for node in line.iterfind(qname(NS_SHELL, "Arguments"))]
        command_line = " ".join([command, *arguments])
        log["command"] = command
        log["command_line_chars"] = len(command_line)
        log["args_sha256"] = hashlib.sha256("\0".join(arguments).encode()).hexdigest()[:12]
        skip_cmd_shell = request.options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE"
        if skip_cmd_shell and len(command_line) > MAX_CREATEPROCESS_CHARS:
            raise WsmanFault(FILENAME_TOO_LONG_MESSAGE, code=ERROR_FILENAME_EXCED_RANGE, subcode="w:InternalError")
        command_id = str(uuid.uuid4()).upper()
        entry = _Command(command_id)
        with self._lock:
            self._shell(request).commands[command_id] = entry
        if not skip_cmd_shell and len(command_line) > MAX_CMD_EXE_CHARS:
            # cmd.exe refuses the line before anything runs: no process, no stdin read.
            log["refused"] = "command line too long"
            entry.finish(CMD_LINE_TOO_LONG)
            body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
            return Reply(200, envelope(NS_SHELL + "/CommandResponse", request.message_id, body))
        # Like WinRS, Command answers as soon as the command has started; the
        # outcome (an apply may settle for minutes) is collected by Receive.
        # A Signal or Delete only forgets the entry: the model call cannot be
        # interrupted, so the worker finishes and its outcome is dropped.
        worker = threading.Thread(
            target=self._run,
            args=(entry, command, arguments),
            name=f"winrs-{self.host.name}-{command_id[:8]}",
            daemon=True,
        )
        worker.start()
        log["command_id"] = command_id
        body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        return Reply(200, envelope(NS_SHELL + "/CommandResponse", request.message_id, body))

    def _run(self, entry: _Command, command: str, arguments: list[str]) -> None:
        try:
            outcome = self.host.run_command(command, arguments, entry.read_stdin)
        except StdinAbandoned:
            return
        except Exception as exc:
            # A bug in the model: loud on stderr, and a fault the client can
            # show, instead of a connection dropped without a word.
            traceback.print_exc()
            entry.fail(WsmanFault(f"simulator internal error: {type(exc).__name__}: {exc}"))
        else:
            entry.finish(outcome)

    def _do_send(self, request: Request, log: dict[str, Any]) -> Reply:
        with self._lock:
            pool = self._shell(request).pool
        if pool is not None:
            return pool.send(request, log)
        stream = request.body.find(f"{qname(NS_SHELL, 'Send')}/{qname(NS_SHELL, 'Stream')}")
        if stream is None:
            raise WsmanFault(
                "the Send request has no rsp:Stream",
                subcode="w:SchemaValidationError",
                sender=True,
            )
        if stream.get("Name") != "stdin":
            raise unsupported(f"input stream {stream.get('Name')!r}")
        try:
            data = base64.b64decode((stream.text or "").strip(), validate=True)
        except binascii.Error as exc:
            raise WsmanFault(
                "the Send stream is not base64",
                subcode="w:SchemaValidationError",
                sender=True,
            ) from exc
        with self._lock:
            command = self._command(request, stream.get("CommandId"))
            if command.stdin_closed:
                raise WsmanFault("the command's input stream is already closed", sender=True)
            command.stdin.append(data)
            command.stdin_closed = stream.get("End", "false").lower() == "true"
            if command.stdin_closed:
                command.stdin_done.set()
        log["command_id"] = command.command_id
        log["stdin_bytes"] = len(data)
        return Reply(
            200,
            envelope(NS_SHELL + "/SendResponse", request.message_id, "<rsp:SendResponse/>"),
        )

    def _do_receive(self, request: Request, log: dict[str, Any]) -> Reply:
        with self._lock:
            pool = self._shell(request).pool
        if pool is not None:
            return pool.receive(request, log)
        desired = request.body.find(f"{qname(NS_SHELL, 'Receive')}/{qname(NS_SHELL, 'DesiredStream')}")
        command_id = desired.get("CommandId") if desired is not None else None
        timeout_s = operation_timeout_s(request)
        with self._lock:
            command = self._command(request, command_id)
        log["command_id"] = command.command_id
        if not command.done.wait(timeout_s):
            log["timed_out"] = True
            raise WsmanFault(
                TIMED_OUT_MESSAGE,
                code=ERROR_WSMAN_OPERATION_TIMEDOUT,
                subcode="w:TimedOut",
            )
        if command.fault is not None:
            raise command.fault
        with self._lock:
            # A Signal may have come while this Receive waited.
            command = self._command(request, command_id)
            # Slow and cut answers hit the first Receive that carries output
            # only: the output that left the host is gone, as on a real broken
            # connection. Timed-out Receives before it do not count.
            first, command.delivered = not command.delivered, True
        if first and command.delay_s > 0:
            # A server that stops answering, unlike a slow command: no
            # TimedOut fault comes, so the client's read timeout fires.
            time.sleep(command.delay_s)
        with self._lock:
            body = self._take_output(command)
        return Reply(
            200,
            envelope(NS_SHELL + "/ReceiveResponse", request.message_id, body),
            cut=first and command.cut,
        )

    @staticmethod
    def _take_output(command: _Command) -> str:
        budget = RECEIVE_BUDGET
        out = command.stdout[command.out_pos : command.out_pos + budget]
        command.out_pos += len(out)
        budget -= len(out)
        err = command.stderr[command.err_pos : command.err_pos + budget]
        command.err_pos += len(err)
        cid = command.command_id
        parts = stream_elements("stdout", cid, out) + stream_elements("stderr", cid, err)
        done = command.out_pos >= len(command.stdout) and command.err_pos >= len(command.stderr)
        if done:
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(
                f'<rsp:CommandState CommandId="{cid}" State="{COMMAND_STATE_DONE}"><rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>'
            )
        else:
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{COMMAND_STATE_RUNNING}"/>')
        return f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"

    def _do_signal(self, request: Request, log: dict[str, Any]) -> Reply:
        with self._lock:
            pool = self._shell(request).pool
        if pool is not None:
            return pool.signal(request, log)
        signal = request.body.find(qname(NS_SHELL, "Signal"))
        command_id = signal.get("CommandId") if signal is not None else None
        with self._lock:
            self._command(request, command_id)
            self._shell(request).commands.pop(command_id or "").abandon()
        log["command_id"] = command_id
        return Reply(
            200,
            envelope(
                NS_SHELL + "/SignalResponse",
                request.message_id,
                "<rsp:SignalResponse/>",
            ),
        )

    def _do_delete(self, request: Request, log: dict[str, Any]) -> Reply:
        with self._lock:
            self._shell(request)
            self._shells.pop(request.shell_id or "").close()
        return Reply(200, envelope(NS_TRANSFER + "/DeleteResponse", request.message_id, ""))


# --------------------------------------------------------------------------- NTLM


def wrap_encrypted(context: spnego.ContextProxy, message: bytes) -> bytes:
    """Frame a response as MS-WSMV 2.2.9.1.1 (Negotiate) encrypted multipart."""
    wrapped = context.wrap_winrm(message)
    payload = struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
    return (
        MIME_BOUNDARY + b"\r\n"
        b"\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(len(message)).encode() + b"\r\n" + MIME_BOUNDARY + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n" + payload + MIME_BOUNDARY + b"--\r\n"
    )


def unwrap_encrypted(context: spnego.ContextProxy, body: bytes) -> bytes:
    """Inverse of :func:`wrap_encrypted`; raises ValueError on a malformed or tampered body."""
    parts = [part for part in body.split(MIME_BOUNDARY + b"\r\n") if part]
    if len(parts) < 2 or len(parts) % 2:
        raise ValueError("encrypted body does not have header/payload pairs")
    message = b""
    for header, payload in zip(parts[0::2], parts[1::2], strict=True):
        try:
            expected = int(header.strip().split(b"Length=")[1])
        except (IndexError, ValueError) as exc:
            raise ValueError("encrypted part has no OriginalContent length") from exc
        payload = payload.removesuffix(MIME_BOUNDARY + b"--\r\n")
        prefix = b"\tContent-Type: application/octet-stream\r\n"
        if not payload.startswith(prefix):
            raise ValueError("encrypted part has no octet-stream header")
        payload = payload[len(prefix) :]
        (sig_len,) = struct.unpack("<i", payload[:4])
        plain = context.unwrap_winrm(payload[4 : 4 + sig_len], payload[4 + sig_len :])
        if len(plain) != expected:
            raise ValueError("decrypted length does not match OriginalContent")
        message += plain
    return message


def split_account(username: str) -> tuple[str, str]:
    """(domain, user) as NTLM sends them: ``DOM\\user`` or plain ``user`` / UPN."""
    if "\\" in username:
        domain, user = username.split("\\", 1)
        return domain, user
    return "", username


class AccountLike(Protocol):
    """What names a host's account: the host (its computer name) and the user."""

    @property
    def name(self) -> str: ...

    @property
    def username(self) -> str: ...


def computer_name(host: AccountLike) -> str:
    """The simulated computer's name, as the host model reports it: the host name upper-cased."""
    return host.name.upper()


def account_names(host: AccountLike) -> list[tuple[str, str]]:
    """Every (domain, user) Windows takes for the host's account.

    A local account (no domain, ``.``, or the computer's own name) is also
    ``COMPUTER\\user`` and ``.\\user``; an account of another domain only ever
    comes with that domain.
    """
    domain, user = split_account(host.username)
    computer = computer_name(host)
    if domain.upper() in ("", ".", computer):
        return [("", user), (".", user), (computer, user)]
    return [(domain, user)]


def is_account(host: AccountLike, given: str) -> bool:
    domain, user = split_account(given)
    return (domain.upper(), user.upper()) in {(d.upper(), u.upper()) for d, u in account_names(host)}


class NtlmUsers:
    """NTLM acceptor credentials.

    pyspnego's acceptor reads the user file named by ``NTLM_USER_FILE`` when it
    is created and again when it checks the AUTHENTICATE message, and picks
    the first line matching the domain and user (case-insensitively). Hosts may
    share a user name with different passwords, and a local account's domain
    is the computer's own name, so each host gets its own file, one line per
    name of its account, and the variable is pointed at it, under a lock, for
    the few microseconds the acceptor works.
    """

    env_lock = threading.Lock()

    def __init__(self, directory: Path):
        self._directory = directory
        self._numbers = itertools.count()

    @staticmethod
    def check(host: HostLike) -> None:
        for what, value in (("user name", host.username), ("password", host.password)):
            if ":" in value or "\n" in value or "\r" in value:
                raise ConfigError(f"host {host.name}: an NTLM {what} cannot contain ':' or a line break")
        if not host.username:
            raise ConfigError(f"host {host.name}: NTLM needs a user name")

    def file_for(self, host: HostLike) -> Path:
        path = self._directory / f"ntlm-users-{next(self._numbers)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{domain}:{user}:{host.password}\n" for domain, user in account_names(host))
        return path

    def acceptor(self, host: HostLike, bindings: GssChannelBindings | None) -> NtlmAcceptor:
        return NtlmAcceptor(self.file_for(host), bindings, computer_name(host))


class ComputerNtlm(NTLMProxy):
    """pyspnego's NTLM acceptor, with a CHALLENGE that names the simulated computer.

    pyspnego names the machine it runs on (``socket.gethostname()``, NetBIOS
    domain ``WORKSTATION``) and has no setting for it, so the CHALLENGE it
    built is rebuilt with the computer's name as target name, NetBIOS computer
    and NetBIOS domain (a workgroup host is its own domain). The acceptor keeps
    the rebuilt one, so the client's MIC over it still verifies.
    """

    def __init__(self, computer: str) -> None:
        super().__init__(usage="accept", protocol="ntlm")
        self.computer = computer

    def _step_accept_negotiate(self, token: bytes) -> bytes:
        super()._step_accept_negotiate(token)
        built = self._temp_challenge
        if built is None or built.target_info is None:
            raise RuntimeError("pyspnego built no CHALLENGE with target info")
        info = TargetInfo()
        info[AvId.nb_computer_name] = self.computer
        info[AvId.nb_domain_name] = self.computer
        info[AvId.dns_computer_name] = self.computer.lower()
        info[AvId.timestamp] = built.target_info[AvId.timestamp]
        challenge = Challenge(built.flags, built.server_challenge, target_name=self.computer, target_info=info, version=built.version)
        self._temp_challenge = challenge
        return challenge.pack()


def sends_channel_bindings(token: bytes) -> bool:
    """Whether a token is an NTLMv2 AUTHENTICATE carrying a channel binding AV pair."""
    if token[8:12] != struct.pack("<I", MessageType.authenticate):
        return False
    response = Authenticate.unpack(token).nt_challenge_response or b""
    # An NTLMv1 response is 24 bytes and has no AV pairs.
    return len(response) > 24 and AvId.channel_bindings in NTClientChallengeV2.unpack(response[16:]).av_pairs


@dataclass(frozen=True)
class NtlmAcceptor:
    """How one listener accepts NTLM: its user file, its computer name and, over HTTPS, the channel bindings."""

    user_file: Path
    bindings: GssChannelBindings | None
    computer: str

    def step(self, context: spnego.ContextProxy | None, token: bytes) -> tuple[spnego.ContextProxy, bytes | None]:
        """Create the acceptor if needed and feed it one token.

        CbtHardeningLevel Relaxed: a client that sends channel bindings must
        send the right ones; one that sends none is let in.
        """
        bindings = self.bindings if self.bindings is not None and sends_channel_bindings(token) else None
        with NtlmUsers.env_lock:
            os.environ["NTLM_USER_FILE"] = str(self.user_file)
            if context is None:
                context = ComputerNtlm(self.computer)
            return context, context.step(token, channel_bindings=bindings)


# --------------------------------------------------------------------------- HTTP

BASIC_CHALLENGE = 'Basic realm="WSMAN"'
NTLM_OFFER = ("Negotiate", "NTLM")
UNENCRYPTED_REFUSAL = "unencrypted over HTTP (AllowUnencrypted is false)"


def allows_unencrypted(host: HostLike) -> bool:
    """The host's AllowUnencrypted (Windows' default is false)."""
    return bool(host.allow_unencrypted)


class RequestLog:
    """JSON lines, one per HTTP request; never headers, bodies or secrets."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class _Counting:
    """A file wrapper that counts the bytes through it (the request log's bytes_in/bytes_out)."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data = self._stream.read(*args)
        self.count += len(data)
        return bytes(data)

    def readline(self, *args: Any) -> bytes:
        data = self._stream.readline(*args)
        self.count += len(data)
        return bytes(data)

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return int(self._stream.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    server: HostHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle and
        # the client's delayed ACK add ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # NTLM authenticates the TCP connection, not each request.
        self._session: spnego.ContextProxy | None = None
        self._pending: spnego.ContextProxy | None = None
        # Every byte of the HTTP exchange, headers included, for the benchmark.
        self.rfile = self._rcount = _Counting(self.rfile)  # type: ignore[assignment]
        self.wfile = self._wcount = _Counting(self.wfile)  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        self._counts_before = (self._rcount.count, self._wcount.count)
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request log is the record, and stderr stays for real errors."""

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._simple(405, "POST /wsman only")

    do_PUT = do_DELETE = do_GET

    def do_POST(self) -> None:
        log: dict[str, Any] = {
            "time": round(time.time(), 3),
            "host": self.server.service.host.name,
        }
        received_before, sent_before = self._counts_before
        if self.server.latency_s:
            # Network latency: the answer leaves one round trip later.
            time.sleep(self.server.latency_s)
        try:
            status = self._post(log)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
            status = None
        log["status"] = status
        log["bytes_in"] = self._rcount.count - received_before
        log["bytes_out"] = self._wcount.count - sent_before
        if self.server.request_log is not None:
            self.server.request_log.write(log)

    def _post(self, log: dict[str, Any]) -> int | None:
        if urlsplit(self.path).path.lower() != "/wsman":
            self._drain()
            return self._simple(404, "not found")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return self._simple(411, "length required")
        body = self._drain()
        if body is None:
            return self._simple(413, "request too large")

        host = self.server.service.host
        ntlm = self.server.ntlm
        # AllowUnencrypted false: over plain HTTP only an NTLM-sealed body gets through.
        sealed_only = self.server.tls_context is None and not allows_unencrypted(host)
        if ntlm is None:
            if sealed_only:
                # Basic cannot seal: Windows refuses it over HTTP even with the right password.
                log["refused"] = UNENCRYPTED_REFUSAL
                return self._unauthorized([BASIC_CHALLENGE])
            if not self._basic_ok(host):
                return self._unauthorized([BASIC_CHALLENGE])
        else:
            challenge = self._ntlm_auth(host, ntlm)
            if challenge is not None:
                return self._unauthorized(challenge)

        encrypted = ENCRYPTED_PROTOCOL.lower() in self.headers.get("Content-Type", "").lower()
        # Recorded so tests can prove NTLM message encryption end to end.
        log["encrypted"] = encrypted
        session = self._session
        if encrypted:
            if session is None:
                return self._simple(400, "encrypted body without an established security context")
            try:
                body = unwrap_encrypted(session, body)
            except Exception:  # any failure to decrypt is the client's bad request
                return self._simple(400, "cannot decrypt the request body")
        if not body:
            # pywinrm authenticates with an empty POST before it encrypts.
            return self._send(200, b"", SOAP_CONTENT_TYPE)
        if sealed_only and not encrypted:
            log["refused"] = UNENCRYPTED_REFUSAL
            return self._unauthorized(list(NTLM_OFFER))
        if len(body) > self.server.service.limits.max_envelope_kb * 1024:
            # Windows answers an envelope over MaxEnvelopeSizekb with a bare
            # 413, no SOAP fault (its own client reports it as
            # ERROR_WSMAN_HTTP_REQUEST_TOO_LARGE_STATUS).
            log["refused"] = "envelope larger than MaxEnvelopeSizekb"
            return self._empty(413, [])
        reply = self.server.service.handle(body, log)
        payload, content_type = reply.body, SOAP_CONTENT_TYPE
        if encrypted and session is not None:
            payload, content_type = wrap_encrypted(session, payload), ENCRYPTED_CONTENT_TYPE
        return self._send(reply.status, payload, content_type, cut=reply.cut)

    def _drain(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return None
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise ConnectionResetError("client closed during the request body")
        return data

    def _basic_ok(self, host: HostLike) -> bool:
        scheme, dummy, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        good = bool(sep) and is_account(host, user) and hmac.compare_digest(password.encode(), host.password.encode())
        # Only good credentials consume a firing of the fault, as with NTLM.
        return good and not host.fault_fires("http_401")

    def _ntlm_auth(self, host: HostLike, ntlm: NtlmAcceptor) -> list[str] | None:
        """None when the connection is authenticated, else the WWW-Authenticate values to send."""
        scheme, dummy, value = self.headers.get("Authorization", "").partition(" ")
        offer = list(NTLM_OFFER)
        if scheme.lower() not in ("ntlm", "negotiate"):
            return None if self._session is not None else offer
        self._session = None
        try:
            token = base64.b64decode(value.strip(), validate=True)
            self._pending, out = ntlm.step(self._pending, token)
        except Exception:  # a malformed token and a wrong password both mean: not authenticated
            self._pending = None
            return offer
        if not self._pending.complete:
            return [f"{scheme} {base64.b64encode(out or b'').decode()}"]
        context, self._pending = self._pending, None
        if host.fault_fires("http_401"):
            return offer
        self._session = context
        return None

    def _unauthorized(self, challenges: list[str]) -> int:
        return self._empty(401, challenges)

    def _empty(self, status: int, challenges: list[str]) -> int:
        self.send_response(status)
        for challenge in challenges:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return status

    def _simple(self, status: int, text: str) -> int:
        return self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _send(self, status: int, payload: bytes, content_type: str, cut: bool = False) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if cut:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.wfile.write(payload)
        return status


class HostHTTPServer(ThreadingHTTPServer):
    """One host's listener. Connections are accepted by :class:`Simulator`'s loop."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self,
        service: HostService,
        port: int,
        tls_context: ssl.SSLContext | None,
        ntlm: NtlmAcceptor | None,
        request_log: RequestLog | None,
        latency_s: float = 0.0,
    ):
        self.service = service
        self.tls_context = tls_context
        self.ntlm = ntlm
        self.request_log = request_log
        self.latency_s = latency_s
        super().__init__(("127.0.0.1", port), _Handler)
        self.socket.setblocking(False)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs in the connection's own thread so that a slow or
        # failing client never holds up accepting on the other listeners.
        request.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
        try:
            secure = self.tls_context.wrap_socket(request, server_side=True)
        except OSError:
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            secure.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            # Disconnects, resets and TLS refusals are the client's business.
            return
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------- fleet


@dataclass(frozen=True)
class Endpoint:
    """Where a host listens, for the inventory."""

    name: str
    port: int
    scheme: str
    auth: str
    username: str
    password: str = field(repr=False)
    connection: str = "winrm"


def validate_hosts(hosts: Iterable[HostLike]) -> list[HostLike]:
    """Refuse a fleet the server cannot serve, before binding anything."""
    checked: list[HostLike] = []
    ports: dict[int, str] = {}
    for host in hosts:
        if host.auth not in SUPPORTED_AUTH:
            raise ConfigError(f"host {host.name}: auth {host.auth!r} is not one of {', '.join(SUPPORTED_AUTH)}")
        if host.scheme not in SUPPORTED_SCHEMES:
            raise ConfigError(f"host {host.name}: scheme {host.scheme!r} is not one of {', '.join(SUPPORTED_SCHEMES)}")
        if host.port is not None:
            if not isinstance(host.port, int) or not 0 < host.port < 65536:
                raise ConfigError(f"host {host.name}: port {host.port!r} is not a TCP port number")
            if host.port in ports:
                raise ConfigError(f"host {host.name}: port {host.port} is already used by host {ports[host.port]}")
            ports[host.port] = host.name
        if host.auth == "ntlm":
            NtlmUsers.check(host)
        checked.append(host)
    return checked


class Simulator:
    """Every host's listener, plus the one thread that accepts for all of them.

    One accepting thread (a selector over all listening sockets) instead of one
    ``serve_forever`` thread per host keeps a 1000-host fleet at one idle
    thread; each connection still gets its own thread.
    """

    def __init__(
        self,
        hosts: Iterable[HostLike],
        workdir: Path,
        request_log: IO[str] | RequestLog | None = None,
        *,
        limits: WinrmLimits = WINDOWS_DEFAULTS,
        clock: Callable[[], float] = time.monotonic,
        latency_s: float = 0.0,
    ):
        self._hosts = validate_hosts(hosts)
        self._latency_s = latency_s
        self._workdir = workdir
        self._limits = limits
        self._clock = clock
        # One log may be shared with the ssh side (one lock per log keeps its lines whole).
        self._request_log = request_log if request_log is None or isinstance(request_log, RequestLog) else RequestLog(request_log)
        self._servers: list[HostHTTPServer] = []
        self._refusing: list[socket.socket] = []
        self._stop = threading.Event()
        # Written to by stop() so that the accepting thread leaves select() at once.
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self.endpoints: dict[str, Endpoint] = {}
        self.services: dict[str, HostService] = {}
        self.ca_path: Path | None = None

    def start(self) -> None:
        try:
            self._bind_all()
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._accept_loop, name="wsman-accept", daemon=True)
        self._thread.start()

    def _bind_all(self) -> None:
        tls_context = bindings = None
        if any(h.scheme == "https" and not h.unreachable for h in self._hosts):
            certificate = tls.generate(self._workdir)
            self.ca_path = certificate.ca_path
            tls_context = tls.server_context(certificate)
            bindings = GssChannelBindings(application_data=b"tls-server-end-point:" + tls.channel_binding_hash(certificate.cert_der))
        ntlm_users = NtlmUsers(self._workdir)
        for host in self._hosts:
            if host.unreachable:
                port = self._refuse(host.port or 0)
            else:
                https = host.scheme == "https"
                service = HostService(host, self._limits, self._clock)
                server = HostHTTPServer(
                    service,
                    host.port or 0,
                    tls_context if https else None,
                    ntlm_users.acceptor(host, bindings if https else None) if host.auth == "ntlm" else None,
                    self._request_log,
                    self._latency_s,
                )
                self._servers.append(server)
                self.services[host.name] = service
                port = server.server_address[1]
            self.endpoints[host.name] = Endpoint(host.name, port, host.scheme, host.auth, host.username, host.password, host.connection)

    def _refuse(self, port: int) -> int:
        # Bound but never listening: the port stays ours and the kernel answers
        # every connection attempt with a reset, i.e. "connection refused".
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", port))
        self._refusing.append(sock)
        return int(sock.getsockname()[1])

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            for server in self._servers:
                selector.register(server.socket, selectors.EVENT_READ, server)
            while not self._stop.is_set():
                for key, _events in selector.select():
                    if key.data is not None:
                        key.data.handle_request()

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"\0")
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for server in self._servers:
            server.server_close()
        for sock in self._refusing:
            sock.close()
        self._servers.clear()
        self._refusing.clear()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
