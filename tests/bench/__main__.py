"""Speed and size of the collection beside Ansible's own floors, against the simulator.

``python -m tests.bench`` (``make bench``) from the repository root measures,
in one run:

Per host (one host per task, NTLM over HTTP with message encryption, the
Windows default listener): WinRM HTTP requests, bytes the controller sent and
received (headers included), agent calls, WinRS commands and the longest
command line for (a) ``virtual_server_info`` on a compliant host, (b)
``virtual_server`` on a compliant host, (c) ``virtual_server`` repairing one
stopped instance, (d) ``ansible.builtin.raw`` running ``exit 0`` (the floor of
any Windows task) and (e) ``ansible.windows.win_ping`` (a PowerShell-module
task; the simulator answers it as Windows would without running it).

Per fleet (100, 300 and 1000 compliant hosts, forks 50, 0 and 50 ms of
simulated latency per request): wall time, controller CPU (user + system of
ansible-playbook and every worker it forked) and peak memory of the
compliance playbook, the remediation playbook and a ``raw`` no-op playbook,
as min / median / max of interleaved repetitions, with the machine's load
and the simulator's CPU. Results go to ``bench-output/results.json``.
Nothing is asserted: the numbers depend on the machine; the targets are
reported as met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.bench import floor
from tests.bench.fleet import recap, run_playbook, start_fleet, summary
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import ansible_env

OUT = REPO_ROOT / "bench-output"
PLAYBOOKS = REPO_ROOT / "playbooks"
SIZES = (100, 300, 1000)
LATENCIES_MS = (0.0, 50.0)
REPS = 3
FORKS = 50
SHARDS = 2
CMD_EXE_LIMIT = 8191
BYTES_TARGET = 1.5
FLEET_TARGET = 1.5
BENCH_TARGET_S = 600
INSTANCES = [{"id": 1, "state": "started"}, {"id": 2, "comment": "App relay", "state": "started"}]
REPORT_CALLBACK = ("mailops.iis_smtp.fleet_report",)

TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "info": ("virtual_server_info, compliant host", {"mailops.iis_smtp.virtual_server_info": {}}),
    "enforce": ("virtual_server, compliant host", {"mailops.iis_smtp.virtual_server": {}}),
    "repair": ("virtual_server, one stopped instance", {"mailops.iis_smtp.virtual_server": {}}),
    "raw": ("raw no-op (floor)", {"ansible.builtin.raw": "exit 0"}),
    "win_ping": ("win_ping (PowerShell module)", {"ansible.windows.win_ping": {}}),
}


def play(hosts: str, task: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "bench", "hosts": hosts, "gather_facts": False, "tasks": [task]}]


def write_playbook(path: Path, hosts: str, task: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(play(hosts, task), sort_keys=False))
    return path


def env_for(workdir: Path, callbacks: tuple[str, ...], collections: Path, pycache: Path) -> dict[str, str]:
    os.environ.pop("MAILOPS_EXTRA_CALLBACKS", None)
    env = ansible_env(workdir, callbacks=callbacks)
    env["ANSIBLE_COLLECTIONS_PATH"] = f"{env['ANSIBLE_COLLECTIONS_PATH']}{os.pathsep}{collections}"
    env["IIS_SMTP_REPORT_DIR"] = str(workdir / "report")
    # Bytecode cached, as on a user's controller: Ansible's own code has its .pyc from pip, and the
    # collection's would be written on first use. This machine sets PYTHONDONTWRITEBYTECODE, which
    # would leave every worker compiling the collection's modules from source for every host
    # (about 18 ms each); the cache goes under the run's output folder, not into the repository.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if not callbacks:
        # An empty list is read as one plugin with no name.
        env.pop("ANSIBLE_CALLBACKS_ENABLED")
    return env


# --------------------------------------------------------------------------- per host


def per_host(out: Path, collections: Path) -> dict[str, Any]:
    """Each task once against its own host; what crossed the wire for it."""
    workdir = out / "per-host"
    shutil.rmtree(workdir, ignore_errors=True)
    scenario = {
        "defaults": {"os": "Windows Server 2019", "instances": INSTANCES},
        "hosts": {name: {} for name in TASKS if name != "repair"}
        | {"repair": {"transition_s": 0.5, "instances": [INSTANCES[0], {**INSTANCES[1], "state": "stopped"}]}},
    }
    fleet = start_fleet(workdir, [scenario])
    env = env_for(workdir, (), collections, out / "pycache")
    runs: dict[str, Any] = {}
    try:
        for name, (_label, task) in TASKS.items():
            playbook = write_playbook(workdir / f"{name}.yml", name, task)
            run = run_playbook(fleet, playbook, env, [], workdir / f"{name}.log")
            runs[name] = run
    finally:
        state = fleet.stop()
    requests = list(fleet.requests())
    results: dict[str, Any] = {}
    for name, (label, _task) in TASKS.items():
        mine = [entry for entry in requests if entry["host"] == name]
        counters = recap(runs[name].log).get(name, {})
        results[name] = {
            "task": label,
            "rc": runs[name].rc,
            "ok": runs[name].rc == 0 and counters.get("failed", 1) == 0 and counters.get("unreachable", 1) == 0,
            "changed": counters.get("changed"),
            "http_requests": len(mine),
            "bytes_sent": sum(entry.get("bytes_in", 0) for entry in mine),
            "bytes_received": sum(entry.get("bytes_out", 0) for entry in mine),
            "agent_calls": state[name]["observes"] + state[name]["applies"],
            "commands": sum(1 for entry in mine if "command_line_chars" in entry),
            "longest_command_line": max((entry["command_line_chars"] for entry in mine if "command_line_chars" in entry),
                                        default=0),
            "stdin_bytes": sum(entry.get("stdin_bytes", 0) for entry in mine),
        }
        results[name]["bytes_total"] = results[name]["bytes_sent"] + results[name]["bytes_received"]
    raw_bytes = results["raw"]["bytes_total"]
    for name in ("info", "enforce", "repair", "win_ping"):
        results[name]["bytes_vs_raw"] = round(results[name]["bytes_total"] / raw_bytes, 2)
    return results


def agent_variants(per_host_results: dict[str, Any]) -> dict[str, Any]:
    """What one observe call's stdin weighs as sent (plain text) and what it would weigh Deflate-compressed.

    The compressed figures are computed, not sent: they are what a bootstrap
    that inflates the agent would receive. WinRM carries stdin base64-encoded,
    so a byte less on stdin is 4/3 of a byte less on the wire; the derived
    ratio leaves out the inflate code such a bootstrap would add to the
    command line, so it flatters compression.
    """
    import base64
    import zlib

    from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _protocol, _transport

    def wire(size: int) -> int:
        return 4 * ((size + 2) // 3)

    result: dict[str, Any] = {}
    for action, request in (("observe", _protocol.observe_request()),
                            ("apply", _protocol.apply_request((_protocol.instance_step(2, "start"),), 60, 500))):
        agent = _transport.load_agent(action=action)
        _command, stdin = _transport.build_call(request)
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        deflated = packer.compress(agent.encode()) + packer.flush()
        compressed = _transport.build_stdin(base64.b64encode(deflated).decode(), request)
        result[action] = {"agent_bytes": len(agent.encode()), "deflated_bytes": len(deflated),
                          "stdin_plain": len(stdin), "stdin_deflate_base64": len(compressed),
                          "wire_plain": wire(len(stdin)), "wire_deflate_base64": wire(len(compressed))}
    saved = result["observe"]["wire_plain"] - result["observe"]["wire_deflate_base64"]
    enforce = per_host_results["enforce"]
    raw_total = per_host_results["raw"]["bytes_total"]
    result["compliant_host_bytes_vs_raw_if_deflated"] = round((enforce["bytes_total"] - saved) / raw_total, 2)
    # The largest observe agent plain text could carry within the target, all else on the wire as measured:
    # what the target leaves for stdin (3 bytes of stdin are 4 on the wire), less the stdin that is not agent.
    observe = result["observe"]
    stdin_room = (BYTES_TARGET * raw_total - (enforce["bytes_total"] - observe["wire_plain"])) * 3 / 4
    result["observe_agent_budget_plain"] = max(0, int(stdin_room - (observe["stdin_plain"] - observe["agent_bytes"])))
    return result


def floor_bound(fleets: list[dict[str, Any]]) -> dict[str, Any]:
    """How long the fleet runs took, and the least they could take on this machine.

    Each collection playbook does on every host what the raw no-op does (one
    task, one WinRS command) and more, so no playbook's run is shorter than
    raw's over the same fleet: the fleet matrix takes at least as many times
    raw's total as there are playbooks, whatever the collection does.
    """
    totals: dict[str, float] = {}
    for fleet in fleets:
        for name, runs in fleet["runs"].items():
            totals[name] = totals.get(name, 0.0) + sum(run["wall_s"] for run in runs)
    raw = totals.get("raw", 0.0)
    return {"fleet_runs_s": round(sum(totals.values()), 1), "by_playbook_s": {k: round(v, 1) for k, v in totals.items()},
            "raw_s": round(raw, 1), "least_possible_s": round(raw * len(totals), 1)}


# --------------------------------------------------------------------------- per fleet


def fleet_scenarios(hosts: int, shards: int) -> list[dict[str, Any]]:
    """A compliant fleet, split into one scenario per simulator shard."""
    sizes = [hosts // shards + (1 if index < hosts % shards else 0) for index in range(shards)]
    return [{"defaults": {"os": "Windows Server 2019", "instances": INSTANCES},
             "generate": [{"prefix": f"relay{index}n", "count": count}]}
            for index, count in enumerate(sizes) if count]


def fleet_playbooks(workdir: Path) -> dict[str, tuple[Path, tuple[str, ...], list[str]]]:
    raw = write_playbook(workdir / "raw.yml", "smtp_servers", TASKS["raw"][1])
    report = ["-e", json.dumps({"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100})]
    return {
        "raw": (raw, (), []),
        "compliance": (PLAYBOOKS / "compliance.yml", REPORT_CALLBACK, report),
        "remediate": (PLAYBOOKS / "remediate.yml", REPORT_CALLBACK, report),
    }


def per_fleet(out: Path, collections: Path, hosts: int, latency_ms: float, reps: int, shards: int) -> dict[str, Any]:
    workdir = out / f"fleet-{hosts}-{int(latency_ms)}ms"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.monotonic()
    fleet = start_fleet(workdir, fleet_scenarios(hosts, shards), latency_ms)
    startup_s = time.monotonic() - started
    playbooks = fleet_playbooks(workdir)
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in playbooks}
    problems: list[str] = []
    try:
        # Interleaved: raw, compliance, remediate, raw, ... so drift in the machine's load hits all alike.
        for rep in range(reps):
            for name, (playbook, callbacks, args) in playbooks.items():
                env = env_for(workdir / f"{name}-{rep}", callbacks, collections, out / "pycache")
                Path(env["ANSIBLE_LOCAL_TEMP"]).mkdir(parents=True, exist_ok=True)
                run = run_playbook(fleet, playbook, env, ["--forks", str(FORKS), *args],
                                   workdir / f"{name}-{rep}.log")
                counters = recap(run.log)
                # raw always reports changed; the collection's playbooks must find nothing to change.
                good = sum(1 for host in fleet.hosts if counters.get(host, {}).get("failed", 1) == 0
                           and counters.get(host, {}).get("unreachable", 1) == 0
                           and (name == "raw" or counters.get(host, {}).get("changed", 1) == 0))
                if run.rc != 0 or good != hosts:
                    problems.append(f"{name} rep {rep}: rc {run.rc}, {good}/{hosts} hosts ok (and unchanged)")
                entry = run.as_dict() | {"hosts_ok": good}
                if callbacks:
                    report = json.loads((Path(env["IIS_SMTP_REPORT_DIR"]) / "report.json").read_text())
                    entry["report_hosts"] = len(report["hosts"])
                    if len(report["hosts"]) != hosts:
                        problems.append(f"{name} rep {rep}: the report has {len(report['hosts'])}/{hosts} hosts")
                measured[name].append(entry)
    finally:
        fleet.stop()
    requests = sum(1 for _entry in fleet.requests())
    result: dict[str, Any] = {"hosts": hosts, "latency_ms": latency_ms, "forks": FORKS, "shards": len(fleet.shards),
                              "simulator_startup_s": round(startup_s, 1), "http_requests": requests,
                              "problems": problems, "runs": measured, "playbooks": {}}
    for name, runs in measured.items():
        sim = [sum(run["simulator_cpu_s"]) for run in runs]
        result["playbooks"][name] = {
            "wall_s": summary([run["wall_s"] for run in runs]),
            "cpu_s": summary([run["cpu_s"] for run in runs]),
            "peak_rss_mib": summary([run["peak_rss_mib"] for run in runs], 1),
            "simulator_cpu_s": summary(sim),
            # Cores the busiest shard used while the playbook ran: near 1.0 would make it the bottleneck.
            "busiest_shard_cores": summary([max(run["simulator_cpu_s"]) / run["wall_s"] for run in runs]),
            "load_1m": summary([run["load_1m"] for run in runs]),
        }
    raw = result["playbooks"]["raw"]
    for name in ("compliance", "remediate"):
        mine = result["playbooks"][name]
        mine["cpu_vs_raw"] = round(mine["cpu_s"]["median"] / raw["cpu_s"]["median"], 2)
        mine["wall_vs_raw"] = round(mine["wall_s"]["median"] / raw["wall_s"]["median"], 2)
    return result


# --------------------------------------------------------------------------- report


def print_per_host(results: dict[str, Any]) -> None:
    print("\nPer host (NTLM over HTTP, sealed; bytes include HTTP headers)")
    print(f"{'task':<40} {'requests':>8} {'sent B':>8} {'recv B':>8} {'vs raw':>7} {'agent':>6} "
          f"{'cmds':>5} {'longest cmd':>11}")
    for _name, row in results.items():
        print(f"{row['task']:<40} {row['http_requests']:>8} {row['bytes_sent']:>8} {row['bytes_received']:>8} "
              f"{row.get('bytes_vs_raw', 1.0):>7} {row['agent_calls']:>6} {row['commands']:>5} "
              f"{row['longest_command_line']:>11}")


def span(values: dict[str, float], separator: str = " / ") -> str:
    """min, median and max of a summary, in that order."""
    return separator.join(str(values[key]) for key in ("min", "median", "max"))


def print_fleets(fleets: list[dict[str, Any]]) -> None:
    print("\nPer fleet (forks 50; min/median/max over the repetitions)")
    print(f"{'hosts':>5} {'lat ms':>6} {'playbook':<10} {'wall s':>20} {'ctl CPU s':>20} {'peak RSS MiB':>20} "
          f"{'CPU/raw':>7} {'wall/raw':>8} {'sim CPU s':>9} {'shard cores':>11} {'load':>5}")
    for result in fleets:
        for name, row in result["playbooks"].items():
            print(f"{result['hosts']:>5} {result['latency_ms']:>6g} {name:<10} {span(row['wall_s'], '/'):>20} "
                  f"{span(row['cpu_s'], '/'):>20} {span(row['peak_rss_mib'], '/'):>20} {row.get('cpu_vs_raw', 1.0):>7} "
                  f"{row.get('wall_vs_raw', 1.0):>8} {row['simulator_cpu_s']['median']:>9} "
                  f"{row['busiest_shard_cores']['median']:>11} {row['load_1m']['median']:>5}")


def markdown(results: dict[str, Any]) -> str:
    """The tables as Markdown, for the README."""
    machine = results["machine"]
    lines = [f"Measured on {machine['processor']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
             f"{machine['platform']}, Python {machine['python']}; {results['settings']['transport']}, "
             f"forks {results['settings']['forks']}, {results['settings']['reps']} interleaved repetitions, "
             f"{results['settings']['shards']} simulator processes; `make bench` took {results['bench_s']:.0f} s.", "",
             "| per host | HTTP requests | bytes sent | bytes received | × raw (both ways) | agent calls "
             "| longest command line |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in results["per_host"].values():
        lines.append(f"| {row['task']} | {row['http_requests']} | {row['bytes_sent']:,} | {row['bytes_received']:,} "
                     f"| {row.get('bytes_vs_raw', 1.0)} | {row['agent_calls']} | {row['longest_command_line']:,} |")
    lines += ["", "| hosts | latency | playbook | wall s (min/median/max) | controller CPU s | peak RSS MiB "
              "| CPU × raw | wall × raw | simulator CPU s | load |", "|---:|---:|---|---|---|---|---:|---:|---:|---:|"]
    for fleet in results["fleets"]:
        for name, row in fleet["playbooks"].items():
            lines.append(f"| {fleet['hosts']} | {fleet['latency_ms']:g} ms | {name} | {span(row['wall_s'])} "
                         f"| {span(row['cpu_s'])} | {span(row['peak_rss_mib'])} | {row.get('cpu_vs_raw', 1.0)} "
                         f"| {row.get('wall_vs_raw', 1.0)} | {row['simulator_cpu_s']['median']} "
                         f"| {row['load_1m']['median']} |")
    agent, bound = results["agent"], results["floor_bound"]
    lines += ["", f"Observe agent on stdin: {agent['observe']['agent_bytes']:,} bytes as plain text; within "
              f"{BYTES_TARGET} x raw's bytes a compliant host leaves room for {agent['observe_agent_budget_plain']:,}. "
              f"Deflate + base64 (computed, not sent) would make it "
              f"{agent['compliant_host_bytes_vs_raw_if_deflated']} x raw before any inflate code.", "",
              f"The fleet runs took {bound['fleet_runs_s']:,.0f} s, of which the raw no-op took "
              f"{bound['raw_s']:,.0f} s: with no playbook faster than raw over the same fleet, this matrix "
              f"cannot take less than {bound['least_possible_s']:,.0f} s on this machine."]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {target} | {'yes' if met else '**no**'} |" for target, met in results["targets"].items()]
    return "\n".join(lines) + "\n"


def targets(per_host_results: dict[str, Any], fleets: list[dict[str, Any]], bench_s: float) -> dict[str, bool]:
    met = {
        f"make bench under {BENCH_TARGET_S // 60} minutes": bench_s < BENCH_TARGET_S,
        "every command line <= 8,191 characters": all(
            row["longest_command_line"] <= CMD_EXE_LIMIT for row in per_host_results.values()),
        "compliant host: 1 agent call": all(per_host_results[name]["agent_calls"] == 1 for name in ("info", "enforce")),
        "compliant host: <= 1.5 x raw bytes": all(
            per_host_results[name]["bytes_vs_raw"] <= BYTES_TARGET for name in ("info", "enforce")),
        "repair: <= 2 agent calls": per_host_results["repair"]["agent_calls"] <= 2,
    }
    for result in fleets:
        if result["hosts"] < 300:
            continue
        for name in ("compliance", "remediate"):
            row = result["playbooks"][name]
            key = f"{name} at {result['hosts']} hosts, {result['latency_ms']:g} ms: <= 1.5 x raw CPU and wall"
            met[key] = row["cpu_vs_raw"] <= FLEET_TARGET and row["wall_vs_raw"] <= FLEET_TARGET
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="fleet sizes")
    parser.add_argument("--latencies", type=float, nargs="+", default=list(LATENCIES_MS),
                        help="simulated latency per request, in ms")
    parser.add_argument("--reps", type=int, default=REPS, help="repetitions of each playbook (interleaved)")
    parser.add_argument("--shards", type=int, default=SHARDS, help="simulator processes serving a fleet")
    parser.add_argument("--out", type=Path, default=OUT, help="where results.json and the logs go")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="measure nothing: recompute the derived figures of a results.json and rewrite "
                             "it and results.md beside it")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render)
    if args.reps < 1 or args.shards < 1 or any(size < 1 for size in args.sizes) or any(ms < 0 for ms in args.latencies):
        parser.error("sizes, reps and shards must be positive and latencies not negative")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    collections = floor.ensure_ansible_windows()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": _cpu_model(), "memory_gib": _memory_gib()},
        "settings": {"forks": FORKS, "reps": args.reps, "shards": args.shards, "transport": "winrm ntlm http (sealed)"},
    }
    results["per_host"] = per_host(args.out, collections)
    print_per_host(results["per_host"])
    results["agent"] = agent_variants(results["per_host"])
    print("\nagent on stdin (plain text, as sent; Deflate + base64 computed for comparison)")
    for action in ("observe", "apply"):
        row = results["agent"][action]
        print(f"  {action:<8} agent {row['agent_bytes']} B ({row['deflated_bytes']} deflated); stdin plain "
              f"{row['stdin_plain']} B = {row['wire_plain']} B on the wire, deflated {row['stdin_deflate_base64']} B "
              f"= {row['wire_deflate_base64']} B on the wire")
    print(f"  a compliant host would cost {results['agent']['compliant_host_bytes_vs_raw_if_deflated']} x raw's "
          "bytes with the agent deflated (before any inflate code on the command line)")
    print(f"  as plain text, an observe agent of at most {results['agent']['observe_agent_budget_plain']} B "
          f"would keep a compliant host within {BYTES_TARGET} x raw's bytes")
    results["fleets"] = []
    for hosts in args.sizes:
        for latency in args.latencies:
            results["fleets"].append(per_fleet(args.out, collections, hosts, latency, args.reps, args.shards))
            print(f"  measured {hosts} hosts at {latency:g} ms ({time.monotonic() - started:.0f} s so far)", flush=True)
    print_fleets(results["fleets"])
    results["floor_bound"] = floor_bound(results["fleets"])
    results["bench_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results["per_host"], results["fleets"], results["bench_s"])
    print(f"\nfleet runs {results['floor_bound']['fleet_runs_s']} s, raw alone {results['floor_bound']['raw_s']} s: "
          f"no less than {results['floor_bound']['least_possible_s']} s on this machine")
    print("\nTargets")
    for target, met in results["targets"].items():
        print(f"  {'met    ' if met else 'NOT MET'}  {target}")
    problems = [problem for result in results["fleets"] for problem in result["problems"]]
    problems += [f"{name}: rc {row['rc']}" for name, row in results["per_host"].items() if not row["ok"]]
    results["problems"] = problems
    for problem in problems:
        print(f"  problem: {problem}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(f"\nbench took {results['bench_s']} s; results: {args.out / 'results.json'}")
    return 1 if problems else 0


def render(path: Path) -> int:
    """Rewrite a results.json's derived figures and its results.md from the measurements it holds."""
    results = json.loads(path.read_text())
    results["agent"] = agent_variants(results["per_host"])
    results["floor_bound"] = floor_bound(results["fleets"])
    results["targets"] = targets(results["per_host"], results["fleets"], results["bench_s"])
    path.write_text(json.dumps(results, indent=2) + "\n")
    (path.parent / "results.md").write_text(markdown(results))
    print(f"rewrote {path} and {path.parent / 'results.md'}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
