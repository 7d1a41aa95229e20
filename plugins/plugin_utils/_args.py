# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs and the checks an argument spec cannot express.

Internal to mailops.iis_smtp. Shared by both action plugins so that a bad
`instances` or `instance_states` value is refused with the same words, before
anything is sent to a host. Pure functions; errors are ArgumentError with a
message that names the option and the offending value.
"""

from __future__ import annotations

from typing import Any

from ._planner import DESIRED_STATES, START_MODES

Selector = int | str
MAX_TIMEOUT = 3600


class ArgumentError(ValueError):
    """A task argument that cannot be used as given; `reason` is the result's reason code."""

    def __init__(self, message: str, reason: str = "invalid_instances") -> None:
        super().__init__(message)
        self.reason = reason


INFO_SPEC: dict[str, Any] = {
    "instances": {"type": "list", "elements": "raw"},
}

ENFORCE_SPEC: dict[str, Any] = {
    "instances": {"type": "list", "elements": "raw"},
    "state": {"type": "str", "choices": list(DESIRED_STATES), "default": "started"},
    "instance_states": {"type": "dict"},
    "service_start_mode": {"type": "str", "choices": list(START_MODES)},
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


def timeout(value: int) -> int:
    if not 1 <= value <= MAX_TIMEOUT:
        raise ArgumentError("timeout: %d is out of range; use 1 to %d seconds" % (value, MAX_TIMEOUT),
                            "invalid_argument")
    return value
