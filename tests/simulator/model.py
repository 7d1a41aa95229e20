"""An in-memory Windows host with IIS SMTP, as the agent sees it.

The collection is tested against this model instead of Windows, so it plays
the Windows behaviour described in docs/windows-facts.md
(service and instance states, transitional `ServerState` values that settle in
real time, `ServerAutoStart`, missing features, access denied) and records
every control operation it performs, which is how tests prove that a compliant
host was left alone. Where Windows behaviour is not verified, the choice made
is listed in tests/simulator/README.md.

The WinRM server calls `Host.run_command` from many threads; each host has
its own lock, and an apply releases it while it waits for states to settle.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

import yaml

from .emulator import (
    AGENT_PATH,
    BOOTSTRAP_PATH,
    BadRequest,
    NotSupported,
    PowerShellError,
    Request,
    Step,
    agent_version,
    bootstrap_hash,
    clixml_error,
    decode_script,
    encode_line,
    error,
    extract_request,
    parse_request,
    read_agent,
    request_action,
    response,
)
from .scenario import (
    STATE_NAMES,
    FaultSpec,
    HostSpec,
    InstanceSpec,
    ScenarioError,
    ScenarioSpec,
    ServiceSpec,
    parse_scenario,
)

__all__ = ["CommandOutcome", "Fleet", "Host", "ScenarioError"]

TRANSITIONS = {1: 2, 3: 4, 5: 6, 7: 2}
BEGIN = {"start": (1, 2), "stop": (3, 4), "pause": (5, 6), "continue": (7, 2)}

_COM = "System.Runtime.InteropServices.COMException"
_SERVICE_EXC = "Microsoft.PowerShell.Commands.ServiceCommandException"
_WIN32_EXC = "System.ComponentModel.Win32Exception"
_RUNTIME_EXC = "System.Management.Automation.RuntimeException"
# HResult of every SystemException that carries no Win32 code (COR_E_SYSTEM).
COR_E_SYSTEM = "0x80131501"

ACCESS_DENIED = ("Access is denied.", "0x80070005")
PATH_NOT_FOUND = ("The system cannot find the path specified.", "0x80070003")
BAD_PATHNAME = ("Unknown error (0x80005000)", "0x80005000")
SERVICE_DISABLED = (
    ("The service cannot be started, either because it is disabled or because it has no enabled devices associated with it."),
    "0x80070422",
)
DEPENDENCY_FAILED = ("The dependency service or group failed to start.", "0x8007042C")
ALREADY_RUNNING = ("An instance of the service is already running.", "0x80070420")
CANNOT_ACCEPT = ("The service cannot accept control messages at this time.", "0x80070425")
NOT_ACTIVE = ("The service has not been started.", "0x80070426")
NO_SUCH_SERVICE = ("The specified service does not exist as an installed service.", "0x80070424")
UNKNOWN_NAME = ("Unknown name.", "0x80020006")
BAD_PARAMETER = ("The parameter is incorrect.", "0x80070057")

GARBAGE_OUTPUT = (
    b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    b'<S S="Error">simulated output that is not the agent\'s response line</S></Objs>\r\n'
)
NONZERO_EXIT_STDERR = b"simulated fault: the agent process ended with exit code 1 before writing its response\r\n"


@dataclass
class CommandOutcome:
    """What the WinRM server sends back for one WinRS Command."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    delay_s: float = 0.0
    cut: bool = False
    wsman_fault: str | None = None


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall time; transitions are meant to be watched by a real controller."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


Error = dict[str, Any]


def _err(pair: tuple[str, str], type_name: str = _COM) -> Error:
    return error(pair[0], pair[1], type_name)


@dataclass
class _Service:
    name: str
    installed: bool
    state: str  # Running | Stopped | Paused
    start_mode: str  # Auto | Manual | Disabled
    delayed: bool

    @classmethod
    def from_spec(cls, name: str, installed: bool, spec: ServiceSpec) -> _Service:
        return cls(name, installed, spec.state, spec.start_mode, spec.delayed)

    def observe(self) -> dict[str, Any]:
        if not self.installed:
            return {"installed": False, "state": None, "start_mode": None, "delayed_auto_start": None, "error": None}
        return {"installed": True, "state": self.state, "start_mode": self.start_mode, "delayed_auto_start": self.delayed, "error": None}


