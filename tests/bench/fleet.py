"""A simulated fleet split over several simulator processes, and one measured ansible-playbook run.

The simulator is Python: one process uses at most one core. A fleet is
served by ``shards`` processes, each with its own slice of the hosts, its own
request log and its own CPU account, so the bench can show that the far end
is not what it measures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT

START_TIMEOUT_S = 180
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_rss_kib(root: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * PAGE_KIB
    total, frontier = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    while frontier:
        pid = frontier.pop()
        total += rss.get(pid, 0)
        frontier.extend(children.get(pid, ()))
    return total


@dataclass
class Shard:
    process: subprocess.Popen[bytes]
    inventory: Path
    requests: Path
    state: Path


@dataclass
class Fleet:
    """Running simulator shards and their merged inventory."""

    workdir: Path
    shards: list[Shard]
    inventory: Path
    hosts: list[str]
    latency_ms: float

    def cpu_s(self) -> list[float]:
        return [process_cpu_s(shard.process.pid) for shard in self.shards]

    def requests(self) -> Iterator[dict[str, Any]]:
        for shard in self.shards:
            with shard.requests.open() as stream:
                for line in stream:
                    yield json.loads(line)

    def stop(self) -> dict[str, Any]:
        """Stop every shard; the merged state dumps."""
        for shard in self.shards:
            if shard.process.poll() is None:
                shard.process.send_signal(signal.SIGTERM)
        hosts: dict[str, Any] = {}
        for shard in self.shards:
            shard.process.wait(timeout=120)
            if shard.state.exists():
                hosts.update(json.loads(shard.state.read_text())["hosts"])
        return hosts


def start_fleet(workdir: Path, scenarios: list[dict[str, Any]], latency_ms: float = 0.0) -> Fleet:
    """One simulator process per scenario; wait for all, merge their inventories into one."""
    workdir.mkdir(parents=True, exist_ok=True)
    shards: list[Shard] = []
    for index, scenario in enumerate(scenarios):
        base = workdir / f"shard{index}"
        scenario_path = base.with_suffix(".scenario.yml")
        scenario_path.write_text(yaml.safe_dump(scenario, sort_keys=False))
        shard = Shard(process=None, inventory=base.with_suffix(".inventory.yml"),  # type: ignore[arg-type]
                      requests=base.with_suffix(".requests.jsonl"), state=base.with_suffix(".state.json"))
        for stale in (shard.inventory, shard.requests, shard.state):
            stale.unlink(missing_ok=True)
        with base.with_suffix(".log").open("wb") as log:
            shard.process = subprocess.Popen(
                [sys.executable, "-m", "tests.simulator", "--scenario", str(scenario_path),
                 "--inventory", str(shard.inventory), "--state-dump", str(shard.state),
                 "--request-log", str(shard.requests), "--latency-ms", str(latency_ms)],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        shards.append(shard)
    deadline = time.monotonic() + START_TIMEOUT_S
    for shard in shards:
        while not shard.inventory.exists():
            if shard.process.poll() is not None or time.monotonic() > deadline:
                for other in shards:
                    other.process.kill()
                raise SystemExit(f"a simulator shard did not start; see {workdir}/shard*.log")
            time.sleep(0.05)
    merged: dict[str, Any] | None = None
    for shard in shards:
        document = yaml.safe_load(shard.inventory.read_text())
        if merged is None:
            merged = document
        else:
            group = next(iter(document["all"]["children"]))
            merged["all"]["children"][group]["hosts"].update(document["all"]["children"][group]["hosts"])
    assert merged is not None
    group = next(iter(merged["all"]["children"]))
    inventory = workdir / "inventory.yml"
    inventory.write_text(yaml.safe_dump(merged, sort_keys=False))
    return Fleet(workdir, shards, inventory, list(merged["all"]["children"][group]["hosts"]), latency_ms)


@dataclass
class Run:
    rc: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    largest_process_rss_mib: float
    load_1m: float
    simulator_cpu_s: list[float]
    log: Path

    def as_dict(self) -> dict[str, Any]:
        return {"rc": self.rc, "wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
                "peak_rss_mib": round(self.peak_rss_mib, 1),
                "largest_process_rss_mib": round(self.largest_process_rss_mib, 1),
                "load_1m": round(self.load_1m, 2),
                "simulator_cpu_s": [round(value, 3) for value in self.simulator_cpu_s]}


def run_playbook(fleet: Fleet, playbook: Path, env: dict[str, str], args: list[str], log: Path,
                 sample_s: float = 0.2) -> Run:
    """ansible-playbook once: wall, CPU of its whole process tree, peak memory, and the simulator's CPU meanwhile."""
    load = os.getloadavg()[0]
    sim_before = fleet.cpu_s()
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", str(fleet.inventory), str(playbook), *args],
                                   env=env, cwd=fleet.workdir, stdout=out, stderr=subprocess.STDOUT)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(sample_s):
                with contextlib.suppress(OSError):
                    peak[0] = max(peak[0], tree_rss_kib(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4: CPU and the largest RSS of ansible-playbook and every worker it reaped.
        _pid, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
    wall = time.monotonic() - started
    sim_after = fleet.cpu_s()
    return Run(
        rc=os.waitstatus_to_exitcode(status),
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=max(peak[0], usage.ru_maxrss) / 1024,
        largest_process_rss_mib=usage.ru_maxrss / 1024,
        load_1m=load,
        simulator_cpu_s=[after - before for before, after in zip(sim_before, sim_after, strict=False)],
        log=log,
    )


def recap(log: Path) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host, read from the run's output."""
    hosts: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and " : " in line:
            name, counters = line.split(" : ", 1)
            hosts[name.strip()] = {key: int(value) for key, value in
                                   (item.split("=") for item in counters.split())}
    return hosts


def summary(values: list[float], digits: int = 2) -> dict[str, float]:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits)}
