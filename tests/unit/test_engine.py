"""The controller loop, replayed from recorded agent responses."""

from __future__ import annotations

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _engine
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._engine import DesiredArgs, EnforceArgs, enforce, info
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._protocol import AgentError

from .hosts import Clock, Replay, inst, load, observation, response, service, step_result, win_error


def run(responses, check_mode=False, **kwargs):
    call = Replay(responses)
    result = enforce(call, call.clock, EnforceArgs(**kwargs), check_mode=check_mode)
    return result, call


def outcome(responses, check_mode=False, **kwargs):
    return run(responses, check_mode, **kwargs)[0]


# ------------------------------------------------------------------ info

def test_info_on_a_mixed_host():
    call = Replay(load("info_mixed.json"))
    result = info(call)
    assert call.requests == [{"protocol": 1, "action": "observe"}]
    assert result["changed"] is False and result["compliant"] is False
    assert result["host"]["computer_name"] == "RELAY01" and result["host"]["smtp_available"] is True
    assert result["service"] == {"name": "SMTPSVC", "installed": True, "state": "running", "start_mode": "auto"}
    assert result["iisadmin"]["name"] == "IISADMIN"
    assert [(v["id"], v["name"], v["state"], v["state_code"]) for v in result["virtual_servers"]] == [
        (1, "[SMTP Virtual Server #1]", "started", 2), (2, "App relay", "paused", 6),
        (3, "Broken", "stopped", 4), (4, "Scanner relay", "starting", 1)]
    assert [(f["rule"], f["instance"]) for f in result["findings"]] == [
        ("smtp_instance_paused", 2), ("smtp_instance_stopped", 3), ("instance_transitional", 4)]


def test_info_restricted_to_some_instances():
    result = info(Replay(load("info_mixed.json")), DesiredArgs(instances=("App relay", 1)))
    assert [v["id"] for v in result["virtual_servers"]] == [1, 2]
    assert [f["instance"] for f in result["findings"]] == [2]


@pytest.mark.parametrize("selector,words", [("Nope", "no SMTP virtual server is named 'Nope'"),
                                            (9, "no SMTP virtual server with id 9")])
def test_info_with_an_unknown_instance_fails(selector, words):
    result = info(Replay(load("info_mixed.json")), DesiredArgs(instances=(selector,)))
    assert result["failed"] and result["reason"] == "invalid_instances" and words in result["msg"]
    assert "3 (Broken)" in result["msg"]


@pytest.mark.parametrize("obs,rule", [
    (observation([], smtp=service(installed=False)), "smtp_feature_missing"),
    (observation([], smtp=service(installed=False), build=26100), "smtp_removed_from_os"),
    (observation(metabase_error=win_error("Unknown error (0x80005000)", "0x80005000")), "metabase_unavailable"),
])
def test_info_does_not_fail_where_smtp_cannot_run(obs, rule):
    result = info(Replay([response(obs)]))
    assert "failed" not in result
    assert result["virtual_servers"] == [] and result["compliant"] is False
    assert [f["rule"] for f in result["findings"]] == [rule]
    assert result["host"]["smtp_available"] is False


def test_info_fails_when_access_is_denied():
    obs = observation(metabase_error=win_error("Access is denied.", "0x80070005", "UnauthorizedAccessException"),
                      is_admin=False)
    result = info(Replay([response(obs)]))
    assert result["failed"] and result["reason"] == "access_denied" and "0x80070005" in result["msg"]


@pytest.mark.parametrize("code", ["not_windows", "connection_failed", "auth_failed", "winrm_fault",
                                  "agent_output_invalid", "agent_exit_nonzero", "protocol_mismatch"])
def test_transport_failures_become_reasons(code):
    result = info(Replay([AgentError(code, "because")]))
    expected: dict[str, object] = {"changed": False, "reason": code, "msg": "because"}
    if code in ("connection_failed", "auth_failed"):
        # What Ansible itself reports for a host it cannot talk to: unreachable, not failed.
        expected["unreachable"] = True
    else:
        expected["failed"] = True
    assert result == expected
    result = enforce(Replay([AgentError(code, "because")]), Clock(), EnforceArgs())
    assert (result.get("failed") or result.get("unreachable")) and result["reason"] == code


