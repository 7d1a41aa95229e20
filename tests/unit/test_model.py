"""Normalisation of raw agent observations."""

from __future__ import annotations

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _model
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._model import parse_observation

from .hosts import inst, observation, one, service, win_error


@pytest.mark.parametrize("raw,name", [
    ("Running", "running"), ("Stopped", "stopped"), ("Paused", "paused"), ("Start Pending", "starting"),
    ("Stop Pending", "stopping"), ("Continue Pending", "continuing"), ("Pause Pending", "pausing"),
])
def test_service_states(raw, name):
    assert parse_observation(observation(smtp=service(raw))).smtp.state == name


@pytest.mark.parametrize("raw,delayed,mode", [
    ("Auto", False, "auto"), ("Auto", True, "delayed"), ("Manual", False, "manual"),
    ("Manual", True, "manual"), ("Disabled", False, "disabled"), ("Boot", False, "auto"),
    ("System", False, "auto"),
])
def test_start_modes(raw, delayed, mode):
    assert parse_observation(observation(smtp=service("Running", raw, delayed))).smtp.start_mode == mode


def test_missing_service_has_no_state_or_mode():
    host = parse_observation(observation(smtp=service(installed=False), instances=[]))
    assert host.smtp.as_dict() == {"name": "SMTPSVC", "installed": False, "state": None, "start_mode": None}
    assert not host.smtp_available


def test_display_name_when_the_comment_is_empty():
    host = parse_observation(observation([inst(1, 2), inst(2, 2, comment="App relay")]))
    assert [i.name for i in host.instances] == ["[SMTP Virtual Server #1]", "App relay"]
    assert one(host, 2).label == "SMTP virtual server 2 (App relay)"
    assert one(host, 1).as_dict() == {
        "id": 1, "name": "[SMTP Virtual Server #1]", "comment": "", "bindings": [":25:"],
        "state": "started", "state_code": 2, "auto_start": True}


@pytest.mark.parametrize("code,name", sorted(_model.STATE_NAMES.items()))
def test_every_server_state_code(code, name):
    instance = one(parse_observation(observation([inst(1, code)])), 1)
    assert (instance.state, instance.state_code) == (name, code)


@pytest.mark.parametrize("smtp", [service("Stopped"), service("Running"), service("Paused"), service("Start Pending")])
def test_model_empty_server_state_is_unknown_whatever_the_service(smtp):
    # Never "stopped": while SMTPSVC is down ServerState reads empty or a stale value.
    host = parse_observation(observation([inst(1, None)], smtp=smtp))
    assert one(host, 1).summary() == {"state": "unknown", "state_code": None}


@pytest.mark.parametrize(("smtp", "down"), [("Stopped", True), ("Start Pending", False), ("Running", False)])
def test_model_an_unknown_instance_is_down_only_with_the_service_stopped(smtp, down):
    host = parse_observation(observation([inst(1, None)], smtp=service(smtp)))
    assert host.down(one(host, 1)) is down


def test_model_iisadmin_not_running_is_read_from_the_metabase_error():
    unread = parse_observation(observation(metabase_error=win_error("IISADMIN state: Stopped; ...", None, "iisadmin_not_running")))
    assert unread.iisadmin_not_running and not unread.smtp_available
    missing = parse_observation(observation(metabase_error=win_error("Unknown error (0x80005000)", "0x80005000")))
    assert not missing.iisadmin_not_running


def test_out_of_range_and_non_integer_codes_are_unknown():
    raw = [inst(1, 9), inst(2, True), inst(3)]
    raw[2]["server_state"] = "2"
    host = parse_observation(observation(raw))
    assert [i.state for i in host.instances] == ["unknown"] * 3


def test_instances_are_sorted_by_id_and_errors_kept():
    err = win_error("Access is denied.", "0x80070005", "UnauthorizedAccessException")
    host = parse_observation(observation([inst(3, 2), inst(1, 2, error=err)]))
    assert [i.id for i in host.instances] == [1, 3]
    error = one(host, 1).error
    assert error is not None and error.describe() == "Windows error 0x80070005 (Access is denied.)"
    assert error.access_denied
    assert host.instance(2) is None


def test_host_facts_and_2025():
    host = parse_observation(observation(build=26100, smtp=service(installed=False), instances=[]))
    assert host.removed_from_os and not host.smtp_available
    assert host.host_dict() == {"computer_name": "RELAY01",
                                "os": {"caption": "Microsoft Windows Server 2025 Standard",
                                       "version": "10.0.26100", "build": 26100},
                                "smtp_available": False}
    assert not parse_observation(observation()).removed_from_os


def test_metabase_errors():
    missing = parse_observation(observation(metabase_error=win_error("Unknown error", "0x80005000")))
    assert not missing.metabase_ok and not missing.access_denied and missing.instances == ()
    denied = parse_observation(observation(metabase_error=win_error("Access is denied.", "0x80070005")))
    assert denied.access_denied


def test_odd_values_do_not_crash():
    obs = observation()
    obs["os"]["build"] = "not a number"
    obs["metabase"]["error"] = "plain text"
    host = parse_observation(obs)
    assert host.os_build is None
    assert host.metabase_error == _model.WinError("plain text")
    assert _model.parse_error({"message": None}) == _model.WinError("unknown error")
