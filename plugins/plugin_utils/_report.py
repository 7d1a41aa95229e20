# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: the fleet report, computed from the task results of one run.

The ``fleet_report`` callback collects what ansible-playbook tells it (which
hosts each play targeted, every result of this collection's actions, every
failure and unreachable host, and what became of hosts that have none) and
hands it here. Everything that decides something (the status of a host and
of each instance, the counts) or renders something (JSON, JUnit XML, the
HTML page, the console table, the custom stats) is a pure function of that
data, so it is tested without Ansible and the callback stays thin.

A host's status is the verdict of the last result of this collection's
actions on it (``virtual_server``, or ``virtual_server_info`` where only
that ran), told apart from how it got there: a host repaired by one play and
found compliant by a later one was remediated in this run.

Only whitelisted keys of a result ever reach the report: host variables and
connection settings (and so passwords) cannot leak into it.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

REPORT_VERSION = 1

VS_ACTIONS = frozenset({"mailops.iis_smtp.virtual_server", "virtual_server"})
INFO_ACTIONS = frozenset({"mailops.iis_smtp.virtual_server_info", "virtual_server_info"})
OUR_ACTIONS = VS_ACTIONS | INFO_ACTIONS

HOST_STATUSES = ("compliant", "remediated", "non_compliant", "failed", "unreachable", "skipped")
INSTANCE_STATUSES = ("compliant", "remediated", "non_compliant", "failed")
PROBLEM_STATUSES = ("failed", "unreachable", "non_compliant")
# The order of the HTML page: what needs someone first, what is fine last.
PAGE_ORDER = ("failed", "unreachable", "non_compliant", "remediated", "skipped", "compliant")
STATUS_COLORS = {
    "compliant": "#2e7d32",
    "remediated": "#1565c0",
    "non_compliant": "#ef6c00",
    "failed": "#c62828",
    "unreachable": "#6a1b9a",
    "skipped": "#546e7a",
}
STATE_COLORS = {
    "started": "#2e7d32",
    "stopped": "#c62828",
    "paused": "#ef6c00",
    "starting": "#f9a825",
    "stopping": "#f9a825",
    "pausing": "#f9a825",
    "continuing": "#f9a825",
    "unknown": "#757575",
}

# Reason codes of the report itself, for hosts and runs the actions did not judge.
NOT_RUN = "not_run"
SKIPPED = "skipped"
DRIFT = "drift"
VERIFY = "verify"
TASK_FAILED = "task_failed"
UNREACHABLE = "unreachable"
INCOMPLETE = "incomplete"
NO_HOSTS_MATCHED = "no_hosts_matched"

# A transport failure to connect means the host could not be reached, whether
# Ansible's connection plugin or this collection's transport noticed it.
_UNREACHABLE_REASONS = frozenset({"connection_failed", "auth_failed", "credentials_unencodable"})

SKIPPED_REASON = "every task of this collection was skipped on this host"
# The custom stat (set_stats) the report is published under.
STATS_KEY = "iis_smtp"

_RESULT_KEYS = (
    "changed", "failed", "unreachable", "skipped", "msg", "reason", "compliant",
    "state", "findings", "virtual_servers", "service", "operations",
)
_HOST_KEYS = ("computer_name", "smtp_available")
_OS_KEYS = ("caption", "version", "build")
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_TEMPLATE_DIR = os.path.dirname(os.path.abspath(__file__))
_TEMPLATE = "report.html.j2"
CONSOLE_DETAIL = 70

# What cannot go into XML 1.0 at all (even as a character reference), plus
# the C0 and C1 controls that would reach a terminal as escape sequences.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Event:
    """One task result for one host, as the callback saw it, with the play it came from."""

    host: str
    task: str
    action: str
    status: str  # ok | changed | failed | unreachable | skipped
    check_mode: bool
    result: Mapping[str, Any] = field(default_factory=dict)
    play: str = ""


@dataclass(frozen=True)
class Absent:
    """What became of a host that left no result: a status, a reason and its code."""

    status: str
    reason: str
    code: str


