"""Bad input to the actions and the role: a clear error, and nothing changes anywhere.

Every host in these fleets has drift (stopped instances), so any call that
slipped through validation would be seen as an operation in the simulator's
log. Instance names full of shell metacharacters exist on the hosts on
purpose: selecting them works, and the simulator's record shows they reached
the host only as instance ids inside the base64 request, never as code.
"""

from __future__ import annotations

import time
from typing import Any

import yaml

from tests.e2e.conftest import SimulatedFleet, operations, operations_since

HOSTILE_NAMES = [
    "$(Stop-Service SMTPSVC)",
    "`Stop-Service SMTPSVC`",
    "relay; Stop-Service SMTPSVC",
    "it's \"quoted\"",
    "line one\nline two",
    "Relé ☃ 中继",
]
CLEAN = {"instances": [
    {"id": 1, "state": "stopped"},
    {"id": 2, "comment": "Twin", "state": "stopped"},
    {"id": 3, "comment": "Twin", "state": "stopped"},
    *({"id": 10 + n, "comment": name, "state": "stopped"} for n, name in enumerate(HOSTILE_NAMES)),
]}
DRIFTED = {"instances": [{"id": 1, "state": "stopped"}]}

# name -> (task arguments, reason, words the message must contain)
ENFORCE_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown state": ({"state": "running"}, "invalid_argument", "state must be one of: started, stopped, paused"),
    "state of wrong type": ({"state": ["started"]}, "invalid_argument", "state must be one of"),
    "zero timeout": ({"timeout": 0}, "invalid_argument", "timeout: 0 is out of range; use 1 to 3600 seconds"),
    "negative timeout": ({"timeout": -5}, "invalid_argument", "timeout: -5 is out of range"),
    "absurd timeout": ({"timeout": 10 ** 9}, "invalid_argument", "timeout: 1000000000 is out of range"),
    "timeout not a number": ({"timeout": "soon"}, "invalid_argument",
                             "argument 'timeout' is of type str"),
    "instances not a list": ({"instances": {"a": 1}}, "invalid_argument",
                             "argument 'instances' is of type dict"),
    "empty instances": ({"instances": []}, "invalid_instances", "instances: the list is empty"),
    "duplicate ids": ({"instances": [1, 1]}, "invalid_instances", "instances: 1 is listed more than once"),
    "duplicate names": ({"instances": ["Twin", "Twin"]}, "invalid_instances", "'Twin' is listed more than once"),
    "id zero": ({"instances": [0]}, "invalid_instances", "instances[0]: instance id 0 is invalid; ids start at 1"),
    "negative id": ({"instances": [-3]}, "invalid_instances", "instance id -3 is invalid"),
    "id out of range": ({"instances": [99]}, "invalid_instances", "no SMTP virtual server with id 99"),
    "boolean instance": ({"instances": [True]}, "invalid_instances", "is neither an instance id"),
    "nested list": ({"instances": [[1]]}, "invalid_instances", "is neither an instance id"),
    "blank name": ({"instances": ["  "]}, "invalid_instances", "an instance name must not be empty"),
    "name matching nothing": ({"instances": ["Nope"]}, "invalid_instances",
                              "no SMTP virtual server is named 'Nope'"),
    "name matching several": ({"instances": ["Twin"]}, "invalid_instances",
                              "'Twin' names 2 SMTP virtual servers (ids 2, 3)"),
    "name matching several, other case": ({"instances": ["twin"]}, "invalid_instances",
                                          "'twin' names 2 SMTP virtual servers"),
    "unknown state in instance_states": ({"instance_states": {1: "running"}}, "invalid_argument",
                                         "instance_states[1]: 'running' is not one of started, stopped, paused"),
    "id zero in instance_states": ({"instance_states": {0: "started"}}, "invalid_instances", "ids start at 1"),
    "instance_states not a dict": ({"instance_states": ["1"]}, "invalid_argument",
                                   "argument 'instance_states' is of type list"),
    "same instance twice in instance_states": (
        {"instance_states": {1: "started", "[SMTP Virtual Server #1]": "stopped"}}, "invalid_instances",
        "instance_states names SMTP virtual server 1 twice"),
    "unknown start mode": ({"service_start_mode": "sometimes"}, "invalid_argument",
                           "service_start_mode must be one of"),
    "fail_on_drift not a boolean": ({"fail_on_drift": "perhaps"}, "invalid_argument",
                                    "'perhaps' is not a valid boolean"),
    "unknown option": ({"colour": "red"}, "invalid_argument", "colour. Supported parameters include"),
    "quotes": ({"instances": ["it's \"quoted\" too"]}, "invalid_instances", "no SMTP virtual server is named"),
    "subexpression": ({"instances": ["$(Stop-Service SMTPSVC -Force)"]}, "invalid_instances",
                      "'$(Stop-Service SMTPSVC -Force)'"),
    "backticks": ({"instances": ["`Restart-Computer`"]}, "invalid_instances", "'`Restart-Computer`'"),
    "semicolon": ({"instances": ["x'; Stop-Service SMTPSVC; '"]}, "invalid_instances",
                  "no SMTP virtual server is named"),
    "newline": ({"instances": ["line one\nStop-Service SMTPSVC"]}, "invalid_instances",
                "'line one\\nStop-Service SMTPSVC'"),
    "non-ASCII": ({"instances": ["Relé ☃ 中继 2"]}, "invalid_instances", "'Relé ☃ 中继 2'"),
    "selector of a hostile name in instance_states": ({"instance_states": {"$(whoami)": "stopped"}},
                                                      "invalid_instances", "'$(whoami)'"),
}
INFO_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "info: empty instances": ({"instances": []}, "invalid_instances", "instances: the list is empty"),
    "info: id zero": ({"instances": [0]}, "invalid_instances", "ids start at 1"),
    "info: name matching nothing": ({"instances": ["$(Stop-Service SMTPSVC)x"]}, "invalid_instances",
                                    "no SMTP virtual server is named '$(Stop-Service SMTPSVC)x'"),
    "info: name matching several": ({"instances": ["Twin"]}, "invalid_instances", "names 2 SMTP virtual servers"),
    "info: option it does not have": ({"timeout": 5}, "invalid_argument",
                                      "timeout. Supported parameters include: instance_states, instances"),
}
# host -> (role variables, message words); each host fails on its own, the others carry on.
ROLE_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "role_state": ({"iis_smtp_state": "running"}, "iis_smtp_state must be one of: started, stopped, paused"),
    "role_timeout_type": ({"iis_smtp_timeout": "soon"}, "argument 'iis_smtp_timeout' is of type str"),
    "role_start_mode": ({"iis_smtp_service_start_mode": "sometimes"}, "iis_smtp_service_start_mode must be one of"),
    "role_states_type": ({"iis_smtp_instance_states": [1, 2]}, "argument 'iis_smtp_instance_states' is of type list"),
    "role_fail_on_drift": ({"iis_smtp_fail_on_drift": "perhaps"}, "'perhaps' is not a valid boolean"),
    "role_negative_timeout": ({"iis_smtp_timeout": -1}, "timeout: -1 is out of range"),
    "role_unknown_name": ({"iis_smtp_instances": ["$(Stop-Service SMTPSVC)!"]},
                          "no SMTP virtual server is named '$(Stop-Service SMTPSVC)!'"),
    "role_unknown_state_in_map": ({"iis_smtp_instance_states": {1: "halted"}}, "'halted' is not one of"),
}


