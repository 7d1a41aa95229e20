"""The PowerShell Remoting Protocol (MS-PSRP) side of a simulated host, for Ansible's ``psrp`` connection.

PSRP rides on WinRS: a runspace pool is a WS-Management shell of the resource
URI ``http://schemas.microsoft.com/powershell/Microsoft.PowerShell``, its
messages travel base64 in Create (``creationXml``), Command (``Arguments``),
Send and Receive, and a pipeline is a WinRS command. ``server.py`` keeps the
shells and the WinRM service limits for both kinds; this module is what a
PowerShell shell does with them. The messages themselves are serialised and
fragmented by psrpcore (the server side of pypsrp's author's PSRP library),
not by hand.

What a pipeline may run is what Ansible's psrp connection sends for the
collection: one script (the decoded bootstrap) with the agent and its request
as pipeline input. It goes to the host model (``Host.run_script``), the same
one the winrm connection reaches, so both behave alike; any other pipeline,
and any PSRP message the collection does not need, is refused in words that
say so. Where Windows' behaviour is not recorded the stricter reading is
taken (docs/windows-facts.md, "PowerShell Remoting (psrp)").
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psrpcore
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSInvocationState,
    RunspacePoolState,
)

from .wsman import (
    COMMAND_STATE_DONE,
    ERROR_WSMAN_INVALID_SELECTORS,
    ERROR_WSMAN_OPERATION_TIMEDOUT,
    NS_SHELL,
    STREAM_CHUNK,
    TIMED_OUT_MESSAGE,
    Reply,
    Request,
    WsmanFault,
    envelope,
    operation_timeout_s,
    qname,
    unsupported,
)

# wsmerror.h: the per-plugin (PPQ) quota faults.
ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ = 0x803381E4
ERROR_WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ = 0x803381E9
# System.Management.Automation.RuntimeException's HResult (COR_E_SYSTEM).
RUNTIME_EXCEPTION_HRESULT = -2146233087

# pypsrp sends ``powershell/signal/ctrl_c`` (what Ansible stops its previous
# pipeline with); MS-PSRP's own spelling has a typo that Windows accepts too.
STOP_SIGNALS = {
    "powershell/signal/ctrl_c",
    "powershell/signal/crtl_c",
    "http://schemas.microsoft.com/powershell/signal/crtl_c",
    NS_SHELL + "/signal/Terminate",
}
INPUT_STREAMS = "stdin pr"
OUTPUT_STREAMS = "stdout"
# One Receive carries at most this much PSRP data; whole fragments only, so
# that pypsrp can always take apart what one answer brought.
RECEIVE_BUDGET = 96 * 1024


class OutcomeLike(Protocol):
    """What ``Host.run_script`` returns (``model.CommandOutcome``)."""

    @property
    def stdout(self) -> bytes: ...

    @property
    def exit_code(self) -> int: ...

    @property
    def error(self) -> str | None: ...

    @property
    def delay_s(self) -> float: ...

    @property
    def cut(self) -> bool: ...

    @property
    def wsman_fault(self) -> str | None: ...


class ScriptHost(Protocol):
    """The part of ``model.Host`` a runspace uses."""

    @property
    def name(self) -> str: ...

    def run_script(self, script: str, read_stdin: Callable[[], bytes]) -> OutcomeLike:
        """Run one script with its pipeline input; ``read_stdin`` blocks until the input has ended."""


def shells_quota_fault(limit: int) -> WsmanFault:
    """The Microsoft.PowerShell plugin's MaxShellsPerUser reached."""
    return WsmanFault(
        "The WS-Management service cannot process the request. The maximum number of concurrent shells for this user "
        "has been exceeded. Close existing shells or raise the quota for this user.",
        code=ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ,
        subcode="w:QuotaLimit",
        sender=True,
        detail=f"The WS-Management service cannot process the request. This user is allowed a maximum number of "
        f"{limit} concurrent shells, which has been exceeded. Close existing shells or raise the quota "
        "for this user.",
    )


def commands_quota_fault() -> WsmanFault:
    """MaxConcurrentCommandsPerShell reached, worded as Windows words it (pypsrp #148)."""
    return WsmanFault(
        "The WS-Management service cannot process the request. The maximum number of concurrent commands per shell "
        "has been exceeded. Retry the request later or raise the Maximum Commands per Shell quota.",
        code=ERROR_WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ,
    )


