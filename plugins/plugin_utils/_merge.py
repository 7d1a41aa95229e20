# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: one fleet report from the reports of several runs over parts of a fleet.

A sliced job (AWX, Automation Platform) runs the same playbook as N jobs over
disjoint parts of the inventory, and the ``fleet_report`` callback of each
writes a report of its own hosts. Merging them gives the report one run over
the whole fleet would have given: every host once, the counts recomputed, and
the same JSON, JUnit XML and HTML renderings. A host found in two reports
means the reports are not slices of one run (two runs, or one slice twice),
so the merge refuses rather than pick one.

Everything here works on the controller's files; the action plugin only
validates its arguments and calls it.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from . import _report

MERGE_SPEC: dict[str, Any] = {
    "src": {"type": "list", "elements": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "remove_src": {"type": "bool", "default": False},
}
REPORT_NAME = "report.json"
# The files of a report, as the fleet_report callback writes them.
REPORT_FILES = (REPORT_NAME, "report.junit.xml", "report.html")
# What merge, render_html, render_junit and summarize read of a report and of
# every host and instance entry in it.
REPORT_KEYS = ("playbook", "started", "finished", "check_mode", "hosts")
HOST_KEYS = ("host", "play", "status", "reason", "reason_code", "check_mode", "os", "computer_name",
             "instances", "findings", "changes", "changes_predicted", "operations")
INSTANCE_KEYS = ("id", "name", "desired", "before", "after", "changed", "actions", "status")


class MergeError(ValueError):
    """Reports that cannot be merged; the message names the report and what is wrong."""


def check_report(report: Any, source: str) -> Mapping[str, Any]:
    """The report itself, once it is known to be a fleet report of this collection's format."""
    if not isinstance(report, Mapping) or "report_version" not in report:
        raise MergeError(f"{source}: not a fleet report (no report_version)")
    if report["report_version"] != _report.REPORT_VERSION:
        raise MergeError(f"{source}: report_version {report['report_version']!r}, "
                         f"expected {_report.REPORT_VERSION}")
    missing = [key for key in REPORT_KEYS if key not in report]
    if missing:
        raise MergeError(f"{source}: lacks {', '.join(missing)}")
    hosts = report["hosts"]
    if not isinstance(hosts, list):
        raise MergeError(f"{source}: 'hosts' is not a list")
    for index, host in enumerate(hosts):
        where = f"{source}: hosts[{index}]"
        if not isinstance(host, Mapping):
            raise MergeError(f"{where} is not a mapping")
        missing = [key for key in HOST_KEYS if key not in host]
        if missing:
            raise MergeError(f"{where} lacks {', '.join(missing)}")
        if host["status"] not in _report.HOST_STATUSES:
            raise MergeError(f"{where}: unknown status {host['status']!r}")
        if not isinstance(host["instances"], list):
            raise MergeError(f"{where}: 'instances' is not a list")
        for number, inst in enumerate(host["instances"]):
            if not isinstance(inst, Mapping) or any(key not in inst for key in INSTANCE_KEYS):
                raise MergeError(f"{where}.instances[{number}] is not an instance entry")
            if inst["status"] not in _report.INSTANCE_STATUSES:
                raise MergeError(f"{where}.instances[{number}]: unknown status {inst['status']!r}")
    return report


def merge(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One report from (source, report) pairs whose hosts do not overlap.

    The run spans the earliest start to the latest finish; the playbook is the
    slices' common one, or every name once, in order, when they differ.
    """
    if not reports:
        raise MergeError("no reports to merge")
    seen: dict[str, str] = {}
    hosts: list[Mapping[str, Any]] = []
    playbooks: list[str] = []
    slices = []
    for source, report in reports:
        check_report(report, source)
        for host in report["hosts"]:
            name = str(host["host"])
            if name in seen:
                raise MergeError(f"host {name} is in {seen[name]} and in {source}: "
                                 "the reports are not slices of one run")
            seen[name] = source
            hosts.append(host)
        playbook = str(report["playbook"])
        if playbook and playbook not in playbooks:
            playbooks.append(playbook)
        slices.append({"report": source, "playbook": playbook, "hosts": len(report["hosts"]),
                       "started": report["started"], "finished": report["finished"]})
    ordered = sorted(hosts, key=lambda host: str(host["host"]))
    # A slice that did not finish leaves the whole fleet's report unfinished; its problems are the fleet's.
    unfinished = [f"{source}: {r.get('incomplete_reason')}" for source, r in reports if not r.get("complete", True)]
    problems = [dict(p) for _source, r in reports for p in r.get("problems") or []]
    return {
        "report_version": _report.REPORT_VERSION,
        "playbook": ", ".join(playbooks),
        # The callback writes ISO 8601 UTC timestamps of one format: they order as text.
        "started": min(str(r["started"]) for _source, r in reports),
        "finished": max(str(r["finished"]) for _source, r in reports),
        "complete": not unfinished,
        "incomplete_reason": "; ".join(unfinished) or None,
        "problems": problems,
        "check_mode": any(bool(r["check_mode"]) for _source, r in reports),
        "summary": _report.summarize(ordered, complete=not unfinished, problems=problems),
        "hosts": [dict(host) for host in ordered],
        "slices": slices,
    }


def render(report: Mapping[str, Any]) -> dict[str, str]:
    """File name to content, for each of REPORT_FILES."""
    texts = (_report.render_json(report), _report.render_junit(report), _report.render_html(report))
    return dict(zip(REPORT_FILES, texts, strict=True))


def report_files(patterns: list[str], dest: str) -> list[str]:
    """Every report.json that ``patterns`` name, once each, in the order given.

    A directory stands for its report.json, so a glob over slice directories
    works; the destination's own report is never one of the sources, so a
    pattern that also matches the merged report's directory can be run again.
    """
    own = os.path.realpath(os.path.join(dest, REPORT_NAME))
    found: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        reports = [os.path.join(m, REPORT_NAME) if os.path.isdir(m) else m for m in matches]
        reports = [r for r in reports if os.path.realpath(r) != own]
        missing = [r for r in reports if not os.path.isfile(r)]
        if not reports or missing:
            raise MergeError(f"{pattern}: " + (f"no such report: {', '.join(missing)}" if missing
                                               else f"matches no {REPORT_NAME}"))
        for report in reports:
            if os.path.realpath(report) not in seen:
                seen.add(os.path.realpath(report))
                found.append(report)
    return found


def load(path: str) -> Any:
    """The parsed JSON of one report file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path}: cannot be read as JSON: {exc}") from exc


def write(dest: str, files: dict[str, str]) -> None:
    """Write beside each file and rename, so a reader never sees half a report."""
    os.makedirs(dest, exist_ok=True)
    for name, text in files.items():
        tmp = os.path.join(dest, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, os.path.join(dest, name))


def unchanged(dest: str, files: dict[str, str]) -> bool:
    """Whether ``dest`` already holds exactly these files, so the task reports no change."""
    for name, text in files.items():
        try:
            with open(os.path.join(dest, name), encoding="utf-8") as handle:
                if handle.read() != text:
                    return False
        except OSError:
            return False
    return True


def remove(reports: Sequence[str]) -> list[str]:
    """Delete the merged reports' files, then each directory that is empty after that.

    Nothing else is ever deleted: a slice directory that holds other files
    keeps them, and the directory.
    """
    removed = []
    for report in reports:
        directory = os.path.dirname(os.path.abspath(report))
        for name in REPORT_FILES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                os.unlink(path)
                removed.append(path)
        if not os.listdir(directory):
            os.rmdir(directory)
            removed.append(directory)
    return removed
