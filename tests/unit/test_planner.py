"""Planner: every observed instance state against every desired state, and the service cases."""

from __future__ import annotations

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._model import parse_observation
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._planner import Desired, path, plan

from .hosts import inst, observation, one, service

STABLE = {"started": 2, "stopped": 4, "paused": 6}
TRANSITIONAL = {"starting": 1, "stopping": 3, "pausing": 5, "continuing": 7}

# (observed, desired) -> commands over the whole path
EXPECTED_PATH = {
    ("started", "started"): (), ("started", "stopped"): ("stop",), ("started", "paused"): ("pause",),
    ("stopped", "started"): ("start",), ("stopped", "stopped"): (), ("stopped", "paused"): ("start", "pause"),
    ("paused", "started"): ("continue",), ("paused", "stopped"): ("stop",), ("paused", "paused"): (),
    ("starting", "started"): (), ("starting", "stopped"): ("stop",), ("starting", "paused"): ("pause",),
    ("stopping", "started"): ("start",), ("stopping", "stopped"): (), ("stopping", "paused"): ("start", "pause"),
    ("pausing", "started"): ("continue",), ("pausing", "stopped"): ("stop",), ("pausing", "paused"): (),
    ("continuing", "started"): (), ("continuing", "stopped"): ("stop",), ("continuing", "paused"): ("pause",),
}


def host_with(code, smtp=None, **kw):
    return parse_observation(observation([inst(1, code, **kw), inst(2, 2, comment="Other")], smtp=smtp))


def only(target_state, start_mode=None, ident=1):
    return Desired(targets=((ident, target_state),), start_mode=start_mode)


@pytest.mark.parametrize("observed,desired", sorted(EXPECTED_PATH))
def test_every_pair_with_the_service_running(observed, desired):
    code = {**STABLE, **TRANSITIONAL}[observed]
    result = plan(host_with(code), only(desired))
    expected = EXPECTED_PATH[(observed, desired)]
    assert result.instance_actions[1] == expected
    assert one(result.predicted, 1).state == desired
    assert one(result.predicted, 1).state_code == STABLE[desired]
    # The other instance is not targeted and keeps its state.
    assert one(result.predicted, 2).state == "started"
    assert result.service_actions == ()
    if observed in TRANSITIONAL:
        assert result.waiting and result.steps == ()
    else:
        assert not result.waiting
        sent = tuple(s["command"] for s in result.steps)
        assert sent == expected[:1]
    assert result.converged == (observed == desired)
    assert result.changes == bool(expected)


def test_instance_step_shape_tries_the_method_then_server_command():
    step = plan(host_with(4), only("started")).steps[0]
    assert step == {"op": "instance", "id": 1, "command": "start", "via": ["method", "server_command"]}


@pytest.mark.parametrize("desired,command", [("started", "start"), ("stopped", "stop"), ("paused", "pause")])
def test_unknown_state_gets_the_command_named_after_the_goal(desired, command):
    host = host_with(None)
    assert one(host, 1).state == "unknown"
    result = plan(host, only(desired))
    assert [s["command"] for s in result.steps] == [command]
    assert path("unknown", desired) == (command,)


def test_stopped_service_is_started_first_and_instances_wait_for_the_next_look():
    smtp = service("Stopped", "Manual")
    host = parse_observation(observation([inst(1, 4, auto_start=True), inst(2, 4, auto_start=False),
                                          inst(3, 4, auto_start=False)], smtp=smtp))
    result = plan(host, Desired(targets=((1, "started"), (2, "started"))))
    assert result.steps == ({"op": "start_service", "service": "SMTPSVC"},)
    assert result.service_actions == ("start_service",)
    # 1 comes back on its own (ServerAutoStart), 2 needs a start, 3 is untargeted and stays down.
    assert result.instance_actions == {1: (), 2: ("start",)}
    assert result.predicted.smtp.state == "running"
    assert [i.state for i in result.predicted.instances] == ["started", "started", "stopped"]


def test_service_start_brings_back_untargeted_auto_start_instances_in_the_prediction():
    smtp = service("Stopped", "Auto")
    host = parse_observation(observation([inst(1, None, auto_start=False), inst(2, None, auto_start=True)],
                                         smtp=smtp))
    result = plan(host, only("started"))
    assert one(result.predicted, 2).state == "started"
    assert result.instance_actions == {1: ("start",)}


