# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller loop behind both actions: observe, plan, apply, look again.

Internal to mailops.iis_smtp. It receives a `call(request) -> response`
function and a clock instead of a connection, so every decision it takes can
be replayed in tests from recorded agent responses. It builds the result
dicts of the two actions (see the result contract in the docs) and never
raises for anything a host can do: transport and Windows failures become
`failed: true` with a `reason` code and a message that names the instance,
its last observed state and the Windows error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ._findings import IISADMIN_RULES, availability_findings, blocking_findings, host_findings, is_compliant
from ._model import (
    SERVICE_PENDING_NAMES,
    SERVICE_TRANSITIONAL,
    Host,
    Instance,
    Service,
    WinError,
    parse_error,
    parse_observation,
)
from ._planner import MAX_CONTROLLABLE_ID, SERVICE_DISABLED_MSG, Desired, Plan, plan, uncontrollable
from ._protocol import (
    AGENT_OUTPUT_INVALID,
    IISADMIN_DISABLED,
    IISADMIN_NOT_RUNNING,
    INSTANCE_ID_OUT_OF_RANGE,
    TRANSIENT_REASONS,
    UNREACHABLE_REASONS,
    WRONG_STATE_ERROR,
    AgentError,
    apply_request,
    observe_request,
    start_iisadmin_step,
)

Call = Callable[[dict[str, Any]], dict[str, Any]]
Reset = Callable[[], None]
Clock = Callable[[], float]
Selector = int | str

# Each round is one command on the host. A healthy convergence needs at most
# three (service, first command, second command); the rest is slack for
# instances that move on their own while we look.
MAX_ROUNDS = 8
# A command that was accepted but did not move the instance is sent once more,
# then the instance is reported as failed rather than retried forever.
MAX_SAME_COMMAND = 2
POLL_MS = 500
# The encoded agent plus request must fit one Windows command line (32,767
# characters); each instance step costs about 280 of them. Larger plans are
# sent over several rounds, which the loop does anyway.
MAX_STEPS_PER_APPLY = 16
_STARTING_COMMANDS = ("start", "continue")
SERVICE_DISABLED_HRESULT = "0x80070422"
# What the SCM answers a control sent to a service in another state than the
# one it was planned for: 1056 already running (Start on anything but a
# stopped service), 1061 cannot accept control now (pending), 1062 not active.
WRONG_STATE_HRESULTS = frozenset({"0x80070420", "0x80070425", "0x80070426"})
_IISADMIN_WATCH: dict[str, list[Any]] = {"services": ["IISADMIN"], "instances": []}


class SelectionError(ValueError):
    """An `instances`/`instance_states` entry that does not name exactly one instance."""


class _Failure(Exception):
    def __init__(self, reason: str, msg: str) -> None:
        super().__init__(msg)
        self.reason = reason
        self.msg = msg


@dataclass(frozen=True)
class DesiredArgs:
    """What both actions are told the host should be: their `compliant` is judged against it."""

    state: str = "started"
    instances: tuple[Selector, ...] | None = None
    instance_states: tuple[tuple[Selector, str], ...] = ()
    service_start_mode: str | None = None

    @property
    def states(self) -> frozenset[str]:
        return frozenset({self.state, *(state for _sel, state in self.instance_states)})


@dataclass(frozen=True)
class EnforceArgs(DesiredArgs):
    timeout: int = 60
    fail_on_drift: bool = False
    poll_ms: int = POLL_MS


@dataclass
class _Progress:
    """What the loop has sent and seen so far; enough to report at any point of failure."""

    operations: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[int, list[str]] = field(default_factory=dict)
    failed: dict[int, tuple[str, WinError | None]] = field(default_factory=dict)
    # Instances whose command failed because they moved under us (a reboot,
    # another administrator); they get one more plan before being given up.
    excused: set[int] = field(default_factory=set)
    # Service steps Windows (or the agent) found already done or under way
    # (another controller, a reboot, an administrator): re-planned once.
    excused_services: set[tuple[str, str]] = field(default_factory=set)


# ---------------------------------------------------------------- selection