@dataclass
class _Instance:
    id: int
    comment: str
    bindings: list[str]
    auto_start: bool
    transition_s: float
    stuck: bool
    start_error: str | None
    start_hresult: str
    code: int = 4
    since: float = 0.0

    @classmethod
    def from_spec(cls, spec: InstanceSpec) -> _Instance:
        return cls(spec.id, spec.comment, list(spec.bindings), spec.auto_start, spec.transition_s, spec.stuck, spec.start_error, spec.start_hresult)

    def begin(self, code: int, now: float) -> None:
        self.code = code
        self.since = now

    def settle(self, now: float) -> None:
        if self.code in TRANSITIONS and not self.stuck and now - self.since >= self.transition_s:
            self.code = TRANSITIONS[self.code]


class _Fault:
    """Counts firings so that `times: N` faults go quiet after N matching calls."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self.fired = 0

    def fire(self, action: str | None) -> bool:
        if self.spec.on != "any" and self.spec.on != action:
            return False
        if self.spec.times is not None and self.fired >= self.spec.times:
            return False
        self.fired += 1
        return True


_agent_cache: dict[Path, tuple[int, str]] = {}
_agent_cache_lock = threading.Lock()


def _cached(path: Path) -> str:
    """The repository's agent.ps1 or bootstrap.ps1, re-read when it changes on disk."""
    mtime = path.stat().st_mtime_ns
    with _agent_cache_lock:
        cached = _agent_cache.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, read_agent(path))
            _agent_cache[path] = cached
        return cached[1]


