# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for mailops.iis_smtp.virtual_server_info.

Glue only: validate `instances`, observe once through the transport and let
the engine shape the result. Read-only, so check mode changes nothing.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _args, _engine, _protocol, _transport


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        validated = ArgumentSpecValidator(_args.INFO_SPEC).validate(dict(self._task.args))
        if validated.error_messages:
            result.update(_engine.failure("invalid_argument",
                                          "Invalid arguments: " + "; ".join(validated.error_messages)))
            return result
        try:
            selectors = _args.selectors(validated.validated_parameters["instances"])
        except _args.ArgumentError as exc:
            result.update(_engine.failure(exc.reason, "Invalid arguments: %s" % exc))
            return result
        try:
            _transport.check_connection(self._connection, become=bool(self._play_context.become))
        except _protocol.AgentError as exc:
            result.update(_engine.failure(exc.code, exc.message))
            return result
        result.update(_engine.info(_transport.Channel(self._connection), selectors))
        return result


def main() -> None:
    """Check task arguments against the action's spec, for ansible-lint.

    ansible-lint's args rule loads an action-backed module's action plugin
    and runs its main() with a stand-in AnsibleModule; a file without one is
    skipped, and a wrong value in a user's playbook would go unreported.
    Ansible itself never calls it.
    """
    AnsibleModule(argument_spec=_args.INFO_SPEC, supports_check_mode=True)
