"""A simulated Windows host with IIS SMTP: its agent, faults and logs.

The collection is tested against this model instead of Windows. What
Windows does (services and their pending states, the metabase, instances whose
`ServerState` moves in real time) is `windows.py`; this module plays the
agent on top of it, call for call as `agent.ps1` makes them (see
docs/agent-protocol.md), injects the scenario's faults, and records every
control operation performed, which is how tests prove that a compliant host
was left alone. Where Windows behaviour is not verified, the choice made is
listed in tests/simulator/README.md.

The WinRM server calls `Host.run_command` from many threads. Windows state
has its own lock, taken per Windows call, so an apply that waits for states
to settle sleeps without holding it, and two controllers can work on one
host at once, as they can on Windows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import floors
from .emulator import (
    ACTIONS,
    AGENT_PATH,
    BOOTSTRAP_PATH,
    BadRequest,
    NotSupported,
    PowerShellError,
    Request,
    Step,
    Watch,
    agent_version,
    bootstrap_hash,
    clixml_error,
    decode_script,
    encode_line,
    error,
    extract_call,
    parse_request,
    read_agent,
    request_action,
    response,
)
from .scenario import (
    STATE_NAMES,
    FaultSpec,
    HostSpec,
    ScenarioError,
    ScenarioSpec,
    parse_scenario,
)
from .windows import COR_E_SYSTEM, SERVICE_EXC, TRANSITIONS, Clock, Error, Windows, no_service

__all__ = ["CommandOutcome", "Fleet", "Host", "ScenarioError"]

# Per command: the MD_SERVER_COMMAND code the agent writes (its $Controls).
SERVER_COMMAND_CODES = {"start": 1, "stop": 2, "pause": 4, "continue": 8}
# How long the agent watches ServerState move after a ServerCommand write.
SERVER_COMMAND_WATCH_MS = 2000
# SMTPSVC states in which its process is up and ServerState means something.
READS_SERVER_STATE = ("Running", "Paused", "Pause Pending", "Continue Pending")
# The agent's own error types (no .NET type): docs/agent-protocol.md.
IISADMIN_NOT_RUNNING = "iisadmin_not_running"
WRONG_STATE = "wrong_state"
NO_EFFECT = "no_effect"

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
    # The terminating error that ended the script, when one did: what a
    # runspace (psrp) reports as an error record instead of stderr text.
    error: str | None = None


class RealClock:
    """Wall time; transitions are meant to be watched by a real controller."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


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


def _refusal_error(type_name: str, message: str) -> Error:
    """An error the agent makes itself when it refuses a step: no HRESULT, its own type."""
    return error(message, None, type_name)