_ASCII_ID = re.compile(r"[0-9]+")


def _match_name(host: Host, name: str) -> list[Instance]:
    exact = [i for i in host.instances if name in (i.comment, i.name)]
    if exact:
        return exact
    folded = name.casefold()
    return [i for i in host.instances if folded in (i.comment.casefold(), i.name.casefold())]


def resolve(host: Host, selector: Selector) -> int:
    """The id of the one instance a selector names, or SelectionError saying why not."""
    known = ", ".join("%d (%s)" % (i.id, i.name) for i in host.instances) or "none"
    if isinstance(selector, int) and not isinstance(selector, bool):
        if host.instance(selector) is None:
            raise SelectionError("no SMTP virtual server with id %d on this host; it has: %s" % (selector, known))
        return selector
    name = str(selector)
    matches = _match_name(host, name)
    # Only ASCII digits are an id: str.isdigit() also takes '²' (which int()
    # refuses) and '٢' (which int() reads as 2).
    if not matches and _ASCII_ID.fullmatch(name.strip()):
        return resolve(host, int(name))
    if not matches:
        raise SelectionError("no SMTP virtual server is named %r on this host; it has: %s" % (name, known))
    if len(matches) > 1:
        raise SelectionError("%r names %d SMTP virtual servers (ids %s); use ids instead"
                             % (name, len(matches), ", ".join(str(i.id) for i in matches)))
    return matches[0].id


def desired_for(host: Host, args: DesiredArgs) -> Desired:
    targets: dict[int, str] = {}
    if args.instances is None:
        for inst in host.instances:
            targets[inst.id] = args.state
    else:
        for sel in args.instances:
            targets[resolve(host, sel)] = args.state
    overridden: dict[int, tuple[Selector, str]] = {}
    for sel, state in args.instance_states:
        inst_id = resolve(host, sel)
        if inst_id in overridden and overridden[inst_id][1] != state:
            raise SelectionError("instance_states names SMTP virtual server %d twice (%r and %r) with "
                                 "different states" % (inst_id, overridden[inst_id][0], sel))
        overridden[inst_id] = (sel, state)
        targets[inst_id] = state
    return Desired(targets=tuple(sorted(targets.items())), start_mode=args.service_start_mode,
                   states=frozenset(targets.values()) or args.states)


def unread_desired(args: DesiredArgs) -> Desired:
    """The desired state of a host whose instances could not be read: only the states asked for are known."""
    return Desired(targets=(), start_mode=args.service_start_mode, states=args.states)


# ---------------------------------------------------------------- calls

def _checked_call(call: Call, request: dict[str, Any]) -> tuple[dict[str, Any], Host]:
    try:
        response = call(request)
    except AgentError as exc:
        raise _Failure(exc.code, exc.message) from None
    return _checked_response(response)


def _checked_response(response: dict[str, Any]) -> tuple[dict[str, Any], Host]:
    if not response.get("ok") or not isinstance(response.get("observation"), dict):
        err = parse_error(response.get("error"))
        raise _Failure(AGENT_OUTPUT_INVALID, "the agent refused the request: %s"
                       % (err.describe() if err else "no observation returned"))
    return response, parse_observation(response["observation"])


def _wait_call(call: Call, clock: Clock, deadline: float, poll_ms: int, watch: dict[str, Any],
               reset: Reset | None) -> tuple[dict[str, Any], Host]:
    """A call that only waits and looks, retried once after a lost connection.

    WinRM under load drops a connection now and then (ansible.windows'
    win_updates retries its polls for the same reason). Nothing a wait does
    can be done twice, so it is safe to repeat; the retry gets only the time
    left before the task's deadline. Calls with steps are never repeated:
    the first attempt may have reached the host.
    """
    try:
        return _checked_call(call, apply_request((), deadline - clock(), poll_ms, watch))
    except _Failure as exc:
        if exc.reason not in TRANSIENT_REASONS:
            raise
    if reset is not None:
        try:
            reset()
        except AgentError as exc:
            raise _Failure(exc.code, exc.message) from None
    return _checked_call(call, apply_request((), max(0.0, deadline - clock()), poll_ms, watch))


