# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs and the checks an argument spec cannot express.

Internal to mailops.iis_smtp. Shared by both action plugins so that a bad
`instances` or `instance_states` value is refused with the same words, before
anything is sent to a host. Pure functions; errors are ArgumentError with a
message that names the option and the offending value.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._planner import DESIRED_STATES, RUNNING_STATES, START_MODES

Selector = int | str
MAX_TIMEOUT = 3600
ROLE = "mailops.iis_smtp.virtual_servers"
VARIABLE_PREFIX = "iis_smtp_"
# Variables of this collection's playbooks (playbooks/*.yml), which a role
# task sees too; the role's own are its defaults.
PLAYBOOK_VARIABLES = frozenset({
    "iis_smtp_target", "iis_smtp_serial", "iis_smtp_max_fail_percentage",
    "iis_smtp_report_slices", "iis_smtp_report_dest", "iis_smtp_report_prune", "iis_smtp_fail_on_problems",
    "iis_smtp_merged",
})
# Variables the role no longer has, and what to do instead.
RETIRED_VARIABLES = {
    "iis_smtp_audit": "the role knows check mode by itself (--check or check_mode: true); remove it",
}
# Connection settings under which pywinrm and pypsrp authenticate with HTTP
# Basic (winrm's `plaintext` and `ssl` are Basic too), whose header requests
# encodes as Latin-1.
_BASIC_AUTH = {"winrm": frozenset({"basic", "plaintext", "ssl"}), "psrp": frozenset({"basic"})}


class ArgumentError(ValueError):
    """A task argument that cannot be used as given; `reason` is the result's reason code."""

    def __init__(self, message: str, reason: str = "invalid_instances") -> None:
        super().__init__(message)
        self.reason = reason


# The desired state, which virtual_server enforces and virtual_server_info judges by.
INFO_SPEC: dict[str, Any] = {
    "instances": {"type": "list", "elements": "raw"},
    "state": {"type": "str", "choices": list(DESIRED_STATES), "default": "started"},
    "instance_states": {"type": "dict"},
    "service_start_mode": {"type": "str", "choices": list(START_MODES)},
}

ENFORCE_SPEC: dict[str, Any] = {
    **INFO_SPEC,
    "timeout": {"type": "int", "default": 60},
    "fail_on_drift": {"type": "bool", "default": False},
}


