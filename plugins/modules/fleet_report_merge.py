# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation and argument spec of the mailops.iis_smtp.fleet_report_merge action plugin.

The action plugin does the work on the controller; this module never runs on a host.
"""

DOCUMENTATION = r"""
---
module: fleet_report_merge
short_description: Merge the fleet reports of job slices into one fleet report
description:
  - Reads the C(report.json) files that the C(mailops.iis_smtp.fleet_report) callback wrote in several runs over
    disjoint parts of a fleet, such as the slices of an AWX or Automation Platform sliced job, and writes one
    C(report.json), C(report.junit.xml) and C(report.html) with every host once and the counts of the whole fleet.
  - The merged report has the format of the callback's, plus C(slices), which names each report merged, its
    playbook, its number of hosts and when it ran.
  - A host that is in two of the reports fails the task without writing anything, because such reports are not
    slices of one run (two runs, or one slice given twice).
  - Works on the controller's files and never contacts the host; run it on C(localhost).
version_added: 1.0.0
author:
  - mailops maintainers (@mailops)
options:
  src:
    description:
      - The reports to merge, each a C(report.json) file, a directory that holds one, or a glob pattern of
        either, for example V(/var/lib/iis_smtp/slices/*).
      - Every name and every match must be a report; a pattern that matches none fails the task.
      - The merged report in O(dest) is never read as a source, so a pattern may match it.
    type: list
    elements: path
    required: true
  dest:
    description: Directory the merged report files are written to; created if missing.
    type: path
    required: true
  remove_src:
    description:
      - After writing the merged report, delete the merged reports' C(report.json), C(report.junit.xml) and
        C(report.html), and each of their directories that is empty then, so the next run's slices start clean.
      - Nothing else is deleted. Nothing is deleted when the merge fails.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details: All of it runs on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Merges and reports whether the files would change, and writes and deletes nothing.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details: The controller's files; the target host is not used.
notes:
  - Unchanged reports merged again give the same files, and the task reports no change.
seealso:
  - plugin: mailops.iis_smtp.fleet_report
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Merge the reports of the slices into one fleet report
  mailops.iis_smtp.fleet_report_merge:
    src:
      - /var/lib/iis_smtp/slices/*
    dest: /var/lib/iis_smtp/fleet
  delegate_to: localhost
  run_once: true
  register: fleet

- name: Fail when a host of the fleet is not compliant
  ansible.builtin.assert:
    that: fleet.ok
    fail_msg: "{{ fleet.summary.hosts_by_status }}"
"""

RETURN = r"""
dest:
  description: The directory the merged report is in.
  returned: success
  type: str
  sample: /var/lib/iis_smtp/fleet
removed:
  description: The files and directories O(remove_src) deleted.
  returned: success
  type: list
  elements: str
  sample: [/var/lib/iis_smtp/slices/101/report.json, /var/lib/iis_smtp/slices/101/report.junit.xml]
reports:
  description: The C(report.json) files merged, in the order read.
  returned: success
  type: list
  elements: str
  sample: [/var/lib/iis_smtp/slices/101/report.json, /var/lib/iis_smtp/slices/102/report.json]
hosts:
  description: The number of hosts in the merged report.
  returned: success
  type: int
  sample: 40
summary:
  description: The merged report's C(summary), counted over every host of every slice.
  returned: success
  type: dict
  contains:
    hosts:
      description: The number of hosts.
      type: int
      sample: 40
    hosts_by_status:
      description: Hosts by status, V(compliant), V(remediated), V(non_compliant), V(failed), V(unreachable),
        V(skipped).
      type: dict
      sample: {compliant: 37, remediated: 0, non_compliant: 2, failed: 0, unreachable: 1, skipped: 0}
    instances:
      description: The number of virtual servers.
      type: int
      sample: 52
    instances_by_status:
      description: Virtual servers by status, V(compliant), V(remediated), V(non_compliant), V(failed).
      type: dict
      sample: {compliant: 50, remediated: 0, non_compliant: 2, failed: 0}
    instances_by_state:
      description: Virtual servers by state after the run.
      type: dict
      sample: {started: 50, stopped: 2}
    ok:
      description: Whether no host is non-compliant, failed or unreachable.
      type: bool
      sample: false
ok:
  description: Whether no host of the merged report is non-compliant, failed or unreachable; RV(summary.ok).
  returned: success
  type: bool
  sample: false
msg:
  description: Why the reports could not be merged, naming the report.
  returned: on failure
  type: str
  sample: "host relay07 is in /var/lib/iis_smtp/slices/101/report.json and in /var/lib/iis_smtp/slices/104/report.json:
    the reports are not slices of one run"
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    # The action plugin of the same name does the work on the controller.
    # This spec is what ansible-test's validate-modules compares with the
    # documentation; it must be the action's own (tests/ecosystem checks).
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "list", "elements": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "remove_src": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="mailops.iis_smtp.fleet_report_merge runs as an action plugin on the controller; "
                         "this module file only documents it")


if __name__ == "__main__":
    main()
