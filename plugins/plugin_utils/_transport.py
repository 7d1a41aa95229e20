# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the agent travels to a Windows host and how its answer comes back.

Internal to mailops.iis_smtp. This is the only module that knows about
connections and shells. It carries the agent the way Ansible carries its own
PowerShell modules: the command line is a short encoded bootstrap
(bootstrap.ps1), and the agent with its request travels on stdin, so the
call fits the 8,191 characters cmd.exe allows a WinRS command (winrm), a
runspace pipeline (psrp) and an OpenSSH session (ssh) alike. It decides
nothing: the engine above it chooses what to send, when to retry and how
long to wait.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from typing import Any

from ._protocol import (
    AUTH_FAILED,
    BAD_REQUEST,
    BECOME_UNSUPPORTED,
    CONNECTION_FAILED,
    NOT_WINDOWS,
    REQUEST_TOO_LARGE,
    WINRM_FAULT,
    AgentError,
    parse_output,
    quote,
)

_HERE = os.path.dirname(os.path.abspath(__file__))
_AGENT_PATH = os.path.join(_HERE, "agent.ps1")
_BOOTSTRAP_PATH = os.path.join(_HERE, "bootstrap.ps1")
_HASH_PLACEHOLDER = "AGENT_SHA256"
# The words ansible-core's own shell plugin puts before -EncodedCommand. The
# winrm and psrp connection plugins recognise a command that starts with them
# as already encoded (and psrp runs the decoded script in its runspace), so
# they must match to the letter.
COMMAND_PREFIX = "PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand "
# cmd.exe refuses a longer command line ("The command line is too long."),
# and WinRS runs every command through it (docs/windows-facts.md).
MAX_COMMAND_CHARS = 8191
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=]+$")

# requests buries the cause at the end of a long message that quote() cuts;
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


def normalise_agent(text: str) -> str:
    """Strip every line, drop blank lines and `#` comment lines, join with newlines.

    The simulator applies the same function to recognise the agent, so the
    two must stay byte-identical in behaviour.
    """
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))


# An observe call ships the agent without the lines between these markers
# (full comment lines of agent.ps1): only an apply needs them.
APPLY_ONLY_BEGIN = "# mailops:apply-only begin"
APPLY_ONLY_END = "# mailops:apply-only end"


def agent_for(text: str, action: str) -> str:
    """The normalised agent an `action` request travels with: all of it for apply, less for observe.

    The simulator applies the same function to recognise both, so the two
    must stay byte-identical in behaviour.
    """
    if action == "observe":
        kept, inside = [], False
        for line in text.splitlines():
            marker = line.strip()
            if marker == APPLY_ONLY_BEGIN:
                inside = True
            elif marker == APPLY_ONLY_END:
                inside = False
            elif not inside:
                kept.append(line)
        text = "\n".join(kept)
    return normalise_agent(text)


def _read(path: str) -> str:
    with open(path, encoding="utf-8-sig") as handle:
        return normalise_agent(handle.read())


def load_agent(path: str = _AGENT_PATH, action: str = "apply") -> str:
    """The normalised agent shipped with the collection, as a request with `action` carries it."""
    with open(path, encoding="utf-8-sig") as handle:
        return agent_for(handle.read(), action)


def agent_sha256(agent_text: str) -> str:
    """The hash the bootstrap checks the agent against, as PowerShell's BitConverter writes it."""
    return hashlib.sha256(agent_text.encode("utf-8")).hexdigest().upper()


def bootstrap_script(agent_text: str, path: str = _BOOTSTRAP_PATH) -> str:
    """The bootstrap for this agent: the only script on the command line."""
    return _read(path).replace(_HASH_PLACEHOLDER, agent_sha256(agent_text))


def encode_command(script: str) -> str:
    """The command line that runs `script`: base64 of its UTF-16-LE text after -EncodedCommand."""
    return COMMAND_PREFIX + base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def encode_request(request: dict[str, Any]) -> str:
    """Base64 of the UTF-8 JSON request: data the agent decodes, never code."""
    raw = json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def build_stdin(agent_text: str, request: dict[str, Any]) -> bytes:
    """One ASCII JSON line: the agent and its base64 request.

    ASCII because powershell.exe decodes stdin with the console code page;
    one line because psrp hands stdin to the pipeline line by line.
    """
    payload = encode_request(request)
    if not _BASE64_RE.match(payload):
        raise AgentError(BAD_REQUEST, "request did not encode to plain base64")
    return (json.dumps({"agent": agent_text, "request": payload}, separators=(",", ":"), ensure_ascii=True)
            + "\n").encode("ascii")


