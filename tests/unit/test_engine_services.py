"""The engine against what Windows services do: races, pending states, IISADMIN, what the settle wait watches.

Replayed from agent responses in the shape the agent sends them (see
docs/agent-protocol.md): `wrong_state` refusals, HRESULTs of the SCM, an
observation whose metabase was not read because IISADMIN does not run.
"""

from __future__ import annotations

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._engine import EnforceArgs, enforce, info

from .hosts import Replay, inst, observation, response, service, step_result, unread, win_error

STOPPED = service("Stopped", "Manual")
WRONG_STATE = win_error("SMTPSVC is StartPending, not Stopped: the control was not sent", None, "wrong_state")
ALREADY_RUNNING = win_error("An instance of the service is already running.", "0x80070420",
                            "System.ComponentModel.Win32Exception")


def run(responses, check_mode=False, **kwargs):
    call = Replay(responses)
    return enforce(call, call.clock, EnforceArgs(**kwargs), check_mode=check_mode), call


# --------------------------------------------------- another controller got there first


@pytest.mark.parametrize("refusal", [WRONG_STATE, ALREADY_RUNNING], ids=["agent-refusal", "windows-1056"])
def test_engine_a_service_started_by_someone_else_is_not_a_failure(refusal):
    # Between this run's observe and its apply, another controller started
    # SMTPSVC: the agent found it Start Pending (or Windows answered 1056).
    result, call = run([
        response(observation([inst(1, None, auto_start=True)], smtp=STOPPED)),
        response(observation([inst(1, 2)]), "apply", [step_result("start_service", error=refusal)]),
    ])
    assert "failed" not in result, result.get("msg")
    assert result["compliant"] is True and result["changed"] is False
    assert len(call.requests) == 2
    assert result["operations"][0]["ok"] is False and result["operations"][0]["service"] == "SMTPSVC"


def test_engine_two_controllers_on_one_host_both_end_without_failure():
    # The one that lost the race to start SMTPSVC re-observes, re-plans and
    # sends the instance command the service start did not do for it.
    result, call = run([
        response(observation([inst(1, None, auto_start=True), inst(2, None, auto_start=False)], smtp=STOPPED)),
        response(observation([inst(1, 1), inst(2, 4)]), "apply", [step_result("start_service", error=WRONG_STATE)]),
        response(observation([inst(1, 2), inst(2, 2)]), "apply", [step_result("instance", 2, "start")]),
    ])
    assert "failed" not in result, result.get("msg")
    assert [[s["op"] for s in r["steps"]] for r in call.requests[1:]] == [["start_service"], ["instance"]]
    assert result["compliant"] is True and result["changed"] is True


def test_engine_a_service_step_refused_twice_is_a_failure():
    # Excused once: a second refusal means the service keeps moving away from the plan.
    result, _call = run([
        response(observation([inst(1, None)], smtp=STOPPED)),
        response(observation([inst(1, None)], smtp=STOPPED), "apply", [step_result("start_service", error=ALREADY_RUNNING)]),
        response(observation([inst(1, None)], smtp=STOPPED), "apply", [step_result("start_service", error=ALREADY_RUNNING)]),
    ])
    assert result["failed"] and result["reason"] == "service_start_failed"
    assert "0x80070420" in result["msg"] and "SMTPSVC" in result["msg"]


def test_engine_a_service_error_that_is_not_about_its_state_fails_at_once():
    result, _call = run([
        response(observation([inst(1, None)], smtp=STOPPED)),
        response(observation([inst(1, None)], smtp=STOPPED), "apply",
                 [step_result("start_service", error=win_error("Error 1053: no timely response", "0x8007041D"))]),
    ])
    assert result["failed"] and result["reason"] == "service_start_failed"


# ------------------------------------------------------------------ pending states


def test_engine_a_service_stuck_start_pending_is_named_with_its_state():
    pending = observation([inst(1, None)], smtp=service("Start Pending", "Auto"))
    result, _call = run([response(pending), response(pending, "apply", [], settled=False)], timeout=5)
    assert result["failed"] and result["reason"] == "timeout"
    assert result["msg"].startswith("the SMTPSVC service is still starting (Start Pending) after 5 s")
    assert "virtual server 1" not in result["msg"]


# ------------------------------------------------------------- what the wait watches


def test_engine_watch_names_the_service_it_starts_and_the_targeted_instances():
    _result, call = run([
        response(observation([inst(1, None), inst(2, None)], smtp=STOPPED)),
        response(observation([inst(1, 2), inst(2, 4)]), "apply", [step_result("start_service")]),
    ], instances=(1,))
    assert call.requests[1]["steps"] == [{"op": "start_service", "service": "SMTPSVC"}]
    assert call.requests[1]["watch"] == {"services": ["SMTPSVC"], "instances": [1]}


def test_engine_watch_leaves_out_a_pending_iisadmin_the_plan_does_not_need():
    obs = observation([inst(1, 4), inst(2, 1)], iisadmin=service("Stop Pending", "Auto"))
    _result, call = run([response(obs), response(observation([inst(1, 2), inst(2, 1)]), "apply",
                                                 [step_result("instance", 1, "start")])], instances=(1,))
    assert call.requests[1]["watch"] == {"services": [], "instances": [1]}


def test_engine_a_wait_for_an_instance_watches_only_that_instance():
    obs = observation([inst(1, 1), inst(2, 5)])
    settled = observation([inst(1, 2), inst(2, 5)])
    _result, call = run([response(obs), response(settled, "apply", [])], instances=(1,))
    assert call.requests[1]["steps"] == []
    assert call.requests[1]["watch"] == {"services": [], "instances": [1]}