def task_block(name: str, module: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, module: args, "ignore_errors": True}


def bad_input_playbook(fleet: SimulatedFleet) -> str:
    tasks = [task_block(n, "mailops.iis_smtp.virtual_server", a) for n, (a, _reason, _words) in ENFORCE_CASES.items()]
    tasks += [task_block(n, "mailops.iis_smtp.virtual_server_info", a) for n, (a, _reason, _words) in INFO_CASES.items()]
    (fleet.workdir / "host_vars").mkdir(exist_ok=True)
    for host, (variables, _words) in ROLE_CASES.items():
        (fleet.workdir / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(variables))
    plays = [
        {"name": "actions", "hosts": "clean", "gather_facts": False, "tasks": tasks},
        {"name": "role", "hosts": ":".join(ROLE_CASES), "gather_facts": False,
         "roles": ["mailops.iis_smtp.virtual_servers"]},
    ]
    path = fleet.workdir / "bad-input.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False, allow_unicode=True))
    return str(path)


def test_bad_input_fails_clearly_before_any_change(sim: Any) -> None:
    fleet = sim({"defaults": {"transition_s": 0.05, **DRIFTED},
                 "hosts": {"clean": CLEAN, **{host: {} for host in ROLE_CASES}}})
    run = fleet.play(bad_input_playbook(fleet))
    after_bad_input = time.time()
    # The same hostile names, now naming real instances: they work, as data.
    good = fleet.play("""
- hosts: clean
  gather_facts: false
  tasks:
    - name: read the hostile names
      mailops.iis_smtp.virtual_server_info:
        instances: %s
    - name: start them by name
      mailops.iis_smtp.virtual_server:
        instances: %s
""" % (yaml.safe_dump(HOSTILE_NAMES, default_flow_style=True, allow_unicode=True).strip(),
       yaml.safe_dump(HOSTILE_NAMES, default_flow_style=True, allow_unicode=True).strip()))
    state = fleet.stop()

    assert len(ENFORCE_CASES) + len(INFO_CASES) + len(ROLE_CASES) >= 25
    assert "Traceback" not in run.stdout + run.stderr
    for name, (_args, reason, words) in {**ENFORCE_CASES, **INFO_CASES}.items():
        got = run.result("clean", name)
        assert got["status"] == "failed", (name, got)
        assert got["result"]["reason"] == reason, (name, got["result"])
        assert words in got["result"]["msg"], (name, got["result"]["msg"])
        assert got["result"]["changed"] is False
    for host, (_variables, words) in ROLE_CASES.items():
        failed = [r for r in run.for_host(host) if r["status"] == "failed"]
        assert len(failed) == 1, (host, failed)
        assert words in failed[0]["result"]["msg"], (host, failed[0]["result"]["msg"])

    for host in state["hosts"]:
        assert not [op for op in operations(state, host) if op["time"] < after_bad_input], host
        if host != "clean":
            assert [i["state"] for i in state["hosts"][host]["instances"]] == ["stopped"], host
    # Checked on the controller: arguments that need no look at the host never reach it.
    role_hosts_observed = {h: state["hosts"][h]["observes"] for h in ROLE_CASES}
    assert role_hosts_observed == {h: int(h == "role_unknown_name") for h in ROLE_CASES}

    read = good.result("clean", "read the hostile names")["result"]
    assert [v["name"] for v in read["virtual_servers"]] == HOSTILE_NAMES
    started = good.result("clean", "start them by name")
    assert started["status"] == "changed"
    assert sorted(v["id"] for v in started["result"]["virtual_servers"]) == [10, 11, 12, 13, 14, 15]
    sent = operations_since(state, "clean", after_bad_input)
    assert sorted(op["target"] for op in sent) == [f"SMTPSVC/{10 + n}" for n in range(6)]
    assert {op["command"] for op in sent} == {"start"}
    assert state["hosts"]["clean"]["rejected_requests"] == 0
    assert {i["id"]: i["state"] for i in state["hosts"]["clean"]["instances"]} == {
        1: "stopped", 2: "stopped", 3: "stopped", **{10 + n: "started" for n in range(6)}}