def _schema_fault(message: str) -> WsmanFault:
    return WsmanFault(message, subcode="w:SchemaValidationError", sender=True)


def _decode(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except binascii.Error as exc:
        raise _schema_fault(f"{what} is not base64") from exc


def _runtime_error(message: str) -> ErrorRecord:
    """A terminating error as a script's ``throw`` makes it: a RuntimeException record."""
    exception = NETException(Message=message, HResult=RUNTIME_EXCEPTION_HRESULT)
    exception.PSObject.type_names = [
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
        *exception.PSTypeNames,
    ]
    return ErrorRecord(
        Exception=exception,
        CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.OperationStopped, Reason="RuntimeException"),
        FullyQualifiedErrorId="RuntimeException",
    )


@dataclass
class _Pipeline:
    """One PSRP pipeline (a WinRS command of the shell) and what it has produced."""

    command_id: str
    core: psrpcore.ServerPipeline
    script: str | None = None
    refusal: str | None = None
    no_input: bool = False
    lines: list[str] = field(default_factory=list)
    input_done: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    stopped: bool = False
    delivered: bool = False
    delay_s: float = 0.0
    cut: bool = False
    fault: WsmanFault | None = None

    def read_input(self) -> bytes:
        """The pipeline input as the bootstrap's ``@($input) -join "`n"`` sees it, once it has ended.

        PSRP input is strings, not a byte stream; they are handed on as UTF-8
        to a model that reads stdin with the console code page, so anything
        beyond ASCII arrives changed (stricter than Windows, where PSRP input
        stays Unicode; the collection sends ASCII only).
        """
        self.input_done.wait()
        if self.stopped:
            raise PipelineStopped(self.command_id)
        return ("\n".join(self.lines) + "\n").encode("utf-8")


# What a client may send: the two messages a pool opens with, and a pipeline's creation and input.
POOL_MESSAGES = {"SessionCapability", "InitRunspacePool"}
PIPELINE_MESSAGES = {"CreatePipeline", "PipelineInput", "EndOfPipelineInput"}


class _ServerPool(psrpcore.ServerRunspacePool):
    """psrpcore's server pool, refusing a message before it acts on it (it would answer some on its own)."""

    def _process_message(self, message: Any) -> psrpcore.PSRPEvent[Any, Any]:
        name = message.message_type.name
        allowed = POOL_MESSAGES if message.pipeline_id is None else PIPELINE_MESSAGES
        if name not in allowed:
            raise unsupported(f"PSRP message {name}")
        return super()._process_message(message)


class PipelineStopped(Exception):
    """The pipeline was stopped (or its shell deleted) while it waited for input."""