def build_call(request: dict[str, Any], agent_text: str | None = None,
               bootstrap_path: str = _BOOTSTRAP_PATH) -> tuple[str, bytes]:
    """The command line and the stdin that run the agent on one request."""
    agent = load_agent(action=str(request.get("action"))) if agent_text is None else agent_text
    command = encode_command(bootstrap_script(agent, bootstrap_path))
    if len(command) > MAX_COMMAND_CHARS:
        raise AgentError(REQUEST_TOO_LARGE, "the bootstrap command would be %d characters, over the %d "
                         "cmd.exe allows" % (len(command), MAX_COMMAND_CHARS))
    return command, build_stdin(agent, request)


def _connection_cause(lowered: str) -> str:
    """A short " (cause)" for a known connection failure, else ""."""
    for needle, cause in _CONNECTION_CAUSES:
        if needle in lowered:
            return " (%s)" % cause
    return ""


def classify_exception(exc: BaseException) -> AgentError:
    """Map whatever the connection plugin raised to a protocol reason code.

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
            re.search(r"credentials were rejected|\b401\b|failed to authenticate|permission denied \(publickey", lowered):
        return AgentError(AUTH_FAILED, "the host rejected the credentials: %s" % quote(text))
    if "WSManFaultError" in names or "wsmanfault" in lowered.replace(" ", ""):
        return AgentError(WINRM_FAULT, "the host answered with a WS-Management fault: %s" % quote(text))
    if names & {"AnsibleConnectionFailure", "RequestException", "ConnectionError", "OSError",
                "WinRMTransportError", "WinRMOperationTimeoutError", "Timeout"} or \
            "timed out" in lowered or "unreachable" in lowered:
        return AgentError(CONNECTION_FAILED, "could not talk to the host%s: %s"
                          % (_connection_cause(lowered), quote(text)))
    return AgentError(CONNECTION_FAILED, "the connection failed: %s: %s" % (exc.__class__.__name__, quote(text)))


# Connection plugins that run commands on the controller itself: a
# powershell shell there would run the agent on the wrong machine.
_LOCAL_CONNECTIONS = frozenset({"local", "ansible.builtin.local"})


def check_connection(connection: Any, become: bool = False) -> None:
    """Refuse, before anything runs anywhere, a connection that cannot carry the agent."""
    if become:
        # The agent runs as the connection user; a become plugin would wrap
        # the command (or be ignored) and the user would not get what was asked.
        raise AgentError(BECOME_UNSUPPORTED, "become is not supported by mailops.iis_smtp: the agent runs "
                         "as the connection user, who must be a local administrator; remove become from "
                         "this task")
    check_windows(connection)


def check_windows(connection: Any) -> None:
    """Refuse a connection that does not reach a Windows host with the powershell shell."""
    transport = str(getattr(connection, "transport", "") or "")
    load_name = str(getattr(connection, "_load_name", "") or "")
    family = getattr(getattr(connection, "_shell", None), "SHELL_FAMILY", None)
    if transport in _LOCAL_CONNECTIONS or load_name in _LOCAL_CONNECTIONS:
        raise AgentError(NOT_WINDOWS, "this host uses the local connection, which runs commands on the "
                         "controller: IIS SMTP virtual servers exist only on Windows; use winrm, psrp or "
                         "ssh to reach the Windows host")
    if family != "powershell":
        raise AgentError(
            NOT_WINDOWS,
            "this host does not use the powershell shell (shell family %r): IIS SMTP virtual servers "
            "exist only on Windows; set ansible_shell_type=powershell and a Windows connection" % family,
        )


def call(connection: Any, request: dict[str, Any], agent_text: str | None = None) -> dict[str, Any]:
    """Run the agent once on the host behind `connection` and return its response."""
    check_windows(connection)
    command, stdin = build_call(request, agent_text)
    try:
        rc, stdout, stderr = connection.exec_command(command, in_data=stdin, sudoable=False)
    except Exception as exc:
        raise classify_exception(exc) from exc
    return parse_output(rc, stdout, stderr)


class Channel:
    """`call(request) -> response` bound to one connection, and `reset()` to reconnect.

    It only carries calls: which call may be repeated after a failure, and
    with what deadline, is the engine's decision. The agent is read once per
    channel, not once per call.
    """

    def __init__(self, connection: Any, agent_text: str | None = None) -> None:
        self._connection = connection
        self._agent = agent_text
        self._agents: dict[str, str] = {}
        self.calls = 0

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        agent = self._agent
        if agent is None:
            action = str(request.get("action"))
            if action not in self._agents:
                self._agents[action] = load_agent(action=action)
            agent = self._agents[action]
        return call(self._connection, request, agent)

    def reset(self) -> None:
        reset = getattr(self._connection, "reset", None)
        if callable(reset):
            try:
                reset()
            except Exception as exc:
                raise classify_exception(exc) from exc