def selector(value: Any, where: str) -> Selector:
    """One instance id (int >= 1) or name (non-empty string)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ArgumentError("%s: %r is neither an instance id (integer) nor a name (string)" % (where, value))
    if isinstance(value, int):
        if value < 1:
            raise ArgumentError("%s: instance id %d is invalid; ids start at 1" % (where, value))
        return value
    if not value.strip():
        raise ArgumentError("%s: an instance name must not be empty" % where)
    return value


def selectors(values: list[Any] | None) -> tuple[Selector, ...] | None:
    """The validated `instances` list; None means every instance."""
    if values is None:
        return None
    seen: set[Selector] = set()
    result = []
    for index, value in enumerate(values):
        sel = selector(value, "instances[%d]" % index)
        if sel in seen:
            raise ArgumentError("instances: %r is listed more than once" % (sel,))
        seen.add(sel)
        result.append(sel)
    if not result:
        raise ArgumentError("instances: the list is empty; omit it to target every instance")
    return tuple(result)


def instance_states(value: dict[Any, Any] | None) -> tuple[tuple[Selector, str], ...]:
    """The validated `instance_states` mapping, in the order given."""
    if not value:
        return ()
    result = []
    for key, state in value.items():
        sel = selector(key, "instance_states key %r" % (key,))
        if state not in DESIRED_STATES:
            raise ArgumentError("instance_states[%r]: %r is not one of %s"
                                % (key, state, ", ".join(DESIRED_STATES)), "invalid_argument")
        result.append((sel, str(state)))
    return tuple(result)


def desired(params: dict[str, Any]) -> dict[str, Any]:
    """The validated desired-state options of either action, refused when they contradict each other."""
    states = instance_states(params["instance_states"])
    mode = params["service_start_mode"]
    if mode == "disabled":
        running = [("state", params["state"])] if params["state"] in RUNNING_STATES else []
        running += [("instance_states[%r]" % (sel,), state) for sel, state in states if state in RUNNING_STATES]
        if running:
            where, state = running[0]
            raise ArgumentError("%s: %s contradicts service_start_mode: disabled: a disabled SMTPSVC cannot run, "
                                "so no virtual server can be %s; ask for stopped, or another start mode"
                                % (where, state, state), "invalid_argument")
    return {"state": params["state"], "instances": selectors(params["instances"]), "instance_states": states,
            "service_start_mode": mode}


def timeout(value: int) -> int:
    # The int type takes a boolean as it is (bool is an int): `timeout: true` would mean 1 second.
    if isinstance(value, bool):
        raise ArgumentError("timeout: %r is not a number of seconds" % value, "invalid_argument")
    if not 1 <= value <= MAX_TIMEOUT:
        raise ArgumentError("timeout: %d is out of range; use 1 to %d seconds" % (value, MAX_TIMEOUT),
                            "invalid_argument")
    return value


# The role's one task takes its arguments from these variables (task argument:
# role variable). Its defaults mean "not given": an empty list or mapping,
# and `ignore` for the start mode.
ROLE_ARGUMENTS = {
    "state": "iis_smtp_state",
    "instances": "iis_smtp_instances",
    "instance_states": "iis_smtp_instance_states",
    "service_start_mode": "iis_smtp_service_start_mode",
    "timeout": "iis_smtp_timeout",
    "fail_on_drift": "iis_smtp_fail_on_drift",
}


def role_arguments(variables: Mapping[str, Any], template: Callable[[Any], Any]) -> dict[str, Any]:
    """The role task's arguments from the role's variables, each templated by `template`.

    What the role's task would pass with one Jinja expression per argument,
    without compiling six templates in every worker for every host
    (docs/fleet.md): a variable the task does not see, an empty list or
    mapping and a start mode of `ignore` are left out, as `omit` would.
    """
    args: dict[str, Any] = {}
    for argument, name in ROLE_ARGUMENTS.items():
        if name not in variables:
            continue
        value = template(variables[name])
        if argument in ("instances", "instance_states") and hasattr(value, "__len__") and len(value) == 0:
            continue
        if argument == "service_start_mode" and value == "ignore":
            continue
        args[argument] = value
    return args


def role_variable_errors(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """Why each `iis_smtp_*` name the role sees is not one of its variables (or the collection's playbooks').

    The prefix is this collection's: a name under it that the role does not
    know is a typo (or a variable the role no longer has), which Ansible
    would otherwise ignore without a word, leaving the role on its default.
    """
    variables = sorted(set(known) | PLAYBOOK_VARIABLES)
    errors = []
    for name in sorted(n for n in names if n.startswith(VARIABLE_PREFIX) and n not in variables):
        if name in RETIRED_VARIABLES:
            errors.append("%s is no longer a variable of the role %s: %s" % (name, ROLE, RETIRED_VARIABLES[name]))
            continue
        close = difflib.get_close_matches(name, variables, n=1, cutoff=0.75)
        hint = "; did you mean %s?" % close[0] if close else "; its variables are %s" % ", ".join(variables)
        errors.append("%s is not a variable of the role %s%s" % (name, ROLE, hint))
    return errors


def unencodable_credentials(connection: str, auth: Iterable[str], user: Any, password: Any) -> str | None:
    """Why the connection cannot send these credentials, or None: HTTP Basic carries Latin-1 text only."""
    methods = {str(method).lower() for method in auth}
    if not methods or not methods <= _BASIC_AUTH.get(connection, frozenset()):
        return None
    for what, value in (("user name", user), ("password", password)):
        try:
            str(value or "").encode("latin-1")
        except UnicodeEncodeError:
            # Which character is not said: it would tell part of the secret.
            return ("the %s cannot be sent with Basic authentication, which carries Latin-1 text only, and it "
                    "holds a character outside Latin-1: use NTLM, Kerberos or CredSSP, or Latin-1 credentials"
                    % what)
    return None
