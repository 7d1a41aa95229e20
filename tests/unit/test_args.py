"""Task argument checks that run before anything is sent to a host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _args

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def desired_params(**overrides):
    return {"state": "started", "instances": None, "instance_states": None, "service_start_mode": None, **overrides}


@pytest.mark.parametrize("params,words", [
    (desired_params(service_start_mode="disabled"),
     "state: started contradicts service_start_mode: disabled"),
    (desired_params(state="stopped", service_start_mode="disabled", instance_states={"Relay": "paused"}),
     "instance_states['Relay']: paused contradicts service_start_mode: disabled"),
])
def test_contradictory_desired_states_are_refused(params, words):
    with pytest.raises(_args.ArgumentError) as err:
        _args.desired(params)
    assert words in str(err.value) and err.value.reason == "invalid_argument"


def test_a_host_kept_down_may_be_disabled():
    assert _args.desired(desired_params(state="stopped", service_start_mode="disabled")) == {
        "state": "stopped", "instances": None, "instance_states": (), "service_start_mode": "disabled"}


def test_a_boolean_timeout_is_refused():
    # The int type takes True as it is: it would mean one second.
    assert ArgumentSpecValidator(_args.ENFORCE_SPEC).validate({"timeout": True}).validated_parameters["timeout"] is True
    with pytest.raises(_args.ArgumentError, match="timeout: True is not a number of seconds"):
        _args.timeout(True)


ROLE_VARIABLES = ["iis_smtp_state", "iis_smtp_instances", "iis_smtp_instance_states", "iis_smtp_timeout"]


def test_a_misspelt_role_variable_is_named_with_the_closest_one():
    seen = ["iis_smtp_instance_state", "iis_smtp_state", "iis_smtp_target", "ansible_host", "iis_smtp_audit"]
    assert _args.role_variable_errors(seen, ROLE_VARIABLES) == [
        "iis_smtp_audit is no longer a variable of the role mailops.iis_smtp.virtual_servers: the role knows "
        "check mode by itself (--check or check_mode: true); remove it",
        "iis_smtp_instance_state is not a variable of the role mailops.iis_smtp.virtual_servers; "
        "did you mean iis_smtp_instance_states?"]
    (far,) = _args.role_variable_errors(["iis_smtp_colour"], ROLE_VARIABLES)
    assert far.startswith("iis_smtp_colour is not a variable of the role") and "iis_smtp_timeout" in far


def test_the_playbook_variables_are_those_the_playbooks_use():
    playbooks = REPO_ROOT / "playbooks"
    used = {name for path in playbooks.glob("*.yml") for name in re.findall(r"\biis_smtp_\w+", path.read_text())}
    role = set(yaml.safe_load((REPO_ROOT / "roles/virtual_servers/defaults/main.yml").read_text()))
    assert used - role == _args.PLAYBOOK_VARIABLES


@pytest.mark.parametrize("connection,auth,user,password,problem", [
    ("winrm", ["basic"], "Administrator", "Pässwörd€", "password"),
    ("winrm", ["plaintext"], "Administrator", "Pässwörd€", "password"),
    ("psrp", ["basic"], "Ädmin€", "secret", "user name"),
    ("winrm", ["ntlm"], "Administrator", "Pässwörd€", None),
    ("psrp", ["negotiate"], "Administrator", "Pässwörd€", None),
    ("winrm", ["basic"], "Administrator", "Pässwörd", None),
    ("ssh", [], "Administrator", "Pässwörd€", None),
])
def test_credentials_basic_authentication_cannot_carry(connection, auth, user, password, problem):
    found = _args.unencodable_credentials(connection, auth, user, password)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(f"the {problem} cannot be sent with Basic authentication")
        assert password not in found and "€" not in found


def test_role_arguments_leave_out_what_the_role_defaults_mean_as_not_given():
    defaults = {"iis_smtp_state": "started", "iis_smtp_instances": [], "iis_smtp_instance_states": {},
                "iis_smtp_service_start_mode": "ignore", "iis_smtp_timeout": 60, "iis_smtp_fail_on_drift": False}
    assert _args.role_arguments(defaults, lambda value: value) == {
        "state": "started", "timeout": 60, "fail_on_drift": False}
    given = {**defaults, "iis_smtp_instances": [1, "App"], "iis_smtp_instance_states": {2: "stopped"},
             "iis_smtp_service_start_mode": "delayed", "unrelated": "x"}
    assert _args.role_arguments(given, lambda value: value) == {
        "state": "started", "instances": [1, "App"], "instance_states": {2: "stopped"},
        "service_start_mode": "delayed", "timeout": 60, "fail_on_drift": False}
    # A value of the wrong type goes on to the spec, which names it; only an empty one is "not given".
    assert _args.role_arguments({"iis_smtp_instances": "App", "iis_smtp_timeout": "soon"}, lambda value: value) == {
        "instances": "App", "timeout": "soon"}
    assert _args.role_arguments({"iis_smtp_instances": ""}, lambda value: value) == {}


def test_role_arguments_are_templated_each_through_the_given_function():
    seen = []

    def template(value):
        seen.append(value)
        return {"{{ wanted }}": [3]}.get(value, value) if isinstance(value, str) else value

    assert _args.role_arguments({"iis_smtp_instances": "{{ wanted }}", "iis_smtp_state": "stopped"}, template) == {
        "state": "stopped", "instances": [3]}
    assert sorted(map(str, seen)) == ["stopped", "{{ wanted }}"]
    assert set(_args.ROLE_ARGUMENTS) == set(_args.ENFORCE_SPEC)
