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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._findings import availability_findings, host_findings, is_compliant
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
from ._planner import Desired, Plan, plan
from ._protocol import (
    AGENT_OUTPUT_INVALID,
    IISADMIN_DISABLED,
    IISADMIN_NOT_RUNNING,
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
class EnforceArgs:
    state: str = "started"
    instances: tuple[Selector, ...] | None = None
    instance_states: tuple[tuple[Selector, str], ...] = ()
    service_start_mode: str | None = None
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
    if not matches and name.strip().isdigit():
        return resolve(host, int(name))
    if not matches:
        raise SelectionError("no SMTP virtual server is named %r on this host; it has: %s" % (name, known))
    if len(matches) > 1:
        raise SelectionError("%r names %d SMTP virtual servers (ids %s); use ids instead"
                             % (name, len(matches), ", ".join(str(i.id) for i in matches)))
    return matches[0].id


def desired_for(host: Host, args: EnforceArgs) -> Desired:
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
    return Desired(targets=tuple(sorted(targets.items())), start_mode=args.service_start_mode)


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


def _compliant(after: Host, desired: Desired) -> bool:
    if desired.start_mode is not None and after.smtp.start_mode != desired.start_mode:
        return False
    for inst_id, want in desired.targets:
        inst = after.instance(inst_id)
        if inst is None:
            return False
        if inst.state != want and not (want == "stopped" and after.down(inst)):
            return False
        # A paused service shows every instance as paused, which is what a
        # paused target asks for; the planner sends nothing then either.
        if want == "started" and after.smtp.state != "running":
            return False
    return True


def _enforce_result(args: EnforceArgs, desired: Desired, before: Host, after: Host,
                    actions: dict[int, list[str]], operations: list[dict[str, Any]],
                    predicted_change: bool | None = None) -> dict[str, Any]:
    """The virtual_server result; `predicted_change` is given in check mode, where nothing was sent.

    Something changed only if this task made it change: an instance that
    finishes a transition on its own while we wait is not a change of ours.
    """
    acted = any(op.get("ok") for op in operations) if predicted_change is None else predicted_change
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
    return {"changed": acted, "state": args.state, "service": service, "virtual_servers": servers,
            "operations": operations, "compliant": _compliant(after, desired), "findings": host_findings(after),
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

def info(call: Call, selectors: tuple[Selector, ...] | None = None) -> dict[str, Any]:
    """Result of virtual_server_info: read-only, fails only when the host cannot be read."""
    try:
        host = _checked_call(call, observe_request())[1]
        _check_readable(host)
        ids = None if selectors is None else {resolve(host, s) for s in selectors}
    except _Failure as exc:
        return _fail({"changed": False}, exc.reason, exc.msg)
    except SelectionError as exc:
        return _fail({"changed": False}, "invalid_instances", str(exc))
    findings = [f for f in host_findings(host) if ids is None or f["instance"] is None or f["instance"] in ids]
    servers = [i.as_dict() for i in host.instances if ids is None or i.id in ids]
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


def _unread_result(args: EnforceArgs, host: Host) -> dict[str, Any]:
    """Check mode on a host whose virtual servers were not read: a run starts IISADMIN first; what follows is unknown."""
    result: dict[str, Any] = {
        "changed": host.iisadmin.state == "stopped", "state": args.state, "service": _service_block(host, host),
        "virtual_servers": [], "operations": [], "compliant": False, "findings": host_findings(host),
        "diff": _diff(host, host, []),
    }
    if args.fail_on_drift:
        return _fail(result, "drift", "the SMTP virtual servers of %s could not be read: %s"
                     % (host.computer_name or "the host", result["findings"][0]["message"]))
    return result


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


def enforce(call: Call, clock: Clock, args: EnforceArgs, check_mode: bool = False,
            reset: Reset | None = None) -> dict[str, Any]:
    """Result of virtual_server: converge the host, or in check mode predict exactly what would change."""
    deadline = clock() + args.timeout
    progress = _Progress()
    try:
        before = _checked_call(call, observe_request())[1]
        _check_available(before)
        if before.iisadmin_not_running and check_mode:
            return _unread_result(args, before)
        before = _readable(call, clock, deadline, args, before, progress, reset)
    except _Failure as exc:
        early: dict[str, Any] = {"changed": any(op.get("ok") for op in progress.operations), "state": args.state}
        if progress.operations:
            early["operations"] = progress.operations
        return _fail(early, exc.reason, exc.msg)
    try:
        desired = desired_for(before, args)
    except SelectionError as exc:
        return _fail({"changed": False, "state": args.state}, "invalid_instances", str(exc))

    current = plan(before, desired)
    if check_mode or current.blocked:
        actions = {k: list(v) for k, v in current.instance_actions.items()}
        result = _enforce_result(args, desired, before, current.predicted, actions, [], current.changes)
        if current.blocked:
            result["changed"] = False
            return _fail(result, current.blocked, current.blocked_msg)
        if args.fail_on_drift and current.changes:
            return _fail(result, "drift", "%s is not in the desired state; a run would make changes"
                         % (before.computer_name or "the host"))
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
            current = plan(host, desired, frozenset(progress.failed))
            _stalled(progress, current)
            if any(step.get("id") in progress.failed for step in current.steps):
                current = plan(host, desired, frozenset(progress.failed))
            if current.blocked:
                raise _Failure(current.blocked, current.blocked_msg)
        if progress.failed:
            failure = _instance_failure(progress, host, desired, args.timeout)
    except _Failure as exc:
        failure = exc
    result = _enforce_result(args, desired, before, host, progress.sent, progress.operations)
    if failure is not None:
        return _fail(result, failure.reason, failure.msg)
    return result