def _check_readable(host: Host) -> None:
    if host.access_denied and host.metabase_error is not None:
        raise _Failure("access_denied", "access to IIS://localhost/SMTPSVC was denied (%s): connect as a "
                       "member of the local Administrators group" % host.metabase_error.describe())


def _check_available(host: Host) -> None:
    """Fail when nothing can be managed; a stopped IISADMIN is not that: enforce starts it."""
    _check_readable(host)
    blocking = [f for f in availability_findings(host) if f["rule"] != IISADMIN_NOT_RUNNING]
    if blocking:
        raise _Failure(blocking[0]["rule"], blocking[0]["message"])


# ---------------------------------------------------------------- results

def _key(inst: Instance) -> str:
    return "%d %s" % (inst.id, inst.name)


def _service_block(before: Host, after: Host) -> dict[str, Any]:
    b, a = before.smtp.summary(), after.smtp.summary()
    return {"name": before.smtp.name, "before": b, "after": a, "changed": a != b}


def _diff(before: Host, after: Host, ids: list[int]) -> dict[str, Any]:
    def side(host: Host) -> dict[str, Any]:
        states = {}
        for inst_id in ids:
            inst = host.instance(inst_id)
            if inst is not None:
                states[_key(inst)] = inst.state
        return {"service": host.smtp.summary(), "virtual_servers": states}
    return {"before": side(before), "after": side(after)}


def _enforce_result(args: EnforceArgs, desired: Desired, before: Host, after: Host,
                    actions: dict[int, list[str]], operations: list[dict[str, Any]],
                    predicted_change: bool | None = None) -> dict[str, Any]:
    """The virtual_server result; `predicted_change` is given in check mode, where nothing was sent.

    Something changed only if this task made it change: an instance that
    finishes a transition on its own while we wait is not a change of ours.
    `findings` and `compliant` describe the host as last observed: as found
    in check mode, as left after a run (its read-back).
    """
    acted = any(op.get("ok") for op in operations) if predicted_change is None else predicted_change
    observed = before if predicted_change is not None else after
    ids = [inst_id for inst_id, _want in desired.targets]
    servers = []
    for b in before.instances:
        inst_id = b.id
        want = desired.state_of(inst_id)
        if want is None:
            continue
        a = after.instance(inst_id) or b
        acts = actions.get(inst_id, [])
        # In check mode, what a run would send: a command can leave the state
        # as it was (a service start brings it back, then it is stopped again).
        sent_ok = bool(acts) if predicted_change is not None else \
            any(op.get("ok") and op.get("id") == inst_id for op in operations)
        servers.append({"id": inst_id, "name": b.name, "desired": want, "before": b.summary(),
                        "after": a.summary(), "changed": (acted and a.summary() != b.summary()) or sent_ok,
                        "actions": list(acts)})
    service = _service_block(before, after)
    service["changed"] = service["changed"] and acted
    findings = host_findings(observed, desired)
    return {"changed": acted, "state": args.state, "service": service, "virtual_servers": servers,
            "operations": operations, "compliant": is_compliant(findings), "findings": findings,
            "diff": _diff(before, after, ids)}


def failure(reason: str, msg: str) -> dict[str, Any]:
    """The result of an action that failed before it could look at the host."""
    return _fail({"changed": False}, reason, msg)


def _fail(result: dict[str, Any], reason: str, msg: str) -> dict[str, Any]:
    result.update(reason=reason, msg=msg)
    if reason in UNREACHABLE_REASONS:
        # What Ansible's own executor returns for a host it cannot talk to
        # (unreachable, not failed): the recap counts it as unreachable,
        # ansible-playbook exits 4, ignore_unreachable applies.
        result["unreachable"] = True
    else:
        result["failed"] = True
    return result


# ---------------------------------------------------------------- info

