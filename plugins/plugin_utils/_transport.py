# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the agent travels to a Windows host and how its answer comes back.

Internal to mailops.iis_smtp. This is the only module that knows about
connections, shells and the wire format of docs/agent-protocol.md; the engine
above it sees plain request and response dicts, and the agent below it sees
one encoded PowerShell command. Keeping that knowledge here is what lets the
engine be tested with plain data and the transport be tested with a real
shell plugin and a connection that only records what it is asked to run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

PROTOCOL_VERSION = 1
RESPONSE_PREFIX = "MAILOPS-AGENT-1:"
# CreateProcess rejects longer command lines; past this the host never runs us.
MAX_COMMAND_CHARS = 32767
_QUOTE_LIMIT = 200
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=]+$")
_RESPONSE_RE = re.compile(r"^" + re.escape(RESPONSE_PREFIX) + r"(\S*)\s*$", re.MULTILINE)
_AGENT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.ps1")

# Transport failures that are worth one more try while polling: the host
# answered before, so a refused or dropped connection is most likely load
# on the WinRM service rather than a wrong address.
TRANSIENT_CODES = frozenset({"connection_failed"})

# requests buries the cause at the end of a long message that _quote cuts;
# these name it up front so a user sees "connection refused", not a URL.
_CONNECTION_CAUSES = (
    ("connection refused", "connection refused"),
    ("certificate verify failed", "TLS certificate not trusted"),
    ("read timed out", "no answer within the read timeout"),
    ("connect timeout", "connect timed out"),
    ("connection broken", "connection cut mid-response"),
    ("connection reset", "connection reset"),
    ("connection aborted", "connection aborted"),
    ("name or service not known", "host name not found"),
    ("no route to host", "no route to host"),
)


