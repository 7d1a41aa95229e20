"""`make bench` in miniature: the whole measurement runs end to end (no timing is asserted).

Three hosts, both latencies, one repetition: every path of the benchmark
(the per-host table with Ansible's floors, the sharded fleets, the report
check, the JSON) runs against the simulator, so the benchmark cannot rot
between the runs that measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

CMD_EXE_LIMIT = 8191


def test_the_benchmark_runs_and_counts_what_crossed_the_wire(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, "-m", "tests.bench", "--sizes", "3", "--latencies", "0", "20",
                          "--reps", "1", "--shards", "2", "--out", str(out)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["problems"] == []
    hosts = results["per_host"]
    assert set(hosts) == {"info", "enforce", "repair", "raw", "win_ping"}
    for name, row in hosts.items():
        assert row["ok"], name
        # Every task is one WinRS command per call, and every byte is counted both ways.
        assert row["commands"] == max(row["agent_calls"], 1), name
        assert row["bytes_sent"] > 0 and row["bytes_received"] > 0 and row["http_requests"] >= 5, name
        assert 0 < row["longest_command_line"] <= CMD_EXE_LIMIT, name
    assert [hosts[name]["agent_calls"] for name in ("info", "enforce", "repair", "raw", "win_ping")] == [1, 1, 2, 0, 0]
    assert hosts["repair"]["changed"] == 1 and hosts["enforce"]["changed"] == 0
    # The floors are what Ansible sends: raw's no-op is tiny, a PowerShell module ships its wrapper.
    assert hosts["raw"]["stdin_bytes"] == 0 and hosts["win_ping"]["stdin_bytes"] > 50_000
    assert hosts["info"]["bytes_vs_raw"] == round(hosts["info"]["bytes_total"] / hosts["raw"]["bytes_total"], 2)
    fleets = results["fleets"]
    assert [(f["hosts"], f["latency_ms"], f["shards"]) for f in fleets] == [(3, 0.0, 2), (3, 20.0, 2)]
    for fleet in fleets:
        assert set(fleet["playbooks"]) == {"raw", "compliance", "remediate"}
        for name, runs in fleet["runs"].items():
            assert [r["hosts_ok"] for r in runs] == [3], name
            assert all(r["cpu_s"] > 0 and r["peak_rss_mib"] > 0 and len(r["simulator_cpu_s"]) == 2 for r in runs)
        assert all(r["report_hosts"] == 3 for name in ("compliance", "remediate") for r in fleet["runs"][name])
        # Every host answered every playbook: raw 8 requests, the collection's playbooks 9 (NTLM, sealed).
        assert fleet["http_requests"] == 3 * (8 + 9 + 9)
    assert set(results["targets"]) >= {"every command line <= 8,191 characters", "compliant host: 1 agent call"}
    assert "Per host" in run.stdout and "Per fleet" in run.stdout and "Targets" in run.stdout
    # The README's tables come from the same run.
    table = (out / "results.md").read_text()
    assert table.count("\n| 3 | ") == 6 and "| raw no-op (floor) | 8 |" in table
    # Plain text is what travels; the deflated figures are computed beside it.
    agent = results["agent"]
    assert agent["observe"]["agent_bytes"] < agent["apply"]["agent_bytes"]
    assert agent["observe"]["stdin_plain"] == hosts["info"]["stdin_bytes"]
    # The room plain text leaves for the agent: with it, a compliant host would sit exactly at the target.
    room_wire = 4 * (agent["observe_agent_budget_plain"] + agent["observe"]["stdin_plain"]
                     - agent["observe"]["agent_bytes"]) / 3
    at_budget = hosts["enforce"]["bytes_total"] - agent["observe"]["wire_plain"] + room_wire
    assert abs(at_budget / hosts["raw"]["bytes_total"] - 1.5) < 0.001
    # The floor's share bounds the run: raw's runs, once per playbook.
    bound = results["floor_bound"]
    raw_s = sum(r["wall_s"] for fleet in fleets for r in fleet["runs"]["raw"])
    assert bound["raw_s"] == round(raw_s, 1) and bound["least_possible_s"] == round(3 * raw_s, 1)
    assert "make bench under 10 minutes" in results["targets"] and "cannot take less than" in table
    # --render rebuilds the same tables from the JSON alone.
    rendered = subprocess.run([sys.executable, "-m", "tests.bench", "--render", str(out / "results.json")],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert (out / "results.md").read_text() == table
    assert json.loads((out / "results.json").read_text()) == results