def info(call: Call, args: DesiredArgs | None = None) -> dict[str, Any]:
    """Result of virtual_server_info: read-only, fails only when the host cannot be read.

    `findings` and `compliant` judge the host against `args`, the desired
    state virtual_server would enforce, so both actions agree on it.
    """
    args = args or DesiredArgs()
    try:
        host = _checked_call(call, observe_request())[1]
        _check_readable(host)
        desired = unread_desired(args) if host.iisadmin_not_running else desired_for(host, args)
    except _Failure as exc:
        return _fail({"changed": False}, exc.reason, exc.msg)
    except SelectionError as exc:
        return _fail({"changed": False}, "invalid_instances", str(exc))
    findings = host_findings(host, desired)
    servers = [{**i.as_dict(), "desired": desired.state_of(i.id)} for i in host.instances
               if desired.state_of(i.id) is not None]
    return {"changed": False, "host": host.host_dict(), "service": host.smtp.as_dict(),
            "iisadmin": host.iisadmin.as_dict(), "virtual_servers": servers,
            "findings": findings, "compliant": is_compliant(findings)}


# ---------------------------------------------------------------- enforce

def _moved(inst_id: int, planned_from: Host, now: Host) -> bool:
    then, after = planned_from.instance(inst_id), now.instance(inst_id)
    return then is not None and after is not None and then.state != after.state


def _step_error(step: dict[str, Any]) -> WinError | None:
    """The error that says most about a failed step.

    The step's own error is its last attempt's; when that is only the
    agent's word that nothing moved (a ServerCommand without effect after an
    ADSI method that failed), the Windows error of an earlier attempt is the
    one worth quoting.
    """
    last = parse_error(step.get("error"))
    if step.get("ok") or last is None or last.hresult:
        return last
    for attempt in step.get("attempts") or []:
        err = parse_error(attempt.get("error"))
        if err is not None and err.hresult:
            return err
    return last


def _wrong_state(err: WinError | None) -> bool:
    """A service control refused because the service was no longer where the plan found it."""
    return err is not None and (err.type == WRONG_STATE_ERROR or (err.hresult or "").lower() in WRONG_STATE_HRESULTS)


def _record(progress: _Progress, response: dict[str, Any], planned_from: Host, now: Host,
            sent: tuple[dict[str, Any], ...]) -> tuple[str, str, WinError | None] | None:
    """Add the step outcomes to progress; return the first failed service step (op, service, error), if any.

    A failed instance command counts as a failure of the instance unless the
    instance was found in another state than the one the command was planned
    for: then the command was wrong, not the instance, and it is planned again once.
    A service control that found its service already started, starting or
    otherwise not where the plan saw it (another controller, a reboot, an
    administrator) is the same: the loop looks again and re-plans, once.
    """
    service_failure = None
    for index, step in enumerate(response.get("steps") or []):
        op = {"op": step.get("op"), "ok": bool(step.get("ok"))}
        err = _step_error(step)
        if step.get("op") == "instance":
            inst_id = int(step.get("id"))
            op.update(id=inst_id, command=step.get("command"))
            progress.sent.setdefault(inst_id, []).append(str(step.get("command")))
            if not op["ok"]:
                if _moved(inst_id, planned_from, now) and inst_id not in progress.excused:
                    progress.excused.add(inst_id)
                else:
                    progress.failed[inst_id] = (str(step.get("command")), err)
        else:
            name = str(sent[index].get("service") if index < len(sent) else "SMTPSVC")
            op["service"] = name
            key = (str(step.get("op")), name)
            if not op["ok"] and _wrong_state(err) and key not in progress.excused_services:
                progress.excused_services.add(key)
            elif not op["ok"] and service_failure is None:
                service_failure = (key[0], name, err)
        if err is not None and not op["ok"]:
            op["error"] = err.describe()
        progress.operations.append(op)
    return service_failure


def _stalled(progress: _Progress, current: Plan) -> None:
    """Give up on instances the plan wants to send a command they already ignored."""
    for step in current.steps:
        if step["op"] != "instance":
            continue
        if progress.sent.get(step["id"], []).count(step["command"]) >= MAX_SAME_COMMAND:
            progress.failed.setdefault(step["id"], (step["command"], None))


