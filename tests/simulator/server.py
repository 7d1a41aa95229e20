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
import json
import os
import re
import selectors
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Protocol, Self
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

import spnego
from spnego.channel_bindings import GssChannelBindings

from . import tls

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"

CMD_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
COMMAND_STATE_DONE = NS_SHELL + "/CommandState/Done"
COMMAND_STATE_RUNNING = NS_SHELL + "/CommandState/Running"

ACTIONS = {
    NS_TRANSFER + "/Create": "Create",
    NS_TRANSFER + "/Delete": "Delete",
    NS_SHELL + "/Command": "Command",
    NS_SHELL + "/Send": "Send",
    NS_SHELL + "/Receive": "Receive",
    NS_SHELL + "/Signal": "Signal",
}

# HRESULTs carried in wsmanfault:WSManFault/@Code.
E_NOTIMPL = 0x80004001
E_FAIL = 0x80004005
ERROR_WSMAN_INVALID_SELECTORS = 0x8033805B
# ERROR_WSMAN_OPERATION_TIMEDOUT (2150858793): pywinrm recognises a Receive
# timeout by this code alone and quietly sends the next Receive.
ERROR_WSMAN_OPERATION_TIMEDOUT = 0x80338029
TIMED_OUT_MESSAGE = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
MIME_BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"

# One Receive answer stays well inside the client's MaxEnvelopeSize (153,600
# bytes): output is handed out in slices, the way WinRS streams it.
RECEIVE_BUDGET = 96 * 1024
STREAM_CHUNK = 32 * 1024
MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT_S = 300.0
# What WinRM assumes when a request carries no w:OperationTimeout.
DEFAULT_OPERATION_TIMEOUT_S = 20.0
TLS_HANDSHAKE_TIMEOUT_S = 30.0

SUPPORTED_AUTH = ("basic", "ntlm")
SUPPORTED_SCHEMES = ("http", "https")


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
    def unreachable(self) -> bool: ...

    def fault_fires(self, name: str, action: str | None = None) -> bool:
        """Whether the connection-level fault ``name`` (``http_401``) fires now."""

    def run_command(self, command: str, arguments: list[str]) -> CommandOutcomeLike: ...


class ConfigError(ValueError):
    """A host cannot be served as configured; raised before any port is bound."""


