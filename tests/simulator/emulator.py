"""Recognising the agent in a WinRS command and speaking its protocol.

The simulator must answer exactly what `docs/agent-protocol.md` promises and
nothing more: a command is served only when it carries the collection's own
`agent.ps1` (byte-for-byte after normalisation), so a stale or edited agent,
or any other PowerShell, is refused with a clear error instead of being
"understood" by a simulator that cannot run PowerShell. These functions are
pure (text in, data out); `model.py` executes what they decode.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard
from xml.sax.saxutils import escape

PROTOCOL = 1
RESPONSE_PREFIX = "MAILOPS-AGENT-1:"
DEFAULT_AGENT_VERSION = "1.0.0"

AGENT_PATH = Path(__file__).resolve().parents[2] / "plugins" / "plugin_utils" / "agent.ps1"
BOOTSTRAP_PATH = AGENT_PATH.with_name("bootstrap.ps1")
HASH_PLACEHOLDER = "AGENT_SHA256"
COMMAND_PREFIX = "PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand "
# powershell.exe decodes redirected stdin with the console's OEM code page
# (437 on an en-US Windows Server), not UTF-8.
STDIN_CODEPAGE = "cp437"

SERVICE_OPS = ("set_start_mode", "start_service", "continue_service")
START_MODE_VALUES = ("auto", "delayed-auto", "demand", "disabled")
INSTANCE_COMMANDS = ("start", "stop", "pause", "continue")
VIAS = ("method", "server_command")
ACTIONS = ("observe", "apply")
# What `start_service` may start and a settle wait may watch.
SERVICES = ("SMTPSVC", "IISADMIN")

_ENCODED_SWITCHES = {"-encodedcommand", "-enc", "-e", "-ec", "-en", "-encoded"}
_AGENT_VERSION = re.compile(r"""\bagent_version\s*=\s*['"]([^'"]+)['"]""", re.IGNORECASE)


class NotSupported(Exception):
    """The command is not something the simulator can run; the text says what it was."""


class PowerShellError(Exception):
    """A terminating error in the bootstrap: powershell.exe writes it to stderr as CLIXML and exits 1."""


class BadRequest(Exception):
    """The agent's request is malformed; the agent answers `ok: false`."""

    def __init__(self, message: str, type_name: str = "bad_request") -> None:
        super().__init__(message)
        self.type_name = type_name
        # The request's `action` when it is a string: the agent echoes it in its refusal.
        self.action: str | None = None


def normalise(text: str) -> str:
    """The agent normalisation of the protocol: strip lines, drop blanks and `#` lines."""
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))


APPLY_ONLY_BEGIN = "# mailops:apply-only begin"
APPLY_ONLY_END = "# mailops:apply-only end"
VARIANTS = ("apply", "observe")


def agent_variant(text: str, variant: str) -> str:
    """The agent as a request of `variant` carries it: the observe agent lacks the apply-only lines."""
    if variant == "observe":
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
    return normalise(text)


def read_agent(path: Path = AGENT_PATH) -> str:
    """The agent text; `utf-8-sig` so that an editor's BOM does not change the match."""
    return path.read_text(encoding="utf-8-sig")


def read_bootstrap(path: Path = BOOTSTRAP_PATH) -> str:
    """The bootstrap text, with its AGENT_SHA256 placeholder."""
    return path.read_text(encoding="utf-8-sig")


def clixml_error(message: str) -> bytes:
    """stderr of powershell.exe for a terminating error, as it writes it when redirected."""
    lines = [message, "    + CategoryInfo          : OperationStopped: (:) [], RuntimeException",
             "    + FullyQualifiedErrorId : RuntimeException", ""]
    body = "".join(
        f'<S S="Error">{escape(line)}_x000D__x000A_</S>' for line in lines
    )
    return ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            + body + "</Objs>").encode("utf-8")


def agent_version(agent_text: str) -> str:
    """The version the agent reports, taken from the agent itself when it declares one."""
    match = _AGENT_VERSION.search(agent_text)
    return match.group(1) if match else DEFAULT_AGENT_VERSION