def _instance_failure(progress: _Progress, host: Host, desired: Desired, timeout: int) -> _Failure:
    parts, reasons = [], []
    for inst_id, (command, err) in sorted(progress.failed.items()):
        inst = host.instance(inst_id)
        want = desired.state_of(inst_id)
        label = inst.label if inst else "SMTP virtual server %d" % inst_id
        text = "%s did not reach %s within %d s: last state %s" % (
            label, want, timeout, inst.state if inst else "unknown")
        error = err or (inst.error if inst else None)
        text += "; %s" % error.describe() if error else "; the %s command was accepted but had no effect" % command
        parts.append(text)
        if error is not None and error.access_denied:
            reasons.append("access_denied")
        elif command in _STARTING_COMMANDS:
            reasons.append("instance_start_failed")
        else:
            reasons.append("instance_command_failed")
    return _Failure(reasons[0], "; ".join(parts))


def _service_failure(op: str, service: str, err: WinError | None) -> _Failure:
    detail = err.describe() if err else "no error reported"
    if err is not None and (err.hresult or "").lower() == SERVICE_DISABLED_HRESULT:
        if service == "IISADMIN":
            return _Failure(IISADMIN_DISABLED, "the IISADMIN service could not be started because it is disabled "
                            "(%s); SMTPSVC depends on it: set its start mode to manual or auto" % detail)
        return _Failure("service_disabled", "the SMTPSVC service could not be started because it is "
                        "disabled (%s); set service_start_mode" % detail)
    if err is not None and err.access_denied:
        return _Failure("access_denied", "the %s service step %s was denied (%s)" % (service, op, detail))
    return _Failure("service_start_failed", "the %s service step %s failed: %s" % (service, op, detail))


def _still(service: Service, timeout: int) -> str:
    """A service that did not get where it was going, a pending one named with Windows' word for its state."""
    raw = SERVICE_PENDING_NAMES.get(service.state or "")
    state = "%s (%s)" % (service.state, raw) if raw else str(service.state)
    return "the %s service is still %s after %d s" % (service.name, state, timeout)


def _timeout_failure(host: Host, desired: Desired, timeout: int, rounds: int, max_rounds: int) -> _Failure:
    if host.smtp.state in SERVICE_TRANSITIONAL:
        # No ServerState can be read while the service starts or stops: the
        # service, not its instances, is what did not settle.
        late = [_still(host.smtp, timeout) + ": no SMTP virtual server can be controlled until it settles"]
        if rounds >= max_rounds:
            late.append("gave up after %d rounds" % rounds)
        return _Failure("timeout", "; ".join(late))
    late = []
    for inst_id, want in desired.targets:
        inst = host.instance(inst_id)
        if inst is not None and inst.state != want:
            text = "%s did not reach %s within %d s: last state %s" % (inst.label, want, timeout, inst.state)
            if inst.error:
                text += "; %s" % inst.error.describe()
            late.append(text)
    if not late:
        late.append("the SMTPSVC service did not settle within %d s: last state %s" % (timeout, host.smtp.state))
    if rounds >= max_rounds:
        late.append("gave up after %d rounds" % rounds)
    return _Failure("timeout", "; ".join(late))


def _unread_refusal(host: Host, args: EnforceArgs) -> _Failure | None:
    """Why a run could not bring up a host whose IISADMIN does not run, decided before anything is sent.

    Something is meant to run (else nothing needs IISADMIN): IISADMIN must
    start, which it cannot when disabled or paused, and SMTPSVC after it,
    which it cannot when it stays disabled. Refusing here, in both modes,
    keeps the prediction exact and a doomed run from starting IISADMIN.
    """
    iisadmin = host.iisadmin
    if iisadmin.start_mode == "disabled":
        return _Failure(IISADMIN_DISABLED, availability_findings(host)[0]["message"])
    if iisadmin.state != "stopped" and iisadmin.state not in SERVICE_TRANSITIONAL:
        return _Failure(IISADMIN_NOT_RUNNING, availability_findings(host)[0]["message"])
    if (args.service_start_mode or host.smtp.start_mode) == "disabled":
        return _Failure("service_disabled", SERVICE_DISABLED_MSG)
    return None


