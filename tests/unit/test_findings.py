"""The ExBPA-style findings and what makes a host compliant."""

from __future__ import annotations

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._findings import host_findings, is_compliant
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._model import parse_observation

from .hosts import inst, observation, service, win_error


def rules(obs):
    return [(f["rule"], f["severity"], f["instance"]) for f in host_findings(parse_observation(obs))]


def test_healthy_host_has_no_findings():
    found = host_findings(parse_observation(observation([inst(1, 2), inst(2, 2)])))
    assert found == [] and is_compliant(found)


def test_stopped_instance_message_names_it():
    found = host_findings(parse_observation(observation([inst(1, 4)])))
    assert found == [{"rule": "smtp_instance_stopped", "severity": "error", "instance": 1,
                      "message": "SMTP virtual server 1 ([SMTP Virtual Server #1]) is stopped: it accepts no "
                                 "connections and relays no mail. Start it."}]
    assert not is_compliant(found)


def test_paused_and_transitional_instances():
    assert rules(observation([inst(1, 6), inst(2, 1), inst(3, 3), inst(4, 5), inst(5, 7)])) == [
        ("smtp_instance_paused", "error", 1), ("instance_transitional", "warning", 2),
        ("instance_transitional", "warning", 3), ("instance_transitional", "warning", 4),
        ("instance_transitional", "warning", 5)]


def test_only_warnings_is_compliant():
    assert is_compliant(host_findings(parse_observation(observation([inst(1, 1)]))))


def test_disabled_and_stopped_service():
    # The instance is unknown while SMTPSVC is down: the service's findings say why it cannot run.
    obs = observation([inst(1, None)], smtp=service("Stopped", "Disabled"))
    assert rules(obs) == [("smtp_service_disabled", "error", None), ("smtp_service_not_running", "error", None)]


def test_findings_unknown_instance_of_a_running_service_is_a_warning():
    obs = observation([inst(1, None, error=win_error("The RPC server is unavailable.", "0x800706BA")), inst(2, 2)])
    found = host_findings(parse_observation(obs))
    assert [(f["rule"], f["severity"], f["instance"]) for f in found] == [("instance_state_unknown", "warning", 1)]
    assert "0x800706BA" in found[0]["message"]


def test_paused_service_is_not_running():
    assert rules(observation([inst(1, 2)], smtp=service("Paused"))) == [("smtp_service_not_running", "error", None)]


def test_feature_missing_is_the_only_finding():
    assert rules(observation([], smtp=service(installed=False))) == [("smtp_feature_missing", "error", None)]


def test_windows_server_2025_wins_over_feature_missing():
    found = host_findings(parse_observation(observation([], smtp=service(installed=False), build=26100)))
    assert [f["rule"] for f in found] == ["smtp_removed_from_os"]
    assert "Windows Server 2025" in found[0]["message"] and "26100" in found[0]["message"]


def test_metabase_missing():
    found = host_findings(parse_observation(observation(metabase_error=win_error("Unknown error", "0x80005000"))))
    assert [f["rule"] for f in found] == ["metabase_unavailable"]
    assert "0x80005000" in found[0]["message"] and "Web-Metabase" in found[0]["message"]


def test_access_denied_is_not_a_metabase_finding():
    obs = observation(metabase_error=win_error("Access is denied.", "0x80070005"))
    assert rules(obs) == []
