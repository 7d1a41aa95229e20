"""The demo: a simulated fleet audited, remediated and audited again.

``python -m tests.demo`` (``make demo``) from the repository root starts the
simulator with ``tests/demo/fleet.yml``, then runs the collection's own
playbooks with the real ``ansible-playbook`` the way a user would
(``ansible-playbook mailops.iis_smtp.compliance -i INVENTORY``), and prints
where the three fleet reports are. Full playbook output goes to log files
beside the reports; the console shows each run's fleet summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import COLLECTIONS_ROOT, REPO_ROOT

FLEET = Path(__file__).resolve().parent / "fleet.yml"
# Per-host exceptions, as a user keeps them in host_vars beside the inventory.
HOST_VARS = {"relay027": {"iis_smtp_instance_states": {"Standby": "stopped"}}}
PHASES = (
    ("1-audit", "mailops.iis_smtp.compliance", "Audit (check mode: nothing changes)"),
    ("2-remediate", "mailops.iis_smtp.remediate", "Remediate (serial batches of 25%)"),
    ("3-audit-again", "mailops.iis_smtp.compliance", "Audit again"),
)


def start_simulator(out: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    inventory, state = out / "inventory.yml", out / "simulator-state.json"
    log = (out / "simulator.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--scenario", str(FLEET), "--inventory", str(inventory),
         "--state-dump", str(state)],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not inventory.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the simulator did not start; see {out / 'simulator.log'}")
        time.sleep(0.05)
    return proc, inventory, state


def stop_simulator(proc: subprocess.Popen[bytes], state: Path) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    return json.loads(state.read_text()) if state.exists() else {"hosts": {}}


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_ROOT)
    env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    return env


def run_phase(name: str, playbook: str, inventory: Path, out: Path) -> tuple[int, float]:
    report_dir = out / name
    env = ansible_env()
    env["IIS_SMTP_REPORT_DIR"] = str(report_dir)
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), playbook, "-i", str(inventory)]
    began = time.monotonic()
    with (out / f"{name}.log").open("w") as log:
        rc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if not (report_dir / "report.json").exists():
        raise SystemExit(f"{playbook} wrote no fleet report; see {out / f'{name}.log'}")
    return rc, time.monotonic() - began


def summary_block(log: Path) -> str:
    """The fleet report's console table, cut from the full playbook output."""
    text = log.read_text()
    start = text.find("IIS SMTP FLEET REPORT")
    return text[text.find("\n", start) + 1:].rstrip() if start >= 0 else "(no fleet report in the output)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo-output", help="where logs and reports go")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    began = time.monotonic()
    proc, inventory, state_path = start_simulator(out)
    (out / "host_vars").mkdir()
    for host, data in HOST_VARS.items():
        (out / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(data))
    hosts = len(yaml.safe_load(FLEET.read_text())["hosts"])
    print(f"Simulated fleet: {hosts} Windows hosts on loopback, inventory {inventory}\n")
    try:
        for name, playbook, title in PHASES:
            print(f"== {title}: ansible-playbook {playbook} -i {inventory.name}")
            rc, elapsed = run_phase(name, playbook, inventory, out)
            print(summary_block(out / f"{name}.log"))
            print(f"   exit code {rc}, {elapsed:.1f} s\n")
    finally:
        state = stop_simulator(proc, state_path)
    ops = {h: len(d.get("operations", [])) for h, d in state.get("hosts", {}).items()}
    touched = sorted(h for h, n in ops.items() if n)
    print(f"Control operations the simulator received: {sum(ops.values())}, on {len(touched)} hosts "
          f"({len(ops) - len(touched)} hosts received none).")
    print(f"Total {time.monotonic() - began:.1f} s.\n\nReports:")
    for name in (phase[0] for phase in PHASES):
        for file in ("report.html", "report.json", "report.junit.xml"):
            print(f"  {out / name / file}")
    print(f"Playbook logs: {out}/*.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
