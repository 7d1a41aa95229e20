# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compliance findings in the spirit of the Exchange Server Analyzer SMTP rules.

Internal to mailops.iis_smtp. ExBPA was how SMTP relays used to be audited;
the same questions (is an instance stopped or paused, is the service disabled)
are asked here of a typed Host, plus the ones a modern fleet adds (feature
gone in Windows Server 2025, metabase compatibility missing). Pure functions.
"""

from __future__ import annotations

from typing import Any

from ._model import TRANSITIONAL_STATES, UNKNOWN, Host, Instance
from ._protocol import IISADMIN_DISABLED, IISADMIN_NOT_RUNNING

ERROR = "error"
WARNING = "warning"


def _finding(rule: str, severity: str, message: str, instance: int | None = None) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "instance": instance, "message": message}


def availability_findings(host: Host) -> list[dict[str, Any]]:
    """Why SMTP virtual servers cannot be managed at all on this host (empty when they can)."""
    if host.removed_from_os:
        return [_finding(
            "smtp_removed_from_os", ERROR,
            "%s runs %s (build %s): the SMTP Server feature was removed from Windows Server 2025 "
            "and cannot be installed; move this relay to another host or another MTA."
            % (host.computer_name or "This host", host.os_caption or "Windows", host.os_build))]
    if not host.smtp.installed:
        return [_finding(
            "smtp_feature_missing", ERROR,
            "The SMTPSVC service does not exist on %s: the SMTP Server feature (SMTP-Server) "
            "is not installed." % (host.computer_name or "this host"))]
    if host.iisadmin_not_running:
        return [_iisadmin_finding(host)]
    if not host.metabase_ok and not host.access_denied:
        why = host.metabase_error.describe() if host.metabase_error else "unknown error"
        return [_finding(
            "metabase_unavailable", ERROR,
            "IIS://localhost/SMTPSVC cannot be read (%s): install IIS 6 Metabase Compatibility "
            "(Web-Metabase) and make sure IISADMIN can run." % why)]
    return []


def _iisadmin_finding(host: Host) -> dict[str, Any]:
    """The metabase was not read because IISADMIN does not run; SMTPSVC cannot run without it either."""
    iisadmin, smtp = host.iisadmin, host.smtp.state or "in an unknown state"
    if iisadmin.start_mode == "disabled":
        return _finding(
            IISADMIN_DISABLED, ERROR,
            "The IIS Admin service (IISADMIN) is disabled: the SMTP virtual servers cannot be read, and SMTPSVC "
            "(%s), which depends on it, cannot start. Set IISADMIN's start mode to manual or auto." % smtp)
    return _finding(
        IISADMIN_NOT_RUNNING, ERROR,
        "The IIS Admin service (IISADMIN) is %s, so the SMTP virtual servers were not read (binding the metabase "
        "would start it) and SMTPSVC (%s) cannot run. A virtual_server run starts IISADMIN, then reads them."
        % (iisadmin.state or "in an unknown state", smtp))


def service_findings(host: Host) -> list[dict[str, Any]]:
    smtp = host.smtp
    found = []
    if smtp.start_mode == "disabled":
        found.append(_finding(
            "smtp_service_disabled", ERROR,
            "The SMTPSVC service is disabled: no SMTP virtual server can run, not even after a "
            "reboot. Set its start mode to auto or delayed."))
    if smtp.state != "running":
        found.append(_finding(
            "smtp_service_not_running", ERROR,
            "The SMTPSVC service is %s: no SMTP virtual server accepts mail. Start the service."
            % (smtp.state or "in an unknown state")))
    return found


def instance_findings(inst: Instance, host: Host) -> list[dict[str, Any]]:
    """Findings of one instance; one that is unknown because SMTPSVC is stopped has the service's finding instead."""
    if inst.state == UNKNOWN and not host.down(inst):
        why = inst.error.describe() if inst.error else "ServerState read empty"
        return [_finding("instance_state_unknown", WARNING,
                         "%s: its state could not be read (%s) while SMTPSVC is %s; look again shortly."
                         % (inst.label, why, host.smtp.state or "in an unknown state"), inst.id)]
    if inst.state == "stopped":
        return [_finding("smtp_instance_stopped", ERROR,
                         "%s is stopped: it accepts no connections and relays no mail. Start it."
                         % inst.label, inst.id)]
    if inst.state == "paused":
        return [_finding("smtp_instance_paused", ERROR,
                         "%s is paused: it refuses new connections. Continue it." % inst.label, inst.id)]
    if inst.state in TRANSITIONAL_STATES:
        return [_finding("instance_transitional", WARNING,
                         "%s is %s: it was changing state when observed; look again shortly."
                         % (inst.label, inst.state), inst.id)]
    return []


def host_findings(host: Host) -> list[dict[str, Any]]:
    """Every finding for the host, service findings before instance findings."""
    blocking = availability_findings(host)
    if blocking:
        return blocking
    found = service_findings(host)
    for inst in host.instances:
        found.extend(instance_findings(inst, host))
    return found


def is_compliant(findings: list[dict[str, Any]]) -> bool:
    return not any(f["severity"] == ERROR for f in findings)