# ------------------------------------------------ a metabase not read: IISADMIN not running


def test_engine_info_names_a_stopped_iisadmin_not_a_missing_feature():
    result = info(Replay([response(unread())]))
    assert "failed" not in result and result["compliant"] is False
    (finding,) = result["findings"]
    assert finding["rule"] == "iisadmin_not_running" and finding["severity"] == "error"
    assert "IISADMIN" in finding["message"] and "stopped" in finding["message"]
    assert "Web-Metabase" not in finding["message"]
    assert result["iisadmin"]["state"] == "stopped"


def test_engine_info_names_a_disabled_iisadmin():
    result = info(Replay([response(unread(start_mode="Disabled"))]))
    assert [f["rule"] for f in result["findings"]] == ["iisadmin_disabled"]


def test_engine_enforce_starts_iisadmin_then_reads_and_converges():
    result, call = run([
        response(unread()),
        response(observation([inst(1, None, auto_start=True)], smtp=STOPPED), "apply",
                 [step_result("start_service")]),
        response(observation([inst(1, 2)]), "apply", [step_result("start_service")]),
    ])
    assert call.requests[1]["steps"] == [{"op": "start_service", "service": "IISADMIN"}]
    assert call.requests[1]["watch"] == {"services": ["IISADMIN"], "instances": []}
    assert call.requests[2]["steps"] == [{"op": "start_service", "service": "SMTPSVC"}]
    assert "failed" not in result, result.get("msg")
    assert result["compliant"] is True and result["changed"] is True
    assert [(op["op"], op["service"]) for op in result["operations"]] == [
        ("start_service", "IISADMIN"), ("start_service", "SMTPSVC")]
    assert [v["id"] for v in result["virtual_servers"]] == [1]


def test_engine_enforce_fails_precisely_on_a_disabled_iisadmin():
    result, call = run([response(unread(start_mode="Disabled"))])
    assert len(call.requests) == 1
    assert result["failed"] and result["reason"] == "iisadmin_disabled"
    assert "Set IISADMIN's start mode" in result["msg"]


def test_engine_enforce_waits_out_a_pending_iisadmin_and_names_it_when_stuck():
    pending = unread("Start Pending", "Manual")
    result, call = run([response(pending), response(pending, "apply", [], settled=False)], timeout=5)
    assert call.requests[1] == {"protocol": 1, "action": "apply", "steps": [], "settle_timeout_s": 4, "poll_ms": 500,
                                "watch": {"services": ["IISADMIN"], "instances": []}}
    assert result["failed"] and result["reason"] == "timeout"
    assert result["msg"].startswith("the IISADMIN service is still starting (Start Pending) after 5 s")


def test_engine_an_iisadmin_that_cannot_start_names_iisadmin():
    disabled = win_error("The service cannot be started, either because it is disabled or because it has no "
                         "enabled devices associated with it.", "0x80070422", "System.ComponentModel.Win32Exception")
    result, _call = run([response(unread()), response(unread(), "apply", [step_result("start_service", error=disabled)])])
    assert result["failed"] and result["reason"] == "iisadmin_disabled"
    assert result["msg"].startswith("the IISADMIN service could not be started")


def test_engine_check_mode_on_an_unread_host_predicts_a_change_and_sends_nothing():
    result, call = run([response(unread())], check_mode=True)
    assert len(call.requests) == 1
    assert result["changed"] is True and result["compliant"] is False and result["virtual_servers"] == []
    assert [f["rule"] for f in result["findings"]] == ["iisadmin_not_running"]
    drift, _call = run([response(unread())], check_mode=True, fail_on_drift=True)
    assert drift["failed"] and drift["reason"] == "drift" and "IISADMIN" in drift["msg"]


# ------------------------------------------------------ unknown while the service is down


def test_engine_stopped_target_behind_a_stopped_service_is_compliant_and_stays_unknown():
    obs = observation([inst(1, None)], smtp=STOPPED)
    for check_mode in (True, False):
        result, call = run([response(obs)], check_mode=check_mode, state="stopped")
        assert len(call.requests) == 1
        assert result["compliant"] is True and result["changed"] is False
        assert result["virtual_servers"][0]["after"] == {"state": "unknown", "state_code": None}
        # Nothing is meant to run, so a stopped SMTPSVC is no finding.
        assert result["findings"] == []


def test_engine_sends_no_instance_command_while_the_service_state_is_unreadable():
    smtp = {"installed": True, "state": None, "start_mode": None, "delayed_auto_start": None,
            "error": win_error("Invalid class", "0x80041010")}
    result, call = run([response(observation([inst(1, None)], smtp=smtp))])
    assert len(call.requests) == 1
    assert result["failed"] and result["reason"] == "service_unreadable" and "0x80041010" in result["msg"]


def test_engine_a_server_command_without_effect_fails_the_instance_once_retried():
    no_effect = win_error("ServerCommand 1 was written; ServerState stayed 4", None, "no_effect")
    stopped = observation([inst(1, 4, comment="Deaf")])
    result, call = run([response(stopped)] + [
        response(stopped, "apply", [step_result("instance", 1, "start", error=no_effect)])] * 2)
    assert result["failed"] and result["reason"] == "instance_start_failed"
    assert "ServerState stayed 4" in result["msg"]
    assert len(call.requests) == 2
