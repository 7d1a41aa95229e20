# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller <-> agent protocol of docs/agent-protocol.md, in one place.

Internal to mailops.iis_smtp. The engine builds requests with these
functions, the planner names steps with this vocabulary, the transport reads
answers with `parse_output`, and every failure the controller can report
carries one of the reason codes below. The agent (agent.ps1) and the
simulator implement the other side; tests pin both to this module.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

PROTOCOL_VERSION = 1
RESPONSE_PREFIX = "MAILOPS-AGENT-1:"

ACTIONS = ("observe", "apply")
SERVICE_OPS = ("set_start_mode", "start_service", "continue_service")
INSTANCE_COMMANDS = ("start", "stop", "pause", "continue")
# Both ways, in this order: which one SMTP honours is not documented
# (docs/windows-facts.md, "NOT VERIFIED"), so the agent tries each.
VIA = ("method", "server_command")
# The user's start-mode words and the sc.exe words the protocol speaks.
SC_START_MODES = {"auto": "auto", "delayed": "delayed-auto", "manual": "demand", "disabled": "disabled"}
WATCH_SERVICES = ("SMTPSVC", "IISADMIN")

# `type` of the errors the agent makes itself (no HRESULT).
# metabase.error: IISADMIN is not running, and binding the metabase would start it.
IISADMIN_NOT_RUNNING_ERROR = "iisadmin_not_running"
# A step refused, nothing sent: its service is not in the state the control is
# for (or, for server_command, SMTPSVC is not running).
WRONG_STATE_ERROR = "wrong_state"
# A ServerCommand was written but ServerState did not move.
NO_EFFECT_ERROR = "no_effect"

# Reason codes of failed results. Stable: users match on them.
CONNECTION_FAILED = "connection_failed"
AUTH_FAILED = "auth_failed"
WINRM_FAULT = "winrm_fault"
AGENT_EXIT_NONZERO = "agent_exit_nonzero"
AGENT_OUTPUT_INVALID = "agent_output_invalid"
PROTOCOL_MISMATCH = "protocol_mismatch"
NOT_WINDOWS = "not_windows"
BECOME_UNSUPPORTED = "become_unsupported"
REQUEST_TOO_LARGE = "request_too_large"
BAD_REQUEST = "bad_request"
IISADMIN_DISABLED = "iisadmin_disabled"
IISADMIN_NOT_RUNNING = "iisadmin_not_running"
SERVICE_UNREADABLE = "service_unreadable"
# An instance whose id the agent cannot be sent (above Int32): left as it is.
INSTANCE_ID_OUT_OF_RANGE = "instance_id_out_of_range"
# delegate_to another host: the result would describe that host under this one.
DELEGATION_UNSUPPORTED = "delegation_unsupported"
# Credentials the connection cannot put on the wire (Basic carries Latin-1 only).
CREDENTIALS_UNENCODABLE = "credentials_unencodable"
# A host Ansible itself would call unreachable: nothing ran there.
UNREACHABLE_REASONS = frozenset({CONNECTION_FAILED, AUTH_FAILED, CREDENTIALS_UNENCODABLE})
# Worth one more try while only looking: the host answered before, so a
# refused or dropped connection is most likely load on its WinRM service.
TRANSIENT_REASONS = frozenset({CONNECTION_FAILED})

QUOTE_LIMIT = 200
_RESPONSE_RE = re.compile(r"^" + re.escape(RESPONSE_PREFIX) + r"(\S*)\s*$", re.MULTILINE)
_CLIXML_HEADER = "#< CLIXML"
_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.S)
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