class AgentError(Exception):
    """A call that produced no usable response; `code` is one of the protocol's transport codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Shell(Protocol):
    SHELL_FAMILY: str

    def _encode_script(self, script: str, as_list: bool = ..., strict_mode: bool = ...,
                       preserve_rc: bool = ...) -> Any: ...


def normalise_agent(text: str) -> str:
    """Strip every line, drop blank lines and `#` comment lines, join with newlines.

    The simulator applies the same function to recognise the agent, so the
    two must stay byte-identical in behaviour.
    """
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))


def encode_request(request: dict[str, Any]) -> str:
    """Base64 of the UTF-8 JSON request: data the agent decodes, never code."""
    raw = json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def wrap_agent(agent_text: str, request: dict[str, Any]) -> str:
    """The PowerShell script that runs the (normalised) agent on one request."""
    payload = encode_request(request)
    # A user-supplied string can only reach the host inside this literal; the
    # check makes it impossible for it to close the quote whatever json.dumps does.
    if not _BASE64_RE.match(payload):
        raise AgentError("bad_request", "request did not encode to plain base64")
    return "& {\n%s\n} '%s'" % (agent_text, payload)


def load_agent(path: str = _AGENT_PATH) -> str:
    """The normalised agent shipped with the collection."""
    with open(path, encoding="utf-8-sig") as handle:
        return normalise_agent(handle.read())


def build_command(shell: _Shell, request: dict[str, Any], agent_text: str | None = None) -> str:
    """The full command line that runs the agent on one request through `shell`."""
    agent = load_agent() if agent_text is None else agent_text
    script = wrap_agent(agent, request)
    command = shell._encode_script(script, strict_mode=False, preserve_rc=False)
    if len(command) >= MAX_COMMAND_CHARS:
        raise AgentError(
            "request_too_large",
            "the agent command would be %d characters, over the Windows limit of %d; "
            "target fewer virtual servers per task" % (len(command), MAX_COMMAND_CHARS),
        )
    return str(command)


def _quote(text: str) -> str:
    text = text.strip()
    return text[:_QUOTE_LIMIT] + ("..." if len(text) > _QUOTE_LIMIT else "")


def _to_text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return "" if data is None else str(data)


def parse_output(rc: int | None, stdout: Any, stderr: Any) -> dict[str, Any]:
    """Turn what the command printed into the response dict, or raise AgentError.

    The response line wins over the exit code: the agent exits 0 whenever it
    could write its line, so a line with a non-zero exit is still its answer.
    """
    out = _to_text(stdout)
    err = _to_text(stderr)
    matches = _RESPONSE_RE.findall(out)
    if not matches:
        if rc:
            raise AgentError(
                "agent_exit_nonzero",
                "the agent exited with code %s without a response; stderr: %s; stdout: %s"
                % (rc, _quote(err) or "(empty)", _quote(out) or "(empty)"),
            )
        raise AgentError(
            "agent_output_invalid",
            "no %s line in the agent output: %s" % (RESPONSE_PREFIX, _quote(out + err) or "(empty)"),
        )
    encoded = matches[-1]
    try:
        response = json.loads(base64.b64decode(encoded, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError) as exc:
        raise AgentError(
            "agent_output_invalid",
            "the agent response did not decode to JSON (%s): %s" % (_quote(str(exc)) or exc.__class__.__name__,
                                                                    _quote(encoded)),
        ) from None
    if not isinstance(response, dict):
        raise AgentError("agent_output_invalid",
                         "the agent response is not a JSON object: %s" % _quote(json.dumps(response)))
    refusal = response.get("error") if response.get("ok") is False else None
    if isinstance(refusal, dict) and refusal.get("type") == "unsupported_protocol":
        # The agent answers in its own protocol even when it refuses ours, so
        # the version check below cannot notice: the refusal itself says it.
        raise AgentError(
            "protocol_mismatch",
            "the agent refused this collection's protocol %d: %s; ship matching versions"
            % (PROTOCOL_VERSION, _quote(str(refusal.get("message") or ""))),
        )
    if response.get("protocol") != PROTOCOL_VERSION:
        raise AgentError(
            "protocol_mismatch",
            "the agent speaks protocol %r, this collection speaks %d; ship matching versions"
            % (response.get("protocol"), PROTOCOL_VERSION),
        )
    return response


def _connection_cause(lowered: str) -> str:
    """A short " (cause)" for a known connection failure, else ""."""
    for needle, cause in _CONNECTION_CAUSES:
        if needle in lowered:
            return " (%s)" % cause
    return ""


def classify_exception(exc: BaseException) -> AgentError:
    """Map whatever the connection plugin raised to a protocol transport code.

    Connection plugins wrap pywinrm and requests differently (the winrm plugin
    turns a 401 into AnsibleConnectionFailure with a text message, psrp lets
    some requests errors through), so this looks at types first and message
    text second.
    """
    if isinstance(exc, AgentError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc).strip() or exc.__class__.__name__
    lowered = text.lower()
    if "InvalidCredentialsError" in names or "AuthenticationError" in names or \
            "credentials were rejected" in lowered or re.search(r"\b401\b", lowered):
        return AgentError("auth_failed", "the host rejected the credentials: %s" % _quote(text))
    if "WSManFaultError" in names or "wsmanfault" in lowered.replace(" ", ""):
        return AgentError("winrm_fault", "the host answered with a WS-Management fault: %s" % _quote(text))
    if names & {"AnsibleConnectionFailure", "RequestException", "ConnectionError", "OSError",
                "WinRMTransportError", "WinRMOperationTimeoutError", "Timeout"} or \
            "timed out" in lowered or "unreachable" in lowered:
        return AgentError("connection_failed", "could not talk to the host%s: %s"
                          % (_connection_cause(lowered), _quote(text)))
    return AgentError("connection_failed", "the connection failed: %s: %s" % (exc.__class__.__name__, _quote(text)))


def _require_powershell(connection: Any) -> _Shell:
    shell = getattr(connection, "_shell", None)
    family = getattr(shell, "SHELL_FAMILY", None)
    if family != "powershell":
        raise AgentError(
            "not_windows",
            "this host does not use the powershell shell (shell family %r): IIS SMTP virtual servers "
            "exist only on Windows; set ansible_shell_type=powershell and a Windows connection" % family,
        )
    return shell  # type: ignore[return-value]


def call(connection: Any, request: dict[str, Any], agent_text: str | None = None) -> dict[str, Any]:
    """Run the agent once on the host behind `connection` and return its response."""
    shell = _require_powershell(connection)
    command = build_command(shell, request, agent_text)
    try:
        rc, stdout, stderr = connection.exec_command(command, in_data=None, sudoable=False)
    except Exception as exc:
        raise classify_exception(exc) from exc
    return parse_output(rc, stdout, stderr)


def _is_polling(request: dict[str, Any]) -> bool:
    return request.get("action") == "observe" or not request.get("steps")


def _shortened(request: dict[str, Any], spent: float) -> dict[str, Any]:
    """The request for a retry: a wait keeps only what is left of its settle time.

    The engine's timeout is the task's total; a retried wait that started
    the settle time afresh could run past it by a whole settle period.
    """
    settle = request.get("settle_timeout_s")
    if not isinstance(settle, int) or isinstance(settle, bool):
        return request
    return {**request, "settle_timeout_s": max(0, int(settle - spent))}


class Channel:
    """A `call(request) -> response` bound to one connection, for the engine.

    The first call is never retried: if the host cannot be reached at all the
    user learns it at once. Later read-only calls (observe, or an apply with no
    steps, which only waits) get one retry after a connection reset, as
    ansible.windows' win_updates does for its polls, because WinRM under load
    drops connections now and then; a retried wait keeps only the settle time
    left, so the task's total timeout still holds. Calls with steps are never
    repeated: the first attempt may have reached the host.
    """

    def __init__(self, connection: Any, agent_text: str | None = None,
                 runner: Callable[[Any, dict[str, Any], str | None], dict[str, Any]] = call,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connection = connection
        self._agent = agent_text
        self._runner = runner
        self._clock = clock
        self.calls = 0

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        first = self.calls == 0
        self.calls += 1
        if self._agent is None:
            self._agent = load_agent()
        started = self._clock()
        try:
            return self._runner(self._connection, request, self._agent)
        except AgentError as exc:
            if first or exc.code not in TRANSIENT_CODES or not _is_polling(request):
                raise
        reset = getattr(self._connection, "reset", None)
        if callable(reset):
            try:
                reset()
            except Exception as exc:
                raise classify_exception(exc) from exc
        return self._runner(self._connection, _shortened(request, self._clock() - started), self._agent)
