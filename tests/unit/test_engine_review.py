"""Check-mode prediction and compliance on the edges of the state matrix."""

from __future__ import annotations

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._engine import EnforceArgs, enforce

from .hosts import Replay, inst, observation, response, service, step_result


def _run(responses, check_mode=False, **kwargs):
    call = Replay(responses)
    return enforce(call, call.clock, EnforceArgs(**kwargs), check_mode=check_mode), call


def _outcome(responses, check_mode=False, **kwargs):
    return _run(responses, check_mode, **kwargs)[0]


def test_check_mode_marks_an_instance_changed_when_it_would_be_stopped_again():
    # The service start brings instance 1 back (auto start); keeping it stopped
    # takes a stop command, so a run reports it changed and check mode must too.
    stopped = service("Stopped", "Manual")
    before = observation([inst(1, None, auto_start=True), inst(2, None, auto_start=False)], smtp=stopped)
    states = (("1", "stopped"),)
    predicted = _outcome([response(before)], check_mode=True, instance_states=states)
    real, call = _run([
        response(before),
        response(observation([inst(1, 2), inst(2, 4)]), "apply", [step_result("start_service")]),
        response(observation([inst(1, 4), inst(2, 2)]), "apply",
                 [step_result("instance", 1, "stop"), step_result("instance", 2, "start")]),
    ], instance_states=states)
    assert [s["command"] for s in call.steps_sent if s["op"] == "instance"] == ["stop", "start"]
    real_by_id = {v["id"]: (v["actions"], v["changed"]) for v in real["virtual_servers"]}
    assert real_by_id == {1: (["stop"], True), 2: (["start"], True)}
    assert {v["id"]: (v["actions"], v["changed"]) for v in predicted["virtual_servers"]} == real_by_id


def test_paused_target_behind_a_paused_service_is_compliant():
    obs = observation([inst(1, 6)], smtp=service("Paused", "Auto"))
    result, call = _run([response(obs)], state="paused")
    assert len(call.requests) == 1
    assert "failed" not in result and result["changed"] is False and result["compliant"] is True
    predicted = _outcome([response(obs)], check_mode=True, state="paused")
    assert predicted["changed"] is False and predicted["compliant"] is True


def test_started_target_behind_a_paused_service_is_still_continued():
    obs = observation([inst(1, 6)], smtp=service("Paused", "Auto"))
    result, call = _run([response(obs),
                         response(observation([inst(1, 2)]), "apply", [step_result("continue_service")])])
    assert [s["op"] for s in call.steps_sent] == ["continue_service"]
    assert result["compliant"] is True and result["changed"] is True


def test_a_windows_error_is_quoted_at_most_200_characters():
    long = "sc.exe config SMTPSVC exited with 1062: " + "x" * 5000
    obs = observation([inst(1, 4)])
    result = _outcome([response(obs),
                      response(obs, "apply", [step_result("instance", 1, "start",
                                                          {"message": long, "hresult": "0x80070034",
                                                           "type": "COMException"})])])
    assert result["failed"] and result["reason"] == "instance_start_failed"
    assert "x" * 150 in result["msg"] and "x" * 201 not in result["msg"]
    assert "x" * 201 not in result["operations"][0]["error"]


def _same_prediction(responses, **kwargs):
    predicted = _outcome(responses[:1], check_mode=True, **kwargs)
    real, call = _run(responses, **kwargs)
    assert "failed" not in real and real["compliant"] is True
    for key in ("changed", "diff"):
        assert predicted[key] == real[key], key
    assert [(v["id"], v["actions"], v["changed"]) for v in predicted["virtual_servers"]] == \
        [(v["id"], v["actions"], v["changed"]) for v in real["virtual_servers"]]
    return predicted, call


def test_a_stopping_service_is_waited_for_not_started_again_when_all_must_stop():
    predicted, call = _same_prediction([
        response(observation([inst(1, 3), inst(2, None)], smtp=service("Stop Pending", "Manual"))),
        response(observation([inst(1, None), inst(2, None)], smtp=service("Stopped", "Manual")), "apply"),
    ], state="stopped")
    assert call.steps_sent == [] and predicted["changed"] is False
    assert predicted["service"]["after"]["state"] == "stopped"


def test_a_starting_service_brings_back_its_auto_start_instances():
    predicted, call = _same_prediction([
        response(observation([inst(1, None, auto_start=True), inst(2, None, auto_start=False)],
                             smtp=service("Start Pending", "Auto"))),
        response(observation([inst(1, 2), inst(2, 4)]), "apply"),
        response(observation([inst(1, 2), inst(2, 2)]), "apply", [step_result("instance", 2, "start")]),
    ])
    assert [(s["id"], s["command"]) for s in call.steps_sent] == [(2, "start")]
    assert {v["id"]: v["actions"] for v in predicted["virtual_servers"]} == {1: [], 2: ["start"]}


def test_a_pausing_service_is_continued_and_brings_its_instances_back():
    predicted, call = _same_prediction([
        response(observation([inst(1, 5)], smtp=service("Pause Pending", "Auto"))),
        response(observation([inst(1, 6)], smtp=service("Paused", "Auto")), "apply"),
        response(observation([inst(1, 2)]), "apply", [step_result("continue_service")]),
    ])
    assert [s["op"] for s in call.steps_sent] == ["continue_service"]
    assert {v["id"]: v["actions"] for v in predicted["virtual_servers"]} == {1: []}
