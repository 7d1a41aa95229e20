"""Task argument checks that run before anything is sent to a host."""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _args


def test_selectors_keep_ids_and_names_in_order():
    given = [2, "App relay", "[SMTP Virtual Server #1]"]
    assert _args.selectors(given) == tuple(given)
    assert _args.selectors(None) is None


@pytest.mark.parametrize("value,words", [
    ([0], "instances[0]: instance id 0 is invalid; ids start at 1"),
    ([1, -3], "instances[1]: instance id -3 is invalid"),
    (["  "], "instances[0]: an instance name must not be empty"),
    ([True], "instances[0]: True is neither an instance id (integer) nor a name (string)"),
    ([1.5], "instances[0]: 1.5 is neither"),
    ([{"id": 1}], "is neither"),
    ([2, 2], "instances: 2 is listed more than once"),
    (["a", "a"], "instances: 'a' is listed more than once"),
    ([], "instances: the list is empty"),
])
def test_bad_selectors(value, words):
    with pytest.raises(_args.ArgumentError) as err:
        _args.selectors(value)
    assert words in str(err.value) and err.value.reason == "invalid_instances"


def test_instance_states():
    assert _args.instance_states({2: "stopped", "App relay": "paused"}) == ((2, "stopped"), ("App relay", "paused"))
    assert _args.instance_states(None) == ()


@pytest.mark.parametrize("value,words,reason", [
    ({0: "started"}, "instance_states key 0: instance id 0 is invalid", "invalid_instances"),
    ({"": "started"}, "must not be empty", "invalid_instances"),
    ({1: "running"}, "instance_states[1]: 'running' is not one of started, stopped, paused", "invalid_argument"),
])
def test_bad_instance_states(value, words, reason):
    with pytest.raises(_args.ArgumentError) as err:
        _args.instance_states(value)
    assert words in str(err.value) and err.value.reason == reason


@pytest.mark.parametrize("value", [0, 3601, -1])
def test_timeout_range(value):
    with pytest.raises(_args.ArgumentError, match="use 1 to 3600 seconds") as err:
        _args.timeout(value)
    assert err.value.reason == "invalid_argument"
    assert _args.timeout(3600) == 3600


def test_spec_rejects_unknown_options_and_bad_choices():
    result = ArgumentSpecValidator(_args.ENFORCE_SPEC).validate({"state": "running", "colour": "red"})
    text = " ".join(result.error_messages)
    assert "colour" in text and "running" in text
    ok = ArgumentSpecValidator(_args.ENFORCE_SPEC).validate({})
    assert not ok.error_messages
    assert ok.validated_parameters["state"] == "started" and ok.validated_parameters["timeout"] == 60