def _unread_result(args: EnforceArgs, host: Host, desired: Desired) -> dict[str, Any]:
    """Check mode on a host whose virtual servers cannot be read until IISADMIN runs, which a run starts.

    SMTPSVC cannot run without IISADMIN, so a run starts it too (unless it is
    already starting); which instances then need a command is known only
    once they can be read.
    """
    mode = args.service_start_mode or host.smtp.start_mode
    after = replace(host, smtp=replace(host.smtp, state="running", start_mode=mode))
    changed = host.iisadmin.state in ("stopped", "stopping") or host.smtp.state != "starting" or \
        mode != host.smtp.start_mode
    findings = host_findings(host, desired)
    result: dict[str, Any] = {
        "changed": changed, "state": args.state, "service": {**_service_block(host, after), "changed": changed},
        "virtual_servers": [], "operations": [], "compliant": is_compliant(findings), "findings": findings,
        "diff": _diff(host, after, []),
    }
    if args.fail_on_drift:
        return _fail(result, "drift", "the SMTP virtual servers of %s could not be read: %s"
                     % (host.computer_name or "the host", findings[0]["message"]))
    return result


def _out_of_range(host: Host, desired: Desired, ids: frozenset[int]) -> _Failure | None:
    """The targeted instances no request can name, when one of them is not as wanted."""
    late = []
    for inst_id in sorted(ids):
        inst = host.instance(inst_id)
        want = desired.state_of(inst_id)
        if inst is not None and inst.state != want and not (want == "stopped" and host.down(inst)):
            late.append("%s is %s, desired %s: its id is above %d, which no request to the agent can carry "
                        "(the other instances were managed)" % (inst.label, inst.state, want, MAX_CONTROLLABLE_ID))
    return _Failure(INSTANCE_ID_OUT_OF_RANGE, "; ".join(late)) if late else None


def _readable(call: Call, clock: Clock, deadline: float, args: EnforceArgs, host: Host, progress: _Progress,
              reset: Reset | None) -> Host:
    """Start IISADMIN, or wait out its pending state, until the virtual servers can be read.

    The agent starts nothing to look (binding the metabase would start
    IISADMIN), so a stopped IISADMIN leaves them unread. SMTPSVC cannot run
    without it anyway, and IISADMIN alone brings up no virtual server.
    """
    rounds = 0
    while host.iisadmin_not_running:
        iisadmin = host.iisadmin
        remaining = deadline - clock()
        if remaining <= 0 or rounds >= MAX_ROUNDS:
            raise _Failure("timeout", _still(iisadmin, args.timeout) + ": the SMTP virtual servers cannot be read "
                           "until it runs")
        if iisadmin.state == "stopped":
            step = start_iisadmin_step()
            planned_from = host
            response, host = _checked_call(call, apply_request((step,), remaining, args.poll_ms, _IISADMIN_WATCH))
            failed = _record(progress, response, planned_from, host, (step,))
            if failed is not None:
                raise _service_failure(*failed)
        elif iisadmin.state in SERVICE_TRANSITIONAL:
            response, host = _wait_call(call, clock, deadline, args.poll_ms, _IISADMIN_WATCH, reset)
        else:
            raise _Failure(IISADMIN_NOT_RUNNING, availability_findings(host)[0]["message"])
        rounds += 1
        _check_available(host)
    return host


def _observe_readable(call: Call, clock: Clock, deadline: float, args: EnforceArgs, check_mode: bool,
                      progress: _Progress, reset: Reset | None) -> tuple[Host, Desired] | dict[str, Any]:
    """The first observation and the desired state it is judged by, or (check mode) the unread host's result.

    A host whose IISADMIN does not run shows no instances. When none is
    meant to run that is as it should be, and the host is planned as it is
    (a start mode may still be set); otherwise IISADMIN is started first.
    """
    host = _checked_call(call, observe_request())[1]
    _check_readable(host)
    if not host.iisadmin_not_running:
        _check_available(host)
        return host, desired_for(host, args)
    unread = unread_desired(args)
    blocking = blocking_findings(host, unread)
    beyond = [f for f in blocking if f["rule"] not in IISADMIN_RULES]
    if beyond:
        # The SMTP Server feature is missing (or gone from the OS): IISADMIN is not the question.
        raise _Failure(beyond[0]["rule"], beyond[0]["message"])
    if not blocking:
        return host, unread
    refusal = _unread_refusal(host, args)
    if refusal is not None:
        raise refusal
    if check_mode:
        return _unread_result(args, host, unread)
    host = _readable(call, clock, deadline, args, host, progress, reset)
    return host, desired_for(host, args)