def test_a_refused_request_is_reported():
    bad = response(None)
    bad.update(ok=False, error=win_error("unsupported protocol 1", None, "ArgumentException"))
    result = info(Replay([bad]))
    assert result["reason"] == "agent_output_invalid" and "unsupported protocol 1" in result["msg"]


# ------------------------------------------------------------------ enforce

def test_enforce_mixed_host_in_one_apply():
    result, call = run(load("enforce_mixed_to_started.json"), timeout=60)
    apply = call.requests[1]
    assert apply["action"] == "apply" and apply["poll_ms"] == 500 and apply["settle_timeout_s"] == 59
    assert [(s["id"], s["command"]) for s in apply["steps"]] == [(2, "continue"), (3, "start")]
    assert len(call.requests) == 2
    assert result["changed"] is True and result["compliant"] is True and result["state"] == "started"
    assert result["operations"] == [{"op": "instance", "ok": True, "id": 2, "command": "continue"},
                                    {"op": "instance", "ok": True, "id": 3, "command": "start"}]
    by_id = {v["id"]: v for v in result["virtual_servers"]}
    assert by_id[2] == {"id": 2, "name": "App relay", "desired": "started",
                        "before": {"state": "paused", "state_code": 6}, "after": {"state": "started", "state_code": 2},
                        "changed": True, "actions": ["continue"]}
    assert by_id[1]["changed"] is False and by_id[1]["actions"] == []
    assert by_id[4]["changed"] is True and by_id[4]["actions"] == []
    assert result["diff"]["before"]["virtual_servers"] == {
        "1 [SMTP Virtual Server #1]": "started", "2 App relay": "paused", "3 Broken": "stopped",
        "4 Scanner relay": "starting"}
    assert set(result["diff"]["after"]["virtual_servers"].values()) == {"started"}
    assert result["findings"] == []
    assert result["service"]["changed"] is False


def test_check_mode_only_observes_and_predicts_exactly():
    result, call = run(load("enforce_mixed_to_started.json")[:1], check_mode=True)
    assert call.requests == [{"protocol": 1, "action": "observe"}]
    # compliant and findings describe the host as found; the prediction is what a run would change.
    assert result["changed"] is True and result["operations"] == [] and result["compliant"] is False
    assert [f["instance"] for f in result["findings"]] == [2, 3, 4]
    by_id = {v["id"]: v for v in result["virtual_servers"]}
    assert by_id[3]["actions"] == ["start"] and by_id[3]["after"] == {"state": "started", "state_code": 2}
    real = outcome(load("enforce_mixed_to_started.json"))
    assert result["diff"] == real["diff"]


def test_check_mode_on_a_compliant_host_predicts_no_change():
    result = outcome([response(observation([inst(1, 2)]))], check_mode=True)
    assert result["changed"] is False and result["compliant"] is True


def test_fail_on_drift_fails_with_the_full_result_only_when_there_is_drift():
    result = outcome(load("enforce_mixed_to_started.json")[:1], check_mode=True, fail_on_drift=True)
    assert result["failed"] and result["reason"] == "drift" and "RELAY01" in result["msg"]
    assert len(result["virtual_servers"]) == 4 and result["changed"] is True
    clean = outcome([response(observation([inst(1, 2)]))], check_mode=True, fail_on_drift=True)
    assert "failed" not in clean


def test_idempotent_run_sends_only_an_observe():
    result, call = run([response(observation([inst(1, 2), inst(2, 4, comment="Off")]))],
                       instance_states=(("Off", "stopped"),))
    assert len(call.requests) == 1
    assert result["changed"] is False and result["operations"] == [] and result["compliant"] is True


def test_service_stopped_is_started_with_its_start_mode_then_the_instance():
    result, call = run(load("enforce_service_stopped.json"), service_start_mode="auto")
    assert [[s["op"] for s in r["steps"]] for r in call.requests[1:]] == [
        ["set_start_mode", "start_service"], ["instance"]]
    assert call.requests[1]["steps"][0]["start_mode"] == "auto"
    assert result["service"] == {"name": "SMTPSVC", "before": {"state": "stopped", "start_mode": "manual"},
                                 "after": {"state": "running", "start_mode": "auto"}, "changed": True}
    assert result["compliant"] is True and result["changed"] is True
    assert result["operations"][:2] == [{"op": "set_start_mode", "ok": True, "service": "SMTPSVC"},
                                        {"op": "start_service", "ok": True, "service": "SMTPSVC"}]
    by_id = {v["id"]: v for v in result["virtual_servers"]}
    assert by_id[1]["actions"] == [] and by_id[1]["changed"] is True
    assert by_id[2]["actions"] == ["start"]