class WsmanFault(Exception):
    """A request that is answered with a WS-Management fault (HTTP 500)."""

    def __init__(
        self,
        message: str,
        code: int = E_FAIL,
        subcode: str = "w:InternalError",
        sender: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.sender = sender


def unsupported(what: str) -> WsmanFault:
    return WsmanFault(
        f"not supported by the simulator: {what}",
        code=E_NOTIMPL,
        subcode="w:ActionNotSupported",
        sender=True,
    )


# --------------------------------------------------------------------------- XML


@dataclass(frozen=True)
class Request:
    """The parts of a WS-Management request the simulator acts on."""

    action_uri: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    body: ET.Element
    operation_timeout: str = ""


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def parse_request(xml: bytes) -> Request:
    """Read the envelope; a malformed one is a sender fault, not a crash."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise WsmanFault(
            f"the request is not well-formed XML: {exc}",
            subcode="w:SchemaValidationError",
            sender=True,
        ) from exc
    if root.tag != _q(NS_SOAP, "Envelope"):
        raise WsmanFault(
            "the request is not a SOAP 1.2 envelope",
            subcode="w:SchemaValidationError",
            sender=True,
        )
    header = root.find(_q(NS_SOAP, "Header"))
    body = root.find(_q(NS_SOAP, "Body"))
    if header is None or body is None:
        raise WsmanFault(
            "the envelope has no Header or no Body",
            subcode="w:SchemaValidationError",
            sender=True,
        )

    def text(path: str) -> str:
        node = header.find(path)
        return (node.text or "").strip() if node is not None else ""

    shell_id = None
    for selector in header.iterfind(f"{_q(NS_WSMAN, 'SelectorSet')}/{_q(NS_WSMAN, 'Selector')}"):
        if selector.get("Name") == "ShellId":
            shell_id = (selector.text or "").strip()
    return Request(
        action_uri=text(_q(NS_ADDRESSING, "Action")),
        message_id=text(_q(NS_ADDRESSING, "MessageID")),
        resource_uri=text(_q(NS_WSMAN, "ResourceURI")),
        shell_id=shell_id,
        body=body,
        operation_timeout=text(_q(NS_WSMAN, "OperationTimeout")),
    )


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def parse_duration(value: str) -> float:
    """Seconds in an xs:duration as WS-Management sends it (``PT20.000S``, ``PT1M``, ``P0DT20S``)."""
    match = _DURATION.fullmatch(value.strip())
    if match is None or value.strip() in ("P", ""):
        raise WsmanFault(
            f"w:OperationTimeout {value!r} is not an xs:duration such as PT20.000S",
            subcode="w:SchemaValidationError",
            sender=True,
        )
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400.0 + int(hours or 0) * 3600.0 + int(minutes or 0) * 60.0 + float(seconds or 0)


def operation_timeout_s(request: Request) -> float:
    return parse_duration(request.operation_timeout) if request.operation_timeout else DEFAULT_OPERATION_TIMEOUT_S


_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US"'
    f' xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDRESSING}" xmlns:x="{NS_TRANSFER}"'
    f' xmlns:w="{NS_WSMAN}" xmlns:rsp="{NS_SHELL}"'
    ' xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
)


def envelope(action: str, relates_to: str, body: str) -> bytes:
    header = (
        "<s:Header>"
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        "</s:Header>"
    )
    return f"{_ENVELOPE_OPEN}{header}<s:Body>{body}</s:Body></s:Envelope>".encode()


def fault_envelope(fault: WsmanFault, relates_to: str, machine: str) -> bytes:
    side = "s:Sender" if fault.sender else "s:Receiver"
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{side}</s:Value><s:Subcode><s:Value>{escape(fault.subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.message)}</s:Text></s:Reason>'
        "<s:Detail>"
        f'<f:WSManFault xmlns:f="{NS_FAULT}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.message)}</f:Message>"
        "</f:WSManFault>"
        "</s:Detail>"
        "</s:Fault>"
    )
    return envelope(FAULT_ACTION, relates_to, body)


def _stream_elements(name: str, command_id: str, data: bytes) -> list[str]:
    return [
        f'<rsp:Stream Name="{name}" CommandId="{command_id}">{base64.b64encode(data[i : i + STREAM_CHUNK]).decode()}</rsp:Stream>'
        for i in range(0, len(data), STREAM_CHUNK)
    ]


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
    delivered: bool = False
    out_pos: int = 0
    err_pos: int = 0

    def finish(self, outcome: CommandOutcomeLike) -> None:
        if outcome.wsman_fault:
            self.fault = WsmanFault(outcome.wsman_fault)
        else:
            self.stdout = bytes(outcome.stdout)
            self.stderr = bytes(outcome.stderr)
            self.exit_code = int(outcome.exit_code)
            self.delay_s = float(outcome.delay_s or 0)
            self.cut = bool(outcome.cut)
        self.done.set()

    def fail(self, fault: WsmanFault) -> None:
        self.fault = fault
        self.done.set()


@dataclass
class _Shell:
    shell_id: str
    commands: dict[str, _Command] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """What one SOAP request is answered with."""

    status: int
    body: bytes
    cut: bool = False


class HostService:
    """The WinRS state of one host (its open shells) and the actions on it.

    Shells are shared by every connection to the host: a client that loses its
    TCP connection keeps its shell, as on Windows.
    """

    def __init__(self, host: HostLike):
        self.host = host
        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}

    @property
    def open_shells(self) -> int:
        with self._lock:
            return len(self._shells)

    def handle(self, xml: bytes, log: dict[str, Any]) -> Reply:
        relates_to = ""
        try:
            request = parse_request(xml)
            relates_to = request.message_id
            action = ACTIONS.get(request.action_uri)
            log["action"] = action or request.action_uri
            log["shell_id"] = request.shell_id
            if request.resource_uri != CMD_RESOURCE_URI:
                raise unsupported(f"resource URI {request.resource_uri or '(none)'}")
            if action is None:
                raise unsupported(f"action {request.action_uri or '(none)'}")
            handler: Callable[[Request, dict[str, Any]], Reply] = getattr(self, f"_do_{action.lower()}")
            return handler(request, log)
        except WsmanFault as fault:
            log["fault"] = fault.message
            return Reply(500, fault_envelope(fault, relates_to, self.host.name))

    def _shell(self, request: Request) -> _Shell:
        shell = self._shells.get(request.shell_id or "")
        if shell is None:
            raise WsmanFault(
                f"The request for the Windows Remote Shell with ShellId {request.shell_id} failed because the shell was not found on the server.",
                code=ERROR_WSMAN_INVALID_SELECTORS,
                subcode="w:InvalidSelectors",
                sender=True,
            )
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
        shell_id = str(uuid.uuid4()).upper()
        with self._lock:
            self._shells[shell_id] = _Shell(shell_id)
        log["shell_id"] = shell_id
        body = (
            "<x:ResourceCreated>"
            f"<a:Address>{ANONYMOUS}</a:Address>"
            "<a:ReferenceParameters>"
            f"<w:ResourceURI>{CMD_RESOURCE_URI}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters>"
            "</x:ResourceCreated>"
            "<rsp:Shell>"
            f"<rsp:ShellId>{shell_id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{CMD_RESOURCE_URI}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(self.host.username)}</rsp:Owner>"
            "<rsp:ClientIP>127.0.0.1</rsp:ClientIP>"
            "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
            "<rsp:InputStreams>stdin</rsp:InputStreams>"
            "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
            "</rsp:Shell>"
        )
        return Reply(200, envelope(NS_TRANSFER + "/CreateResponse", request.message_id, body))

    def _do_command(self, request: Request, log: dict[str, Any]) -> Reply:
        with self._lock:
            self._shell(request)
        line = request.body.find(_q(NS_SHELL, "CommandLine"))
        if line is None:
            raise WsmanFault(
                "the Command request has no rsp:CommandLine",
                subcode="w:SchemaValidationError",
                sender=True,
            )
        command = (line.findtext(_q(NS_SHELL, "Command")) or "").strip()
        arguments = [node.text or "" for node in line.iterfind(_q(NS_SHELL, "Arguments"))]
        log["command"] = command
        log["args_sha256"] = hashlib.sha256("\0".join(arguments).encode()).hexdigest()[:12]
        command_id = str(uuid.uuid4()).upper()
        entry = _Command(command_id)
        with self._lock:
            self._shell(request).commands[command_id] = entry
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
            outcome = self.host.run_command(command, arguments)
        except Exception as exc:
            # A bug in the model: loud on stderr, and a fault the client can
            # show, instead of a connection dropped without a word.
            traceback.print_exc()
            entry.fail(WsmanFault(f"simulator internal error: {type(exc).__name__}: {exc}"))
        else:
            entry.finish(outcome)

    def _do_send(self, request: Request, log: dict[str, Any]) -> Reply:
        stream = request.body.find(f"{_q(NS_SHELL, 'Send')}/{_q(NS_SHELL, 'Stream')}")
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
        log["command_id"] = command.command_id
        log["stdin_bytes"] = len(data)
        return Reply(
            200,
            envelope(NS_SHELL + "/SendResponse", request.message_id, "<rsp:SendResponse/>"),
        )

    def _do_receive(self, request: Request, log: dict[str, Any]) -> Reply:
        desired = request.body.find(f"{_q(NS_SHELL, 'Receive')}/{_q(NS_SHELL, 'DesiredStream')}")
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
        parts = _stream_elements("stdout", cid, out) + _stream_elements("stderr", cid, err)
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
        signal = request.body.find(_q(NS_SHELL, "Signal"))
        command_id = signal.get("CommandId") if signal is not None else None
        with self._lock:
            self._command(request, command_id)
            del self._shell(request).commands[command_id or ""]
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
            del self._shells[request.shell_id or ""]
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


class NtlmUsers:
    """NTLM acceptor credentials.

    pyspnego's acceptor reads the user file named by ``NTLM_USER_FILE`` when it
    is created and again when it checks the AUTHENTICATE message, and picks
    the first line matching the user name. Hosts may share a user name with
    different passwords, so each distinct account gets its own file and the
    variable is pointed at it, under a lock, for the few microseconds the
    acceptor works.
    """

    env_lock = threading.Lock()

    def __init__(self, directory: Path):
        self._directory = directory
        self._files: dict[tuple[str, str], Path] = {}

    @staticmethod
    def check(host: HostLike) -> None:
        for what, value in (("user name", host.username), ("password", host.password)):
            if ":" in value or "\n" in value or "\r" in value:
                raise ConfigError(f"host {host.name}: an NTLM {what} cannot contain ':' or a line break")
        if not host.username:
            raise ConfigError(f"host {host.name}: NTLM needs a user name")

    def file_for(self, host: HostLike) -> Path:
        key = (host.username.lower(), host.password)
        path = self._files.get(key)
        if path is None:
            domain, user = split_account(host.username)
            path = self._directory / f"ntlm-users-{len(self._files)}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(f"{domain}:{user}:{host.password}\n")
            self._files[key] = path
        return path

    def acceptor(self, host: HostLike, bindings: GssChannelBindings | None) -> NtlmAcceptor:
        return NtlmAcceptor(self.file_for(host), bindings)


@dataclass(frozen=True)
class NtlmAcceptor:
    """How one listener accepts NTLM: its user file and, over HTTPS, the channel bindings."""

    user_file: Path
    bindings: GssChannelBindings | None

    def step(self, context: spnego.ContextProxy | None, token: bytes) -> tuple[spnego.ContextProxy, bytes | None]:
        """Create the acceptor if needed and feed it one token."""
        with NtlmUsers.env_lock:
            os.environ["NTLM_USER_FILE"] = str(self.user_file)
            if context is None:
                context = spnego.server(protocol="ntlm", channel_bindings=self.bindings)
            return context, context.step(token)


# --------------------------------------------------------------------------- HTTP


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
        try:
            status = self._post(log)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
            status = None
        log["status"] = status
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
        if ntlm is None:
            if not self._basic_ok(host):
                return self._unauthorized(['Basic realm="WSMAN"'])
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
        good = bool(sep) and user.lower() == host.username.lower() and hmac.compare_digest(password.encode(), host.password.encode())
        # Only good credentials consume a firing of the fault, as with NTLM.
        return good and not host.fault_fires("http_401")

    def _ntlm_auth(self, host: HostLike, ntlm: NtlmAcceptor) -> list[str] | None:
        """None when the connection is authenticated, else the WWW-Authenticate values to send."""
        scheme, dummy, value = self.headers.get("Authorization", "").partition(" ")
        offer = ["Negotiate", "NTLM"]
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
        self.send_response(401)
        for challenge in challenges:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return 401

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
    ):
        self.service = service
        self.tls_context = tls_context
        self.ntlm = ntlm
        self.request_log = request_log
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
        request_log: IO[str] | None = None,
    ):
        self._hosts = validate_hosts(hosts)
        self._workdir = workdir
        self._request_log = RequestLog(request_log) if request_log is not None else None
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
                service = HostService(host)
                server = HostHTTPServer(
                    service,
                    host.port or 0,
                    tls_context if https else None,
                    ntlm_users.acceptor(host, bindings if https else None) if host.auth == "ntlm" else None,
                    self._request_log,
                )
                self._servers.append(server)
                self.services[host.name] = service
                port = server.server_address[1]
            self.endpoints[host.name] = Endpoint(
                host.name,
                port,
                host.scheme,
                host.auth,
                host.username,
                host.password,
            )

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