class Host:
    """One simulated Windows host: its scenario settings, live state and logs."""

    def __init__(self, spec: HostSpec, *, agent_text: str | None = None, clock: Clock | None = None) -> None:
        self.name = spec.name
        self.auth = spec.auth
        self.scheme = spec.scheme
        self.username = spec.username
        self.password = spec.password
        self.port = spec.port
        self.unreachable = spec.unreachable
        self.faults: dict[str, Any] = dict(spec.raw_faults)
        self._spec = spec
        self._agent_text = agent_text
        self._clock: Clock = clock or RealClock()
        self._lock = threading.Lock()
        self._faults = {fault.name: _Fault(fault) for fault in spec.faults}
        self.smtpsvc = _Service.from_spec("SMTPSVC", spec.smtp_server, spec.service)
        self.iisadmin = _Service.from_spec("IISADMIN", spec.smtp_server or spec.metabase, spec.iisadmin)
        if not self.smtpsvc.installed:
            self.smtpsvc.state = "Stopped"
        if not self.iisadmin.installed:
            self.iisadmin.state = "Stopped"
        self._instances = {item.id: _Instance.from_spec(item) for item in spec.instances}
        now = self._clock.monotonic()
        for spec_instance in spec.instances:
            if self.smtpsvc.state != "Stopped":
                self._instances[spec_instance.id].begin(spec_instance.state, now)
        self.operations: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.observes = 0
        self.applies = 0
        self.rejected = 0
        self.commands = 0

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.scheme}/{self.auth}, port={self.port})"

    # ----------------------------------------------------------------- faults

    def fault_fires(self, name: str, action: str | None = None) -> bool:
        """Whether fault `name` fires now (counts towards `times`); for the server's http_401."""
        with self._lock:
            fault = self._faults.get(name)
            return fault is not None and fault.fire(action)

    def _fire(self, name: str, action: str | None) -> FaultSpec | None:
        fault = self._faults.get(name)
        return fault.spec if fault is not None and fault.fire(action) else None

    # --------------------------------------------------------------- commands

    def run_command(self, command: str, arguments: list[str] | str, read_stdin: Callable[[], bytes] = lambda: b"") -> CommandOutcome:
        """Answer one WinRS Command the way the host would.

        Only the collection's bootstrap on the command line with the agent and
        its request on stdin is served; `read_stdin` blocks until the client
        has closed stdin, as a process reading it would.
        """
        with self._lock:
            self.commands += 1
        try:
            agent_text = self._agent_text if self._agent_text is not None else _cached(AGENT_PATH)
            bootstrap_text = _cached(BOOTSTRAP_PATH)
        except OSError as exc:
            return _refusal(f"no agent to recognise: {exc.filename} is missing")
        encoded: str | None = None
        try:
            expected_hash = bootstrap_hash(decode_script(command, arguments), bootstrap_text)
            encoded = extract_request(read_stdin(), expected_hash, agent_text)
            reason = ""
        except NotSupported as exc:
            reason = str(exc)
        except PowerShellError as exc:
            return CommandOutcome(b"", clixml_error(str(exc)), 1)
        action = request_action(encoded) if encoded is not None else None
        with self._lock:
            wsman = self._fire("wsman_fault", action)
            delay = self._fire("delay", action)
            cut = self._fire("cut", action) is not None
            output = self._fire("agent_output", action) if encoded is not None else None
        delay_s = float(delay.params["seconds"]) if delay else 0.0
        if wsman is not None:
            return CommandOutcome(b"", b"", 0, delay_s, cut, str(wsman.params["message"]))
        if encoded is None:
            outcome = _refusal(reason)
            outcome.delay_s, outcome.cut = delay_s, cut
            return outcome
        kind = output.params["kind"] if output else None
        if kind == "nonzero_exit":
            return CommandOutcome(b"", NONZERO_EXIT_STDERR, 1, delay_s, cut)
        line = encode_line(self._serve(encoded, agent_text))
        if kind == "garbage":
            line = GARBAGE_OUTPUT
        elif kind == "truncated":
            line = line[: len(line) // 2]
        return CommandOutcome(line, b"", 0, delay_s, cut)

    def _serve(self, encoded: str, agent_text: str) -> dict[str, Any]:
        version = agent_version(agent_text)
        started = self._clock.monotonic()
        try:
            request = parse_request(encoded)
        except BadRequest as exc:
            with self._lock:
                self.rejected += 1
            return response(version, None, failure=error(str(exc), None, exc.type_name), elapsed_ms=self._elapsed_ms(started))
        if request.action == "observe":
            with self._lock:
                self.observes += 1
                observation = self._observe()
                settled = self._stable()
                if self._fire("reboot_after_observe", "observe"):
                    self._reboot()
            return response(version, "observe", observation=observation, settled=settled, elapsed_ms=self._elapsed_ms(started))
        return self._apply(request, version, started)

    def _elapsed_ms(self, started: float) -> int:
        return round((self._clock.monotonic() - started) * 1000)

    # ---------------------------------------------------------------- observe

    def _bind_error(self) -> Error | None:
        """Why `IIS://localhost/SMTPSVC` cannot be bound, if it cannot."""
        if not self._spec.metabase:
            return _err(BAD_PATHNAME)
        if self._spec.access_denied:
            return _err(ACCESS_DENIED)
        if not self.smtpsvc.installed:
            return _err(PATH_NOT_FOUND)
        return None

    def _read_state(self, instance: _Instance) -> int | None:
        if self.smtpsvc.state == "Stopped":
            return None
        instance.settle(self._clock.monotonic())
        if self.smtpsvc.state == "Paused" and instance.code not in (3, 4):
            return 6
        return instance.code

    def _observe(self) -> dict[str, Any]:
        os_spec = self._spec.os
        bind_error = self._bind_error()
        instances = (
            []
            if bind_error
            else [
                {
                    "id": item.id,
                    "server_comment": item.comment,
                    "server_state": self._read_state(item),
                    "bindings": list(item.bindings),
                    "auto_start": item.auto_start,
                    "error": None,
                }
                for item in sorted(self._instances.values(), key=lambda i: i.id)
            ]
        )
        return {
            "os": {"caption": os_spec.caption, "version": os_spec.version, "build": os_spec.build, "product_type": 3, "error": None},
            "computer_name": self.name.upper(),
            "ps_version": os_spec.ps_version,
            "is_admin": not self._spec.access_denied,
            "services": {"SMTPSVC": self.smtpsvc.observe(), "IISADMIN": self.iisadmin.observe()},
            "metabase": {"ok": bind_error is None, "error": bind_error},
            "instances": instances,
        }

    def _stable(self) -> bool:
        return all(self._read_state(item) not in TRANSITIONS for item in self._instances.values())

    # ------------------------------------------------------------------ apply

    def _apply(self, request: Request, version: str, started: float) -> dict[str, Any]:
        with self._lock:
            results = [self._run_step(step) for step in request.steps]
        # The agent's loop: observe, stop when stable or past the deadline, else sleep a full poll.
        while True:
            with self._lock:
                observation = self._observe()
                settled = self._stable()
            if settled or self._clock.monotonic() - started >= request.settle_timeout_s:
                break
            self._clock.sleep(request.poll_ms / 1000.0)
        with self._lock:
            self.applies += 1
        return response(version, "apply", observation=observation, steps=results, settled=settled, elapsed_ms=self._elapsed_ms(started))

    def _run_step(self, step: Step) -> dict[str, Any]:
        if step.op == "instance":
            assert step.id is not None and step.command is not None
            attempts = []
            for via in step.via:
                failure = self._instance_attempt(step.id, step.command, via)
                attempts.append({"via": via, "ok": failure is None, "error": failure})
                if failure is None:
                    break
            last = attempts[-1]
            return {"op": "instance", "id": step.id, "command": step.command, "ok": last["ok"], "attempts": attempts, "error": last["error"]}
        effects: list[str] = []
        if step.op == "set_start_mode":
            assert step.start_mode is not None
            failure = self._set_start_mode(step.start_mode, effects)
        elif step.op == "start_service":
            failure = self._start_smtpsvc(None, effects)
        else:
            failure = self._continue_smtpsvc(effects)
        self._log(step.op, "SMTPSVC", step.start_mode, "service", failure, effects)
        return {
            "op": step.op,
            "id": None,
            "command": None,
            "ok": failure is None,
            "attempts": [{"via": "service", "ok": failure is None, "error": failure}],
            "error": failure,
        }

    def _log(self, op: str, target: str, command: str | None, via: str, failure: Error | None, effects: list[str]) -> None:
        self.operations.append(
            {
                "time": self._clock.time(),
                "op": op,
                "target": target,
                "command": command,
                "via": via,
                "ok": failure is None,
                "error": failure,
                "effects": effects,
            }
        )

    def _set_start_mode(self, mode: str, effects: list[str]) -> Error | None:
        if not self.smtpsvc.installed:
            return _sc_failure(mode, 1060, NO_SUCH_SERVICE[0])
        if self._spec.access_denied:
            return _sc_failure(mode, 5, ACCESS_DENIED[0])
        before = (self.smtpsvc.start_mode, self.smtpsvc.delayed)
        if mode == "auto":
            self.smtpsvc.start_mode, self.smtpsvc.delayed = "Auto", False
        elif mode == "delayed-auto":
            self.smtpsvc.start_mode, self.smtpsvc.delayed = "Auto", True
        else:
            # sc.exe only touches DelayedAutostart for auto / delayed-auto.
            self.smtpsvc.start_mode = "Manual" if mode == "demand" else "Disabled"
        after = (self.smtpsvc.start_mode, self.smtpsvc.delayed)
        if after != before:
            effects.append(f"SMTPSVC start mode {_mode(*before)} -> {_mode(*after)}")
        return None

    def _start_smtpsvc(self, asked: _Instance | None, effects: list[str]) -> Error | None:
        """ServiceController.Start on SMTPSVC; the SCM starts IISADMIN first."""
        service = self.smtpsvc
        if not service.installed:
            return _no_service()
        if self._spec.access_denied:
            return _err(ACCESS_DENIED, _WIN32_EXC)
        if service.state != "Stopped":
            # StartService on a running or paused service fails with
            # ERROR_SERVICE_ALREADY_RUNNING (1056).
            return _err(ALREADY_RUNNING, _WIN32_EXC)
        if service.start_mode == "Disabled":
            return _err(SERVICE_DISABLED, _WIN32_EXC)
        fault = self._fire("service_start_error", "apply")
        if fault is not None:
            hresult = fault.params.get("hresult")
            return error(str(fault.params["message"]), "0x" + hresult[2:].upper() if hresult else COR_E_SYSTEM, _SERVICE_EXC)
        dependency = self.iisadmin
        if not dependency.installed or (dependency.state == "Stopped" and dependency.start_mode == "Disabled"):
            return _err(DEPENDENCY_FAILED, _WIN32_EXC)
        if dependency.state == "Stopped":
            dependency.state = "Running"
            effects.append("IISADMIN Stopped -> Running")
        service.state = "Running"
        effects.append("SMTPSVC Stopped -> Running")
        self._bring_up(asked, effects)
        return None

    def _bring_up(self, asked: _Instance | None, effects: list[str]) -> None:
        """The service came up: auto-start instances (and the one asked for) start."""
        now = self._clock.monotonic()
        for item in sorted(self._instances.values(), key=lambda i: i.id):
            item.begin(4, now)
            if (item.auto_start or item is asked) and item.start_error is None:
                item.begin(1, now)
                effects.append(f"instance {item.id} starting")

    def _continue_smtpsvc(self, effects: list[str]) -> Error | None:
        service = self.smtpsvc
        if not service.installed:
            return _no_service()
        if self._spec.access_denied:
            return _err(ACCESS_DENIED, _WIN32_EXC)
        if service.state == "Stopped":
            return _err(NOT_ACTIVE, _WIN32_EXC)
        if service.state == "Paused":
            service.state = "Running"
            effects.append("SMTPSVC Paused -> Running")
        return None

    def _instance_attempt(self, ident: int, command: str, via: str) -> Error | None:
        effects: list[str] = []
        failure = self._instance_command(ident, command, via, effects)
        self._log("instance", f"SMTPSVC/{ident}", command, via, failure, effects)
        return failure

    def _instance_command(self, ident: int, command: str, via: str, effects: list[str]) -> Error | None:
        bind_error = self._bind_error()
        if bind_error is not None:
            return bind_error
        item = self._instances.get(ident)
        if item is None:
            return _err(PATH_NOT_FOUND)
        control = self._spec.control
        if via == "method" and control == "server_command":
            return _err(UNKNOWN_NAME)
        if via == "server_command" and control == "method":
            return _err(BAD_PARAMETER)
        service = self.smtpsvc
        if service.state == "Paused":
            return _err(CANNOT_ACCEPT)
        if service.state == "Stopped":
            return self._command_while_stopped(item, command, effects)
        now = self._clock.monotonic()
        item.settle(now)
        code = item.code
        if command == "start":
            if code in (1, 2):
                item.auto_start = True
                return None
            if code != 4:
                return _err(CANNOT_ACCEPT)
            if item.start_error is not None:
                return error(item.start_error, item.start_hresult, _COM)
        elif command == "stop":
            if code in (3, 4):
                item.auto_start = False
                return None
            if code not in (2, 6):
                return _err(CANNOT_ACCEPT)
        elif command == "pause":
            if code in (5, 6):
                return None
            if code == 4:
                return _err(NOT_ACTIVE)
            if code != 2:
                return _err(CANNOT_ACCEPT)
        else:
            if code in (2, 7):
                return None
            if code == 4:
                return _err(NOT_ACTIVE)
            if code != 6:
                return _err(CANNOT_ACCEPT)
        begin = BEGIN[command][0]
        item.begin(begin, now)
        effects.append(f"instance {ident} {STATE_NAMES[code]} -> {STATE_NAMES[begin]}")
        if command in ("start", "stop"):
            item.auto_start = command == "start"
        return None

    def _command_while_stopped(self, item: _Instance, command: str, effects: list[str]) -> Error | None:
        """With SMTPSVC stopped, starting an instance restarts the whole service."""
        if command == "stop":
            item.auto_start = False
            return None
        if command != "start":
            return _err(NOT_ACTIVE)
        failure = self._start_smtpsvc(item, effects)
        if failure is not None:
            return failure
        if item.start_error is not None:
            return error(item.start_error, item.start_hresult, _COM)
        item.auto_start = True
        return None

    # ----------------------------------------------------------------- reboot

    def _reboot(self) -> None:
        """Services come back per start mode; a planned apply then meets a new state."""
        effects: list[str] = []
        for item in self._instances.values():
            item.begin(4, self._clock.monotonic())
        for service in (self.iisadmin, self.smtpsvc):
            if service.installed:
                service.state = "Running" if service.start_mode == "Auto" else "Stopped"
        if self.smtpsvc.state == "Running":
            if self.iisadmin.installed:
                self.iisadmin.state = "Running"
            self._bring_up(None, effects)
        self.events.append({"time": self._clock.time(), "event": "reboot", "smtpsvc": self.smtpsvc.state, "effects": effects})

    # ------------------------------------------------------------------- dump

    def dump(self) -> dict[str, Any]:
        """Final state and logs, without secrets."""
        with self._lock:
            instances = []
            if self.smtpsvc.installed:
                for item in sorted(self._instances.values(), key=lambda i: i.id):
                    code = self._read_state(item)
                    instances.append(
                        {
                            "id": item.id,
                            "comment": item.comment,
                            "state": STATE_NAMES[code] if code is not None else None,
                            "state_code": code,
                            "auto_start": item.auto_start,
                            "bindings": list(item.bindings),
                        }
                    )
            os_spec = self._spec.os
            return {
                "os": {"name": os_spec.name, "caption": os_spec.caption, "version": os_spec.version, "build": os_spec.build},
                "computer_name": self.name.upper(),
                "service": self.smtpsvc.observe(),
                "iisadmin": self.iisadmin.observe(),
                "instances": instances,
                "operations": [dict(op) for op in self.operations],
                "events": [dict(event) for event in self.events],
                "observes": self.observes,
                "applies": self.applies,
                "rejected_requests": self.rejected,
                "commands": self.commands,
                "faults_fired": {name: fault.fired for name, fault in self._faults.items()},
            }


def _sc_failure(mode: str, code: int, text: str) -> Error:
    """The agent throws sc.exe's own words when it exits non-zero."""
    return error(
        f"sc.exe config SMTPSVC start= {mode} exited with {code}: [SC] OpenService FAILED {code}:  {text}",
        COR_E_SYSTEM,
        _RUNTIME_EXC,
    )


def _no_service() -> Error:
    return error("Cannot find any service with service name 'SMTPSVC'.", COR_E_SYSTEM, _SERVICE_EXC)


def _mode(start_mode: str, delayed: bool) -> str:
    return "Auto (Delayed Start)" if start_mode == "Auto" and delayed else start_mode


def _refusal(reason: str) -> CommandOutcome:
    return CommandOutcome(b"", f"not supported by the simulator: {reason}\r\n".encode(), 1)


class Fleet:
    """Every simulated host of a scenario, in scenario order."""

    def __init__(self, spec: ScenarioSpec, *, agent_text: str | None = None, clock: Clock | None = None) -> None:
        self.group = spec.group
        self.hosts: dict[str, Host] = {host.name: Host(host, agent_text=agent_text, clock=clock) for host in spec.hosts}

    @classmethod
    def load(cls, path: str, *, agent_text: str | None = None, clock: Clock | None = None) -> Fleet:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
        try:
            return cls.from_dict(data, agent_text=agent_text, clock=clock)
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, agent_text: str | None = None, clock: Clock | None = None) -> Fleet:
        return cls(parse_scenario(data), agent_text=agent_text, clock=clock)

    def dump(self) -> dict[str, Any]:
        return {"hosts": {name: host.dump() for name, host in self.hosts.items()}}