def split_arguments(arguments: str | list[str] | tuple[str, ...]) -> list[str]:
    """WinRS carries one Arguments string or several; PowerShell sees the same words."""
    if isinstance(arguments, str):
        return arguments.split()
    return [word for argument in arguments for word in str(argument).split()]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_script(command: str, arguments: str | list[str] | tuple[str, ...]) -> str:
    """The PowerShell script an `-EncodedCommand` call carries."""
    words = split_arguments(arguments)
    executable = command.strip().split()[0] if command.strip() else ""
    if not executable.lower().rsplit("\\", 1)[-1].removesuffix(".exe") == "powershell":
        raise NotSupported(f"command {_short(command.strip())!r} (only PowerShell runs here)")
    # Tolerate a command line packed into Command itself.
    words = command.strip().split()[1:] + words
    lowered = [word.lower() for word in words]
    position = next((i for i, word in enumerate(lowered) if word in _ENCODED_SWITCHES), None)
    if position is None or position + 1 >= len(words):
        raise NotSupported("PowerShell without -EncodedCommand")
    try:
        return base64.b64decode(words[position + 1], validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise NotSupported(f"-EncodedCommand that is not base64 UTF-16-LE ({exc})") from None


def bootstrap_hash(script: str, bootstrap_text: str) -> str:
    """The agent hash a command-line script carries if it is the collection's bootstrap, else NotSupported."""
    template = normalise(bootstrap_text)
    if HASH_PLACEHOLDER not in template:
        raise NotSupported("plugins/plugin_utils/bootstrap.ps1 has no AGENT_SHA256 placeholder")
    before, after = template.split(HASH_PLACEHOLDER, 1)
    match = re.fullmatch(re.escape(before) + "([0-9A-F]{64})" + re.escape(after), normalise(script))
    if match is None:
        first = next((line.strip() for line in script.splitlines() if line.strip()), "")
        raise NotSupported(f"PowerShell script that is not the mailops bootstrap ({_short(first)!r})")
    return match.group(1)


def _powershell_input(stdin: bytes) -> str:
    """`@($input) -join "`n"`: stdin as powershell.exe reads it, line by line."""
    return "\n".join(stdin.decode(STDIN_CODEPAGE).splitlines())


def _property(document: Any, name: str) -> Any:
    """`$payload.name` under Set-StrictMode -Version 2: a missing property is an error."""
    if not isinstance(document, dict) or name not in document:
        raise PowerShellError(
            f"The property '{name}' cannot be found on this object. Verify that the property exists."
        )
    return document[name]


def _ps_string(value: Any) -> str:
    """`[string]$value` for what ConvertFrom-Json returns."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return "System.Management.Automation.PSCustomObject" if isinstance(value, dict) else " ".join(map(_ps_string, value))
    return _ps_text(value)


def extract_request(stdin: bytes, expected_hash: str, agent_text: str) -> str:
    """What the bootstrap does with stdin: the request it hands the agent (see `extract_call`)."""
    return extract_call(stdin, expected_hash, agent_text)[0]


def extract_call(stdin: bytes, expected_hash: str, agent_text: str) -> tuple[str, str]:
    """What the bootstrap does with stdin: the request it hands the agent, and which agent ran.

    PowerShellError where the bootstrap itself would fail (stdin not JSON, a
    missing key, an agent that does not match its hash); NotSupported for an
    agent that passes the check but is neither form of the repository's
    agent.ps1 (all of it, or the observe agent without its apply-only lines).
    """
    text = _powershell_input(stdin)
    try:
        payload = json.loads(text)
    except ValueError:
        raise PowerShellError("Invalid JSON primitive: " + _short(text.strip(), 40) + ".") from None
    agent = _ps_string(_property(payload, "agent"))
    digest = hashlib.sha256(agent.encode("utf-8")).hexdigest().upper()
    if digest != expected_hash:
        raise PowerShellError("mailops.iis_smtp bootstrap: the agent on stdin does not match the hash on the command line")
    sent = normalise(agent)
    variant = next((name for name in VARIANTS if sent == agent_variant(agent_text, name)), None)
    if variant is None:
        raise NotSupported("an agent that differs from plugins/plugin_utils/agent.ps1")
    return _ps_string(_property(payload, "request")), variant


@dataclass(frozen=True)
class Step:
    op: str
    service: str | None = None
    start_mode: str | None = None
    id: int | None = None
    command: str | None = None
    via: tuple[str, ...] = ()


@dataclass(frozen=True)
class Watch:
    """What an apply's settle wait waits for; a request without one waits for everything."""

    services: tuple[str, ...]
    instances: tuple[int, ...]


@dataclass(frozen=True)
class Request:
    action: str
    steps: tuple[Step, ...] = ()
    settle_timeout_s: float = 0.0
    poll_ms: int = 1
    watch: Watch | None = None


_INT32_MAX = 2**31 - 1


def _is_int(value: Any) -> TypeGuard[int]:
    """What ConvertFrom-Json turns into [int]: a JSON integer within Int32."""
    return isinstance(value, int) and not isinstance(value, bool) and -_INT32_MAX - 1 <= value <= _INT32_MAX


def _ps_text(value: Any) -> str:
    """How PowerShell concatenates a value into a string (for the agent's messages)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _ps_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as ConvertFrom-Json makes it: PowerShell property names ignore case,
    so two keys that differ only in case refuse the whole document (a repeated key keeps its last value)."""
    found: dict[str, Any] = {}
    first: dict[str, str] = {}
    for key, value in pairs:
        seen = first.setdefault(key.upper(), key)
        if seen != key:
            raise ValueError(
                "Cannot convert the JSON string because a dictionary that was converted from the string "
                f"contains the duplicated keys '{seen}' and '{key}'."
            )
        found[key] = value
    return found


def _step_problem(value: Any) -> str | None:
    """The agent's Read-Step, check for check: values are compared exactly, keys case-sensitively."""
    field = value.get if isinstance(value, dict) else (lambda _key: None)
    op = field("op")
    if op not in SERVICE_OPS + ("instance",):
        return "op must be one of: " + ", ".join(SERVICE_OPS + ("instance",))
    if op == "instance":
        ident = field("id")
        if not _is_int(ident) or ident < 1:
            return "id must be an integer >= 1"
        if field("command") not in INSTANCE_COMMANDS:
            return "command must be one of: " + ", ".join(INSTANCE_COMMANDS)
        via = field("via")
        if not isinstance(via, list) or not via:
            return "via must be a non-empty list"
        if any(item not in VIAS for item in via):
            return "via entries must be one of: " + ", ".join(VIAS)
        return None
    if op == "start_service":
        if field("service") not in SERVICES:
            return "service must be one of: " + ", ".join(SERVICES)
    elif field("service") != "SMTPSVC":
        return "service must be SMTPSVC"
    if op == "set_start_mode" and field("start_mode") not in START_MODE_VALUES:
        return "start_mode must be one of: " + ", ".join(START_MODE_VALUES)
    return None


def _watch_problem(value: Any) -> str | None:
    """The agent's Read-Watch."""
    if not isinstance(value, dict):
        return "watch must be an object"
    services, instances = value.get("services"), value.get("instances")
    if not isinstance(services, list) or not isinstance(instances, list):
        return "watch must have the lists services and instances"
    if any(name not in SERVICES for name in services):
        return "watch services must be one of: " + ", ".join(SERVICES)
    if any(not _is_int(ident) or ident < 1 for ident in instances):
        return "watch instances must be an integer >= 1"
    return None


def _to_step(value: dict[str, Any]) -> Step:
    if value["op"] == "instance":
        return Step(op="instance", id=value["id"], command=value["command"], via=tuple(value["via"]))
    return Step(op=value["op"], service=value["service"], start_mode=value.get("start_mode"))


def parse_request(encoded: str, actions: tuple[str, ...] = ACTIONS) -> Request:
    """Validate the whole request before anything is touched, in the agent's order
    and with its messages (`BadRequest.type_name` is the refusal's `type`).

    `actions` are those the agent that runs knows: the observe agent knows only observe.
    """
    try:
        data = json.loads(base64.b64decode(encoded, validate=True).decode("utf-8"), object_pairs_hook=_ps_object)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the request is not base64 of JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request is not a JSON object")
    try:
        return _request(data, actions)
    except BadRequest as exc:
        action = data.get("action")
        exc.action = action if isinstance(action, str) else None
        raise


def _request(data: dict[str, Any], actions: tuple[str, ...]) -> Request:
    protocol = data.get("protocol")
    if not _is_int(protocol) or protocol != PROTOCOL:
        raise BadRequest(
            f"protocol {_ps_text(protocol)} is not supported; this agent speaks 1",
            "unsupported_protocol",
        )
    action = data.get("action")
    if not isinstance(action, str) or action not in actions:
        raise BadRequest("action must be " + " or ".join(actions))
    if action == "observe":
        return Request(action="observe")
    timeout = data.get("settle_timeout_s")
    if not _is_int(timeout) or timeout < 0:
        raise BadRequest("settle_timeout_s must be an integer >= 0")
    poll = data.get("poll_ms")
    if not _is_int(poll) or poll < 1:
        raise BadRequest("poll_ms must be an integer >= 1")
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise BadRequest("steps must be a list")
    for index, step in enumerate(steps):
        problem = _step_problem(step)
        if problem is not None:
            raise BadRequest(f"step {index + 1}: {problem}")
    watch = data.get("watch")
    if watch is not None:
        problem = _watch_problem(watch)
        if problem is not None:
            raise BadRequest(problem)
    return Request(
        action="apply",
        steps=tuple(_to_step(step) for step in steps),
        settle_timeout_s=float(timeout),
        poll_ms=poll,
        watch=Watch(tuple(watch["services"]), tuple(watch["instances"])) if watch is not None else None,
    )


def request_action(encoded: str) -> str | None:
    """The `action` field if the request is readable at all (echoed on errors)."""
    try:
        data = json.loads(base64.b64decode(encoded, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError):
        return None
    action = data.get("action") if isinstance(data, dict) else None
    return action if isinstance(action, str) else None


def error(message: str, hresult: str | None, type_name: str) -> dict[str, Any]:
    """The protocol's error object."""
    return {"message": message, "hresult": hresult, "type": type_name}


def response(
    version: str,
    action: str | None,
    *,
    observation: dict[str, Any] | None = None,
    failure: dict[str, Any] | None = None,
    steps: list[dict[str, Any]] | None = None,
    settled: bool | None = True,
    elapsed_ms: int = 0,
) -> dict[str, Any]:
    """Every response has every top-level key, success or not."""
    return {
        "protocol": PROTOCOL,
        "agent_version": version,
        "action": action,
        "ok": failure is None,
        "error": failure,
        "observation": observation if failure is None else None,
        "steps": steps or [],
        "settled": settled if failure is None else False,
        "elapsed_ms": elapsed_ms,
    }


def encode_line(document: dict[str, Any]) -> bytes:
    """The single stdout line of the agent."""
    payload = base64.b64encode(json.dumps(document, ensure_ascii=False).encode("utf-8"))
    return RESPONSE_PREFIX.encode("ascii") + payload + b"\r\n"


def build_call(agent_text: str, request: dict[str, Any], bootstrap_text: str | None = None) -> tuple[str, list[str], bytes]:
    """What the transport sends for `request` (command, arguments, stdin), as the protocol document describes it.

    Kept here so that tests and tools build calls the one documented way
    without importing the collection.
    """
    # An observe request travels with the agent less its apply-only lines.
    agent = agent_variant(agent_text, "observe" if isinstance(request, dict) and request.get("action") == "observe" else "apply")
    digest = hashlib.sha256(agent.encode("utf-8")).hexdigest().upper()
    script = normalise(read_bootstrap() if bootstrap_text is None else bootstrap_text).replace(HASH_PLACEHOLDER, digest)
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    words = (COMMAND_PREFIX + encoded).split(" ")
    encoded_request = base64.b64encode(json.dumps(request).encode("utf-8")).decode("ascii")
    stdin = (json.dumps({"agent": agent, "request": encoded_request}) + "\n").encode("ascii")
    return words[0], [" ".join(words[1:])], stdin


def decode_line(stdout: bytes) -> dict[str, Any]:
    """Inverse of `encode_line`, for tests and tools that read the simulator directly."""
    for line in stdout.decode("utf-8", "replace").splitlines():
        if line.startswith(RESPONSE_PREFIX):
            document = json.loads(base64.b64decode(line[len(RESPONSE_PREFIX) :], validate=True))
            if isinstance(document, dict):
                return document
    raise ValueError("no agent response line in output")