def sanitize_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the keys the report uses; everything else is dropped unseen."""
    clean: dict[str, Any] = {k: result[k] for k in _RESULT_KEYS if k in result}
    host = result.get("host")
    if isinstance(host, Mapping):
        kept: dict[str, Any] = {k: host[k] for k in _HOST_KEYS if k in host}
        osd = host.get("os")
        if isinstance(osd, Mapping):
            kept["os"] = {k: osd[k] for k in _OS_KEYS if k in osd}
        clean["host"] = kept
    if "msg" in clean:
        clean["msg"] = str(clean["msg"])
    return clean


# ---------------------------------------------------------------- text

def printable(text: Any) -> str:
    """The text with every control character shown as an escape (``\\x1b``), never sent as one."""
    return _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()) if ord(m.group()) < 256 else "\\u%04x" % ord(m.group()),
                        str(text))


def one_line(text: Any, limit: int | None = None) -> str:
    """Printable text on one line (line breaks and tabs become spaces), cut to `limit` characters."""
    line = _WHITESPACE.sub(" ", printable(text)).strip()
    if limit is not None and len(line) > limit:
        line = line[:limit - 3] + "..."
    return line


# ---------------------------------------------------------------- one result

def _instance_label(vs: Mapping[str, Any]) -> str:
    name = vs.get("name") or ""
    return f"instance {vs.get('id')} ({name})" if name else f"instance {vs.get('id')}"


def _state_of(part: Any) -> Any:
    return part.get("state") if isinstance(part, Mapping) else None


def _is_info(event: Event) -> bool:
    return event.action in INFO_ACTIONS


def _service_state(event: Event) -> Any:
    """SMTPSVC's state as the event last saw it: found (info, check mode) or left (a run)."""
    service = event.result.get("service")
    if not isinstance(service, Mapping):
        return None
    if _is_info(event):
        return service.get("state")
    return _state_of(service.get("before" if event.check_mode else "after"))


def _observed(event: Event, item: Mapping[str, Any]) -> Any:
    """An instance's state as the event last saw it."""
    if _is_info(event):
        return item.get("state")
    return _state_of(item.get("before" if event.check_mode else "after"))


def _first_seen(event: Event, item: Mapping[str, Any]) -> Any:
    return item.get("state") if _is_info(event) else _state_of(item.get("before"))


def _desired(event: Event, item: Mapping[str, Any]) -> Any:
    # Results of virtual_server_info before it knew the desired state judged against started.
    return item.get("desired") or ("started" if _is_info(event) else None)


def _reached(state: Any, desired: Any, service_state: Any) -> bool:
    """Whether an instance is as desired; one of a stopped SMTPSVC reads unknown and cannot be running."""
    return bool(state == desired or (desired == "stopped" and state == "unknown" and service_state == "stopped"))


def _items(event: Event) -> list[Mapping[str, Any]]:
    return [vs for vs in event.result.get("virtual_servers") or [] if isinstance(vs, Mapping)]


def _is_unreachable(event: Event) -> bool:
    return event.status == "unreachable" or bool(event.result.get("unreachable")) or (
        event.status == "failed" and event.result.get("reason") in _UNREACHABLE_REASONS
    )


def _problems_of(findings: Any) -> str | None:
    """The findings that make a host non-compliant, as one reason."""
    found = [f for f in findings or [] if isinstance(f, Mapping)
             and (f.get("severity") == "error" or f.get("instance") is not None)]
    return "; ".join(str(f.get("message")) for f in found) or None


def _compliant(event: Event) -> bool:
    if "compliant" in event.result:
        return bool(event.result["compliant"])
    return _problems_of(event.result.get("findings")) is None


def verdict(event: Event) -> tuple[str, str | None, str | None]:
    """(status, reason, reason_code) of one result of this collection's actions."""
    if _is_unreachable(event):
        return UNREACHABLE, str(event.result.get("msg") or f"task '{event.task}' could not reach the host"), \
            str(event.result.get("reason") or UNREACHABLE)
    if event.status == "failed":
        code = str(event.result.get("reason") or TASK_FAILED)
        msg = str(event.result.get("msg") or f"task '{event.task}' failed")
        return ("non_compliant" if code == DRIFT else "failed"), msg, code
    if _compliant(event):
        if not event.check_mode and not _is_info(event) and event.result.get("changed"):
            return "remediated", None, None
        return "compliant", None, None
    why = _problems_of(event.result.get("findings")) or "the host is not in its desired state"
    if event.check_mode or _is_info(event):
        return "non_compliant", why, DRIFT
    return "non_compliant", "after the run: " + why, VERIFY


# ---------------------------------------------------------------- one host

def _ours(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.action in OUR_ACTIONS and e.status != "skipped"]


def _runs(ours: Sequence[Event]) -> list[Event]:
    """The real virtual_server runs, the only results that change a host."""
    return [e for e in ours if e.action in VS_ACTIONS and not e.check_mode and e.status != "unreachable"]


