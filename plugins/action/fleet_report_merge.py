# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for mailops.iis_smtp.fleet_report_merge.

Glue only: validate the arguments, then let plugins/plugin_utils/_merge.py
find, merge and write the reports. It works on the controller's files and
never uses the host's connection.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _merge


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        validated = ArgumentSpecValidator(_merge.MERGE_SPEC).validate(dict(self._task.args))
        if validated.error_messages:
            result.update(failed=True, changed=False, msg="Invalid arguments: " + "; ".join(validated.error_messages))
            return result
        dest = validated.validated_parameters["dest"]
        try:
            sources = _merge.report_files(validated.validated_parameters["src"], dest)
            report = _merge.merge([(path, _merge.load(path)) for path in sources])
        except _merge.MergeError as exc:
            result.update(failed=True, changed=False, msg=str(exc))
            return result
        files = _merge.render(report)
        changed = not _merge.unchanged(dest, files)
        removed: list[str] = []
        if not self._task.check_mode:
            if changed:
                _merge.write(dest, files)
            # Only once the merged report is written: a failed merge keeps its sources.
            if validated.validated_parameters["remove_src"]:
                removed = _merge.remove(sources)
        result.update(changed=changed or bool(removed), dest=dest, reports=sources, removed=removed,
                      hosts=len(report["hosts"]), summary=report["summary"], ok=report["summary"]["ok"])
        return result


def main() -> None:
    """Check task arguments against the action's spec, for ansible-lint.

    ansible-lint's args rule loads an action-backed module's action plugin
    and runs its main() with a stand-in AnsibleModule; a file without one is
    skipped, and a wrong value in a user's playbook would go unreported.
    Ansible itself never calls it.
    """
    AnsibleModule(argument_spec=_merge.MERGE_SPEC, supports_check_mode=True)