def test_service_stopped_check_mode_predicts_the_auto_start_instance():
    result = outcome(load("enforce_service_stopped.json")[:1], check_mode=True, service_start_mode="auto")
    assert result["service"]["after"] == {"state": "running", "start_mode": "auto"}
    assert {v["id"]: v["actions"] for v in result["virtual_servers"]} == {1: [], 2: ["start"]}
    assert result["changed"] is True and result["compliant"] is False


def test_start_error_names_instance_state_and_windows_error():
    result, call = run(load("enforce_start_error.json"), instances=("Broken",))
    assert len(call.requests) == 2
    assert result["failed"] and result["reason"] == "instance_start_failed"
    assert result["msg"].startswith("SMTP virtual server 3 (Broken) did not reach started within 60 s: "
                                    "last state stopped; Windows error 0x80070034")
    assert result["operations"][0]["ok"] is False and "0x80070034" in result["operations"][0]["error"]
    assert result["virtual_servers"][0]["after"] == {"state": "stopped", "state_code": 4}
    assert result["changed"] is False and result["compliant"] is False


def test_stuck_transition_times_out_with_the_last_state():
    result, call = run(load("enforce_stuck_starting.json"), timeout=30)
    assert len(call.requests) == 2
    assert result["failed"] and result["reason"] == "timeout"
    assert result["msg"] == "SMTP virtual server 2 (Stuck) did not reach started within 30 s: last state starting"
    assert result["virtual_servers"][1]["after"]["state"] == "starting"


def test_transitional_instance_is_waited_out_with_an_empty_apply():
    result, call = run(load("enforce_wait_transitional.json"), timeout=10)
    assert call.requests[1] == {"protocol": 1, "action": "apply", "steps": [], "settle_timeout_s": 9, "poll_ms": 500,
                                "watch": {"services": [], "instances": [1]}}
    assert result["changed"] is False and result["compliant"] is True and result["operations"] == []


def test_stopped_then_paused_takes_two_rounds():
    obs = [response(observation([inst(1, 4)])),
           response(observation([inst(1, 2)]), "apply", [step_result("instance", 1, "start")]),
           response(observation([inst(1, 6)]), "apply", [step_result("instance", 1, "pause")])]
    result, call = run(obs, state="paused")
    assert [s["command"] for s in call.steps_sent] == ["start", "pause"]
    assert result["virtual_servers"][0]["actions"] == ["start", "pause"] and result["compliant"]


def test_a_command_that_is_accepted_but_ignored_is_retried_once_then_reported():
    stopped = observation([inst(1, 4, comment="Deaf")])
    obs = [response(stopped)] + [response(stopped, "apply", [step_result("instance", 1, "start")])] * 2
    result, call = run(obs)
    assert [s["command"] for s in call.steps_sent] == ["start", "start"]
    assert result["reason"] == "instance_start_failed"
    assert result["msg"].endswith("last state stopped; the start command was accepted but had no effect")


def test_a_command_refused_because_the_instance_moved_is_planned_again_once():
    not_active = win_error("The service has not been started.", "0x80070426")
    obs = [response(observation([inst(1, 6, comment="Rebooted")])),
           response(observation([inst(1, 4, comment="Rebooted")]), "apply",
                    [step_result("instance", 1, "continue", error=not_active)]),
           response(observation([inst(1, 2, comment="Rebooted")]), "apply", [step_result("instance", 1, "start")])]
    result, call = run(obs)
    assert [s["command"] for s in call.steps_sent] == ["continue", "start"]
    assert "failed" not in result and result["compliant"] is True
    assert [o["ok"] for o in result["operations"]] == [False, True]


