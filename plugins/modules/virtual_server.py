# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation and argument spec of the mailops.iis_smtp.virtual_server action plugin.

The action plugin does the work on the controller; this module never runs on a host.
"""

DOCUMENTATION = r"""
---
module: virtual_server
short_description: Keep IIS SMTP virtual servers started, stopped or paused
description:
  - Brings the SMTP virtual servers of a Windows host (service C(SMTPSVC), metabase
    C(IIS://localhost/SMTPSVC/N)) to the desired C(ServerState), and optionally sets the
    start mode of the C(SMTPSVC) service.
  - The decisions are taken on the controller. The host receives one small PowerShell
    command per round trip through the existing connection; a compliant host costs one
    command that only reads.
  - Starts C(SMTPSVC) first when an instance must run and the service is stopped (this also
    brings back every instance whose C(ServerAutoStart) is set), continues a paused service,
    and waits out transitional states (C(starting), C(stopping), C(pausing), C(continuing))
    until O(timeout).
  - Each instance command tries the ADSI method (C(Start), C(Stop), C(Pause), C(Continue)) first
    and falls back to writing C(ServerCommand).
  - A name in O(instances) or O(instance_states) that matches no instance or several
    instances fails the task before anything is changed.
version_added: 1.0.0
author:
  - mailops maintainers (@mailops)
options:
  instances:
    description:
      - The virtual servers to manage, by numeric id (V(1)) or by name.
      - "A name is the C(ServerComment) or the display name V([SMTP Virtual Server #N]) shown
        by the IIS 6 console when the comment is empty."
      - Omit to manage every virtual server of the host.
    type: list
    elements: raw
  state:
    description:
      - Desired state of the targeted virtual servers.
    type: str
    choices: [started, stopped, paused]
    default: started
  instance_states:
    description:
      - Per-instance desired states, keyed by id or name; they override O(state) for those
        instances, which are targeted in addition to O(instances).
    type: dict
  service_start_mode:
    description:
      - Start mode of the C(SMTPSVC) service. V(delayed) is Automatic (Delayed Start).
      - Omit to leave the start mode as it is.
      - V(disabled) with a virtual server meant to be V(started) or V(paused) is refused before anything runs.
    type: str
    choices: [auto, delayed, manual, disabled]
  timeout:
    description:
      - Seconds to wait, in total, for the service and the virtual servers to reach the
        desired state. From 1 to 3600; a boolean is refused.
    type: int
    default: 60
  fail_on_drift:
    description:
      - In check mode, fail the task with RV(reason=drift) when the host is not compliant; the
        full predicted result is still returned. Use it as a compliance gate in CI.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  action:
    support: full
    details: All of it runs on the controller; the host only receives PowerShell commands through the connection.
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
    details: Only observes; C(changed) and the diff are the exact prediction.
  diff_mode:
    support: full
    details: Shows the service and instance states before and after.
  platform:
    support: full
    platforms: windows
    details: Any connection whose shell is PowerShell (winrm, psrp, ssh).
notes:
  - Works over any connection whose shell is PowerShell (winrm, psrp, ssh with
    C(ansible_shell_type=powershell)); needs a local administrator.
  - The SMTP Server feature was removed from Windows Server 2025; such hosts fail with
    RV(reason=smtp_removed_from_os).
  - O(timeout) bounds the waiting for states to settle. It cannot interrupt a single call that
    hangs on the host (a Windows API that never returns); the connection's own timeouts
    (for winrm C(ansible_winrm_read_timeout_sec)) and the task keyword C(timeout) bound that.
seealso:
  - module: mailops.iis_smtp.virtual_server_info
"""

EXAMPLES = r"""
- name: Keep every SMTP virtual server running and the service automatic
  mailops.iis_smtp.virtual_server:
    state: started
    service_start_mode: auto

- name: Start the application relay, keep the old test instance stopped
  mailops.iis_smtp.virtual_server:
    instances:
      - App relay
    instance_states:
      3: stopped
    timeout: 120

- name: Pause the default virtual server for maintenance
  mailops.iis_smtp.virtual_server:
    instances:
      - "[SMTP Virtual Server #1]"
    state: paused

- name: Fail the pipeline if any relay has drifted (changes nothing)
  mailops.iis_smtp.virtual_server:
    state: started
    fail_on_drift: true
  check_mode: true
"""

RETURN = r"""
state:
  description: The desired state asked for by O(state).
  returned: always
  type: str
  sample: started
service:
  description: The C(SMTPSVC) service before and after (predicted in check mode).
  returned: when the host could be observed
  type: dict
  contains:
    name:
      description: The service name, C(SMTPSVC).
      type: str
      sample: SMTPSVC
    before:
      description: The service as found.
      type: dict
      contains:
        state:
          description: V(running), V(stopped), V(paused), a transitional state, or null when not installed.
          type: str
          sample: stopped
        start_mode:
          description: V(auto), V(delayed), V(manual), V(disabled), or null when not installed.
          type: str
          sample: manual
    after:
      description: The service as left (predicted in check mode); same keys as RV(service.before).
      type: dict
      sample: {state: running, start_mode: auto}
    changed:
      description: Whether the task changed the service (would change it, in check mode).
      type: bool
      sample: true
  sample:
    name: SMTPSVC
    before: {state: stopped, start_mode: manual}
    after: {state: running, start_mode: auto}
    changed: true
virtual_servers:
  description: Every targeted virtual server, with the commands sent (predicted in check mode).
  returned: when the host could be observed
  type: list
  elements: dict
  contains:
    id:
      description: The instance number N of C(IIS://localhost/SMTPSVC/N).
      type: int
      sample: 2
    name:
      description: "The C(ServerComment), or V([SMTP Virtual Server #N]) when it is empty."
      type: str
      sample: App relay
    desired:
      description: The state this task asked for this instance.
      type: str
      sample: started
    before:
      description: The instance as found.
      type: dict
      contains:
        state:
          description: The C(ServerState) name, for example V(started), V(stopped), V(paused), or V(unknown).
          type: str
          sample: paused
        state_code:
          description: The numeric C(ServerState), or null when it reads empty.
          type: int
          sample: 6
    after:
      description: The instance as left (predicted in check mode); same keys as RV(virtual_servers[].before).
      type: dict
      sample: {state: started, state_code: 2}
    changed:
      description: Whether the task changed this instance (would change it, in check mode).
      type: bool
      sample: true
    actions:
      description: The commands sent to this instance, in order (V(start), V(stop), V(pause), V(continue)).
      type: list
      elements: str
      sample: [continue]
  sample:
    - id: 2
      name: App relay
      desired: started
      before: {state: paused, state_code: 6}
      after: {state: started, state_code: 2}
      changed: true
      actions: [continue]
operations:
  description:
    - What was sent to the host, in order, and whether it succeeded. Empty in check mode.
  returned: when the host could be observed
  type: list
  elements: dict
  contains:
    op:
      description: V(instance) for an instance command; for a service step V(start_service), V(continue_service) or
        V(set_start_mode).
      type: str
      sample: instance
    ok:
      description: Whether the host carried the step out.
      type: bool
      sample: true
    id:
      description: The instance the command was for.
      type: int
      returned: for instance steps
      sample: 2
    command:
      description: The instance command, V(start), V(stop), V(pause) or V(continue).
      type: str
      returned: for instance steps
      sample: continue
    service:
      description: The service the step was for, C(SMTPSVC).
      type: str
      returned: for service steps
      sample: SMTPSVC
    error:
      description: The Windows error of a failed step, with its HRESULT when there is one.
      type: str
      returned: when the step failed
      sample: Windows error 0x80070034 (binding conflict)
  sample:
    - {op: instance, id: 2, command: continue, ok: true}
compliant:
  description:
    - Whether every targeted instance is in its desired state, the service runs where needed and the start mode is
      as asked, judged as RV(mailops.iis_smtp.virtual_server_info#module:compliant) is.
    - After a run, of the host as the run left it (its last observation, the read-back); in check mode, of the host
      as found (the prediction is in RV(virtual_servers) and C(changed)).
  returned: when the host could be observed
  type: bool
  sample: true
findings:
  description: Compliance findings against the desired state, of the host as RV(compliant) judges it; the same as
    RV(mailops.iis_smtp.virtual_server_info#module:findings).
  returned: when the host could be observed
  type: list
  elements: dict
  contains:
    rule:
      description: The finding's rule, for example V(smtp_instance_stopped).
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
      sample: "SMTP virtual server 1 ([SMTP Virtual Server #1]) is stopped: it accepts no connections and relays no
        mail. Start it."
  sample: []
diff:
  description: Service state and start mode and the state of every targeted instance, before and after.
  returned: when the host could be observed
  type: dict
  contains:
    before:
      description: C(service) (state and start mode) and C(virtual_servers) (C(id name) to state) as found.
      type: dict
      sample: {service: {state: running, start_mode: auto}, virtual_servers: {"2 App relay": paused}}
    after:
      description: The same, as left (predicted in check mode).
      type: dict
      sample: {service: {state: running, start_mode: auto}, virtual_servers: {"2 App relay": started}}
  sample:
    before: {service: {state: running, start_mode: auto}, virtual_servers: {"2 App relay": paused}}
    after: {service: {state: running, start_mode: auto}, virtual_servers: {"2 App relay": started}}
reason:
  description:
    - Why the task failed, as a code a playbook can test.
    - One of V(instance_start_failed), V(instance_command_failed), V(service_start_failed), V(timeout),
      V(service_disabled), V(service_unreadable), V(iisadmin_disabled), V(iisadmin_not_running),
      V(smtp_feature_missing), V(smtp_removed_from_os), V(metabase_unavailable),
      V(access_denied), V(not_windows), V(connection_failed), V(auth_failed), V(winrm_fault),
      V(agent_output_invalid), V(agent_exit_nonzero), V(protocol_mismatch), V(request_too_large),
      V(credentials_unencodable), V(delegation_unsupported), V(instance_id_out_of_range),
      V(invalid_argument), V(invalid_instances), V(drift).
  returned: on failure
  type: str
  sample: instance_start_failed
msg:
  description: What failed, naming the instance, its last observed state and the Windows error.
  returned: on failure
  type: str
  sample: "SMTP virtual server 3 (Broken) did not reach started within 60 s: last state stopped;
    Windows error 0x80070034 (binding conflict)"
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
            "timeout": {"type": "int", "default": 60},
            "fail_on_drift": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="mailops.iis_smtp.virtual_server runs as an action plugin on the controller; "
                         "this module file only documents it")


if __name__ == "__main__":
    main()
