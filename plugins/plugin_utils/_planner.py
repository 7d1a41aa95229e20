# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide what to send to a host to bring it to the desired state.

Internal to mailops.iis_smtp. Pure: (observed Host, Desired) -> Plan. The
engine calls it again after every apply, so a plan only holds the steps that
are safe to send *now* (what follows a service start or a transition is
decided on the next observation) together with the whole predicted path and
after-state, which is what check mode reports.

Windows behaviour encoded here (see docs/windows-facts.md): an instance can only
be controlled while SMTPSVC runs; starting the service brings back every
instance whose ServerAutoStart is set; a paused service is continued rather
than restarted; transitional states are waited out, never interrupted; while
SMTPSVC is stopped no ServerState can be read, so those instances stay
unknown (and cannot be running).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ._model import SERVICE_TRANSITIONAL, SETTLES_TO, TRANSITIONAL_STATES, UNKNOWN, Host, Instance
from ._protocol import SC_START_MODES, SERVICE_UNREADABLE, instance_step, service_step, set_start_mode_step

DESIRED_STATES = ("started", "stopped", "paused")
START_MODES = tuple(SC_START_MODES)

_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("started", "stopped"): ("stop",),
    ("started", "paused"): ("pause",),
    ("stopped", "started"): ("start",),
    ("stopped", "paused"): ("start", "pause"),
    ("paused", "started"): ("continue",),
    ("paused", "stopped"): ("stop",),
}
SERVICE_DISABLED_MSG = ("The SMTPSVC service is disabled, so the SMTP virtual servers cannot be started; "
                        "set service_start_mode to auto, delayed or manual.")
# With no readable state the only safe move is the command named after the goal.
_BLIND_COMMAND = {"started": "start", "stopped": "stop", "paused": "pause"}


# The agent reads an instance id as Windows PowerShell's ConvertFrom-Json
# does: beyond Int32 it becomes an Int64, which the agent refuses, and with it
# the whole request. A metabase id is a DWORD, so such an instance can exist.
MAX_CONTROLLABLE_ID = 2**31 - 1
RUNNING_STATES = frozenset({"started", "paused"})


@dataclass(frozen=True)
class Desired:
    """The state each targeted instance is meant to be in, and the SMTPSVC start mode (None: leave it).

    `states` holds every state the task asks for. Where the instances could
    not be read (IISADMIN does not run) there are no targets, and the states
    alone say whether anything is meant to run.
    """

    targets: tuple[tuple[int, str], ...]
    start_mode: str | None = None
    states: frozenset[str] = frozenset({"started"})

    def state_of(self, instance_id: int) -> str | None:
        for target_id, state in self.targets:
            if target_id == instance_id:
                return state
        return None

    @property
    def needs_service(self) -> bool:
        """Whether some instance is meant to run, which needs SMTPSVC (and so IISADMIN) running."""
        return bool(self.states & RUNNING_STATES)


def uncontrollable(host: Host, desired: Desired) -> frozenset[int]:
    """Targeted instances the agent cannot address: ids above MAX_CONTROLLABLE_ID."""
    return frozenset(inst_id for inst_id, _want in desired.targets if inst_id > MAX_CONTROLLABLE_ID
                     and host.instance(inst_id) is not None)


@dataclass(frozen=True)
class Plan:
    steps: tuple[dict[str, Any], ...]
    waiting: bool
    predicted: Host
    instance_actions: dict[int, tuple[str, ...]] = field(default_factory=dict)
    service_actions: tuple[str, ...] = ()
    blocked: str | None = None
    blocked_msg: str = ""
    # What the agent's settle wait waits for: the services and instances this plan needs.
    watch: dict[str, list[Any]] = field(default_factory=lambda: {"services": [], "instances": []})

    @property
    def converged(self) -> bool:
        return not self.steps and not self.waiting and self.blocked is None

    @property
    def changes(self) -> bool:
        return bool(self.service_actions) or any(self.instance_actions.values())


def path(state: str, want: str) -> tuple[str, ...]:
    """Instance commands that lead from a state to the desired one."""
    if state == want:
        return ()
    if state in TRANSITIONAL_STATES:
        return path(SETTLES_TO[state], want)
    if state == UNKNOWN:
        return (_BLIND_COMMAND[want],)
    return _PATHS[(state, want)]


def _after_service_start(inst: Instance) -> Instance:
    return inst.with_state("started" if inst.auto_start else "stopped")


def _after_service_continue(inst: Instance) -> Instance:
    # A paused service reports every running instance as paused; continuing
    # it brings them back. One paused on its own cannot be told apart and is
    # found on the next observation.
    return inst.with_state("started") if inst.state in ("paused", "pausing") else inst


def _needs_commands(host: Host, desired: Desired, skip: frozenset[int]) -> bool:
    """Whether some targeted instance must receive a command, which requires a running service."""
    for inst in host.instances:
        want = desired.state_of(inst.id)
        if want is None or inst.id in skip:
            continue
        if host.smtp.state in ("stopped", "stopping") and want == "stopped":
            continue
        if inst.state != want:
            return True
        if want == "started" and host.smtp.state != "running":
            return True
    return False