class AgentError(Exception):
    """A call that produced no usable response; `code` is one of the reason codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- requests

def observe_request() -> dict[str, Any]:
    return {"protocol": PROTOCOL_VERSION, "action": "observe"}


def apply_request(steps: tuple[dict[str, Any], ...] | list[dict[str, Any]], settle_timeout: float,
                  poll_ms: int, watch: dict[str, Any] | None = None) -> dict[str, Any]:
    """An apply; `watch` names what the settle wait waits for (default: everything)."""
    request: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "action": "apply", "steps": list(steps),
                               "settle_timeout_s": max(0, math.ceil(settle_timeout)), "poll_ms": poll_ms}
    if watch is not None:
        request["watch"] = {"services": list(watch.get("services", ())),
                            "instances": list(watch.get("instances", ()))}
    return request


def instance_step(instance_id: int, command: str) -> dict[str, Any]:
    return {"op": "instance", "id": instance_id, "command": command, "via": list(VIA)}


def service_step(op: str, **extra: str) -> dict[str, Any]:
    return {"op": op, "service": "SMTPSVC", **extra}


def set_start_mode_step(mode: str) -> dict[str, Any]:
    return service_step("set_start_mode", start_mode=SC_START_MODES[mode])


def start_iisadmin_step() -> dict[str, Any]:
    """IISADMIN alone: the metabase is read only while it runs, and observing never starts it."""
    return {"op": "start_service", "service": "IISADMIN"}


# ---------------------------------------------------------------- responses

def quote(text: str) -> str:
    """At most QUOTE_LIMIT characters of what a host sent, for messages."""
    text = text.strip()
    return text[:QUOTE_LIMIT] + ("..." if len(text) > QUOTE_LIMIT else "")


def _to_text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return "" if data is None else str(data)


def clixml_errors(stderr: str) -> str:
    """The error text of a CLIXML stderr (powershell.exe writes its errors so when redirected)."""
    if _CLIXML_HEADER not in stderr:
        return stderr
    found = [_CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), part) for part in _CLIXML_ERROR.findall(stderr)]
    return " ".join("".join(found).split()) if found else stderr


def parse_output(rc: int | None, stdout: Any, stderr: Any) -> dict[str, Any]:
    """Turn what the command printed into the response dict, or raise AgentError.

    The response line wins over the exit code: the agent exits 0 whenever it
    could write its line, so a line with a non-zero exit is still its answer.
    """
    out = _to_text(stdout)
    err = clixml_errors(_to_text(stderr))
    matches = _RESPONSE_RE.findall(out)
    if not matches:
        if rc:
            raise AgentError(
                AGENT_EXIT_NONZERO,
                "the agent exited with code %s without a response; stderr: %s; stdout: %s"
                % (rc, quote(err) or "(empty)", quote(out) or "(empty)"),
            )
        raise AgentError(
            AGENT_OUTPUT_INVALID,
            "no %s line in the agent output: %s" % (RESPONSE_PREFIX, quote(out + err) or "(empty)"),
        )
    encoded = matches[-1]
    try:
        response = json.loads(base64.b64decode(encoded, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError) as exc:
        raise AgentError(
            AGENT_OUTPUT_INVALID,
            "the agent response did not decode to JSON (%s): %s" % (quote(str(exc)) or exc.__class__.__name__,
                                                                    quote(encoded)),
        ) from None
    if not isinstance(response, dict):
        raise AgentError(AGENT_OUTPUT_INVALID,
                         "the agent response is not a JSON object: %s" % quote(json.dumps(response)))
    refusal = response.get("error") if response.get("ok") is False else None
    if isinstance(refusal, dict) and refusal.get("type") == "unsupported_protocol":
        # The agent answers in its own protocol even when it refuses ours, so
        # the version check below cannot notice: the refusal itself says it.
        raise AgentError(
            PROTOCOL_MISMATCH,
            "the agent refused this collection's protocol %d: %s; ship matching versions"
            % (PROTOCOL_VERSION, quote(str(refusal.get("message") or ""))),
        )
    if response.get("protocol") != PROTOCOL_VERSION:
        raise AgentError(
            PROTOCOL_MISMATCH,
            "the agent speaks protocol %r, this collection speaks %d; ship matching versions"
            % (response.get("protocol"), PROTOCOL_VERSION),
        )
    return response