class RunspacePool:
    """One runspace pool: the PowerShell side of one WinRS shell.

    psrpcore is not thread-safe; every use of it is under ``_lock``. Messages
    it queues are sorted out at once into one outbox per target (the pool, or
    a pipeline), because a Receive names the one target it reads.
    """

    def __init__(self, host: ScriptHost, shell_id: str, creation: bytes, max_commands: int):
        self.host = host
        self.shell_id = shell_id
        self._max_commands = max_commands
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._core = _ServerPool()
        self._outbox: dict[uuid.UUID | None, list[bytes]] = {}
        self._pipelines: dict[str, _Pipeline] = {}
        # Pipelines that hold a place against MaxConcurrentCommandsPerShell.
        self._holding: set[str] = set()
        with self._lock:
            self._feed(creation, None)
            if self._core.state != RunspacePoolState.Opened:
                raise _schema_fault("the creationXml did not open a runspace pool (SESSION_CAPABILITY and INIT_RUNSPACEPOOL expected)")

    # ------------------------------------------------------------ messages in

    def _feed(self, data: bytes, pipeline: _Pipeline | None) -> None:
        """Hand the client's fragments to psrpcore and act on every message they complete. Lock held."""
        target = pipeline.core.pipeline_id if pipeline is not None else None
        try:
            self._core.receive_data(psrpcore.PSRPPayload(data, psrpcore.StreamType.default, target))
            while (event := self._core.next_event()) is not None:
                self._on_event(event, pipeline)
        except psrpcore.PSRPCoreError as exc:
            raise _schema_fault(f"not a valid PSRP message: {exc}") from exc
        self._collect()

    def _on_event(self, event: psrpcore.PSRPEvent[Any, Any], pipeline: _Pipeline | None) -> None:
        """A pool's opening messages are psrpcore's to answer; a pipeline's are the simulator's."""
        if isinstance(event, psrpcore.SessionCapabilityEvent | psrpcore.InitRunspacePoolEvent) and pipeline is None:
            return
        if pipeline is not None and event.pipeline_id == pipeline.core.pipeline_id:
            if isinstance(event, psrpcore.CreatePipelineEvent):
                self._created(pipeline, event)
                return
            if isinstance(event, psrpcore.PipelineInputEvent) and not pipeline.input_done.is_set():
                pipeline.lines.append(event.data if isinstance(event.data, str) else str(event.data))
                return
            if isinstance(event, psrpcore.EndOfPipelineInputEvent):
                pipeline.input_done.set()
                return
        raise unsupported(f"PSRP message {type(event).__name__.removesuffix('Event')}")

    @staticmethod
    def _created(pipeline: _Pipeline, event: psrpcore.CreatePipelineEvent) -> None:
        """Only one script with no parameters runs here: what the psrp connection makes of the bootstrap."""
        described = event.pipeline
        commands = described.commands
        if len(commands) != 1:
            pipeline.refusal = f"a pipeline of {len(commands)} commands (only one script runs here)"
        elif not commands[0].is_script:
            pipeline.refusal = f"the command {commands[0].command_text!r} (only a script runs here)"
        elif commands[0].parameters:
            pipeline.refusal = "a script with arguments or parameters"
        else:
            pipeline.script = str(commands[0].command_text)
        pipeline.no_input = bool(described.no_input)
        if pipeline.no_input:
            pipeline.input_done.set()

    # ----------------------------------------------------------- messages out

    def _collect(self) -> None:
        """Move what psrpcore queued into the outboxes, in whole fragments of at most STREAM_CHUNK. Lock held."""
        while (payload := self._core.data_to_send(STREAM_CHUNK)) is not None:
            self._outbox.setdefault(payload.pipeline_id, []).append(payload.data)
        self._ready.notify_all()

    def _take(self, target: uuid.UUID | None) -> list[bytes]:
        """Whole payloads for one Receive, within its budget (at least one). Lock held."""
        queue = self._outbox.get(target, [])
        taken: list[bytes] = []
        size = 0
        while queue and (not taken or size + len(queue[0]) <= RECEIVE_BUDGET):
            size += len(queue[0])
            taken.append(queue.pop(0))
        return taken

    # ---------------------------------------------------------------- actions

    def command(self, request: Request, log: dict[str, Any]) -> Reply:
        """A new pipeline: its CREATE_PIPELINE is in the Arguments, input follows in Sends."""
        line = request.body.find(qname(NS_SHELL, "CommandLine"))
        if line is None:
            raise _schema_fault("the Command request has no rsp:CommandLine")
        command_id = (line.get("CommandId") or str(uuid.uuid4())).upper()
        try:
            pipeline_id = uuid.UUID(command_id)
        except ValueError as exc:
            raise _schema_fault(f"CommandId {command_id!r} is not a GUID") from exc
        arguments = line.findtext(qname(NS_SHELL, "Arguments"))
        data = _decode(arguments, "the Command's Arguments")
        with self._lock:
            if command_id in self._pipelines:
                raise _schema_fault(f"a pipeline with CommandId {command_id} already exists")
            if len(self._holding) >= self._max_commands:
                raise commands_quota_fault()
            pipeline = _Pipeline(command_id, psrpcore.ServerPipeline(self._core, pipeline_id))
            self._pipelines[command_id] = pipeline
            self._holding.add(command_id)
            try:
                self._feed(data, pipeline)
            except WsmanFault:
                self._forget(pipeline)
                raise
            self._maybe_start(pipeline)
        log["command_id"] = command_id
        log["command"] = "(psrp pipeline)"
        body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        return Reply(200, envelope(NS_SHELL + "/CommandResponse", request.message_id, body))

    def send(self, request: Request, log: dict[str, Any]) -> Reply:
        stream = request.body.find(f"{qname(NS_SHELL, 'Send')}/{qname(NS_SHELL, 'Stream')}")
        if stream is None:
            raise _schema_fault("the Send request has no rsp:Stream")
        if stream.get("Name") != "stdin":
            raise unsupported(f"PSRP input stream {stream.get('Name')!r} (host responses are not used here)")
        data = _decode(stream.text, "the Send stream")
        command_id = stream.get("CommandId")
        with self._lock:
            if command_id is None:
                # Messages to the pool itself (SET_MAX_RUNSPACES, GET_COMMAND_METADATA, ...).
                self._feed(data, None)
            else:
                pipeline = self._pipeline(command_id)
                self._feed(data, pipeline)
                self._maybe_start(pipeline)
        log["command_id"] = command_id
        log["stdin_bytes"] = len(data)
        return Reply(200, envelope(NS_SHELL + "/SendResponse", request.message_id, "<rsp:SendResponse/>"))

    def receive(self, request: Request, log: dict[str, Any]) -> Reply:
        desired = request.body.find(f"{qname(NS_SHELL, 'Receive')}/{qname(NS_SHELL, 'DesiredStream')}")
        command_id = desired.get("CommandId") if desired is not None else None
        timeout_s = operation_timeout_s(request)
        log["command_id"] = command_id
        if command_id is None:
            return self._receive_pool(request, timeout_s, log)
        with self._lock:
            pipeline = self._pipeline(command_id)
        if not pipeline.finished.wait(timeout_s):
            log["timed_out"] = True
            raise WsmanFault(TIMED_OUT_MESSAGE, code=ERROR_WSMAN_OPERATION_TIMEDOUT, subcode="w:TimedOut")
        if pipeline.fault is not None:
            raise pipeline.fault
        with self._lock:
            first, pipeline.delivered = not pipeline.delivered, True
        if first and pipeline.delay_s > 0:
            # As for WinRS: a server that stops answering, which the client's read timeout catches.
            time.sleep(pipeline.delay_s)
        with self._lock:
            payloads = self._take(pipeline.core.pipeline_id)
            done = not self._outbox.get(pipeline.core.pipeline_id)
        parts = [self._stream(payload, command_id) for payload in payloads]
        if done:
            parts.append(
                f'<rsp:CommandState CommandId="{command_id}" State="{COMMAND_STATE_DONE}"><rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState>'
            )
        body = f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"
        return Reply(200, envelope(NS_SHELL + "/ReceiveResponse", request.message_id, body), cut=first and pipeline.cut)

    def _receive_pool(self, request: Request, timeout_s: float, log: dict[str, Any]) -> Reply:
        with self._lock:
            if not self._ready.wait_for(lambda: bool(self._outbox.get(None)), timeout_s):
                log["timed_out"] = True
                raise WsmanFault(TIMED_OUT_MESSAGE, code=ERROR_WSMAN_OPERATION_TIMEDOUT, subcode="w:TimedOut")
            payloads = self._take(None)
        body = f"<rsp:ReceiveResponse>{''.join(self._stream(payload, None) for payload in payloads)}</rsp:ReceiveResponse>"
        return Reply(200, envelope(NS_SHELL + "/ReceiveResponse", request.message_id, body))

    def signal(self, request: Request, log: dict[str, Any]) -> Reply:
        """Stop a pipeline (what Ansible does to the previous one before it runs the next); it gives back its place."""
        signal = request.body.find(qname(NS_SHELL, "Signal"))
        command_id = signal.get("CommandId") if signal is not None else None
        code = (signal.findtext(qname(NS_SHELL, "Code")) or "").strip() if signal is not None else ""
        if code not in STOP_SIGNALS:
            raise unsupported(f"signal {code or '(none)'} to a PSRP pipeline")
        with self._lock:
            pipeline = self._pipeline(command_id or "")
            self._stop(pipeline)
        log["command_id"] = command_id
        return Reply(200, envelope(NS_SHELL + "/SignalResponse", request.message_id, "<rsp:SignalResponse/>"))

    def close(self) -> None:
        """The shell is deleted (or gone idle): every pipeline ends with it."""
        with self._lock:
            for pipeline in list(self._pipelines.values()):
                pipeline.stopped = True
                pipeline.input_done.set()
            self._pipelines.clear()
            self._holding.clear()

    # -------------------------------------------------------------- pipelines

    def _pipeline(self, command_id: str) -> _Pipeline:
        """Lock held."""
        pipeline = self._pipelines.get(command_id.upper())
        if pipeline is None:
            raise WsmanFault(
                f"The request for the Windows Remote Shell with ShellId {self.shell_id} failed because the "
                f"command with CommandId {command_id} was not found.",
                code=ERROR_WSMAN_INVALID_SELECTORS,
                subcode="w:InvalidSelectors",
                sender=True,
            )
        return pipeline

    def _forget(self, pipeline: _Pipeline) -> None:
        """Lock held."""
        self._pipelines.pop(pipeline.command_id, None)
        self._holding.discard(pipeline.command_id)
        pipeline.core.runspace_pool.pipeline_table.pop(pipeline.core.pipeline_id, None)

    def _stop(self, pipeline: _Pipeline) -> None:
        """Lock held. A pipeline still at work is left to finish in the background; its outcome is dropped.

        As a WinRS Signal does, this forgets the pipeline: a later Receive for it is refused.
        """
        pipeline.stopped = True
        pipeline.input_done.set()
        if pipeline.core.state == PSInvocationState.Running:
            pipeline.core.stop()
        pipeline.finished.set()
        self._forget(pipeline)
        self._outbox.pop(pipeline.core.pipeline_id, None)
        self._collect()
        self._outbox.pop(pipeline.core.pipeline_id, None)

    def _maybe_start(self, pipeline: _Pipeline) -> None:
        """Lock held. Like powershell.exe reading stdin, the script runs once its input has ended."""
        if pipeline.started or pipeline.core.metadata is None:
            return
        pipeline.started = True
        # Windows sends no Running state (pypsrp's recordings); psrpcore's start() would.
        pipeline.core._change_state(PSInvocationState.Running, emit=False)
        worker = threading.Thread(target=self._run, args=(pipeline,), name=f"psrp-{self.host.name}-{pipeline.command_id[:8]}", daemon=True)
        worker.start()

    def _run(self, pipeline: _Pipeline) -> None:
        if pipeline.refusal is not None:
            self._finish(pipeline, [], f"not supported by the simulator: {pipeline.refusal}")
            return
        assert pipeline.script is not None
        try:
            outcome = self.host.run_script(pipeline.script, pipeline.read_input)
        except PipelineStopped:
            return
        except Exception as exc:
            traceback.print_exc()
            with self._lock:
                pipeline.fault = WsmanFault(f"simulator internal error: {type(exc).__name__}: {exc}")
                pipeline.finished.set()
            return
        if outcome.wsman_fault:
            with self._lock:
                pipeline.fault = WsmanFault(outcome.wsman_fault)
                pipeline.finished.set()
            return
        pipeline.delay_s, pipeline.cut = float(outcome.delay_s or 0), bool(outcome.cut)
        lines = outcome.stdout.decode("utf-8", "replace").splitlines()
        failure = None
        if outcome.exit_code != 0:
            failure = outcome.error or f"the script ended with exit code {outcome.exit_code}"
        self._finish(pipeline, lines, failure)

    def _finish(self, pipeline: _Pipeline, lines: list[str], failure: str | None) -> None:
        """The script's output objects, then its end: Completed, or Failed with the terminating error."""
        with self._lock:
            if pipeline.stopped:
                return
            for line in lines:
                pipeline.core.write_output(line)
            if failure is None:
                pipeline.core.complete()
            else:
                pipeline.core._change_state(PSInvocationState.Failed, _runtime_error(failure))
            self._collect()
            pipeline.finished.set()

    @staticmethod
    def _stream(payload: bytes, command_id: str | None) -> str:
        attribute = f' CommandId="{command_id}"' if command_id is not None else ""
        return f'<rsp:Stream Name="stdout"{attribute}>{base64.b64encode(payload).decode()}</rsp:Stream>'


def open_pool(host: ScriptHost, request: Request, max_commands: int) -> tuple[RunspacePool, str]:
    """A runspace pool from a Create: its shell id (the client's, as pypsrp sends one) and its opening messages."""
    shell = request.body.find(qname(NS_SHELL, "Shell"))
    if shell is None:
        raise _schema_fault("the Create request has no rsp:Shell")
    creation = shell.findtext("{http://schemas.microsoft.com/powershell}creationXml")
    if creation is None:
        raise _schema_fault("a PowerShell shell needs creationXml (SESSION_CAPABILITY and INIT_RUNSPACEPOOL)")
    shell_id = (shell.get("ShellId") or str(uuid.uuid4())).upper()
    return RunspacePool(host, shell_id, _decode(creation, "creationXml"), max_commands), shell_id