def host_status(events: Sequence[Event], not_run_reason: str,
                absent: Absent | None = None) -> tuple[str, str | None, str | None]:
    """Decide (status, reason, reason_code) for one host from its events, in order.

    `absent` says what became of a host without events (skipped, or not run
    for a known reason); without it such a host was not run.
    """
    for event in reversed(events):
        if _is_unreachable(event):
            return verdict(event)
    if not events:
        if absent is not None:
            return absent.status, absent.reason, absent.code
        return "failed", f"not run: {not_run_reason}", NOT_RUN
    ours = _ours(events)
    others = [e for e in events if e.status == "failed" and e.action not in OUR_ACTIONS]
    if not ours:
        if others:
            return "failed", str(others[-1].result.get("msg") or f"task '{others[-1].task}' failed"), \
                str(others[-1].result.get("reason") or TASK_FAILED)
        # The host ran and a `when:` excluded it on purpose: no failure, and
        # no evidence of compliance either.
        return SKIPPED, SKIPPED_REASON, SKIPPED
    status, reason, code = verdict(ours[-1])
    if status == "compliant" and any(e.result.get("changed") and e.status != "failed" for e in _runs(ours[:-1])):
        status = "remediated"
    if status in ("compliant", "remediated") and others:
        return "failed", str(others[-1].result.get("msg") or f"task '{others[-1].task}' failed"), \
            str(others[-1].result.get("reason") or TASK_FAILED)
    return status, reason, code


def _instances(ours: Sequence[Event], host_status_: str) -> list[dict[str, Any]]:
    """One row per instance the last result judged: first state seen, last state seen, and what was done."""
    latest = next((e for e in reversed(ours) if "virtual_servers" in e.result), None)
    if latest is None:
        return []
    runs = _runs(ours)
    first: dict[Any, Any] = {}
    for event in ours:
        for item in _items(event):
            first.setdefault(item.get("id"), _first_seen(event, item))
    service = _service_state(latest)
    rows: list[dict[str, Any]] = []
    for item in _items(latest):
        inst_id = item.get("id")
        desired = _desired(latest, item)
        final = _observed(latest, item)
        done = [vs for run in runs for vs in _items(run) if vs.get("id") == inst_id]
        changed = any(bool(vs.get("changed")) for vs in done)
        if not _reached(final, desired, service):
            status = "failed" if host_status_ == "failed" else "non_compliant"
        else:
            status = "remediated" if changed else "compliant"
        actions = [str(a) for vs in done for a in vs.get("actions") or []] if changed else \
            [str(a) for a in item.get("actions") or []]
        rows.append({
            "id": inst_id,
            "name": item.get("name"),
            "desired": desired,
            "before": first.get(inst_id),
            "after": final,
            "changed": changed,
            "actions": actions,
            "status": status,
        })
    return rows


def _change_lines(vs_result: Mapping[str, Any]) -> list[str]:
    """What one virtual_server task changed (or, in check mode, would change)."""
    lines: list[str] = []
    service = vs_result.get("service")
    if isinstance(service, Mapping) and service.get("changed"):
        before = service.get("before") or {}
        after = service.get("after") or {}
        lines.append(
            f"service {service.get('name', 'SMTPSVC')}: "
            f"{before.get('state')}/{before.get('start_mode')} -> {after.get('state')}/{after.get('start_mode')}"
        )
    for vs in vs_result.get("virtual_servers") or []:
        if not isinstance(vs, Mapping) or not vs.get("changed"):
            continue
        actions = ", ".join(str(a) for a in vs.get("actions") or [])
        lines.append(
            f"{_instance_label(vs)}: {_state_of(vs.get('before'))} -> {_state_of(vs.get('after'))}"
            + (f" ({actions})" if actions else "")
        )
    return lines


def _changes(ours: Sequence[Event]) -> tuple[list[str], bool]:
    """What this run changed, play by play where there were several; else what the last audit predicted."""
    runs = [e for e in _runs(ours) if e.result.get("changed")]
    plays = {e.play for e in runs}
    done = [(f"{e.play}: " if len(plays) > 1 and e.play else "") + line for e in runs for line in _change_lines(e.result)]
    if done:
        return done, False
    latest = ours[-1] if ours else None
    if latest is not None and latest.action in VS_ACTIONS and latest.check_mode:
        predicted = _change_lines(latest.result)
        return predicted, bool(predicted)
    return [], False