def enforce(call: Call, clock: Clock, args: EnforceArgs, check_mode: bool = False,
            reset: Reset | None = None) -> dict[str, Any]:
    """Result of virtual_server: converge the host, or in check mode predict exactly what would change."""
    deadline = clock() + args.timeout
    progress = _Progress()
    try:
        found = _observe_readable(call, clock, deadline, args, check_mode, progress, reset)
    except _Failure as exc:
        early: dict[str, Any] = {"changed": any(op.get("ok") for op in progress.operations), "state": args.state}
        if progress.operations:
            early["operations"] = progress.operations
        return _fail(early, exc.reason, exc.msg)
    except SelectionError as exc:
        return _fail({"changed": any(op.get("ok") for op in progress.operations), "state": args.state},
                     "invalid_instances", str(exc))
    if isinstance(found, dict):
        return found
    before, desired = found
    out_of_range = uncontrollable(before, desired)

    current = plan(before, desired, out_of_range)
    if check_mode or current.blocked:
        actions = {k: list(v) for k, v in current.instance_actions.items()}
        result = _enforce_result(args, desired, before, current.predicted, actions, [], current.changes)
        if current.blocked:
            # IISADMIN may have been started to read the instances: that was done.
            result.update(changed=any(op.get("ok") for op in progress.operations),
                          operations=progress.operations)
            return _fail(result, current.blocked, current.blocked_msg)
        refused = _out_of_range(before, desired, out_of_range)
        if refused is not None:
            return _fail(result, refused.reason, refused.msg)
        if args.fail_on_drift and not result["compliant"]:
            why = "a run would make changes" if current.changes else result["findings"][0]["message"]
            return _fail(result, "drift", "%s is not in the desired state; %s" % (before.computer_name or "the host",
                                                                                  why))
        return result
    if current.changes and before.is_admin is False:
        return _fail(_enforce_result(args, desired, before, before, {}, []), "access_denied",
                     "changes are needed but the connection user is not a local administrator")

    host = before
    rounds = 0
    max_rounds = MAX_ROUNDS + len(current.steps) // MAX_STEPS_PER_APPLY
    failure: _Failure | None = None
    try:
        while not current.converged:
            remaining = deadline - clock()
            if remaining <= 0 or rounds >= max_rounds:
                raise _timeout_failure(host, desired, args.timeout, rounds, max_rounds)
            batch = current.steps[:MAX_STEPS_PER_APPLY]
            planned_from = host
            watch = current.watch
            if batch:
                response, host = _checked_call(call, apply_request(batch, remaining, args.poll_ms, watch))
            else:
                response, host = _wait_call(call, clock, deadline, args.poll_ms, watch, reset)
            rounds += 1
            service_failed = _record(progress, response, planned_from, host, batch)
            if service_failed is not None:
                raise _service_failure(*service_failed)
            current = plan(host, desired, frozenset(progress.failed) | out_of_range)
            _stalled(progress, current)
            if any(step.get("id") in progress.failed for step in current.steps):
                current = plan(host, desired, frozenset(progress.failed) | out_of_range)
            if current.blocked:
                raise _Failure(current.blocked, current.blocked_msg)
        if progress.failed:
            failure = _instance_failure(progress, host, desired, args.timeout)
        failure = failure or _out_of_range(host, desired, out_of_range)
    except _Failure as exc:
        failure = exc
    result = _enforce_result(args, desired, before, host, progress.sent, progress.operations)
    if failure is not None:
        return _fail(result, failure.reason, failure.msg)
    return result