def test_auto_start_instance_that_must_stay_stopped_is_stopped_after_the_service_starts():
    smtp = service("Stopped", "Auto")
    host = parse_observation(observation([inst(1, 4, auto_start=False), inst(2, 4, auto_start=True)], smtp=smtp))
    result = plan(host, Desired(targets=((1, "started"), (2, "stopped"))))
    assert result.instance_actions == {1: ("start",), 2: ("stop",)}
    assert one(result.predicted, 2).state == "stopped"


def test_stopped_service_and_stopped_targets_need_nothing():
    host = parse_observation(observation([inst(1, None, auto_start=True)], smtp=service("Stopped", "Manual")))
    result = plan(host, only("stopped"))
    assert result.converged and not result.changes
    assert result.predicted.smtp.state == "stopped"


def test_stopped_service_and_paused_target_starts_the_service_then_plans_start_and_pause():
    host = parse_observation(observation([inst(1, 4, auto_start=False)], smtp=service("Stopped", "Manual")))
    result = plan(host, only("paused"))
    assert [s["op"] for s in result.steps] == ["start_service"]
    assert result.instance_actions == {1: ("start", "pause")}


def test_paused_service_is_continued_even_when_the_instance_reads_started():
    host = host_with(2, smtp=service("Paused", "Auto"))
    result = plan(host, only("started"))
    assert result.steps == ({"op": "continue_service", "service": "SMTPSVC"},)
    assert result.predicted.smtp.state == "running"
    assert result.instance_actions == {1: ()}


def test_instances_read_paused_under_a_paused_service_are_predicted_back_after_continue():
    host = parse_observation(observation([inst(1, 6), inst(2, 4)], smtp=service("Paused", "Auto")))
    result = plan(host, Desired(targets=((1, "started"), (2, "started"))))
    assert [s["op"] for s in result.steps] == ["continue_service"]
    assert result.instance_actions == {1: (), 2: ("start",)}


def test_paused_service_is_continued_before_an_instance_is_stopped():
    host = host_with(2, smtp=service("Paused", "Auto"))
    result = plan(host, only("stopped"))
    assert [s["op"] for s in result.steps] == ["continue_service"]
    assert result.instance_actions == {1: ("stop",)}


def test_paused_service_with_targets_already_paused_is_left_alone():
    host = host_with(6, smtp=service("Paused", "Auto"))
    result = plan(host, only("paused"))
    assert result.converged
    assert result.predicted.smtp.state == "paused"


def test_disabled_stopped_service_blocks_a_start():
    host = parse_observation(observation([inst(1, 4)], smtp=service("Stopped", "Disabled")))
    result = plan(host, only("started"))
    assert result.blocked == "service_disabled"
    assert "service_start_mode" in str(result.blocked_msg)
    assert result.steps == () and not result.converged


def test_disabled_service_with_a_new_start_mode_is_enabled_then_started():
    host = parse_observation(observation([inst(1, 4, auto_start=False)], smtp=service("Stopped", "Disabled")))
    result = plan(host, only("started", start_mode="delayed"))
    assert result.blocked is None
    assert result.steps == ({"op": "set_start_mode", "service": "SMTPSVC", "start_mode": "delayed-auto"},
                            {"op": "start_service", "service": "SMTPSVC"})
    assert result.service_actions == ("set_start_mode", "start_service")
    assert result.predicted.smtp.start_mode == "delayed"


def test_disabling_comes_after_the_steps_that_need_the_service():
    host = host_with(4)
    result = plan(host, only("started", start_mode="disabled"))
    assert [s["op"] for s in result.steps] == ["instance", "set_start_mode"]
    assert result.steps[1]["start_mode"] == "disabled"
    assert result.service_actions == ("set_start_mode",)


def test_disabled_but_running_service_still_lets_instances_start():
    host = host_with(4, smtp=service("Running", "Disabled"))
    result = plan(host, only("started"))
    assert result.blocked is None
    assert [s["command"] for s in result.steps] == ["start"]


@pytest.mark.parametrize("mode,sc", [("auto", "auto"), ("delayed", "delayed-auto"), ("manual", "demand"),
                                     ("disabled", "disabled")])