def _run_entry(event: Event) -> dict[str, Any]:
    status, _reason, code = verdict(event)
    return {"play": event.play, "task": event.task, "action": event.action.rsplit(".", 1)[-1],
            "check_mode": event.check_mode, "changed": bool(event.result.get("changed")) and not event.check_mode,
            "status": status, "reason_code": code}


def host_report(host: str, play: str, events: Sequence[Event], not_run_reason: str,
                absent: Absent | None = None) -> dict[str, Any]:
    """Everything the report says about one host."""
    status, reason, code = host_status(events, not_run_reason, absent)
    ours = _ours(events)
    latest = ours[-1] if ours else None
    facts: Mapping[str, Any] = next((e.result["host"] for e in reversed(ours) if isinstance(e.result.get("host"), Mapping)), {})
    # A task that stopped before looking at the host leaves the last look that was taken.
    looked = next((e for e in reversed(ours) if "findings" in e.result), None)
    findings = [
        {k: f.get(k) for k in ("rule", "severity", "instance", "message")}
        for f in ((looked.result.get("findings") if looked else None) or [])
        if isinstance(f, Mapping)
    ]
    changes, predicted = _changes(ours)
    return {
        "host": host,
        "play": (latest.play if latest is not None and latest.play else play),
        "status": status,
        "reason": reason,
        "reason_code": code,
        "check_mode": bool(latest.check_mode) if latest else any(e.check_mode for e in events),
        "os": (facts.get("os") or {}).get("caption"),
        "computer_name": facts.get("computer_name"),
        "instances": _instances(ours, status),
        "findings": findings,
        "changes": changes,
        "changes_predicted": predicted,
        "operations": sum(len(e.result.get("operations") or []) for e in _runs(ours)),
        "runs": [_run_entry(e) for e in ours],
    }


# ---------------------------------------------------------------- the run

