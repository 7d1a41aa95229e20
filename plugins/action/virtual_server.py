# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for mailops.iis_smtp.virtual_server.

Glue only: validate the task arguments (and, inside the collection's role,
the role's variables), refuse what must not reach the host, then hand the
engine a call function bound to this host's connection. Check mode comes
from the task (``--check`` or a play or task ``check_mode: true``), so the
role needs no flag for it. Everything else happens in
plugins/plugin_utils/_engine.py.
"""

from __future__ import annotations

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _action, _args, _engine, _transport


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def _enforce_args(self, task_vars: dict[str, Any]) -> _engine.EnforceArgs | dict[str, Any]:
        try:
            given = _action.role_arguments(self._task, task_vars, self._templar)
        except _args.ArgumentError as exc:
            return _engine.failure(exc.reason, str(exc))
        validated = ArgumentSpecValidator(_args.ENFORCE_SPEC).validate(given)
        if validated.error_messages:
            return _engine.failure("invalid_argument", "Invalid arguments: " + "; ".join(validated.error_messages))
        params = validated.validated_parameters
        try:
            return _engine.EnforceArgs(**_args.desired(params), timeout=_args.timeout(params["timeout"]),
                                       fail_on_drift=params["fail_on_drift"])
        except _args.ArgumentError as exc:
            return _engine.failure(exc.reason, "Invalid arguments: %s" % exc)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = _action.role_variables(self._task, task_vars) or self._enforce_args(task_vars)
        if isinstance(args, dict):
            result.update(args)
            return result
        refused = _action.preflight(self._task, self._connection, bool(self._play_context.become), task_vars)
        if refused is not None:
            result.update(refused)
            return result
        channel = _transport.Channel(self._connection)
        result.update(_engine.enforce(channel, time.monotonic, args, check_mode=bool(self._task.check_mode),
                                      reset=channel.reset))
        return result


def main() -> None:
    """Check task arguments against the action's spec, for ansible-lint.

    ansible-lint's args rule loads an action-backed module's action plugin
    and runs its main() with a stand-in AnsibleModule; a file without one is
    skipped, and a wrong value in a user's playbook would go unreported.
    Ansible itself never calls it.
    """
    AnsibleModule(argument_spec=_args.ENFORCE_SPEC, supports_check_mode=True)
