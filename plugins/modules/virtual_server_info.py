# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation and argument spec of the mailops.iis_smtp.virtual_server_info action plugin.

The action plugin does the work on the controller; this module never runs on a host.
"""

DOCUMENTATION = r"""
---
module: virtual_server_info
short_description: Report the state of IIS SMTP virtual servers and what is wrong with them
description:
  - Reads the C(SMTPSVC) and C(IISADMIN) services and the C(ServerState) of every SMTP
    virtual server (metabase C(IIS://localhost/SMTPSVC/N)) of a Windows host, with one
    read-only PowerShell command.
  - Adds findings in the manner of the Exchange Server Analyzer SMTP rules (instance stopped
    or paused, service disabled or not running) and for hosts where SMTP cannot run (feature
    missing, Windows Server 2025, IIS 6 metabase compatibility missing).
  - Findings and RV(compliant) judge the host against the desired state given by O(state),
    O(instances), O(instance_states) and O(service_start_mode), the options of
    M(mailops.iis_smtp.virtual_server), so both modules agree on what is compliant. An
    instance meant to stay stopped is no finding when it is stopped.
  - Such hosts do not fail the task; it fails only when the host cannot be read.
version_added: 1.0.0
author:
  - mailops maintainers (@mailops)
options:
  instances:
    description:
      - "Restrict RV(virtual_servers) and the instance findings to these virtual servers, by id
        or name (C(ServerComment) or V([SMTP Virtual Server #N])). Only ASCII digits make an id."
      - A name that matches no instance or several instances fails the task.
    type: list
    elements: raw
  state:
    description:
      - Desired state of the virtual servers read, as in M(mailops.iis_smtp.virtual_server).
    type: str
    choices: [started, stopped, paused]
    default: started
  instance_states:
    description:
      - Per-instance desired states, keyed by id or name; they override O(state) for those
        instances, which are read in addition to O(instances).
    type: dict
  service_start_mode:
    description:
      - Desired start mode of the C(SMTPSVC) service; omit to leave it out of the judgement.
      - V(disabled) with a virtual server meant to be V(started) or V(paused) is refused.
    type: str
    choices: [auto, delayed, manual, disabled]
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  action:
    support: full
    details: All of it runs on the controller; the host only receives one read-only PowerShell command.
  action_group:
    support: full
    membership:
      - mailops.iis_smtp.iis_smtp
  async:
    support: none
    details: A task with C(async) fails before anything is sent.
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    details: Read-only; there is nothing to show a difference of.
  platform:
    support: full
    platforms: windows
    details: Any connection whose shell is PowerShell (winrm, psrp, ssh).
seealso:
  - module: mailops.iis_smtp.virtual_server
"""

EXAMPLES = r"""
- name: Read every SMTP virtual server
  mailops.iis_smtp.virtual_server_info:
  register: smtp

- name: Show what is wrong
  ansible.builtin.debug:
    msg: "{{ smtp.findings | map(attribute='message') | list }}"
  when: not smtp.compliant

- name: Read only the application relay
  mailops.iis_smtp.virtual_server_info:
    instances:
      - App relay
  register: relay
"""

RETURN = r"""
host:
  description: The Windows host and whether SMTP virtual servers can run on it.
  returned: success
  type: dict
  contains:
    computer_name:
      description: The host's computer name.
      type: str
      sample: RELAY01
    os:
      description: The operating system.
      type: dict
      contains:
        caption:
          description: The product name.
          type: str
          sample: Microsoft Windows Server 2019 Standard
        version:
          description: The version number.
          type: str
          sample: 10.0.17763
        build:
          description: The build number.
          type: int
          sample: 17763
    smtp_available:
      description: Whether the SMTP Server feature and the IIS 6 metabase it needs are there to manage.
      type: bool
      sample: true
  sample:
    computer_name: RELAY01
    os: {caption: Microsoft Windows Server 2019 Standard, version: 10.0.17763, build: 17763}
    smtp_available: true
service:
  description: The C(SMTPSVC) service.
  returned: success
  type: dict
  contains:
    name:
      description: The service name.
      type: str
      sample: SMTPSVC
    installed:
      description: Whether the service exists.
      type: bool
      sample: true
    state:
      description: One of V(running), V(stopped), V(paused), V(starting), V(stopping), V(pausing), V(continuing), or
        null when not installed.
      type: str
      sample: running
    start_mode:
      description: One of V(auto), V(delayed), V(manual), V(disabled), or null when not installed.
      type: str
      sample: auto
  sample: {name: SMTPSVC, installed: true, state: running, start_mode: auto}
iisadmin:
  description: The C(IISADMIN) service, which C(SMTPSVC) depends on.
  returned: success
  type: dict
  contains:
    name:
      description: The service name.
      type: str
      sample: IISADMIN
    installed:
      description: Whether the service exists.
      type: bool
      sample: true
    state:
      description: As in RV(service.state).
      type: str
      sample: running
    start_mode:
      description: As in RV(service.start_mode).
      type: str
      sample: auto
  sample: {name: IISADMIN, installed: true, state: running, start_mode: auto}
virtual_servers:
  description:
    - Every SMTP virtual server (or those in O(instances) and O(instance_states)), sorted by id.
      Empty when SMTP is not available on the host, or when IISADMIN does not run.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The instance number N of C(IIS://localhost/SMTPSVC/N).
      type: int
      sample: 1
    name:
      description: "The C(ServerComment), or V([SMTP Virtual Server #N]) when it is empty."
      type: str
      sample: "[SMTP Virtual Server #1]"
    comment:
      description: The C(ServerComment) as stored; may be empty.
      type: str
      sample: ""
    bindings:
      description: The C(ServerBindings), C(IP:port:host name) each.
      type: list
      elements: str
      sample: [":25:"]
    state:
      description:
        - The C(ServerState) name, V(started), V(stopped), V(paused), a transitional state, or V(unknown) when
          it cannot be read.
        - While C(SMTPSVC) is not running C(ServerState) reads empty or only what the service last wrote, so
          it is reported as V(unknown), not as V(stopped); such a virtual server cannot be running while the
          service is stopped.
      type: str
      sample: started
    state_code:
      description: The numeric C(ServerState), or null when it reads empty.
      type: int
      sample: 2
    auto_start:
      description: C(ServerAutoStart), whether the instance starts with the service.
      type: bool
      sample: true
    desired:
      description: The state this instance is meant to be in (O(state) or its O(instance_states) entry).
      type: str
      sample: started
  sample:
    - id: 1
      name: "[SMTP Virtual Server #1]"
      comment: ""
      bindings: [":25:"]
      state: started
      state_code: 2
      auto_start: true
      desired: started
findings:
  description: Problems found, in the manner of the Exchange Server Analyzer SMTP rules.
  returned: success
  type: list
  elements: dict
  contains:
    rule:
      description:
        - V(smtp_instance_stopped), V(smtp_instance_paused) (an instance meant to be started),
          V(instance_not_desired_state) (another desired state), V(smtp_service_disabled),
          V(smtp_service_not_running), V(smtp_service_start_mode), V(smtp_feature_missing),
          V(smtp_removed_from_os), V(iisadmin_not_running), V(iisadmin_disabled) or
          V(metabase_unavailable) (severity V(error)), or V(instance_transitional),
          V(instance_state_unknown) (severity V(warning)).
        - "While C(SMTPSVC) is stopped no C(ServerState) can be read: its virtual servers are V(unknown)
          and the service's findings say why they cannot run."
      type: str
      sample: smtp_instance_stopped
    severity:
      description: V(error) or V(warning).
      type: str
      sample: error
    instance:
      description: The instance the finding is about, or null for a finding about the host or the service.
      type: int
      sample: 1
    message:
      description: What is wrong and what to do, in words.
      type: str
      sample: "SMTP virtual server 1 ([SMTP Virtual Server #1]) is stopped: it accepts no connections
        and relays no mail. Start it."
  sample:
    - rule: smtp_instance_stopped
      severity: error
      instance: 1
      message: "SMTP virtual server 1 ([SMTP Virtual Server #1]) is stopped: it accepts no connections
        and relays no mail. Start it."
compliant:
  description:
    - True when there is no finding of severity V(error) and every instance read is in its desired state
      (one still changing state, or unreadable, is not yet).
  returned: success
  type: bool
  sample: false
reason:
  description:
    - Why the host could not be read. One of V(access_denied), V(not_windows), V(connection_failed),
      V(auth_failed), V(credentials_unencodable), V(winrm_fault), V(agent_output_invalid),
      V(agent_exit_nonzero), V(protocol_mismatch), V(delegation_unsupported), V(invalid_argument),
      V(invalid_instances).
  returned: on failure
  type: str
  sample: access_denied
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    # The action plugin of the same name does the work on the controller.
    # This spec is what ansible-test's validate-modules compares with the
    # documentation; it must be the action's own (tests/ecosystem checks).
    module = AnsibleModule(
        argument_spec={
            "instances": {"type": "list", "elements": "raw"},
            "state": {"type": "str", "choices": ["started", "stopped", "paused"], "default": "started"},
            "instance_states": {"type": "dict"},
            "service_start_mode": {"type": "str", "choices": ["auto", "delayed", "manual", "disabled"]},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="mailops.iis_smtp.virtual_server_info runs as an action plugin on the controller; "
                         "this module file only documents it")


if __name__ == "__main__":
    main()
