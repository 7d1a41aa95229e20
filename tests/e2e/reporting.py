"""Running a playbook with the fleet report enabled, and reading what it wrote.

Shared by the end-to-end tests of the report and the role: each run writes
to its own directory under the fleet's workdir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import PlaybookRun, SimulatedFleet

REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"


def report_env(out: Path) -> dict[str, str]:
    return {"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)}


def run_report(fleet: SimulatedFleet, playbook: str | Path, name: str, *, check: bool = False,
               extra_vars: dict[str, Any] | None = None, args: list[str] | None = None,
               env: dict[str, str] | None = None) -> tuple[PlaybookRun, dict[str, Any]]:
    """Run the playbook with the report in `report-<name>/`; the report must have been written."""
    out = fleet.workdir / f"report-{name}"
    run = fleet.play(playbook, check=check, extra_vars=extra_vars, args=args, env={**report_env(out), **(env or {})})
    assert (out / "report.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads((out / "report.json").read_text())


def by_host(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in report["hosts"]}


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["status"] for h in report["hosts"]}


def rows(report: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(h["host"], h["status"], h["reason_code"]) for h in report["hosts"]]


def console_table(stdout: str) -> list[str]:
    """The lines of the report's console table, header first, the counts last."""
    lines = stdout[stdout.index("IIS SMTP FLEET REPORT"):].splitlines()[1:]
    return lines[:next(i for i, line in enumerate(lines) if " hosts: " in line) + 1]
