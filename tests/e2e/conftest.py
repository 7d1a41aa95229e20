"""End-to-end harness: the real ``ansible-playbook`` against the simulator.

Every end-to-end test goes the whole way a user's run goes:
``ansible-playbook`` -> one of Ansible's Windows connections (``winrm`` with
pywinrm, ``psrp`` with pypsrp, ``ssh`` with the OpenSSH client) -> loopback
-> the simulated Windows host. Nothing in between is replaced. The harness
only starts and stops the simulator and reads what came back: the task
results (through a test-only callback) and the simulator's state dump.

A test decorated with ``@over_connections()`` runs once per connection kind
in ``CONNECTIONS``: the ``sim`` fixture puts that kind into the scenario's
defaults, so one test body covers them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CALLBACK_DIR = Path(__file__).resolve().parent / "callback_plugins"
BIN_DIR = Path(sys.executable).parent
START_TIMEOUT_S = 60.0

# Every way users reach a Windows host that is tested here, as scenario host keys.
CONNECTIONS: dict[str, dict[str, str]] = {
    "winrm-ntlm-http": {"connection": "winrm", "auth": "ntlm", "scheme": "http"},
    "winrm-basic-https": {"connection": "winrm", "auth": "basic", "scheme": "https"},
    "psrp-ntlm-http": {"connection": "psrp", "auth": "ntlm", "scheme": "http"},
    "psrp-basic-https": {"connection": "psrp", "auth": "basic", "scheme": "https"},
    "ssh": {"connection": "ssh"},
}
WSMAN_CONNECTIONS = [name for name, keys in CONNECTIONS.items() if keys["connection"] != "ssh"]


def over_connections(*names: str) -> pytest.MarkDecorator:
    """Run the test once per connection kind (all of them by default)."""
    return pytest.mark.parametrize("connection", list(names or CONNECTIONS), indirect=True)


@pytest.fixture
def connection(request: pytest.FixtureRequest) -> dict[str, str]:
    """The scenario keys of the connection kind the test runs over; empty (the scenario's own) when not parametrised."""
    name = getattr(request, "param", None)
    return dict(CONNECTIONS[name]) if name is not None else {}


@dataclass
class PlaybookRun:
    """What one ``ansible-playbook`` run returned."""

    rc: int
    stdout: str
    stderr: str
    results: list[dict[str, Any]]
    args: list[str]

    def for_host(self, host: str) -> list[dict[str, Any]]:
        return [r for r in self.results if r["host"] == host]

    def result(self, host: str, task: str) -> dict[str, Any]:
        """The recorded result of the task named ``task`` on ``host``."""
        matches = [r for r in self.results if r["host"] == host and r["task"] == task]
        if not matches:
            raise AssertionError(
                f"no result for task {task!r} on {host!r}; have: "
                f"{sorted({(r['host'], r['task']) for r in self.results})}\n{self.stdout}\n{self.stderr}"
            )
        return matches[-1]

    def status(self, host: str, task: str) -> str:
        return str(self.result(host, task)["status"])


@dataclass
class SimulatedFleet:
    """A running simulator process and the inventory it wrote."""

    workdir: Path
    inventory: Path
    state_dump: Path
    request_log: Path
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None = None
    _stopped: dict[str, Any] | None = field(default=None)

    def hosts(self) -> dict[str, Any]:
        data = yaml.safe_load(self.inventory.read_text())
        found: dict[str, Any] = {}
        for group in data.values():
            found.update(group.get("hosts") or {})
            for child in (group.get("children") or {}).values():
                found.update((child or {}).get("hosts") or {})
        return found

    def ini_inventory(self, group: str) -> Path:
        """The simulator's inventory as INI, every host in ``group``: the form ansible-test takes."""
        lines = [f"[{group}]"]
        for name, variables in self.hosts().items():
            pairs = (f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in variables.items())
            lines.append(" ".join([name, *pairs]))
        path = self.workdir / "inventory.ini"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def requests(self, host: str, action: str) -> list[dict[str, Any]]:
        """The simulator's request log entries of one WS-Management action (``Command``, ``Send``) on ``host``."""
        entries = [json.loads(line) for line in self.request_log.read_text().splitlines()]
        return [e for e in entries if e["host"] == host and e.get("action") == action]

    def password(self, host: str) -> str:
        return str(self.hosts()[host]["ansible_password"])

    def play(
        self,
        playbook: str | Path,
        *,
        check: bool = False,
        diff: bool = False,
        extra_vars: dict[str, Any] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> PlaybookRun:
        """Run ``ansible-playbook`` (a path, or YAML text) against this fleet."""
        if isinstance(playbook, Path) or (isinstance(playbook, str) and "\n" not in playbook
                                          and playbook.endswith((".yml", ".yaml"))):
            playbook_path = str(playbook)
        else:
            path = self.workdir / f"play-{uuid.uuid4().hex[:8]}.yml"
            path.write_text(str(playbook))
            playbook_path = str(path)
        record = self.workdir / f"record-{uuid.uuid4().hex[:8]}.json"
        cmd = [str(BIN_DIR / "ansible-playbook"), "-i", str(self.inventory), playbook_path]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        cmd += args or []
        run_env = ansible_env(self.workdir)
        run_env["MAILOPS_RECORD_FILE"] = str(record)
        run_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout, check=False,
                              cwd=str(self.workdir))
        results = json.loads(record.read_text()) if record.exists() else []
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results, cmd)

    def site_playbook(self, playbook: Path, host_vars: dict[str, dict[str, Any]]) -> Path:
        """A playbook beside host_vars/ that imports one of ours: per-host settings as users give them."""
        (self.workdir / "host_vars").mkdir(exist_ok=True)
        for host, data in host_vars.items():
            (self.workdir / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(data))
        path = self.workdir / f"site-{playbook.stem}.yml"
        path.write_text(yaml.safe_dump([{"name": "Site", "ansible.builtin.import_playbook": str(playbook)}]))
        return path

    def stop(self) -> dict[str, Any]:
        """Stop the simulator (SIGTERM) and return its final state dump."""
        if self._stopped is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.log is not None:
                self.log.close()
            self._stopped = json.loads(self.state_dump.read_text()) if self.state_dump.exists() else {}
        return self._stopped


