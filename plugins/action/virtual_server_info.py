# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for mailops.iis_smtp.virtual_server_info.

Glue only: validate the desired-state options (the same as virtual_server's,
so that `compliant` means the same in both results), refuse what must not
reach the host, observe once through the transport and let the engine shape
the result. Read-only, so check mode changes nothing.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _action, _args, _engine, _transport


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def _desired_args(self) -> _engine.DesiredArgs | dict[str, Any]:
        validated = ArgumentSpecValidator(_args.INFO_SPEC).validate(dict(self._task.args))
        if validated.error_messages:
            return _engine.failure("invalid_argument", "Invalid arguments: " + "; ".join(validated.error_messages))
        try:
            return _engine.DesiredArgs(**_args.desired(validated.validated_parameters))
        except _args.ArgumentError as exc:
            return _engine.failure(exc.reason, "Invalid arguments: %s" % exc)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._desired_args()
        if isinstance(args, dict):
            result.update(args)
            return result
        refused = _action.preflight(self._task, self._connection, bool(self._play_context.become), task_vars)
        if refused is not None:
            result.update(refused)
            return result
        result.update(_engine.info(_transport.Channel(self._connection), args))
        return result


def main() -> None:
    """Check task arguments against the action's spec, for ansible-lint.

    ansible-lint's args rule loads an action-backed module's action plugin
    and runs its main() with a stand-in AnsibleModule; a file without one is
    skipped, and a wrong value in a user's playbook would go unreported.
    Ansible itself never calls it.
    """
    AnsibleModule(argument_spec=_args.INFO_SPEC, supports_check_mode=True)