def test_a_moving_instance_is_excused_only_once():
    not_active = win_error("The service has not been started.", "0x80070426")
    obs = [response(observation([inst(1, 6)])),
           response(observation([inst(1, 4)]), "apply", [step_result("instance", 1, "continue", error=not_active)]),
           response(observation([inst(1, 6)]), "apply", [step_result("instance", 1, "start", error=not_active)])]
    result = outcome(obs)
    assert result["reason"] == "instance_start_failed" and "0x80070426" in result["msg"]


def test_failed_stop_is_a_command_failure():
    err = win_error("Catastrophic failure", "0x8000FFFF")
    obs = [response(observation([inst(1, 2)])),
           response(observation([inst(1, 2)]), "apply", [step_result("instance", 1, "stop", error=err)])]
    result = outcome(obs, state="stopped")
    assert result["reason"] == "instance_command_failed" and "0x8000FFFF" in result["msg"]


def test_access_denied_on_a_step():
    err = win_error("Access is denied.", "0x80070005")
    obs = [response(observation([inst(1, 4)])),
           response(observation([inst(1, 4)]), "apply", [step_result("instance", 1, "start", error=err)])]
    result = outcome(obs)
    assert result["reason"] == "access_denied"


def test_other_instances_still_converge_when_one_fails():
    err = win_error("The network address is in use.", "0x80070034")
    obs = [response(observation([inst(1, 4, comment="Bad"), inst(2, 4, comment="Good")])),
           response(observation([inst(1, 4, comment="Bad"), inst(2, 2, comment="Good")]), "apply",
                    [step_result("instance", 1, "start", error=err), step_result("instance", 2, "start")])]
    result, call = run(obs)
    assert len(call.requests) == 2
    assert result["reason"] == "instance_start_failed" and result["changed"] is True
    assert {v["id"]: v["after"]["state"] for v in result["virtual_servers"]} == {1: "stopped", 2: "started"}


@pytest.mark.parametrize("hresult,reason", [("0x80070422", "service_disabled"), ("0x80070005", "access_denied"),
                                            ("0x8007041D", "service_start_failed")])
def test_service_start_failure(hresult, reason):
    stopped = observation([inst(1, None, auto_start=True)], smtp=service("Stopped", "Manual"))
    obs = [response(stopped),
           response(stopped, "apply", [step_result("start_service", error=win_error("Cannot start", hresult))])]
    result = outcome(obs)
    assert result["reason"] == reason and hresult in result["msg"]
    assert result["operations"] == [{"op": "start_service", "ok": False, "service": "SMTPSVC",
                                     "error": "Windows error %s (Cannot start)" % hresult}]


def test_disabled_service_fails_before_any_change_also_in_check_mode():
    disabled = observation([inst(1, 4)], smtp=service("Stopped", "Disabled"))
    for check in (False, True):
        result, call = run([response(disabled)], check_mode=check)
        assert len(call.requests) == 1
        assert result["failed"] and result["reason"] == "service_disabled" and result["changed"] is False
        assert result["service"]["before"]["start_mode"] == "disabled"


@pytest.mark.parametrize("obs,reason", [
    (observation([], smtp=service(installed=False)), "smtp_feature_missing"),
    (observation([], smtp=service(installed=False), build=26100), "smtp_removed_from_os"),
    (observation(metabase_error=win_error("Unknown error", "0x80005000")), "metabase_unavailable"),
    (observation(metabase_error=win_error("Access is denied.", "0x80070005")), "access_denied"),
])
def test_enforce_fails_where_smtp_cannot_be_managed(obs, reason):
    result, call = run([response(obs)])
    assert len(call.requests) == 1 and result["failed"] and result["reason"] == reason


def test_non_admin_fails_before_changing_anything():
    result, call = run([response(observation([inst(1, 4)], is_admin=False))])
    assert len(call.requests) == 1 and result["reason"] == "access_denied"
    assert result["virtual_servers"][0]["after"]["state"] == "stopped"
    ok = outcome([response(observation([inst(1, 2)], is_admin=False))])
    assert "failed" not in ok


