"""What a real run puts on the Windows command line and on stdin, read from the simulator's request log.

cmd.exe stops at 8,191 characters, and WinRS runs every command through it;
the collection's command line is its bootstrap alone, whatever the host and
the plan, with the agent and the request on stdin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _protocol, _transport

REPO_ROOT = Path(__file__).resolve().parents[2]
REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
COMPLIANCE = REPO_ROOT / "playbooks" / "compliance.yml"
# The bootstrap's command line: the same for every request (tests/unit/test_agent_script.py).
COMMAND_LINE_CHARS = len(_transport.build_call(_protocol.observe_request())[0])

BIG = {"service": {"state": "stopped"},
       "instances": [{"id": n, "comment": f"Relay {n}", "state": "stopped", "transition_s": 0.05} for n in range(1, 41)]}


def test_every_call_of_a_run_is_the_short_bootstrap_plus_stdin(sim: Any) -> None:
    fleet = sim({"hosts": {"big01": BIG, "small01": {}}})
    audit = fleet.play(COMPLIANCE, args=["-vvvvv"])
    fixed = fleet.play(REMEDIATE, args=["-vvvvv"])
    fleet.stop()
    assert audit.rc == 0 and fixed.rc == 0, fixed.stdout[-3000:]
    for host in ("big01", "small01"):
        commands = fleet.requests(host, "Command")
        sends = fleet.requests(host, "Send")
        assert commands and len(sends) >= len(commands)
        assert {c["command_line_chars"] for c in commands} == {COMMAND_LINE_CHARS}
        assert COMMAND_LINE_CHARS < 2000
        # The agent travels with every call: without its apply-only lines when it only observes.
        assert all(s["stdin_bytes"] > 6000 for s in sends)
    # Forty instance steps travel on stdin, not on the command line.
    assert max(s["stdin_bytes"] for s in fleet.requests("big01", "Send")) > \
        max(s["stdin_bytes"] for s in fleet.requests("small01", "Send"))
