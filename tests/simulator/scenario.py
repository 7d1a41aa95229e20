"""Scenario files for the simulated fleet: parsing and validation.

A scenario is the only input a test or a demo gives the simulator, so a typo
in it must fail loudly and precisely (which key, which host) before any
listener starts, instead of silently simulating a different fleet. This module
turns the YAML/dict form into frozen specs; `model.py` builds live hosts from
them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ScenarioError(ValueError):
    """The scenario cannot be simulated as written."""


@dataclass(frozen=True)
class OsSpec:
    """One Windows Server release as `Win32_OperatingSystem` reports it."""

    name: str
    caption: str
    version: str
    build: int
    ps_version: str
    smtp_available: bool


# Build numbers are the RTM builds; PowerShell 5.1 ships in-box from 2016 and
# as WMF 5.1 on 2012 R2.
_OS_RELEASES: dict[str, tuple[str, str, int, str, bool]] = {
    "2012r2": ("Windows Server 2012 R2", "6.3.9600", 9600, "5.1.14409.1005", True),
    "2016": ("Windows Server 2016", "10.0.14393", 14393, "5.1.14393.0", True),
    "2019": ("Windows Server 2019", "10.0.17763", 17763, "5.1.17763.1", True),
    "2022": ("Windows Server 2022", "10.0.20348", 20348, "5.1.20348.1", True),
    "2025": ("Windows Server 2025", "10.0.26100", 26100, "5.1.26100.1", False),
}

_OS_PATTERN = re.compile(
    r"(?:microsoft\s+)?(?:windows\s+server\s+)?(2012\s*r2|2016|2019|2022|2025)"
    r"(?:\s+(standard|datacenter))?",
    re.IGNORECASE,
)


def parse_os(value: Any, where: str) -> OsSpec:
    """Accept "Windows Server 2019", "2019", "2012 R2", optionally with an edition."""
    match = _OS_PATTERN.fullmatch(str(value).strip()) if isinstance(value, (str, int)) else None
    if match is None:
        raise ScenarioError(f"{where}: os {value!r} is not one of Windows Server 2012 R2, 2016, 2019, 2022, 2025")
    key = re.sub(r"\s+", "", match.group(1)).lower()
    edition = (match.group(2) or "standard").capitalize()
    name, version, build, ps_version, smtp = _OS_RELEASES[key]
    return OsSpec(name, f"Microsoft {name} {edition}", version, build, ps_version, smtp)


SERVICE_STATES = {
    "running": "Running",
    "stopped": "Stopped",
    "paused": "Paused",
    "start pending": "Start Pending",
    "stop pending": "Stop Pending",
    "continue pending": "Continue Pending",
    "pause pending": "Pause Pending",
}
# How long a service stays `* Pending` after a control when the scenario does not say.
DEFAULT_PENDING_S = 0.2
# scenario start mode -> (Win32_Service StartMode, DelayedAutostart)
START_MODES = {
    "auto": ("Auto", False),
    "delayed": ("Auto", True),
    "manual": ("Manual", False),
    "disabled": ("Disabled", False),
}

STATE_CODES = {
    "starting": 1,
    "started": 2,
    "stopping": 3,
    "stopped": 4,
    "pausing": 5,
    "paused": 6,
    "continuing": 7,
}
STATE_NAMES = {code: name for name, code in STATE_CODES.items()}

FAULT_ACTIONS = ("observe", "apply", "any")
AGENT_OUTPUT_KINDS = ("garbage", "truncated", "nonzero_exit")
CONTROL_MODES = ("both", "method", "server_command")
# winrm and psrp speak WS-Management (server.py, psrp.py); ssh is Windows OpenSSH (ssh.py).
CONNECTIONS = ("winrm", "psrp", "ssh")
# Windows OpenSSH runs commands through cmd.exe unless DefaultShell names PowerShell.
DEFAULT_SHELLS = ("cmd", "powershell")
# Faults only an HTTP / WS-Management listener can play.
WSMAN_FAULTS = ("http_401", "wsman_fault")
DEFAULT_WSMAN_FAULT = "The WS-Management service cannot process the request because the XML is invalid."
DEFAULT_START_HRESULT = "0x80070034"

_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HRESULT = re.compile(r"0x[0-9A-Fa-f]{8}")


@dataclass(frozen=True)
class ServiceSpec:
    state: str  # Win32_Service State
    start_mode: str  # Win32_Service StartMode
    delayed: bool
    pending_s: float
    stuck: bool


@dataclass(frozen=True)
class InstanceSpec:
    id: int
    comment: str
    state: int
    bindings: tuple[str, ...]
    auto_start: bool
    transition_s: float
    start_error: str | None
    start_hresult: str
    stuck: bool
    read_error: str | None


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault; `times` None fires on every matching call."""

    name: str
    on: str
    times: int | None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostSpec:
    name: str
    os: OsSpec
    service: ServiceSpec
    iisadmin: ServiceSpec
    smtp_server: bool
    metabase: bool
    instances: tuple[InstanceSpec, ...]
    # How Ansible reaches the host: winrm, psrp (both WS-Management) or ssh.
    connection: str
    # ssh only: the shell Windows OpenSSH runs a command through (DefaultShell).
    default_shell: str
    auth: str
    scheme: str
    # WinRM's AllowUnencrypted: false (Windows' default) refuses Basic and any unsealed body over HTTP.
    allow_unencrypted: bool
    username: str
    password: str = field(repr=False)
    port: int | None
    access_denied: bool
    unreachable: bool
    control: str
    faults: tuple[FaultSpec, ...]
    raw_faults: Mapping[str, Any]