@pytest.mark.parametrize("args,words", [
    ({"instances": ("Relay",)}, "names 2 SMTP virtual servers (ids 1, 2)"),
    ({"instances": ("Gone",)}, "no SMTP virtual server is named 'Gone'"),
    ({"instances": (7,)}, "no SMTP virtual server with id 7"),
    ({"instance_states": (("7", "stopped"),)}, "no SMTP virtual server with id 7"),
    ({"instance_states": ((3, "stopped"), ("Third", "paused"))}, "names SMTP virtual server 3 twice"),
])
def test_selection_errors_fail_after_observe_and_before_any_change(args, words):
    obs = observation([inst(1, 4, comment="Relay"), inst(2, 4, comment="relay"), inst(3, 4, comment="Third")])
    obs["instances"][1]["server_comment"] = "Relay"
    result, call = run([response(obs)], **args)
    assert len(call.requests) == 1
    assert result["reason"] == "invalid_instances" and words in result["msg"]


def test_selection_by_display_name_case_insensitive_name_and_digit_string():
    obs = observation([inst(1, 4), inst(2, 4, comment="App Relay"), inst(3, 4, comment="Other")])
    result = outcome([response(obs)], check_mode=True,
                     instances=("[SMTP Virtual Server #1]", "app relay"), instance_states=(("3", "stopped"),))
    assert {v["id"]: v["desired"] for v in result["virtual_servers"]} == {1: "started", 2: "started", 3: "stopped"}


def test_same_state_twice_for_one_instance_is_fine():
    obs = observation([inst(3, 4, comment="Third")])
    result = outcome([response(obs)], check_mode=True, instances=(3,),
                     instance_states=((3, "stopped"), ("Third", "stopped")))
    assert "failed" not in result and result["changed"] is False


def test_start_mode_only():
    obs = [response(observation([inst(1, 2)], smtp=service("Running", "Manual"))),
           response(observation([inst(1, 2)], smtp=service("Running", "Auto", delayed=True)), "apply",
                    [step_result("set_start_mode")])]
    result, call = run(obs, service_start_mode="delayed")
    assert call.requests[1]["steps"] == [{"op": "set_start_mode", "service": "SMTPSVC", "start_mode": "delayed-auto"}]
    assert result["changed"] is True and result["service"]["after"]["start_mode"] == "delayed"
    assert result["diff"]["after"]["service"] == {"state": "running", "start_mode": "delayed"}


def test_large_plans_are_sent_in_batches():
    count = _engine.MAX_STEPS_PER_APPLY + 4
    before = observation([inst(i, 4) for i in range(1, count + 1)])
    half = observation([inst(i, 2 if i <= _engine.MAX_STEPS_PER_APPLY else 4) for i in range(1, count + 1)])
    done = observation([inst(i, 2) for i in range(1, count + 1)])
    result, call = run([response(before), response(half, "apply", []), response(done, "apply", [])])
    assert [len(r["steps"]) for r in call.requests[1:]] == [_engine.MAX_STEPS_PER_APPLY, 4]
    assert result["compliant"] is True


def test_rounds_are_bounded_when_instances_keep_moving():
    flip = [response(observation([inst(1, 1)]), "apply", [])] * (_engine.MAX_ROUNDS + 1)
    result, call = run([response(observation([inst(1, 1)]))] + flip, timeout=3600)
    assert len(call.requests) == 1 + _engine.MAX_ROUNDS
    assert result["reason"] == "timeout" and "gave up after" in result["msg"]


def test_service_that_never_settles_times_out():
    pending = observation([inst(1, 2)], smtp=service("Start Pending"))
    result = outcome([response(pending), response(pending, "apply", [], settled=False)], timeout=5)
    assert result["reason"] == "timeout"
    # Named after the service and its Windows state, not after the instances it keeps unreadable.
    assert result["msg"] == ("the SMTPSVC service is still starting (Start Pending) after 5 s: no SMTP virtual "
                             "server can be controlled until it settles")


def test_unreadable_instance_error_is_quoted_on_timeout():
    err = win_error("The data is invalid.", "0x8007000D")
    moving = observation([inst(1, 1, error=err)])
    result = outcome([response(moving), response(moving, "apply", [], settled=False)], timeout=5)
    assert "0x8007000D" in result["msg"]


def test_connection_lost_mid_run_keeps_what_is_known():
    obs = [response(observation([inst(1, 4), inst(2, 4)])),
           AgentError("connection_failed", "could not talk to the host: reset")]
    result = outcome(obs)
    assert result["reason"] == "connection_failed"
    assert [v["before"]["state"] for v in result["virtual_servers"]] == ["stopped", "stopped"]