def ansible_env(workdir: Path, callbacks: tuple[str, ...] = ("record_results",)) -> dict[str, str]:
    """Environment for a test ``ansible-playbook``: this collection, no user config."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"],
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
        "ANSIBLE_CALLBACKS_ENABLED": ",".join(
            filter(None, [*callbacks, os.environ.get("MAILOPS_EXTRA_CALLBACKS", "")])),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    env.pop("ANSIBLE_CONFIG", None)
    return env


def start_simulator(scenario: dict[str, Any] | Path, workdir: Path) -> SimulatedFleet:
    """Start ``python -m tests.simulator`` and wait until its inventory exists."""
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(scenario, Path):
        scenario_path = scenario
    else:
        scenario_path = workdir / "scenario.yml"
        scenario_path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    inventory = workdir / "inventory.yml"
    state_dump = workdir / "state.json"
    request_log = workdir / "requests.jsonl"
    log = open(workdir / "simulator.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--scenario", str(scenario_path),
         "--inventory", str(inventory), "--state-dump", str(state_dump),
         "--request-log", str(request_log)],
        cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not inventory.exists():
        if process.poll() is not None:
            log.close()
            raise RuntimeError(f"simulator exited with {process.returncode}:\n"
                               f"{(workdir / 'simulator.log').read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            log.close()
            raise RuntimeError("simulator did not write its inventory in time")
        time.sleep(0.05)
    return SimulatedFleet(workdir, inventory, state_dump, request_log, process, log)


@pytest.fixture
def sim(tmp_path: Path, connection: dict[str, str]) -> Iterator[Callable[..., SimulatedFleet]]:
    """Factory: ``fleet = sim(scenario)`` starts a simulator for this test, over the test's connection kind."""
    started: list[SimulatedFleet] = []

    def factory(scenario: dict[str, Any] | Path, name: str = "fleet") -> SimulatedFleet:
        if connection and isinstance(scenario, dict):
            scenario = {**scenario, "defaults": {**scenario.get("defaults", {}), **connection}}
        fleet = start_simulator(scenario, tmp_path / f"{name}-{len(started)}")
        started.append(fleet)
        return fleet

    yield factory
    # Every simulator is stopped even when one of them fails to stop cleanly.
    errors: list[Exception] = []
    for fleet in started:
        try:
            fleet.stop()
        except Exception as exc:  # reported below, after the others are stopped
            if fleet.process.poll() is None:
                fleet.process.kill()
                fleet.process.wait()
            errors.append(exc)
    if errors:
        raise errors[0]


def operations(state: dict[str, Any], host: str) -> list[dict[str, Any]]:
    """The control operations the simulator logged for ``host``."""
    return list(state["hosts"][host]["operations"])


def operations_since(state: dict[str, Any], host: str, since: float) -> list[dict[str, Any]]:
    return [op for op in operations(state, host) if float(op["time"]) >= since]


def play(tasks: str, hosts: str = "all") -> str:
    """A one-play playbook running ``tasks`` (YAML text, indented as tasks)."""
    return f"""
- hosts: {hosts}
  gather_facts: false
  tasks:
{tasks}
"""


def result(run: PlaybookRun, host: str, task: str) -> dict[str, Any]:
    """The result dict of the task named ``task`` on ``host``."""
    return dict(run.result(host, task)["result"])


def instance_states(state: dict[str, Any], host: str) -> dict[int, str | None]:
    """Instance id -> state name, from a simulator state dump."""
    return {i["id"]: i["state"] for i in state["hosts"][host]["instances"]}
