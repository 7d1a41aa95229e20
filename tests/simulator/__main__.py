"""Command line: run a simulated fleet until told to stop.

``python -m tests.simulator --scenario S.yml --inventory OUT.yml
[--state-dump STATE.json] [--request-log LOG.jsonl]``

The inventory appears (atomically) only once every listener accepts
connections, so a caller can simply wait for the file. SIGTERM or SIGINT ends
the run; the state dump is then written (atomically) and the exit code is 0.
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
from .server import ConfigError, HostLike, Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.simulator",
        description="Simulated Windows fleet over WinRM.",
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
    def hosts(self) -> Mapping[str, HostLike]: ...

    def dump(self) -> Mapping[str, Any]: ...


def _load_fleet(path: Path) -> FleetLike:
    # Imported here so that `--help` works even where the model cannot load.
    from .model import Fleet

    fleet: FleetLike = Fleet.load(str(path))
    return fleet


def _serve(fleet: FleetLike, args: argparse.Namespace, stop: threading.Event, workdir: Path) -> int:
    with contextlib.ExitStack() as stack:
        log_stream = None
        if args.request_log is not None:
            log_stream = stack.enter_context(open(args.request_log, "a", encoding="utf-8"))
        try:
            simulator = Simulator(fleet.hosts.values(), workdir, log_stream)
            simulator.start()
        except (ConfigError, OSError) as exc:
            print(f"simulator: cannot start: {exc}", file=sys.stderr)
            return 2
        try:
            document = inventory.build(fleet.group, simulator.endpoints, simulator.ca_path)
            inventory.write_atomic(args.inventory, inventory.dump_yaml(document))
            print(
                f"simulator: {len(simulator.endpoints)} hosts up, inventory {args.inventory}",
                file=sys.stderr,
                flush=True,
            )
            stop.wait()
        finally:
            simulator.stop()
    if args.state_dump is not None:
        state = json.dumps(fleet.dump(), indent=2, sort_keys=True)
        inventory.write_atomic(args.state_dump, state + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    raise_file_limit()
    try:
        fleet = _load_fleet(args.scenario)
    except (OSError, ValueError) as exc:
        print(f"simulator: {args.scenario}: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mailops-simulator-"))
    try:
        return _serve(fleet, args, stop, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
