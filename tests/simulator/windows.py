"""What the Windows of one simulated host does: services, the metabase, SMTP virtual servers.

This is Windows, not the agent. Each public method is one call the agent
makes against Windows (a `Win32_Service` read, `ServiceController.Start()`
or `.Continue()`, `sc.exe config`, an ADSI bind, a `ServerState` read, an
ADSI method, a `ServerCommand` write) and answers what Windows answers, side
effects included, even those a careful caller avoids (an ADSI bind
demand-starts IISADMIN). The simulator is the only Windows the collection
meets, so it must never be kinder than Windows: where Windows is not
documented it takes the stricter reading. Sources: docs/windows-facts.md;
the choices made: tests/simulator/README.md. `model.py` plays the agent on
top of this.

States move in real time (or a test's clock), evaluated lazily whenever the
host is read. Every method takes the host's lock, so an agent emulation can
sleep between two calls while another controller's call runs, as on Windows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .emulator import error
from .scenario import STATE_NAMES, HostSpec, InstanceSpec, ServiceSpec

Error = dict[str, Any]

TRANSITIONS = {1: 2, 3: 4, 5: 6, 7: 2}
BEGIN = {"start": (1, 2), "stop": (3, 4), "pause": (5, 6), "continue": (7, 2)}
# Win32_Service states of a control under way, and where each ends.
PENDING = {"Start Pending": "Running", "Stop Pending": "Stopped", "Continue Pending": "Running", "Pause Pending": "Paused"}
# SMTPSVC learns of a ServerCommand write through a metabase change
# notification, so it acts on it a little later, never within the write.
SERVER_COMMAND_LATENCY_S = 0.05

COM = "System.Runtime.InteropServices.COMException"
SERVICE_EXC = "Microsoft.PowerShell.Commands.ServiceCommandException"
WIN32_EXC = "System.ComponentModel.Win32Exception"
RUNTIME_EXC = "System.Management.Automation.RuntimeException"
# HResult of every SystemException that carries no Win32 code (COR_E_SYSTEM).
COR_E_SYSTEM = "0x80131501"

ACCESS_DENIED = ("Access is denied.", "0x80070005")
PATH_NOT_FOUND = ("The system cannot find the path specified.", "0x80070003")
BAD_PATHNAME = ("Unknown error (0x80005000)", "0x80005000")
SERVICE_DISABLED = (
    "The service cannot be started, either because it is disabled or because it has no enabled devices associated with it.",
    "0x80070422",
)
DEPENDENCY_FAILED = ("The dependency service or group failed to start.", "0x8007042C")
ALREADY_RUNNING = ("An instance of the service is already running.", "0x80070420")
CANNOT_ACCEPT = ("The service cannot accept control messages at this time.", "0x80070425")
NOT_ACTIVE = ("The service has not been started.", "0x80070426")
NO_SUCH_SERVICE = ("The specified service does not exist as an installed service.", "0x80070424")
UNKNOWN_NAME = ("Unknown name.", "0x80020006")
BAD_PARAMETER = ("The parameter is incorrect.", "0x80070057")
SERVER_EXEC_FAILURE = ("Server execution failed", "0x80080005")
UNSPECIFIED = "0x80004005"


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


def err(pair: tuple[str, str], type_name: str = COM) -> Error:
    return error(pair[0], pair[1], type_name)


def no_service(name: str) -> Error:
    return error(f"Cannot find any service with service name '{name}'.", COR_E_SYSTEM, SERVICE_EXC)


@dataclass
class Service:
    name: str
    installed: bool
    state: str  # Win32_Service State: Running, Stopped, Paused or "<verb> Pending"
    start_mode: str  # Auto | Manual | Disabled
    delayed: bool
    pending_s: float
    stuck: bool
    since: float = 0.0
    # A dependency that must be Running before this start can go on.
    waits_for: Service | None = None

    @classmethod
    def from_spec(cls, name: str, installed: bool, spec: ServiceSpec, now: float) -> Service:
        state = spec.state if installed else "Stopped"
        return cls(name, installed, state, spec.start_mode, spec.delayed, spec.pending_s, spec.stuck, now)

    def begin(self, state: str, now: float) -> None:
        self.state, self.since = state, now

    def settle(self, now: float) -> float | None:
        """End a pending state that has lasted `pending_s`; when it ended, if it did."""
        if self.state not in PENDING or self.stuck:
            return None
        if self.waits_for is not None:
            if self.waits_for.state != "Running":
                return None
            self.since = max(self.since, self.waits_for.since)
            self.waits_for = None
        done = self.since + self.pending_s
        if now < done:
            return None
        self.begin(PENDING[self.state], done)
        return done

    def win32(self) -> dict[str, Any]:
        if not self.installed:
            return {"installed": False, "state": None, "start_mode": None, "delayed_auto_start": None, "error": None}
        return {"installed": True, "state": self.state, "start_mode": self.start_mode, "delayed_auto_start": self.delayed, "error": None}


@dataclass
class Instance:
    id: int
    comment: str
    bindings: list[str]
    auto_start: bool
    transition_s: float
    stuck: bool
    start_error: str | None
    start_hresult: str
    read_error: str | None
    code: int = 4
    since: float = 0.0
    # A ServerCommand written, and when SMTPSVC reads it.
    command: tuple[str, float] | None = None

    @classmethod
    def from_spec(cls, spec: InstanceSpec) -> Instance:
        return cls(
            spec.id, spec.comment, list(spec.bindings), spec.auto_start, spec.transition_s, spec.stuck,
            spec.start_error, spec.start_hresult, spec.read_error,
        )

    def begin(self, code: int, now: float) -> None:
        self.code = code
        self.since = now

    def settle(self, now: float) -> None:
        if self.code in TRANSITIONS and not self.stuck and now - self.since >= self.transition_s:
            self.code = TRANSITIONS[self.code]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[Concatenate[Windows, _P], _R]) -> Callable[Concatenate[Windows, _P], _R]:
    """Run under the host's lock, with every state moved on to now first."""

    def wrapper(self: Windows, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            self._advance()
            return method(self, *args, **kwargs)

    wrapper.__doc__ = method.__doc__
    return wrapper


class Windows:
    """Services SMTPSVC and IISADMIN, the metabase and its SMTP virtual servers, for one host."""

    def __init__(self, spec: HostSpec, clock: Clock) -> None:
        self.lock = threading.RLock()
        self._spec = spec
        self._clock = clock
        now = clock.monotonic()
        self.smtpsvc = Service.from_spec("SMTPSVC", spec.smtp_server, spec.service, now)
        self.iisadmin = Service.from_spec("IISADMIN", spec.smtp_server or spec.metabase, spec.iisadmin, now)
        if self.smtpsvc.state == "Start Pending" and self.iisadmin.state != "Running":
            self.smtpsvc.waits_for = self.iisadmin
        self.instances = {item.id: Instance.from_spec(item) for item in spec.instances}
        if self.smtpsvc.state not in ("Stopped", "Start Pending"):
            for item in spec.instances:
                self.instances[item.id].begin(item.state, now)
        # Instances asked to start while SMTPSVC was down: they come up with it.
        self._asked: set[int] = set()
        self.events: list[dict[str, Any]] = []

    # ------------------------------------------------------------ time

    def _advance(self) -> None:
        now = self._clock.monotonic()
        self.iisadmin.settle(now)
        before = self.smtpsvc.state
        done = self.smtpsvc.settle(now)
        if done is not None and before == "Start Pending":
            self._bring_up(done)
        elif done is not None and before == "Stop Pending":
            self._went_down()
        for item in self.instances.values():
            if item.command is not None and item.command[1] <= now:
                command, at = item.command
                item.command = None
                item.settle(at)
                if self.smtpsvc.state == "Running":
                    self._running_command(item, command, [], at)
            item.settle(now)

    def _bring_up(self, at: float) -> None:
        """SMTPSVC reached Running: the ServerAutoStart instances (and any asked for) start with it."""
        for item in sorted(self.instances.values(), key=lambda i: i.id):
            item.begin(4, at)
            if (item.auto_start or item.id in self._asked) and item.start_error is None:
                item.begin(1, at)
        self._asked.clear()

    def _went_down(self) -> None:
        # ServerCommand is volatile: a stopped service never reads what was written.
        for item in self.instances.values():
            item.command = None

    # ------------------------------------------------------------ reads

    def service(self, name: str) -> Service:
        return self.smtpsvc if name == "SMTPSVC" else self.iisadmin

    @_locked
    def win32_service(self, name: str) -> dict[str, Any]:
        """`Get-WmiObject Win32_Service` for one service; reading starts nothing."""
        return self.service(name).win32()

    @_locked
    def controller_status(self, name: str) -> str | None:
        """`(Get-Service name).Status` as a string (`StartPending`, ...); None when there is no such service."""
        service = self.service(name)
        return service.state.replace(" ", "") if service.installed else None

    @_locked
    def metabase_bind(self, ident: int | None = None) -> Error | None:
        """Bind `IIS://localhost/SMTPSVC` (or `.../<ident>`).

        ADSI reaches the metabase through IISADMIN's COM server, so a stopped
        IISADMIN is demand-started by the bind itself (recorded as an event);
        a disabled one cannot be.
        """
        if not self._spec.metabase:
            return err(BAD_PATHNAME)
        if self._spec.access_denied:
            return err(ACCESS_DENIED)
        iis = self.iisadmin
        if iis.state == "Stopped" and iis.start_mode == "Disabled":
            return err(SERVICE_DISABLED)
        if iis.state == "Stopped":
            iis.begin("Running", self._clock.monotonic())
            self.events.append({"time": self._clock.time(), "event": "demand_start", "service": "IISADMIN", "by": "metabase bind"})
        elif iis.state != "Running":
            return err(SERVER_EXEC_FAILURE)
        if not self.smtpsvc.installed or (ident is not None and ident not in self.instances):
            return err(PATH_NOT_FOUND)
        return None

    @_locked
    def children(self) -> list[Instance]:
        """The `IIsSmtpServer` children of a bound `IIS://localhost/SMTPSVC`, by id."""
        return sorted(self.instances.values(), key=lambda i: i.id)

    @_locked
    def properties_error(self, ident: int) -> Error | None:
        """Why the properties of one child cannot be read, if they cannot."""
        message = self.instances[ident].read_error
        return error(message, UNSPECIFIED, COM) if message is not None else None

    @_locked
    def server_state(self, ident: int) -> int | None:
        """What `ServerState` reads: empty once SMTPSVC has stopped, and only what it last wrote while it starts or stops."""
        item = self.instances[ident]
        state = self.smtpsvc.state
        if state == "Stopped":
            return None
        if state in ("Paused", "Pause Pending", "Continue Pending") and item.code not in (3, 4):
            return 6
        return item.code

    # ------------------------------------------------------------ controls

    @_locked
    def service_start(self, name: str, effects: list[str], start_fault: Callable[[], Error | None] = lambda: None) -> Error | None:
        """`ServiceController.Start()`: returns at once, the service Start Pending; the SCM starts IISADMIN first."""
        return self._start(self.service(name), effects, start_fault)

    def _start(self, service: Service, effects: list[str], start_fault: Callable[[], Error | None]) -> Error | None:
        if not service.installed:
            return no_service(service.name)
        if self._spec.access_denied:
            return err(ACCESS_DENIED, WIN32_EXC)
        if service.state != "Stopped":
            # StartService refuses any service whose state is not SERVICE_STOPPED (MS-SCMR RStartServiceW).
            return err(ALREADY_RUNNING, WIN32_EXC)
        if service.start_mode == "Disabled":
            return err(SERVICE_DISABLED, WIN32_EXC)
        now = self._clock.monotonic()
        if service is self.smtpsvc:
            fault = start_fault()
            if fault is not None:
                return fault
            iis = self.iisadmin
            if not iis.installed or iis.state not in ("Running", "Stopped", "Start Pending") or (
                iis.state == "Stopped" and iis.start_mode == "Disabled"
            ):
                return err(DEPENDENCY_FAILED, WIN32_EXC)
            if iis.state == "Stopped":
                iis.begin("Start Pending", now)
                effects.append("IISADMIN Stopped -> Start Pending")
            service.waits_for = iis if iis.state != "Running" else None
        service.begin("Start Pending", now)
        effects.append(f"{service.name} Stopped -> Start Pending")
        return None

    @_locked
    def service_continue(self, name: str, effects: list[str]) -> Error | None:
        """`ServiceController.Continue()`: returns at once, a paused service Continue Pending."""
        service = self.service(name)
        if not service.installed:
            return no_service(name)
        if self._spec.access_denied:
            return err(ACCESS_DENIED, WIN32_EXC)
        if service.state == "Stopped":
            return err(NOT_ACTIVE, WIN32_EXC)
        if service.state in PENDING:
            return err(CANNOT_ACCEPT, WIN32_EXC)
        if service.state == "Paused":
            service.begin("Continue Pending", self._clock.monotonic())
            effects.append(f"{name} Paused -> Continue Pending")
        return None

    @_locked
    def sc_config(self, mode: str, effects: list[str]) -> Error | None:
        """`sc.exe config SMTPSVC start= <mode>`; the agent throws sc.exe's own words when it exits non-zero."""
        service = self.smtpsvc
        if not service.installed:
            return _sc_failure(mode, 1060, NO_SUCH_SERVICE[0])
        if self._spec.access_denied:
            return _sc_failure(mode, 5, ACCESS_DENIED[0])
        before = (service.start_mode, service.delayed)
        if mode == "auto":
            service.start_mode, service.delayed = "Auto", False
        elif mode == "delayed-auto":
            service.start_mode, service.delayed = "Auto", True
        else:
            # sc.exe only touches DelayedAutostart for auto / delayed-auto.
            service.start_mode = "Manual" if mode == "demand" else "Disabled"
        after = (service.start_mode, service.delayed)
        if after != before:
            effects.append(f"SMTPSVC start mode {_mode(*before)} -> {_mode(*after)}")
        return None

    @_locked
    def adsi_method(self, ident: int, command: str, effects: list[str], start_fault: Callable[[], Error | None] = lambda: None) -> Error | None:
        """`([ADSI]'IIS://localhost/SMTPSVC/<ident>').psbase.Invoke('Start')` and its siblings."""
        failure = self.metabase_bind(ident)
        if failure is not None:
            return failure
        if self._spec.control == "server_command":
            return err(UNKNOWN_NAME)
        item = self.instances[ident]
        if self.smtpsvc.state == "Stopped":
            return self._command_while_stopped(item, command, effects, start_fault)
        return self._running_command(item, command, effects, self._clock.monotonic())

    @_locked
    def write_server_command(self, ident: int, command: str, effects: list[str]) -> Error | None:
        """`Put('ServerCommand', n)` + `SetInfo()`: the write succeeds; only a running SMTPSVC ever acts on it."""
        failure = self.metabase_bind(ident)
        if failure is not None:
            return failure
        if self._spec.control == "method":
            return err(BAD_PARAMETER)
        if self.smtpsvc.state == "Running":
            self.instances[ident].command = (command, self._clock.monotonic() + SERVER_COMMAND_LATENCY_S)
            effects.append(f"ServerCommand {command} written to instance {ident}")
        else:
            effects.append(f"ServerCommand {command} written to instance {ident} while SMTPSVC is {self.smtpsvc.state}: nobody reads it")
        return None

    def _running_command(self, item: Instance, command: str, effects: list[str], now: float) -> Error | None:
        if self.smtpsvc.state != "Running":
            return err(CANNOT_ACCEPT)
        item.settle(now)
        code = item.code
        if command == "start":
            if code in (1, 2):
                item.auto_start = True
                return None
            if code != 4:
                return err(CANNOT_ACCEPT)
            if item.start_error is not None:
                return error(item.start_error, item.start_hresult, COM)
        elif command == "stop":
            if code in (3, 4):
                item.auto_start = False
                return None
            if code not in (2, 6):
                return err(CANNOT_ACCEPT)
        elif command == "pause":
            if code in (5, 6):
                return None
            if code == 4:
                return err(NOT_ACTIVE)
            if code != 2:
                return err(CANNOT_ACCEPT)
        else:
            if code in (2, 7):
                return None
            if code == 4:
                return err(NOT_ACTIVE)
            if code != 6:
                return err(CANNOT_ACCEPT)
        begin = BEGIN[command][0]
        item.begin(begin, now)
        effects.append(f"instance {item.id} {STATE_NAMES[code]} -> {STATE_NAMES[begin]}")
        if command in ("start", "stop"):
            item.auto_start = command == "start"
        return None

    def _command_while_stopped(self, item: Instance, command: str, effects: list[str], start_fault: Callable[[], Error | None]) -> Error | None:
        """With SMTPSVC stopped, starting an instance restarts the whole service."""
        if command == "stop":
            item.auto_start = False
            return None
        if command != "start":
            return err(NOT_ACTIVE)
        failure = self._start(self.smtpsvc, effects, start_fault)
        if failure is not None:
            return failure
        if item.start_error is not None:
            return error(item.start_error, item.start_hresult, COM)
        item.auto_start = True
        self._asked.add(item.id)
        return None

    # ------------------------------------------------------------ reboot

    @_locked
    def reboot(self) -> None:
        """Services come back per start mode; a planned apply then meets a new state."""
        now = self._clock.monotonic()
        for item in self.instances.values():
            item.begin(4, now)
            item.command = None
        for service in (self.iisadmin, self.smtpsvc):
            service.waits_for = None
            if service.installed:
                service.begin("Running" if service.start_mode == "Auto" else "Stopped", now)
        if self.smtpsvc.state == "Running":
            if self.iisadmin.installed:
                self.iisadmin.begin("Running", now)
            self._bring_up(now)
        self.events.append({"time": self._clock.time(), "event": "reboot", "smtpsvc": self.smtpsvc.state})


def _sc_failure(mode: str, code: int, text: str) -> Error:
    return error(
        f"sc.exe config SMTPSVC start= {mode} exited with {code}: [SC] OpenService FAILED {code}:  {text}",
        COR_E_SYSTEM,
        RUNTIME_EXC,
    )


def _mode(start_mode: str, delayed: bool) -> str:
    return "Auto (Delayed Start)" if start_mode == "Auto" and delayed else start_mode
