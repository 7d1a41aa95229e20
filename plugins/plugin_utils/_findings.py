# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compliance findings in the spirit of the Exchange Server Analyzer SMTP rules.

Internal to mailops.iis_smtp. ExBPA was how SMTP relays used to be audited;
the same questions (is an instance stopped or paused, is the service disabled)
are asked here of a typed Host, plus the ones a modern fleet adds (feature
gone in Windows Server 2025, metabase compatibility missing). Unlike ExBPA
they are asked against what the user wants: an instance meant to stay
stopped is no finding when it is stopped, and one left out of the task is
none at all. Both actions judge with these functions, so `compliant` means
the same thing in every result. Pure functions.
"""

from __future__ import annotations

from typing import Any

from ._model import TRANSITIONAL_STATES, UNKNOWN, Host, Instance
from ._planner import Desired
from ._protocol import IISADMIN_DISABLED, IISADMIN_NOT_RUNNING

ERROR = "error"
WARNING = "warning"
IISADMIN_RULES = frozenset({IISADMIN_NOT_RUNNING, IISADMIN_DISABLED})
# The ExBPA rules of an instance that should be serving mail.
_SERVING_RULES = {"stopped": "smtp_instance_stopped", "paused": "smtp_instance_paused"}
_SERVING_ADVICE = {"stopped": "it accepts no connections and relays no mail. Start it.",
                   "paused": "it refuses new connections. Continue it."}


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


def blocking_findings(host: Host, desired: Desired) -> list[dict[str, Any]]:
    """The availability findings that matter for this desired state.

    A stopped (or disabled) IISADMIN leaves the instances unread, and
    SMTPSVC cannot run without it: that is a problem only when something is
    meant to run. When every instance is meant to be stopped, they are.
    """
    found = availability_findings(host)
    if desired.needs_service:
        return found
    return [f for f in found if f["rule"] not in IISADMIN_RULES]


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


def service_findings(host: Host, desired: Desired) -> list[dict[str, Any]]:
    """SMTPSVC against what the targeted instances need and the start mode asked for."""
    smtp = host.smtp
    wants = {state for _inst, state in desired.targets} or set(desired.states)
    found = []
    if desired.start_mode is not None and smtp.start_mode != desired.start_mode:
        found.append(_finding(
            "smtp_service_start_mode", ERROR,
            "The SMTPSVC service starts %s; desired %s." % (smtp.start_mode or "in an unknown mode",
                                                            desired.start_mode)))
    elif smtp.start_mode == "disabled" and wants & {"started", "paused"}:
        found.append(_finding(
            "smtp_service_disabled", ERROR,
            "The SMTPSVC service is disabled: no SMTP virtual server can run, not even after a "
            "reboot. Set its start mode to auto or delayed."))
    running_ok = ("running",) if "started" in wants else ("running", "paused") if "paused" in wants else None
    if running_ok is not None and smtp.state not in running_ok:
        found.append(_finding(
            "smtp_service_not_running", ERROR,
            "The SMTPSVC service is %s: no SMTP virtual server accepts mail. Start the service."
            % (smtp.state or "in an unknown state")))
    return found


def instance_findings(inst: Instance, host: Host, want: str) -> list[dict[str, Any]]:
    """Findings of one targeted instance: none when it is as wanted.

    One that is unknown because SMTPSVC is stopped cannot be running: it is
    as wanted if meant to be stopped, and otherwise the service's finding
    says why.
    """
    if inst.state == want or (inst.state == UNKNOWN and host.down(inst)):
        return []
    if inst.state == UNKNOWN:
        why = inst.error.describe() if inst.error else "ServerState read empty"
        return [_finding("instance_state_unknown", WARNING,
                         "%s: its state could not be read (%s) while SMTPSVC is %s; look again shortly."
                         % (inst.label, why, host.smtp.state or "in an unknown state"), inst.id)]
    if inst.state in TRANSITIONAL_STATES:
        return [_finding("instance_transitional", WARNING,
                         "%s is %s: it was changing state when observed; look again shortly."
                         % (inst.label, inst.state), inst.id)]
    if want == "started" and inst.state in _SERVING_RULES:
        return [_finding(_SERVING_RULES[inst.state], ERROR,
                         "%s is %s: %s" % (inst.label, inst.state, _SERVING_ADVICE[inst.state]), inst.id)]
    return [_finding("instance_not_desired_state", ERROR,
                     "%s is %s; desired %s." % (inst.label, inst.state, want), inst.id)]


def host_findings(host: Host, desired: Desired) -> list[dict[str, Any]]:
    """Every finding for the host against the desired state, service findings before instance findings."""
    blocking = blocking_findings(host, desired)
    if blocking:
        return blocking
    found = service_findings(host, desired)
    for inst in host.instances:
        want = desired.state_of(inst.id)
        if want is not None:
            found.extend(instance_findings(inst, host, want))
    return found


def is_compliant(findings: list[dict[str, Any]]) -> bool:
    """No error, and no targeted instance away from its desired state (still moving, or unreadable)."""
    return not any(f["severity"] == ERROR or f["instance"] is not None for f in findings)
