"""The ExBPA-style findings, judged against the desired state, and what makes a host compliant."""

from __future__ import annotations

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._findings import host_findings, is_compliant
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._model import Host, parse_observation
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._planner import Desired

from .hosts import inst, observation, service, unread, win_error


def every(host: Host, state: str = "started", start_mode: str | None = None) -> Desired:
    """Every instance of the host meant to be in `state`: the actions' default desired state."""
    return Desired(targets=tuple((i.id, state) for i in host.instances), start_mode=start_mode,
                   states=frozenset({state}))


def findings(obs, state="started", start_mode=None):
    host = parse_observation(obs)
    return host_findings(host, every(host, state, start_mode))


def rules(obs, state="started", start_mode=None):
    return [(f["rule"], f["severity"], f["instance"]) for f in findings(obs, state, start_mode)]


def test_healthy_host_has_no_findings():
    found = findings(observation([inst(1, 2), inst(2, 2)]))
    assert found == [] and is_compliant(found)


def test_stopped_instance_message_names_it():
    found = findings(observation([inst(1, 4)]))
    assert found == [{"rule": "smtp_instance_stopped", "severity": "error", "instance": 1,
                      "message": "SMTP virtual server 1 ([SMTP Virtual Server #1]) is stopped: it accepts no "
                                 "connections and relays no mail. Start it."}]
    assert not is_compliant(found)


def test_paused_and_transitional_instances():
    assert rules(observation([inst(1, 6), inst(2, 1), inst(3, 3), inst(4, 5), inst(5, 7)])) == [
        ("smtp_instance_paused", "error", 1), ("instance_transitional", "warning", 2),
        ("instance_transitional", "warning", 3), ("instance_transitional", "warning", 4),
        ("instance_transitional", "warning", 5)]


def test_an_instance_still_moving_is_not_yet_compliant():
    # A warning, not an ExBPA error, but the instance is not in its desired state yet.
    assert not is_compliant(findings(observation([inst(1, 1)])))


def test_a_service_warning_alone_does_not_make_a_host_non_compliant():
    assert is_compliant([{"rule": "x", "severity": "warning", "instance": None, "message": "m"}])


def test_disabled_and_stopped_service():
    # The instance is unknown while SMTPSVC is down: the service's findings say why it cannot run.
    obs = observation([inst(1, None)], smtp=service("Stopped", "Disabled"))
    assert rules(obs) == [("smtp_service_disabled", "error", None), ("smtp_service_not_running", "error", None)]


def test_findings_unknown_instance_of_a_running_service_is_a_warning():
    obs = observation([inst(1, None, error=win_error("The RPC server is unavailable.", "0x800706BA")), inst(2, 2)])
    found = findings(obs)
    assert [(f["rule"], f["severity"], f["instance"]) for f in found] == [("instance_state_unknown", "warning", 1)]
    assert "0x800706BA" in found[0]["message"] and not is_compliant(found)


def test_paused_service_is_not_running():
    assert rules(observation([inst(1, 2)], smtp=service("Paused"))) == [
        ("smtp_service_not_running", "error", None)]


def test_feature_missing_is_the_only_finding():
    assert rules(observation([], smtp=service(installed=False))) == [("smtp_feature_missing", "error", None)]


def test_windows_server_2025_wins_over_feature_missing():
    found = findings(observation([], smtp=service(installed=False), build=26100))
    assert [f["rule"] for f in found] == ["smtp_removed_from_os"]
    assert "Windows Server 2025" in found[0]["message"] and "26100" in found[0]["message"]


def test_metabase_missing():
    found = findings(observation(metabase_error=win_error("Unknown error", "0x80005000")))
    assert [f["rule"] for f in found] == ["metabase_unavailable"]
    assert "0x80005000" in found[0]["message"] and "Web-Metabase" in found[0]["message"]


def test_access_denied_is_not_a_metabase_finding():
    obs = observation(metabase_error=win_error("Access is denied.", "0x80070005"))
    assert rules(obs) == []


# ------------------------------------------------------------ against the desired state


def test_an_instance_kept_stopped_on_purpose_is_no_finding():
    host = parse_observation(observation([inst(1, 2), inst(2, 4, comment="Standby")]))
    desired = Desired(targets=((1, "started"), (2, "stopped")), states=frozenset({"started", "stopped"}))
    found = host_findings(host, desired)
    assert found == [] and is_compliant(found)


def test_an_instance_left_out_of_the_task_is_no_finding():
    host = parse_observation(observation([inst(1, 2), inst(2, 4)]))
    assert host_findings(host, Desired(targets=((1, "started"),))) == []


def test_an_instance_that_runs_but_is_meant_to_be_stopped_is_an_error():
    assert rules(observation([inst(1, 2)]), state="stopped") == [("instance_not_desired_state", "error", 1)]
    assert findings(observation([inst(1, 2)]), state="stopped")[0]["message"] == (
        "SMTP virtual server 1 ([SMTP Virtual Server #1]) is started; desired stopped.")


def test_a_whole_host_kept_stopped_needs_no_running_service():
    obs = observation([inst(1, None), inst(2, None)], smtp=service("Stopped", "Disabled"))
    assert rules(obs, state="stopped") == []


@pytest.mark.parametrize("smtp,expected", [
    (service("Paused"), []),
    (service("Stopped", "Manual"), [("smtp_service_not_running", "error", None)]),
])
def test_paused_targets_need_a_service_that_runs_or_is_paused(smtp, expected):
    assert rules(observation([inst(1, 6 if expected == [] else None)], smtp=smtp), state="paused") == expected


def test_a_start_mode_asked_for_is_judged_and_one_left_alone_is_not():
    manual = observation([inst(1, 2)], smtp=service("Running", "Manual"))
    assert rules(manual) == []
    assert rules(manual, start_mode="auto") == [("smtp_service_start_mode", "error", None)]
    assert findings(manual, start_mode="auto")[0]["message"] == "The SMTPSVC service starts manual; desired auto."
    assert rules(observation([inst(1, 2)], smtp=service("Running", "Auto", delayed=True)), start_mode="delayed") == []


def test_a_stopped_iisadmin_is_fine_when_nothing_is_meant_to_run():
    host = parse_observation(unread())
    assert host_findings(host, Desired(targets=(), states=frozenset({"stopped"}))) == []
    assert [f["rule"] for f in host_findings(host, Desired(targets=()))] == ["iisadmin_not_running"]
    disabled = parse_observation(unread(start_mode="Disabled"))
    assert host_findings(disabled, Desired(targets=(), states=frozenset({"stopped"}))) == []
