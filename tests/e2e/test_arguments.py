"""Arguments that used to mean something else than written: refused before anything, or handled per instance.

`timeout: true` is no number of seconds, `'²'` and `'٢'` are no instance
ids, `state: started` with a disabled service contradicts itself; an
instance whose id is above Int32 (a valid metabase DWORD) is reported on its
own while the host's other instances are managed.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.e2e.conftest import instance_states, operations, play

BIG = 3_000_000_000
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "args01": {"instances": [{"id": 1, "state": "stopped"}, {"id": 2, "state": "stopped"}]},
        "big01": {"instances": [{"id": 1, "state": "stopped"}, {"id": BIG, "comment": "Far", "state": "stopped"}]},
    },
}
REFUSED = {
    "timeout true": ("mailops.iis_smtp.virtual_server", {"timeout": True}, "invalid_argument",
                     "timeout: True is not a number of seconds"),
    "superscript two": ("mailops.iis_smtp.virtual_server", {"instances": ["²"]}, "invalid_instances",
                        "no SMTP virtual server is named '²'"),
    "arabic-indic two": ("mailops.iis_smtp.virtual_server", {"instances": ["٢"]}, "invalid_instances",
                         "no SMTP virtual server is named '٢'"),
    "started yet disabled": ("mailops.iis_smtp.virtual_server", {"service_start_mode": "disabled"},
                             "invalid_argument", "state: started contradicts service_start_mode: disabled"),
    "read: paused yet disabled": ("mailops.iis_smtp.virtual_server_info",
                                  {"state": "paused", "service_start_mode": "disabled"}, "invalid_argument",
                                  "state: paused contradicts service_start_mode: disabled"),
}


def test_arguments_that_would_mean_something_else_are_refused(sim: Any) -> None:
    fleet = sim(FLEET)
    tasks = [{"name": name, module: args, "ignore_errors": True} for name, (module, args, _r, _w) in REFUSED.items()]
    run = fleet.play(yaml.safe_dump([{"hosts": "args01", "gather_facts": False, "tasks": tasks}], allow_unicode=True))
    state = fleet.stop()
    assert "Traceback" not in run.stdout + run.stderr
    for name, (_module, _args, reason, words) in REFUSED.items():
        got = run.result("args01", name)
        assert got["status"] == "failed" and got["result"]["reason"] == reason, (name, got)
        assert words in got["result"]["msg"], (name, got["result"]["msg"])
    assert operations(state, "args01") == [] and instance_states(state, "args01") == {1: "stopped", 2: "stopped"}


def test_an_instance_id_above_int32_does_not_block_the_others(sim: Any) -> None:
    fleet = sim(FLEET)
    run = fleet.play(play("    - name: Enforce\n      mailops.iis_smtp.virtual_server:\n", hosts="big01"))
    state = fleet.stop()
    result = run.result("big01", "Enforce")["result"]
    assert result["reason"] == "instance_id_out_of_range", result
    assert "SMTP virtual server 3000000000 (Far) is stopped, desired started" in result["msg"]
    assert instance_states(state, "big01") == {1: "started", BIG: "stopped"}
    assert [(op["target"], op["command"]) for op in operations(state, "big01")] == [("SMTPSVC/1", "start")]
    assert state["hosts"]["big01"]["rejected_requests"] == 0
