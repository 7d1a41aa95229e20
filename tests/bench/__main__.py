"""Speed and memory of a fleet remediation against the simulator.

``python -m tests.bench`` (``make bench``) from the repository root runs the
remediation playbook with the fleet report against 200 and then 1000
simulated hosts (forks 20) and prints, per size: wall time, time per host,
the controller's peak RSS (ansible-playbook and its worker forks), the
simulator's peak RSS, HTTP requests per host, and the size of one agent
command. Results go to ``bench-output/results.json``. Numbers are measured,
never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import ansible_env

OUT = REPO_ROOT / "bench-output"
REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
FORKS = 20
SIZES = (200, 1000)
START_TIMEOUT_S = 120


def scenario(hosts: int) -> dict[str, Any]:
    """A fleet shaped like a real one: mostly compliant, a tenth drifted, a few broken or down."""
    drifted = hosts // 10
    broken = max(1, hosts // 100)
    down = max(1, hosts // 100)
    return {
        "defaults": {"os": "Windows Server 2019", "transition_s": 0.05,
                     "instances": [{"id": 1, "state": "started"},
                                   {"id": 2, "comment": "App relay", "state": "started"}]},
        "generate": [
            {"prefix": "ok", "count": hosts - 2 * drifted - broken - down},
            {"prefix": "paused", "count": drifted,
             "template": {"instances": [{"id": 1, "state": "started"},
                                        {"id": 2, "comment": "App relay", "state": "paused"}]}},
            {"prefix": "svcdown", "count": drifted,
             "template": {"service": {"state": "stopped", "start_mode": "manual"}}},
            {"prefix": "broken", "count": broken,
             "template": {"instances": [{"id": 1, "state": "stopped", "start_error": "binding conflict"}]}},
            {"prefix": "down", "count": down, "template": {"unreachable": True}},
        ],
    }


def command_sizes() -> dict[str, int]:
    """Characters of the command line (cmd.exe allows 8,191) and bytes of stdin that one agent call costs."""
    from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _engine, _protocol, _transport

    observe, observe_stdin = _transport.build_call(_protocol.observe_request())
    steps = tuple(_protocol.instance_step(n, "start") for n in range(1, 3))
    apply, apply_stdin = _transport.build_call(_protocol.apply_request(steps, 60, _engine.POLL_MS))
    return {"observe": len(observe), "apply_2_instances": len(apply),
            "observe_stdin_bytes": len(observe_stdin), "apply_2_instances_stdin_bytes": len(apply_stdin)}


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM of a running process (Linux), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def bench_env(workdir: Path, report_dir: Path) -> dict[str, str]:
    """The test harness's environment, with only the fleet report enabled."""
    env = ansible_env(workdir, callbacks=("mailops.iis_smtp.fleet_report",))
    env["IIS_SMTP_REPORT_DIR"] = str(report_dir)
    return env


def run_size(hosts: int) -> dict[str, Any]:
    workdir = OUT / f"fleet-{hosts}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    scenario_path = workdir / "scenario.yml"
    scenario_path.write_text(yaml.safe_dump(scenario(hosts), sort_keys=False))
    inventory, state_path, requests = workdir / "inventory.yml", workdir / "state.json", workdir / "requests.jsonl"
    with (workdir / "simulator.log").open("wb") as sim_log:
        sim = subprocess.Popen(
            [sys.executable, "-m", "tests.simulator", "--scenario", str(scenario_path), "--inventory",
             str(inventory), "--state-dump", str(state_path), "--request-log", str(requests)],
            cwd=REPO_ROOT, stdout=sim_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not inventory.exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the simulator did not start; see {workdir / 'simulator.log'}")
            time.sleep(0.05)
        report_dir = workdir / "report"
        extra_vars = {"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100, "iis_smtp_timeout": 10}
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(REMEDIATE),
               "--forks", str(FORKS), "-e", json.dumps(extra_vars)]
        started = time.monotonic()
        with (workdir / "ansible.log").open("wb") as log:
            proc = subprocess.Popen(cmd, env=bench_env(workdir, report_dir), cwd=workdir,
                                    stdout=log, stderr=subprocess.STDOUT)
            # wait4 reports the peak RSS of ansible-playbook and of every worker it reaped.
            _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        simulator_rss = peak_rss_kib(sim.pid)
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            sim.wait(timeout=60)
    report = json.loads((report_dir / "report.json").read_text())
    request_count = sum(1 for _line in requests.open())
    return {
        "hosts": hosts,
        "forks": FORKS,
        "ansible_rc": proc.returncode,
        "wall_s": round(wall, 2),
        "per_host_ms": round(1000 * wall / hosts, 1),
        "controller_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "simulator_peak_rss_mib": round(simulator_rss / 1024, 1) if simulator_rss else None,
        "http_requests": request_count,
        "http_requests_per_host": round(request_count / hosts, 2),
        "report_hosts": len(report["hosts"]),
        "report_complete": sorted(h["host"] for h in report["hosts"]) == sorted(
            yaml.safe_load(inventory.read_text())["all"]["children"]["smtp_servers"]["hosts"]),
        "hosts_by_status": report["summary"]["hosts_by_status"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="fleet sizes to run")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    sizes = command_sizes()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "agent_command_chars": sizes,
        "runs": [],
    }
    print(f"agent command line: observe {sizes['observe']} chars, apply (2 instances) {sizes['apply_2_instances']} chars; "
          f"stdin: observe {sizes['observe_stdin_bytes']} bytes, apply {sizes['apply_2_instances_stdin_bytes']} bytes")
    print(f"{'hosts':>6} {'wall s':>8} {'ms/host':>8} {'ctl RSS MiB':>12} {'sim RSS MiB':>12} "
          f"{'req/host':>9} complete")
    for hosts in args.sizes:
        run = run_size(hosts)
        results["runs"].append(run)
        print(f"{run['hosts']:>6} {run['wall_s']:>8} {run['per_host_ms']:>8} {run['controller_peak_rss_mib']:>12} "
              f"{run['simulator_peak_rss_mib']!s:>12} {run['http_requests_per_host']:>9} {run['report_complete']}")
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {OUT / 'results.json'}")
    return 0 if all(r["report_complete"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