def plan(host: Host, desired: Desired, skip: frozenset[int] = frozenset()) -> Plan:
    """Steps to send now, whether a transition must settle first, and the predicted end state.

    `skip` holds instances the engine has given up on (their command failed);
    they keep their observed state in the prediction.
    """
    smtp = host.smtp
    want_mode = desired.start_mode
    mode_ops: list[dict[str, Any]] = []
    if want_mode is not None and want_mode != smtp.start_mode:
        mode_ops.append(set_start_mode_step(want_mode))
    mode_change = bool(mode_ops)
    needs_running = _needs_commands(host, desired, skip)
    service_ops: list[str] = []
    service_now: list[dict[str, Any]] = []
    instances = {inst.id: inst for inst in host.instances}
    service_state = smtp.state
    waiting = False

    if needs_running and smtp.state in SERVICE_TRANSITIONAL:
        waiting = True
        service_state = "running"
        # Predict what the service brings back once it runs, as for a
        # stable service, so check mode names the commands a run sends.
        if smtp.state == "stopping":
            service_ops.append("start_service")
            instances = {i: _after_service_start(inst) for i, inst in instances.items()}
        elif smtp.state == "starting":
            instances = {i: _after_service_start(inst) if inst.state == UNKNOWN else inst
                         for i, inst in instances.items()}
        else:
            if smtp.state == "pausing":
                service_ops.append("continue_service")
            instances = {i: _after_service_continue(inst) for i, inst in instances.items()}
    elif needs_running and smtp.state not in ("running", "stopped", "paused"):
        return Plan(
            steps=(), waiting=False, predicted=host, blocked=SERVICE_UNREADABLE,
            blocked_msg="The state of the SMTPSVC service could not be read (%s), so nothing was sent to it or "
                        "to the SMTP virtual servers." % (smtp.error.describe() if smtp.error else smtp.state),
        )
    elif needs_running and smtp.state in ("stopped", "paused"):
        effective_mode = want_mode if want_mode is not None else smtp.start_mode
        if smtp.state == "stopped" and effective_mode == "disabled":
            return Plan(steps=(), waiting=False, predicted=host, blocked="service_disabled",
                        blocked_msg=SERVICE_DISABLED_MSG)
        op = "start_service" if smtp.state == "stopped" else "continue_service"
        service_ops.append(op)
        service_now.append(service_step(op))
        service_state = "running"
        if op == "start_service":
            instances = {i: _after_service_start(inst) for i, inst in instances.items()}
        else:
            instances = {i: _after_service_continue(inst) for i, inst in instances.items()}

    # Instance commands wait for the service step (or transition) to be
    # observed done: instances come back on their own and must be looked at again.
    service_waiting = waiting
    instance_actions: dict[int, tuple[str, ...]] = {}
    instance_now: list[dict[str, Any]] = []
    predicted_instances: list[Instance] = []
    for inst_id in sorted(instances):
        inst = instances[inst_id]
        observed = host.instance(inst_id)
        want = desired.state_of(inst_id)
        if want is None or inst_id in skip:
            predicted_instances.append(inst)
            continue
        if service_state == "stopped" and want == "stopped":
            # Down with the service: unknown, and it stays so.
            predicted_instances.append(inst)
            instance_actions[inst_id] = ()
            continue
        if service_state == "stopping" and want == "stopped":
            # The service stopping stops them all; a command would only race
            # it, so wait for one that does not read stopped yet (none can be
            # read once the service has stopped).
            waiting = waiting or inst.state != "stopped"
            predicted_instances.append(inst if inst.state == "stopped" else inst.with_state(UNKNOWN))
            instance_actions[inst_id] = ()
            continue
        commands = path(inst.state, want)
        instance_actions[inst_id] = commands
        predicted_instances.append(inst.with_state(want))
        if observed is not None and observed.state in TRANSITIONAL_STATES:
            waiting = True
        elif commands and not service_now and not service_waiting:
            instance_now.append(instance_step(inst_id, commands[0]))

    # A disabled service refuses to start, so disabling comes after everything
    # that may need it running, and enabling comes before.
    if want_mode == "disabled":
        steps = service_now + instance_now + mode_ops
        ops = service_ops + (["set_start_mode"] if mode_change else [])
    else:
        steps = mode_ops + service_now + instance_now
        ops = (["set_start_mode"] if mode_change else []) + service_ops

    if service_state == "stopping" and waiting:
        service_state = "stopped"
    predicted = replace(
        host,
        smtp=replace(smtp, state=service_state, start_mode=want_mode if want_mode is not None else smtp.start_mode),
        instances=tuple(predicted_instances),
    )
    watched = sorted(inst_id for inst_id, _want in desired.targets if inst_id not in skip)
    smtp_watched = bool(service_ops) or smtp.state in SERVICE_TRANSITIONAL
    return Plan(steps=tuple(steps), waiting=waiting, predicted=predicted,
                instance_actions=instance_actions, service_actions=tuple(ops),
                watch={"services": ["SMTPSVC"] if smtp_watched else [], "instances": watched})