def test_start_mode_words_are_sc_exe_words(mode, sc):
    host = host_with(2, smtp=service("Running", "Manual" if mode != "manual" else "Auto"))
    result = plan(host, only("started", start_mode=mode))
    assert result.steps == ({"op": "set_start_mode", "service": "SMTPSVC", "start_mode": sc},)
    assert result.predicted.smtp.start_mode == mode


def test_start_mode_already_right_is_not_sent():
    host = host_with(2, smtp=service("Running", "Auto", delayed=True))
    assert plan(host, only("started", start_mode="delayed")).converged
    assert not plan(host, only("started", start_mode="auto")).converged


@pytest.mark.parametrize("win_state,expect_op", [("Start Pending", None), ("Continue Pending", None),
                                                 ("Stop Pending", "start_service"),
                                                 ("Pause Pending", "continue_service")])
def test_transitional_service_is_waited_out(win_state, expect_op):
    host = host_with(4, smtp=service(win_state, "Auto"))
    result = plan(host, only("started"))
    assert result.waiting and result.steps == ()
    assert result.service_actions == ((expect_op,) if expect_op else ())
    assert result.predicted.smtp.state == "running"


def test_transitional_service_not_needed_is_not_waited_for():
    host = host_with(4, smtp=service("Stop Pending", "Auto"))
    assert plan(host, only("stopped")).converged


def test_one_transitional_instance_does_not_hold_back_the_others():
    host = parse_observation(observation([inst(1, 1), inst(2, 4), inst(3, 6)]))
    result = plan(host, Desired(targets=((1, "started"), (2, "started"), (3, "started"))))
    assert result.waiting
    assert [(s["id"], s["command"]) for s in result.steps] == [(2, "start"), (3, "continue")]


def test_skipped_instances_keep_their_state_and_get_no_step():
    host = parse_observation(observation([inst(1, 4), inst(2, 4)]))
    result = plan(host, Desired(targets=((1, "started"), (2, "started"))), skip=frozenset({1}))
    assert [s["id"] for s in result.steps] == [2]
    assert one(result.predicted, 1).state == "stopped"
    assert 1 not in result.instance_actions


def test_desired_state_of_an_untargeted_instance_is_none():
    assert Desired(targets=((1, "started"),)).state_of(2) is None


# ------------------------------------------------------ the service down or pending


def test_planner_sends_no_instance_step_while_the_service_starts():
    host = parse_observation(observation([inst(1, None), inst(2, None)], smtp=service("Start Pending", "Auto")))
    result = plan(host, Desired(targets=((1, "started"), (2, "stopped"))))
    assert result.steps == () and result.waiting
    assert result.watch == {"services": ["SMTPSVC"], "instances": [1, 2]}


def test_planner_stopped_target_behind_a_stopped_service_stays_unknown():
    host = parse_observation(observation([inst(1, None), inst(2, None)], smtp=service("Stopped", "Manual")))
    result = plan(host, Desired(targets=((1, "stopped"),)))
    assert result.converged and result.steps == ()
    assert one(result.predicted, 1).summary() == {"state": "unknown", "state_code": None}


def test_planner_started_target_behind_a_stopped_service_starts_the_service_alone():
    host = parse_observation(observation([inst(1, None, auto_start=False)], smtp=service("Stopped", "Manual")))
    result = plan(host, only("started"))
    assert [s["op"] for s in result.steps] == ["start_service"]
    assert result.watch == {"services": ["SMTPSVC"], "instances": [1]}
    assert result.instance_actions[1] == ("start",)


def test_planner_watches_neither_untargeted_nor_skipped_instances():
    host = parse_observation(observation([inst(1, 4), inst(2, 4), inst(3, 1)]))
    result = plan(host, Desired(targets=((1, "started"), (2, "started"))), skip=frozenset({2}))
    assert result.watch == {"services": [], "instances": [1]}


def test_planner_blocks_when_the_service_state_cannot_be_read():
    smtp = {"installed": True, "state": None, "start_mode": None, "delayed_auto_start": None,
            "error": {"message": "Invalid class", "hresult": "0x80041010", "type": "COMException"}}
    result = plan(parse_observation(observation([inst(1, 4)], smtp=smtp)), only("started"))
    assert result.blocked == "service_unreadable" and result.steps == ()
