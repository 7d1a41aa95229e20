"""Command line: run a simulated fleet until told to stop.

``python -m tests.simulator --scenario S.yml --inventory OUT.yml
[--state-dump STATE.json] [--request-log LOG.jsonl]``

The inventory appears (atomically) only once every listener accepts
connections, so a caller can simply wait for the file. SIGTERM or SIGINT ends
the run; the state dump is then written (atomically) and the exit code is 0.
SIGUSR1 writes the state dump as it is now and keeps serving, so a check can
read the operation log of a fleet that goes on running.
A scenario or configuration error exits 2 before anything listens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from . import inventory
from .server import ConfigError, Endpoint, HostLike, RequestLog, Simulator
from .ssh import SshEndpoint, SshSimulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.simulator",
        description="Simulated Windows fleet over WinRM, PowerShell Remoting and OpenSSH.",
    )
    parser.add_argument(
        "--scenario",
        required=True,
        type=Path,
        help="scenario YAML (see tests/simulator/README.md)",
    )
    parser.add_argument(
        "--inventory",
        required=True,
        type=Path,
        help="where to write the Ansible inventory (YAML)",
    )
    parser.add_argument("--state-dump", type=Path, help="where to write the final state (JSON) on exit")
    parser.add_argument("--request-log", type=Path, help="append one JSON line per HTTP request here")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="simulated network latency: every WS-Management answer waits this long")
    return parser


def raise_file_limit() -> None:
    """Every host is a listening socket plus one per connection: 1000 hosts need more than 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class FleetLike(Protocol):
    """The part of ``model.Fleet`` the command line uses."""

    @property
    def group(self) -> str: ...

    @property
    def hosts(self) -> Mapping[str, Any]: ...

    def dump(self) -> Mapping[str, Any]: ...


def _load_fleet(path: Path) -> FleetLike:
    # Imported here so that `--help` works even where the model cannot load.
    from .model import Fleet

    fleet: FleetLike = Fleet.load(str(path))
    return fleet


def _write_dump(fleet: FleetLike, path: Path | None) -> None:
    if path is not None:
        inventory.write_atomic(path, json.dumps(fleet.dump(), indent=2, sort_keys=True) + "\n")


def _serve(fleet: FleetLike, args: argparse.Namespace, signals: Signals, workdir: Path) -> int:
    with contextlib.ExitStack() as stack:
        log_stream = None
        if args.request_log is not None:
            log_stream = stack.enter_context(open(args.request_log, "a", encoding="utf-8"))
        # WS-Management hosts (winrm, psrp) and Windows OpenSSH hosts listen side by side.
        wsman_hosts: list[HostLike] = [host for host in fleet.hosts.values() if host.connection != "ssh"]
        ssh_hosts = [host for host in fleet.hosts.values() if host.connection == "ssh"]
        request_log = RequestLog(log_stream) if log_stream is not None else None
        try:
            simulator = Simulator(wsman_hosts, workdir, request_log, latency_s=args.latency_ms / 1000)
            ssh = SshSimulator(ssh_hosts, workdir, request_log)
        except ConfigError as exc:
            print(f"simulator: cannot start: {exc}", file=sys.stderr)
            return 2
        try:
            simulator.start()
            stack.callback(simulator.stop)
            ssh.start()
            stack.callback(ssh.stop)
        except (ConfigError, OSError) as exc:
            print(f"simulator: cannot start: {exc}", file=sys.stderr)
            return 2
        endpoints: dict[str, Endpoint | SshEndpoint] = {**simulator.endpoints, **ssh.endpoints}
        ordered = {name: endpoints[name] for name in fleet.hosts}
        document = inventory.build(fleet.group, ordered, simulator.ca_path, ssh.keys)
        inventory.write_atomic(args.inventory, inventory.dump_yaml(document))
        print(f"simulator: {len(ordered)} hosts up, inventory {args.inventory}", file=sys.stderr, flush=True)
        while not signals.stop.is_set():
            signals.wake.wait()
            signals.wake.clear()
            if signals.dump.is_set():
                signals.dump.clear()
                _write_dump(fleet, args.state_dump)
    _write_dump(fleet, args.state_dump)
    return 0


class Signals:
    """What the signal handlers ask of the serving loop (handlers only set flags)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.dump = threading.Event()
        self.wake = threading.Event()

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
        self.wake.set()

    def on_dump(self, signum: int, frame: FrameType | None) -> None:
        self.dump.set()
        self.wake.set()


def run(args: argparse.Namespace) -> int:
    signals = Signals()
    signal.signal(signal.SIGTERM, signals.on_stop)
    signal.signal(signal.SIGINT, signals.on_stop)
    signal.signal(signal.SIGUSR1, signals.on_dump)
    raise_file_limit()
    try:
        fleet = _load_fleet(args.scenario)
    except (OSError, ValueError) as exc:
        print(f"simulator: {args.scenario}: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mailops-simulator-"))
    try:
        return _serve(fleet, args, signals, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
