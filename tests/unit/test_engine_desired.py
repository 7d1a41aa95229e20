"""The engine judged against the desired state: both actions agree on `compliant`, and check mode predicts exactly.

Replayed from agent responses: hosts whose IISADMIN does not run (no
instance can be read), instance ids no request can carry, selectors that
look like digits, audits of hosts that a run would not change but that are
not compliant either.
"""

from __future__ import annotations

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._engine import (
    DesiredArgs,
    EnforceArgs,
    SelectionError,
    enforce,
    info,
    resolve,
)
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._model import parse_observation

from .hosts import Replay, inst, observation, response, service, step_result, unread

BIG = 3_000_000_000


def run(responses, check_mode=False, **kwargs):
    call = Replay(responses)
    return enforce(call, call.clock, EnforceArgs(**kwargs), check_mode=check_mode), call


@pytest.mark.parametrize("selector", ["²", "٢", "2 ", "0x2"])
def test_only_ascii_digits_name_an_instance_by_id(selector):
    host = parse_observation(observation([inst(1), inst(2)]))
    if selector == "2 ":
        assert resolve(host, selector) == 2
        return
    with pytest.raises(SelectionError, match="no SMTP virtual server is named %r" % selector):
        resolve(host, selector)


def test_an_instance_id_beyond_int32_does_not_block_the_others():
    before = observation([inst(1, 4), inst(BIG, 4)])
    result, call = run([response(before),
                        response(observation([inst(1, 2), inst(BIG, 4)]), "apply",
                                 [step_result("instance", 1, "start")])])
    apply = call.requests[1]
    assert [(s["id"], s["command"]) for s in apply["steps"]] == [(1, "start")]
    assert apply["watch"]["instances"] == [1]
    assert result["failed"] and result["reason"] == "instance_id_out_of_range"
    assert "SMTP virtual server 3000000000" in result["msg"] and "above 2147483647" in result["msg"]
    assert result["changed"] is True and result["operations"][0]["ok"] is True
    predicted, call = run([response(before)], check_mode=True)
    assert len(call.requests) == 1
    assert predicted["reason"] == "instance_id_out_of_range" and predicted["changed"] is True
    quiet, _call = run([response(observation([inst(1, 2), inst(BIG, 2)]))])
    assert "failed" not in quiet and quiet["compliant"] is True


def test_a_host_kept_stopped_needs_no_iisadmin():
    for check_mode in (True, False):
        result, call = run([response(unread())], check_mode=check_mode, state="stopped")
        assert len(call.requests) == 1, "nothing is started to look"
        assert "failed" not in result and result["compliant"] is True and result["changed"] is False
        assert result["findings"] == []


def test_a_host_kept_stopped_may_still_get_its_start_mode():
    disabled = unread(smtp=service("Stopped", "Disabled"))
    predicted, _call = run([response(unread())], check_mode=True, state="stopped", service_start_mode="disabled")
    assert predicted["changed"] is True and predicted["compliant"] is False
    result, call = run([response(unread()),
                        response(disabled, "apply", [step_result("set_start_mode")])],
                       state="stopped", service_start_mode="disabled")
    assert [s["op"] for s in call.steps_sent] == ["set_start_mode"]
    assert "failed" not in result and result["compliant"] is True and result["changed"] is True


@pytest.mark.parametrize("obs,reason", [
    (unread(start_mode="Disabled"), "iisadmin_disabled"),
    (unread("Paused"), "iisadmin_not_running"),
    (unread(smtp=service("Stopped", "Disabled")), "service_disabled"),
])
def test_a_host_that_cannot_be_brought_up_is_refused_before_anything_in_both_modes(obs, reason):
    for check_mode in (True, False):
        result, call = run([response(obs)], check_mode=check_mode)
        assert len(call.requests) == 1, "IISADMIN is not started for a run that cannot succeed"
        assert result["failed"] and result["reason"] == reason and result["changed"] is False


def test_check_mode_on_an_unread_host_predicts_the_services_it_starts():
    result, _call = run([response(unread())], check_mode=True, service_start_mode="delayed")
    assert result["changed"] is True and result["compliant"] is False
    assert result["service"]["after"] == {"state": "running", "start_mode": "delayed"}


def test_the_gate_fails_a_host_that_is_not_compliant_even_without_a_change():
    # Still starting: a run would only wait, but the instance serves no mail yet.
    result, _call = run([response(observation([inst(1, 1)]))], check_mode=True, fail_on_drift=True)
    assert result["changed"] is False and result["compliant"] is False
    assert result["failed"] and result["reason"] == "drift" and "is starting" in result["msg"]


def test_info_judges_by_the_desired_state_of_its_options():
    obs = observation([inst(1, 2), inst(2, 4, comment="Standby")])
    kept = info(Replay([response(obs)]), DesiredArgs(instance_states=(("Standby", "stopped"),)))
    assert kept["compliant"] is True and kept["findings"] == []
    assert [(v["id"], v["state"], v["desired"]) for v in kept["virtual_servers"]] == [
        (1, "started", "started"), (2, "stopped", "stopped")]
    plain = info(Replay([response(obs)]))
    assert plain["compliant"] is False and [f["rule"] for f in plain["findings"]] == ["smtp_instance_stopped"]
    left_out = info(Replay([response(obs)]), DesiredArgs(instances=(1,)))
    assert left_out["compliant"] is True and [v["id"] for v in left_out["virtual_servers"]] == [1]


def test_both_actions_agree_on_compliant():
    for obs, args in [
        (observation([inst(1, 2), inst(2, 4)]), DesiredArgs(instance_states=((2, "stopped"),))),
        (observation([inst(1, 6)], smtp=service("Paused")), DesiredArgs(state="paused")),
        (observation([inst(1, 2)], smtp=service("Running", "Manual")), DesiredArgs(service_start_mode="auto")),
        (unread(), DesiredArgs(state="stopped")),
        (unread(), DesiredArgs()),
    ]:
        read = info(Replay([response(obs)]), args)["compliant"]
        audit, _call = run([response(obs)], check_mode=True, state=args.state, instances=args.instances,
                           instance_states=args.instance_states, service_start_mode=args.service_start_mode)
        assert read == audit["compliant"], (obs, args)


def test_a_missing_feature_is_named_even_where_iisadmin_does_not_run_and_nothing_must():
    missing = observation(smtp=service(installed=False), iisadmin=service("Stopped", "Manual"),
                          metabase_error={"message": "IISADMIN state: Stopped", "hresult": None,
                                          "type": "iisadmin_not_running"})
    result, call = run([response(missing)], state="stopped")
    assert len(call.requests) == 1
    assert result["failed"] and result["reason"] == "smtp_feature_missing"
    read = info(Replay([response(missing)]), DesiredArgs(state="stopped"))
    assert [f["rule"] for f in read["findings"]] == ["smtp_feature_missing"] and read["compliant"] is False