def build_report(
    targeted: Mapping[str, str],
    events: Sequence[Event],
    *,
    playbook: str,
    not_run_reason: str,
    started: float,
    finished: float,
    not_run_reasons: Mapping[str, str] | None = None,
    absent: Mapping[str, Absent] | None = None,
    complete: bool = True,
    incomplete_reason: str | None = None,
    problems: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The whole report: every targeted host exactly once, plus counts.

    ``targeted`` maps host name to the play that targeted it first; hosts that
    only appear in events (for example added at run time) are reported too.
    ``not_run_reasons`` gives, per host, why it may not have run when that
    differs from ``not_run_reason`` (a play the playbook never reached);
    ``absent`` what became of a host without events, where that is known
    (skipped by --tags or run_once). A report written before the run ended
    is not ``complete``, and ``problems`` are failures of the run itself
    (a target that matched no host under the drift gate).
    """
    by_host: dict[str, list[Event]] = {}
    for event in events:
        by_host.setdefault(event.host, []).append(event)
    plays = dict(targeted)
    for name in by_host:
        plays.setdefault(name, "")
    reasons = not_run_reasons or {}
    fates = absent or {}
    hosts = [
        host_report(name, plays[name], by_host.get(name, []), reasons.get(name, not_run_reason), fates.get(name))
        for name in sorted(plays)
    ]
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "playbook": playbook,
        "started": _iso(started),
        "finished": _iso(finished),
        "complete": complete,
        "incomplete_reason": None if complete else (incomplete_reason or "the run did not finish"),
        "problems": [dict(p) for p in problems],
        "check_mode": any(h["check_mode"] for h in hosts),
        "summary": {},
        "hosts": hosts,
    }
    report["summary"] = summarize(hosts, complete=complete, problems=problems)
    return report


def summarize(hosts: Sequence[Mapping[str, Any]], *, complete: bool = True,
              problems: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Counts of hosts by status, instances by status and by final state; `ok` only for a finished, clean run."""
    host_counts = {s: 0 for s in HOST_STATUSES}
    inst_counts = {s: 0 for s in INSTANCE_STATUSES}
    states: dict[str, int] = {}
    for host in hosts:
        host_counts[host["status"]] += 1
        for inst in host["instances"]:
            inst_counts[inst["status"]] += 1
            key = str(inst["after"] or "unknown")
            states[key] = states.get(key, 0) + 1
    return {
        "hosts": len(hosts),
        "hosts_by_status": host_counts,
        "instances": sum(inst_counts.values()),
        "instances_by_status": inst_counts,
        "instances_by_state": dict(sorted(states.items())),
        "ok": complete and not problems and sum(host_counts[s] for s in PROBLEM_STATUSES) == 0,
    }


def custom_stats(verdicts: Mapping[str, tuple[str, str | None]], problems: Sequence[str] = ()) -> dict[str, Any]:
    """What the run publishes as a custom stat (what set_stats sets): AWX passes it on as job artifacts.

    `verdicts` maps each host to its (status, reason_code); `problems` are
    the reason codes of the run's own failures.
    """
    counts = {s: 0 for s in HOST_STATUSES}
    for status, _code in verdicts.values():
        counts[status] += 1
    return {
        "ok": not problems and sum(counts[s] for s in PROBLEM_STATUSES) == 0,
        "hosts_by_status": counts,
        "problems": list(problems),
        "hosts": {host: {"status": status, "reason_code": code} for host, (status, code) in sorted(verdicts.items())},
    }


def verdicts(report: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Each host's (status, reason_code) in a report."""
    return {h["host"]: (h["status"], h["reason_code"]) for h in report["hosts"]}


def _iso(ts: float) -> str:
    return time.strftime(_ISO, time.gmtime(ts))


def _epoch(iso: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(iso, _ISO)))
    except (TypeError, ValueError):
        return None


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


# ---------------------------------------------------------------- JUnit

def junit_cases(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One case per host x instance; a host-level case where instances do not explain its status.

    A run that did not finish, or failed as a whole, adds a case of its own
    (class name `run`), so a JUnit reader never shows such a run green.
    """
    cases = []
    if not report.get("complete", True):
        cases.append({"classname": "run", "name": "complete", "failure": None, "skipped": None,
                      "error": f"{INCOMPLETE}: {report.get('incomplete_reason')}", "status": INCOMPLETE})
    for problem in report.get("problems") or []:
        cases.append({"classname": "run", "name": str(problem.get("reason_code")), "skipped": None, "error": None,
                      "failure": f"{problem.get('reason_code')}: {problem.get('message')}", "status": "failed"})
    for host in report["hosts"]:
        bad_instance = False
        for inst in host["instances"]:
            failure = None
            if inst["status"] in ("non_compliant", "failed"):
                bad_instance = True
                failure = (
                    f"{inst['status']}: state {inst['after']}, desired {inst['desired']}"
                    + (f"; {host['reason']}" if host["reason"] else "")
                )
            label = f"instance {inst['id']}" + (f" ({inst['name']})" if inst["name"] else "")
            cases.append({"classname": host["host"], "name": label, "failure": failure, "status": inst["status"],
                          "skipped": None, "error": None})
        host_bad = host["status"] in PROBLEM_STATUSES
        if not host["instances"] or (host_bad and not bad_instance):
            why = host["reason"] or "; ".join(host["changes"]) or "see the report"
            failure = f"{host['status']}: {why}" if host_bad else None
            skipped = host["reason"] if host["status"] == SKIPPED else None
            cases.append({"classname": host["host"], "name": "host", "failure": failure, "status": host["status"],
                          "skipped": skipped, "error": None})
    return cases


def render_junit(report: Mapping[str, Any]) -> str:
    """JUnit XML as the Ant format defines it, which CI systems read.

    The strictest reading (the Ant JUnit schema) allows no attribute on
    `testsuites`, wants `properties`, `system-out` and `system-err` in each
    suite, a `time` on every case and a timestamp without a zone: it is UTC.
    Every text goes through `printable`, since XML 1.0 cannot carry most
    control characters, not even escaped.
    """
    cases = junit_cases(report)
    counts = {kind: sum(1 for c in cases if c[kind]) for kind in ("failure", "error", "skipped")}
    started, finished = _epoch(str(report["started"])), _epoch(str(report["finished"]))
    duration = max(0.0, finished - started) if started is not None and finished is not None else 0.0
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites, "testsuite", name="iis_smtp_fleet", package="mailops.iis_smtp", id="0", hostname="localhost",
        timestamp=str(report["started"]).removesuffix("Z"), time=f"{duration:.3f}", tests=str(len(cases)),
        failures=str(counts["failure"]), errors=str(counts["error"]), skipped=str(counts["skipped"]),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("playbook", report["playbook"]), ("check_mode", str(bool(report["check_mode"])).lower()),
                        ("complete", str(bool(report.get("complete", True))).lower())):
        ET.SubElement(properties, "property", name=name, value=printable(value))
    for case in cases:
        node = ET.SubElement(suite, "testcase", classname=one_line(case["classname"]), name=one_line(case["name"]),
                             time="0")
        for kind in ("error", "failure"):
            if case[kind]:
                text = printable(case[kind])
                ET.SubElement(node, kind, message=text, type=str(case["status"])).text = text
        if case["skipped"]:
            ET.SubElement(node, "skipped", message=printable(case["skipped"]))
    ET.SubElement(suite, "system-out").text = printable(render_console(report))
    ET.SubElement(suite, "system-err")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# ---------------------------------------------------------------- console

def render_console(report: Mapping[str, Any]) -> str:
    """A short fixed-width table: one line per host whatever its texts say, then the counts."""
    rows = [("HOST", "STATUS", "INSTANCES", "DETAIL")]
    for host in report["hosts"]:
        insts = host["instances"]
        good = sum(1 for i in insts if i["status"] in ("compliant", "remediated"))
        detail = host["reason"] or "; ".join(host["changes"]) or ""
        rows.append((one_line(host["host"]), host["status"], f"{good}/{len(insts)}" if insts else "-",
                     one_line(detail, CONSOLE_DETAIL)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    counts = report["summary"]["hosts_by_status"]
    lines.append(
        f"{report['summary']['hosts']} hosts: " + ", ".join(f"{counts[s]} {s}" for s in HOST_STATUSES)
    )
    for problem in report.get("problems") or []:
        lines.append(one_line(f"FAILED: {problem.get('message')}"))
    if not report.get("complete", True):
        lines.append(one_line(f"INCOMPLETE: {report.get('incomplete_reason')}"))
    return "\n".join(line.rstrip() for line in lines) + "\n"


# ---------------------------------------------------------------- HTML

def _bar_chart(chart_id: str, counts: Mapping[str, int], colors: Mapping[str, str]) -> dict[str, Any]:
    """The geometry of a horizontal bar chart; the template draws it as inline SVG."""
    items = list(counts.items())
    top = max([count for _key, count in items] + [1])
    bar_h, gap, label_w, width = 22, 8, 130, 520
    bars = [{"key": key, "count": count, "y": gap + i * (bar_h + gap),
             "w": round((width - label_w - 50) * count / top), "color": colors.get(key, "#757575")}
            for i, (key, count) in enumerate(items)]
    return {"id": chart_id, "width": width, "height": len(items) * (bar_h + gap) + gap, "bar_h": bar_h,
            "label_w": label_w, "bars": bars}


def _page_rows(hosts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rank = {status: i for i, status in enumerate(PAGE_ORDER)}
    rows = []
    for host in sorted(hosts, key=lambda h: (rank.get(h["status"], len(rank)), str(h["host"]))):
        instances = [
            f"{i['id']} {i['name'] or ''}: {i['after']}"
            + (f", desired {i['desired']}" if i["after"] != i["desired"] else "")
            + (f" ({i['status'].replace('_', ' ')})" if i["status"] != "compliant" else "")
            for i in host["instances"]
        ]
        findings = [f"{f['severity']}: {f['message']}" for f in host["findings"]]
        if host["reason"]:
            findings.insert(0, str(host["reason"]))
        search = " ".join([str(host["host"]), *(f"{i['id']} {i['name'] or ''}" for i in host["instances"])])
        rows.append({"host": host, "instances": instances, "findings": findings,
                     "changes": [("would: " if host["changes_predicted"] else "") + c for c in host["changes"]],
                     "search": one_line(search).lower()})
    return rows


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["printable"] = printable
    return env


def render_html(report: Mapping[str, Any]) -> str:
    """One self-contained page (inline CSS, SVG and script, nothing fetched), from an autoescaping template."""
    summary = report["summary"]
    rows = _page_rows(report["hosts"])
    return _environment().get_template(_TEMPLATE).render(
        report=report,
        summary=summary,
        complete=report.get("complete", True),
        problems=report.get("problems") or [],
        mode="check mode (audit)" if report["check_mode"] else "remediation",
        statuses=HOST_STATUSES,
        colors=STATUS_COLORS,
        open_rows=[r for r in rows if r["host"]["status"] != "compliant"],
        compliant_rows=[r for r in rows if r["host"]["status"] == "compliant"],
        charts=[
            ("Hosts by status", _bar_chart("chart-hosts", summary["hosts_by_status"], STATUS_COLORS)),
            ("Instances by state after the run",
             _bar_chart("chart-states", summary["instances_by_state"], STATE_COLORS)),
        ],
    )
