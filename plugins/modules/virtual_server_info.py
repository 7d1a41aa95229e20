# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the mailops.iis_smtp.virtual_server_info action plugin (no module code runs)."""

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
  - Such hosts do not fail the task; it fails only when the host cannot be read.
version_added: 1.0.0
author:
  - mailops maintainers (@mailops)
options:
  instances:
    description:
      - "Restrict RV(virtual_servers) and the instance findings to these virtual servers, by id
        or name (C(ServerComment) or V([SMTP Virtual Server #N]))."
      - A name that matches no instance or several instances fails the task.
    type: list
    elements: raw
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Read-only; there is nothing to show a difference of.
  platform:
    support: full
    platforms: windows
    description: Any connection whose shell is PowerShell (winrm, psrp, ssh).
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
  sample:
    computer_name: RELAY01
    os: {caption: Microsoft Windows Server 2019 Standard, version: 10.0.17763, build: 17763}
    smtp_available: true
service:
  description:
    - The C(SMTPSVC) service. C(state) is one of V(running), V(stopped), V(paused),
      V(starting), V(stopping), V(pausing), V(continuing) or null when not installed.
    - C(start_mode) is one of V(auto), V(delayed), V(manual), V(disabled) or null.
  returned: success
  type: dict
  sample: {name: SMTPSVC, installed: true, state: running, start_mode: auto}
iisadmin:
  description: The C(IISADMIN) service, which C(SMTPSVC) depends on; same shape as RV(service).
  returned: success
  type: dict
  sample: {name: IISADMIN, installed: true, state: running, start_mode: auto}
virtual_servers:
  description:
    - Every SMTP virtual server (or those in O(instances)), sorted by id. Empty when SMTP is not
      available on the host.
    - C(state) is the C(ServerState) name; V(unknown) with a null
      C(state_code) when it reads empty and cannot be inferred. An empty
      C(ServerState) while the service is stopped is reported as V(stopped).
  returned: success
  type: list
  elements: dict
  sample:
    - id: 1
      name: "[SMTP Virtual Server #1]"
      comment: ""
      bindings: [":25:"]
      state: started
      state_code: 2
      auto_start: true
findings:
  description:
    - Problems found. C(rule) is one of V(smtp_instance_stopped), V(smtp_instance_paused),
      V(smtp_service_disabled), V(smtp_service_not_running), V(smtp_feature_missing),
      V(smtp_removed_from_os), V(metabase_unavailable) (severity V(error)) or
      V(instance_transitional) (severity V(warning)).
  returned: success
  type: list
  elements: dict
  sample:
    - rule: smtp_instance_stopped
      severity: error
      instance: 1
      message: "SMTP virtual server 1 ([SMTP Virtual Server #1]) is stopped: it accepts no connections
        and relays no mail. Start it."
compliant:
  description: True when there is no finding of severity V(error).
  returned: success
  type: bool
  sample: false
reason:
  description:
    - Why the host could not be read. One of V(access_denied), V(not_windows), V(connection_failed),
      V(auth_failed), V(winrm_fault), V(agent_output_invalid), V(agent_exit_nonzero),
      V(protocol_mismatch), V(invalid_argument), V(invalid_instances).
  returned: on failure
  type: str
  sample: access_denied
"""