class Host:
    """One simulated Windows host: its scenario settings, Windows, the agent's way with it, and logs."""

    def __init__(self, spec: HostSpec, *, agent_text: str | None = None, clock: Clock | None = None) -> None:
        self.name = spec.name
        self.auth = spec.auth
        self.scheme = spec.scheme
        self.username = spec.username
        self.password = spec.password
        self.port = spec.port
        self.unreachable = spec.unreachable
        self.allow_unencrypted = spec.allow_unencrypted
        self.connection = spec.connection
        self.default_shell = spec.default_shell
        self.faults: dict[str, Any] = dict(spec.raw_faults)
        self._spec = spec
        self._agent_text = agent_text
        self._clock: Clock = clock or RealClock()
        # Counters, logs and faults; never held while Windows is called.
        self._lock = threading.Lock()
        self._faults = {fault.name: _Fault(fault) for fault in spec.faults}
        self.windows = Windows(spec, self._clock)
        self.operations: list[dict[str, Any]] = []
        self.observes = 0
        self.applies = 0
        self.rejected = 0
        self.commands = 0
        # Ansible's own tasks answered for the benchmark (a raw no-op, win_ping).
        self.floor_commands = 0

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

    def _start_fault(self) -> Error | None:
        """The scenario's service_start_error, when it fires on this real start of a stopped SMTPSVC."""
        with self._lock:
            fault = self._fire("service_start_error", "apply")
        if fault is None:
            return None
        hresult = fault.params.get("hresult")
        return error(str(fault.params["message"]), "0x" + hresult[2:].upper() if hresult else COR_E_SYSTEM, SERVICE_EXC)

    # --------------------------------------------------------------- commands

    def run_command(self, command: str, arguments: list[str] | str, read_stdin: Callable[[], bytes] = lambda: b"") -> CommandOutcome:
        """Answer one WinRS Command the way the host would.

        Only the collection's bootstrap on the command line with the agent and
        its request on stdin is served; `read_stdin` blocks until the client
        has closed stdin, as a process reading it would.
        """
        return self._answer(lambda: decode_script(command, arguments), read_stdin)

    def run_script(self, script: str, read_stdin: Callable[[], bytes]) -> CommandOutcome:
        """Answer one script run in a runspace (the psrp connection runs the decoded bootstrap there).

        The same bootstrap and agent as `run_command`, only without the
        powershell.exe command line; `read_stdin` gives the pipeline input.
        """
        return self._answer(lambda: script, read_stdin)

    def _answer(self, script_of: Callable[[], str], read_stdin: Callable[[], bytes]) -> CommandOutcome:
        with self._lock:
            self.commands += 1
        try:
            agent_text = self._agent_text if self._agent_text is not None else _cached(AGENT_PATH)
            bootstrap_text = _cached(BOOTSTRAP_PATH)
        except OSError as exc:
            return _refusal(f"no agent to recognise: {exc.filename} is missing")
        encoded: str | None = None
        variant = "apply"
        script: str | None = None
        try:
            script = script_of()
            expected_hash = bootstrap_hash(script, bootstrap_text)
            encoded, variant = extract_call(read_stdin(), expected_hash, agent_text)
            reason = ""
        except NotSupported as exc:
            reason = str(exc)
            # Ansible's own floor tasks (a raw no-op, win_ping) for the benchmark.
            floor = floors.answer(script, read_stdin) if script is not None else None
            if floor is not None:
                with self._lock:
                    self.floor_commands += 1
                return CommandOutcome(floor, b"", 0)
        except PowerShellError as exc:
            return CommandOutcome(b"", clixml_error(str(exc)), 1, error=str(exc))
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
            return CommandOutcome(b"", NONZERO_EXIT_STDERR, 1, delay_s, cut, error=NONZERO_EXIT_STDERR.decode().strip())
        line = encode_line(self._serve(encoded, agent_text, variant))
        if kind == "garbage":
            line = GARBAGE_OUTPUT
        elif kind == "truncated":
            line = line[: len(line) // 2]
        return CommandOutcome(line, b"", 0, delay_s, cut)

    def _serve(self, encoded: str, agent_text: str, variant: str = "apply") -> dict[str, Any]:
        version = agent_version(agent_text)
        started = self._clock.monotonic()
        try:
            # The observe agent (sent without its apply-only lines) knows only observe.
            request = parse_request(encoded, ACTIONS if variant == "apply" else ("observe",))
        except BadRequest as exc:
            with self._lock:
                self.rejected += 1
            return response(version, exc.action, failure=error(str(exc), None, exc.type_name), elapsed_ms=self._elapsed_ms(started))
        if request.action == "observe":
            with self.windows.lock:
                observation = self._observe()
            with self._lock:
                self.observes += 1
                reboot = self._fire("reboot_after_observe", "observe") is not None
            if reboot:
                self.windows.reboot()
            return response(version, "observe", observation=observation, settled=_stable(observation, None), elapsed_ms=self._elapsed_ms(started))
        return self._apply(request, version, started)

    def _elapsed_ms(self, started: float) -> int:
        return round((self._clock.monotonic() - started) * 1000)

    # ------------------------------------------------- the agent: Get-Observation

    def _observe(self) -> dict[str, Any]:
        """Services first, from Win32_Service; the metabase only while IISADMIN runs, since binding it would start IISADMIN."""
        windows = self.windows
        services = {name: windows.win32_service(name) for name in ("SMTPSVC", "IISADMIN")}
        metabase: dict[str, Any] = {"ok": False, "error": None}
        instances: list[dict[str, Any]] = []
        iisadmin = services["IISADMIN"]["state"]
        if iisadmin != "Running":
            metabase["error"] = _refusal_error(
                IISADMIN_NOT_RUNNING,
                f"IISADMIN state: {iisadmin or ''}; the metabase was not read, because binding it would start IISADMIN",
            )
        else:
            bind_error = windows.metabase_bind()
            metabase = {"ok": bind_error is None, "error": bind_error}
            if bind_error is None:
                reads_state = services["SMTPSVC"]["state"] in READS_SERVER_STATE
                instances = [self._instance_info(item.id, reads_state) for item in windows.children()]
        os_spec = self._spec.os
        return {
            "os": {"caption": os_spec.caption, "version": os_spec.version, "build": os_spec.build, "product_type": 3, "error": None},
            "computer_name": self.name.upper(),
            "ps_version": os_spec.ps_version,
            "is_admin": not self._spec.access_denied,
            "services": services,
            "metabase": metabase,
            "instances": instances,
        }

    def _instance_info(self, ident: int, reads_state: bool) -> dict[str, Any]:
        """Get-InstanceInfo: a child whose properties cannot be read is still reported, with its error."""
        item = self.windows.instances[ident]
        failure = self.windows.properties_error(ident)
        if failure is not None:
            return {"id": ident, "server_comment": None, "server_state": None, "bindings": [], "auto_start": None, "error": failure}
        return {
            "id": ident,
            "server_comment": item.comment,
            "server_state": self.windows.server_state(ident) if reads_state else None,
            "bindings": list(item.bindings),
            "auto_start": item.auto_start,
            "error": None,
        }

    # ------------------------------------------------------ the agent: apply

    def _apply(self, request: Request, version: str, started: float) -> dict[str, Any]:
        limit_ms = 1000 * request.settle_timeout_s
        results = [self._run_step(step, started, limit_ms, request.poll_ms) for step in request.steps]
        # The agent's loop: observe, stop when what it watches is stable or past the deadline, else sleep a full poll.
        while True:
            with self.windows.lock:
                observation = self._observe()
            settled = _stable(observation, request.watch)
            if settled or self._elapsed_ms(started) >= limit_ms:
                break
            self._clock.sleep(request.poll_ms / 1000.0)
        with self._lock:
            self.applies += 1
        return response(version, "apply", observation=observation, steps=results, settled=settled, elapsed_ms=self._elapsed_ms(started))

    def _run_step(self, step: Step, started: float, limit_ms: float, poll_ms: int) -> dict[str, Any]:
        """Invoke-Step: each way in order until one succeeds; a refusal touches nothing and is not an operation."""
        result: dict[str, Any] = {"op": step.op, "id": step.id, "command": step.command, "ok": False, "attempts": [], "error": None, "state": None}
        for via in step.via or ("service",):
            effects: list[str] = []
            sent = self._clock.time()
            failure, touched = self._way(step, via, result, effects, started, limit_ms, poll_ms)
            if touched:
                target = f"SMTPSVC/{step.id}" if step.op == "instance" else str(step.service)
                self._log(sent, step.op, target, step.command or step.start_mode, via, failure, effects)
            result["ok"], result["error"] = failure is None, failure
            result["attempts"].append({"via": via, "ok": failure is None, "error": failure})
            if failure is None:
                break
        return result

    def _way(
        self, step: Step, via: str, result: dict[str, Any], effects: list[str], started: float, limit_ms: float, poll_ms: int
    ) -> tuple[Error | None, bool]:
        """Invoke-Way: (error or None, whether Windows was touched)."""
        windows = self.windows
        if step.op == "set_start_mode":
            assert step.start_mode is not None
            return windows.sc_config(step.start_mode, effects), True
        if via == "service":
            return self._service_way(step, result, effects, started, limit_ms, poll_ms)
        assert step.id is not None and step.command is not None
        if via == "method":
            return windows.adsi_method(step.id, step.command, effects, self._start_fault), True
        status = windows.controller_status("SMTPSVC")
        if status is None:
            return no_service("SMTPSVC"), False
        if status != "Running":
            return _refusal_error(WRONG_STATE, f"SMTPSVC is {status}: only a running SMTPSVC reads ServerCommand; it was not written"), False
        failure = windows.metabase_bind(step.id)
        if failure is not None:
            return failure, False
        before = windows.server_state(step.id)
        failure = windows.write_server_command(step.id, step.command, effects)
        if failure is not None:
            return failure, True
        end = min(self._elapsed_ms(started) + SERVER_COMMAND_WATCH_MS, limit_ms)
        while True:
            self._clock.sleep(poll_ms / 1000.0)
            after = windows.server_state(step.id)
            if after != before or self._elapsed_ms(started) >= end:
                break
        if after == before:
            code = SERVER_COMMAND_CODES[step.command]
            return _refusal_error(NO_EFFECT, f"ServerCommand {code} was written; ServerState stayed {_ps(before)}"), True
        return None, True

    def _service_way(
        self, step: Step, result: dict[str, Any], effects: list[str], started: float, limit_ms: float, poll_ms: int
    ) -> tuple[Error | None, bool]:
        """Start or Continue only from the state the control is for, then wait out the pending state."""
        windows = self.windows
        name = str(step.service)
        status = windows.controller_status(name)
        if status is None:
            return no_service(name), False
        wanted = "Stopped" if step.op == "start_service" else "Paused"
        if status != wanted:
            result["state"] = status
            return _refusal_error(WRONG_STATE, f"{name} is {status}, not {wanted}: the control was not sent"), False
        start = step.op == "start_service"
        failure = windows.service_start(name, effects, self._start_fault) if start else windows.service_continue(name, effects)
        if failure is not None:
            return failure, True
        status = windows.controller_status(name)
        while str(status).endswith("Pending") and self._elapsed_ms(started) < limit_ms:
            self._clock.sleep(poll_ms / 1000.0)
            status = windows.controller_status(name)
        result["state"] = status
        return None, True

    def _log(self, sent: float, op: str, target: str, command: str | None, via: str, failure: Error | None, effects: list[str]) -> None:
        """One control operation, stamped with the time it was sent."""
        with self._lock:
            self.operations.append(
                {
                    "time": sent,
                    "op": op,
                    "target": target,
                    "command": command,
                    "via": via,
                    "ok": failure is None,
                    "error": failure,
                    "effects": effects,
                }
            )

    # ------------------------------------------------------------------- dump

    def dump(self) -> dict[str, Any]:
        """Final state and logs, without secrets: what Windows itself reads now, not what the agent would report."""
        windows = self.windows
        with windows.lock:
            instances = []
            if windows.smtpsvc.installed:
                for item in windows.children():
                    code = windows.server_state(item.id)
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
            service = windows.win32_service("SMTPSVC")
            iisadmin = windows.win32_service("IISADMIN")
            events = [dict(event) for event in windows.events]
        os_spec = self._spec.os
        with self._lock:
            return {
                "os": {"name": os_spec.name, "caption": os_spec.caption, "version": os_spec.version, "build": os_spec.build},
                "computer_name": self.name.upper(),
                "service": service,
                "iisadmin": iisadmin,
                "instances": instances,
                "operations": [dict(op) for op in self.operations],
                "events": events,
                "observes": self.observes,
                "applies": self.applies,
                "rejected_requests": self.rejected,
                "commands": self.commands,
                "floor_commands": self.floor_commands,
                "faults_fired": {name: fault.fired for name, fault in self._faults.items()},
            }


def _stable(observation: dict[str, Any], watch: Watch | None) -> bool:
    """Test-Stable: no watched service pending, no watched instance in a transitional ServerState."""
    services = [service for name, service in observation["services"].items() if watch is None or name in watch.services]
    instances = [item for item in observation["instances"] if watch is None or item["id"] in watch.instances]
    return not any(str(service["state"] or "").endswith(" Pending") for service in services) and not any(
        item["server_state"] in TRANSITIONS for item in instances
    )


def _ps(value: Any) -> str:
    """How PowerShell concatenates a value into a string."""
    return "" if value is None else str(value)


def _refusal(reason: str) -> CommandOutcome:
    message = f"not supported by the simulator: {reason}"
    return CommandOutcome(b"", f"{message}\r\n".encode(), 1, error=message)


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