@dataclass(frozen=True)
class ScenarioSpec:
    group: str
    hosts: tuple[HostSpec, ...]


_TOP_KEYS = {"group", "defaults", "hosts", "generate"}
_HOST_KEYS = {
    "os",
    "service",
    "iisadmin",
    "features",
    "instances",
    "connection",
    "default_shell",
    "auth",
    "allow_unencrypted",
    "scheme",
    "username",
    "password",
    "port",
    "transition_s",
    "access",
    "unreachable",
    "faults",
    "control",
}
_SERVICE_KEYS = {"state", "start_mode", "pending_s", "stuck"}
_FEATURE_KEYS = {"smtp_server", "metabase"}
_INSTANCE_KEYS = {
    "id",
    "comment",
    "state",
    "bindings",
    "auto_start",
    "transition_s",
    "start_error",
    "start_hresult",
    "stuck",
    "read_error",
}
_FAULT_KEYS = {
    "http_401",
    "wsman_fault",
    "delay",
    "cut",
    "agent_output",
    "service_start_error",
    "reboot_after_observe",
}
_GENERATE_KEYS = {"prefix", "count", "start", "template"}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ScenarioError(f"{where}: key {key!r} is not a string")
    return dict(value)


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _choice(value: Any, choices: Mapping[str, Any] | tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ScenarioError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return value.lower()


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{where}: expected true or false, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ScenarioError(f"{where}: expected a number >= 0, got {value!r}")
    return float(value)


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or "\n" in value or "\r" in value:
        raise ScenarioError(f"{where}: expected a non-empty one-line string")
    return value


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key, anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _service(value: Any, where: str, default_mode: str) -> ServiceSpec:
    data = _mapping(value, where)
    _check_keys(data, _SERVICE_KEYS, where)
    state = _choice(data.get("state", "running"), SERVICE_STATES, f"{where}.state")
    mode = _choice(data.get("start_mode", default_mode), START_MODES, f"{where}.start_mode")
    start_mode, delayed = START_MODES[mode]
    pending_s = _number(data.get("pending_s", DEFAULT_PENDING_S), f"{where}.pending_s")
    return ServiceSpec(SERVICE_STATES[state], start_mode, delayed, pending_s, _bool(data.get("stuck", False), f"{where}.stuck"))


def _check_dependency(service: ServiceSpec, iisadmin: ServiceSpec, where: str) -> None:
    """SMTPSVC depends on IISADMIN: the SCM starts IISADMIN first and stops SMTPSVC before it."""
    allowed = ("Running", "Start Pending") if service.state == "Start Pending" else ("Running",)
    if service.state != "Stopped" and iisadmin.state not in allowed:
        raise ScenarioError(
            f"{where}.service: SMTPSVC cannot be {service.state} while IISADMIN, which it depends on, is {iisadmin.state}"
        )


def _instance(value: Any, where: str, default_transition: float) -> InstanceSpec:
    data = _mapping(value, where)
    _check_keys(data, _INSTANCE_KEYS, where)
    if "id" not in data:
        raise ScenarioError(f"{where}: missing key 'id'")
    ident = _int(data["id"], f"{where}.id", 1)
    state = STATE_CODES[_choice(data.get("state", "started"), STATE_CODES, f"{where}.state")]
    comment = data.get("comment", "")
    if not isinstance(comment, str):
        raise ScenarioError(f"{where}.comment: expected a string")
    bindings = data.get("bindings", [":25:"])
    if not isinstance(bindings, list) or not all(isinstance(b, str) for b in bindings):
        raise ScenarioError(f"{where}.bindings: expected a list of strings like ':25:'")
    auto_start = _bool(data["auto_start"], f"{where}.auto_start") if "auto_start" in data else state in (1, 2)
    start_error = data.get("start_error")
    if start_error is not None:
        start_error = _text(start_error, f"{where}.start_error")
    hresult = data.get("start_hresult", DEFAULT_START_HRESULT)
    if not isinstance(hresult, str) or not _HRESULT.fullmatch(hresult):
        raise ScenarioError(f"{where}.start_hresult: expected 0x followed by 8 hex digits")
    transition = _number(data["transition_s"], f"{where}.transition_s") if "transition_s" in data else default_transition
    read_error = data.get("read_error")
    if read_error is not None:
        read_error = _text(read_error, f"{where}.read_error")
    return InstanceSpec(
        id=ident,
        comment=comment,
        state=state,
        bindings=tuple(bindings),
        auto_start=auto_start,
        transition_s=transition,
        start_error=start_error,
        start_hresult="0x" + hresult[2:].upper(),
        stuck=_bool(data.get("stuck", False), f"{where}.stuck"),
        read_error=read_error,
    )


def _fault_options(value: Any, where: str, extra: set[str]) -> tuple[dict[str, Any], str, int | None]:
    data = _mapping(value, where)
    _check_keys(data, {"on", "times"} | extra, where)
    on = _choice(data.get("on", "any"), FAULT_ACTIONS, f"{where}.on")
    times = data.get("times")
    if times is not None:
        times = _int(times, f"{where}.times", 1)
    return data, on, times


def _fault(name: str, value: Any, where: str) -> FaultSpec | None:
    """Normalise the short forms (`true`, a message string) to one FaultSpec."""
    if value is False or value is None:
        return None
    if name in ("http_401", "cut") and value is True:
        return FaultSpec(name, "any", None)
    if name == "reboot_after_observe":
        if value is True:
            return FaultSpec(name, "observe", 1)
        data, _on, times = _fault_options(value, where, set())
        if "on" in data:
            raise ScenarioError(f"{where}.on: reboot_after_observe always follows an observe")
        return FaultSpec(name, "observe", times if times is not None else 1)
    if name == "wsman_fault" and (value is True or isinstance(value, str)):
        message = DEFAULT_WSMAN_FAULT if value is True else _text(value, where)
        return FaultSpec(name, "any", None, {"message": message})
    if name == "service_start_error" and isinstance(value, str):
        return FaultSpec(name, "apply", None, {"message": _text(value, where), "hresult": None})
    extra = {
        "http_401": set(),
        "cut": set(),
        "wsman_fault": {"message"},
        "delay": {"seconds"},
        "agent_output": {"kind"},
        "service_start_error": {"message", "hresult"},
    }[name]
    data, on, times = _fault_options(value, where, extra)
    params: dict[str, Any] = {}
    if name == "wsman_fault":
        params["message"] = _text(data.get("message", DEFAULT_WSMAN_FAULT), f"{where}.message")
    elif name == "delay":
        if "seconds" not in data:
            raise ScenarioError(f"{where}: missing key 'seconds'")
        params["seconds"] = _number(data["seconds"], f"{where}.seconds")
    elif name == "agent_output":
        if "kind" not in data:
            raise ScenarioError(f"{where}: missing key 'kind'")
        params["kind"] = _choice(data["kind"], AGENT_OUTPUT_KINDS, f"{where}.kind")
    elif name == "service_start_error":
        if "message" not in data:
            raise ScenarioError(f"{where}: missing key 'message'")
        params["message"] = _text(data["message"], f"{where}.message")
        hresult = data.get("hresult")
        if hresult is not None and (not isinstance(hresult, str) or not _HRESULT.fullmatch(hresult)):
            raise ScenarioError(f"{where}.hresult: expected 0x followed by 8 hex digits")
        params["hresult"] = hresult
        if on == "observe":
            raise ScenarioError(f"{where}.on: a service is only started by an apply")
    return FaultSpec(name, on, times, params)


def _host(name: str, data: dict[str, Any]) -> HostSpec:
    where = f"host {name!r}"
    _check_keys(data, _HOST_KEYS, where)
    os_spec = parse_os(data.get("os", "Windows Server 2019"), where)
    features = _mapping(data.get("features"), f"{where}.features")
    _check_keys(features, _FEATURE_KEYS, f"{where}.features")
    smtp = _bool(features.get("smtp_server", True), f"{where}.features.smtp_server")
    metabase = _bool(features.get("metabase", True), f"{where}.features.metabase")
    # Windows Server 2025 removed the feature; a fleet-wide default cannot add it back.
    smtp = smtp and os_spec.smtp_available
    transition = _number(data.get("transition_s", 0.3), f"{where}.transition_s")

    raw_instances = data.get("instances", [{"id": 1, "comment": "", "state": "started"}])
    if not isinstance(raw_instances, list):
        raise ScenarioError(f"{where}.instances: expected a list")
    instances = tuple(_instance(item, f"{where}.instances[{index}]", transition) for index, item in enumerate(raw_instances))
    ids = [instance.id for instance in instances]
    if len(set(ids)) != len(ids):
        raise ScenarioError(f"{where}.instances: duplicate id")

    # NTLM: what a workgroup fleet is reached with; Basic also needs allow_unencrypted or HTTPS.
    auth = _choice(data.get("auth", "ntlm"), ("basic", "ntlm"), f"{where}.auth")
    scheme = _choice(data.get("scheme", "http"), ("http", "https"), f"{where}.scheme")
    username = _text(data.get("username", "Administrator"), f"{where}.username")
    if ":" in username:
        raise ScenarioError(f"{where}.username: must not contain ':'")
    password = _text(data["password"], f"{where}.password") if "password" in data else secrets.token_urlsafe(18)
    port = data.get("port")
    if port is not None:
        port = _int(port, f"{where}.port", 1)
        if port > 65535:
            raise ScenarioError(f"{where}.port: {port} is not a TCP port")
    access = _choice(data.get("access", "granted"), ("granted", "denied"), f"{where}.access")

    raw_faults = _mapping(data.get("faults"), f"{where}.faults")
    _check_keys(raw_faults, _FAULT_KEYS, f"{where}.faults")
    faults = tuple(spec for key, value in raw_faults.items() if (spec := _fault(key, value, f"{where}.faults.{key}")) is not None)
    connection = _choice(data.get("connection", "winrm"), CONNECTIONS, f"{where}.connection")
    for spec in faults:
        if connection == "ssh" and spec.name in WSMAN_FAULTS:
            raise ScenarioError(f"{where}.faults.{spec.name}: a WS-Management fault; this host's connection is ssh")
    service = _service(data.get("service"), f"{where}.service", "auto")
    iisadmin = _service(data.get("iisadmin"), f"{where}.iisadmin", "auto")
    if smtp:
        _check_dependency(service, iisadmin, where)
    return HostSpec(
        name=name,
        os=os_spec,
        service=service,
        iisadmin=iisadmin,
        smtp_server=smtp,
        metabase=metabase,
        instances=instances if smtp else (),
        connection=connection,
        default_shell=_choice(data.get("default_shell", "cmd"), DEFAULT_SHELLS, f"{where}.default_shell"),
        auth=auth,
        allow_unencrypted=_bool(data.get("allow_unencrypted", False), f"{where}.allow_unencrypted"),
        scheme=scheme,
        username=username,
        password=password,
        port=port,
        access_denied=access == "denied",
        unreachable=_bool(data.get("unreachable", False), f"{where}.unreachable"),
        control=_choice(data.get("control", "both"), CONTROL_MODES, f"{where}.control"),
        faults=faults,
        raw_faults={spec.name: raw_faults[spec.name] for spec in faults},
    )


def _generated(entries: Any, defaults: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ScenarioError("generate: expected a list of {prefix, count, template}")
    out: list[tuple[str, dict[str, Any]]] = []
    for index, entry in enumerate(entries):
        where = f"generate[{index}]"
        data = _mapping(entry, where)
        _check_keys(data, _GENERATE_KEYS, where)
        prefix = data.get("prefix")
        if not isinstance(prefix, str) or not _HOST_NAME.fullmatch(prefix):
            raise ScenarioError(f"{where}.prefix: expected a host name prefix like 'relay'")
        if "count" not in data:
            raise ScenarioError(f"{where}: missing key 'count'")
        count = _int(data["count"], f"{where}.count", 1)
        start = _int(data.get("start", 1), f"{where}.start", 0)
        template = _mapping(data.get("template"), f"{where}.template")
        width = max(3, len(str(start + count - 1)))
        out.extend((f"{prefix}{number:0{width}d}", merge(defaults, template)) for number in range(start, start + count))
    return out


def parse_scenario(data: Any) -> ScenarioSpec:
    """Validate a whole scenario; the first problem found is raised."""
    top = _mapping(data, "scenario")
    _check_keys(top, _TOP_KEYS, "scenario")
    group = top.get("group", "smtp_servers")
    if not isinstance(group, str) or not _GROUP_NAME.fullmatch(group):
        raise ScenarioError(f"group: {group!r} is not a valid inventory group name")
    defaults = _mapping(top.get("defaults"), "defaults")
    _check_keys(defaults, _HOST_KEYS, "defaults")
    named = _mapping(top.get("hosts"), "hosts")
    entries: list[tuple[str, dict[str, Any]]] = []
    for name, value in named.items():
        if not _HOST_NAME.fullmatch(name):
            raise ScenarioError(f"hosts: {name!r} is not a valid host name")
        entries.append((name, merge(defaults, _mapping(value, f"host {name!r}"))))
    entries.extend(_generated(top.get("generate"), defaults))
    if not entries:
        raise ScenarioError("scenario: no hosts (give 'hosts' or 'generate')")
    seen: set[str] = set()
    hosts = []
    for name, host_data in entries:
        if name.lower() in seen:
            raise ScenarioError(f"host {name!r}: defined twice")
        seen.add(name.lower())
        hosts.append(_host(name, host_data))
    ports = [host.port for host in hosts if host.port is not None]
    if len(set(ports)) != len(ports):
        raise ScenarioError("hosts: two hosts ask for the same port")
    return ScenarioSpec(group, tuple(hosts))
