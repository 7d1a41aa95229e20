# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: the fleet report, computed from the task results of one run.

The ``fleet_report`` callback collects what ansible-playbook tells it (which
hosts each play targeted, every result of this collection's actions, every
failure and unreachable host) and hands it here. Everything that decides
something (the status of a host and of each instance, the counts) or renders
something (JSON, JUnit XML, the HTML page, the console table) is a pure
function of that data, so it is tested without Ansible and the callback stays
thin.

Only whitelisted keys of a result ever reach the report: host variables and
connection settings (and so passwords) cannot leak into it.
"""

from __future__ import annotations

import html
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REPORT_VERSION = 1

VS_ACTIONS = frozenset({"mailops.iis_smtp.virtual_server", "virtual_server"})
INFO_ACTIONS = frozenset({"mailops.iis_smtp.virtual_server_info", "virtual_server_info"})

HOST_STATUSES = ("compliant", "remediated", "non_compliant", "failed", "unreachable", "skipped")
INSTANCE_STATUSES = ("compliant", "remediated", "non_compliant", "failed")
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

# A transport failure to connect means the host could not be reached, whether
# Ansible's connection plugin or this collection's transport noticed it.
_UNREACHABLE_REASONS = frozenset({"connection_failed"})

SKIPPED_REASON = "every task of this collection was skipped on this host"

_RESULT_KEYS = (
    "changed", "failed", "unreachable", "skipped", "msg", "reason", "compliant",
    "state", "findings", "virtual_servers", "service", "operations",
)
_HOST_KEYS = ("computer_name", "smtp_available")
_OS_KEYS = ("caption", "version", "build")


@dataclass(frozen=True)
class Event:
    """One task result for one host, as the callback saw it."""

    host: str
    task: str
    action: str
    status: str  # ok | changed | failed | unreachable | skipped
    check_mode: bool
    result: Mapping[str, Any] = field(default_factory=dict)


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


def _instance_label(vs: Mapping[str, Any]) -> str:
    name = vs.get("name") or ""
    return f"instance {vs.get('id')} ({name})" if name else f"instance {vs.get('id')}"


def _state_of(part: Any) -> Any:
    return part.get("state") if isinstance(part, Mapping) else None


def _service_state(result: Mapping[str, Any], side: str | None) -> Any:
    """SMTPSVC's state in a virtual_server result (`before` / `after`) or, with no side, an info result."""
    service = result.get("service")
    if not isinstance(service, Mapping):
        return None
    return _state_of(service.get(side)) if side else service.get("state")


def _reached(state: Any, desired: Any, service_state: Any) -> bool:
    """Whether an instance is as desired; one of a stopped SMTPSVC reads unknown and cannot be running."""
    return bool(state == desired or (desired == "stopped" and state == "unknown" and service_state == "stopped"))


def _last(events: Sequence[Event], actions: frozenset[str]) -> Event | None:
    for event in reversed(events):
        if event.action in actions and event.status != "skipped":
            return event
    return None


def _readback(events: Sequence[Event], vs: Event | None) -> Event | None:
    """The info result that shows the host as the virtual_server task left it.

    In check mode nothing changed, so any read will do; after a real run only
    a read taken later counts: one taken before (the usual "show, then
    enforce" playbook) shows the drift that was just repaired.
    """
    info = _last(events, INFO_ACTIONS)
    if vs is None or info is None or vs.check_mode:
        return info
    position = {id(event): index for index, event in enumerate(events)}
    return info if position[id(info)] > position[id(vs)] else None


def _failure_reason(event: Event) -> tuple[str, str | None]:
    msg = event.result.get("msg") or f"task '{event.task}' failed"
    code = event.result.get("reason")
    return str(msg), (str(code) if code else None)


def _is_unreachable(event: Event) -> bool:
    return event.status == "unreachable" or bool(event.result.get("unreachable")) or (
        event.status == "failed" and event.result.get("reason") in _UNREACHABLE_REASONS
    )


def _info_states(info: Event | None) -> dict[Any, Any]:
    if info is None or info.status == "failed":
        return {}
    return {
        vs.get("id"): vs.get("state")
        for vs in info.result.get("virtual_servers") or []
        if isinstance(vs, Mapping)
    }


def _change_lines(vs_result: Mapping[str, Any]) -> list[str]:
    """What the virtual_server task changed (or, in check mode, would change)."""
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


def _instances(vs: Event, info: Event | None, host_status: str) -> list[dict[str, Any]]:
    """One row per targeted instance, with its own status."""
    observed = _info_states(info) if not vs.check_mode else {}
    service_after = _service_state(info.result, None) if observed and info is not None else \
        _service_state(vs.result, "after")
    rows: list[dict[str, Any]] = []
    for item in vs.result.get("virtual_servers") or []:
        if not isinstance(item, Mapping):
            continue
        desired = item.get("desired")
        before = _state_of(item.get("before"))
        after = _state_of(item.get("after"))
        final = observed.get(item.get("id"), after)
        if vs.check_mode:
            status = "compliant" if _reached(before, desired, _service_state(vs.result, "before")) else "non_compliant"
            final = before
        elif not _reached(final, desired, service_after):
            status = "failed" if host_status == "failed" else "non_compliant"
        elif item.get("changed"):
            status = "remediated"
        else:
            status = "compliant"
        rows.append({
            "id": item.get("id"),
            "name": item.get("name"),
            "desired": desired,
            "before": before,
            "after": final,
            "changed": bool(item.get("changed")) and not vs.check_mode,
            "actions": list(item.get("actions") or []),
            "status": status,
        })
    return rows


def _verify_mismatches(vs: Event, info: Event | None) -> list[str]:
    states = _info_states(info)
    service = _service_state(info.result, None) if info is not None else None
    problems = []
    for item in vs.result.get("virtual_servers") or []:
        if not isinstance(item, Mapping):
            continue
        if item.get("id") in states and not _reached(states[item.get("id")], item.get("desired"), service):
            problems.append(
                f"{_instance_label(item)} is {states[item.get('id')]} after the run, desired {item.get('desired')}"
            )
    return problems


def _not_yet_desired(vs: Event) -> list[str]:
    lines = []
    service = _service_state(vs.result, "before")
    for item in vs.result.get("virtual_servers") or []:
        if isinstance(item, Mapping) and not _reached(_state_of(item.get("before")), item.get("desired"), service):
            lines.append(f"{_instance_label(item)} is {_state_of(item.get('before'))}, desired {item.get('desired')}")
    return lines


def host_status(events: Sequence[Event], not_run_reason: str) -> tuple[str, str | None, str | None]:
    """Decide (status, reason, reason_code) for one host from its events, in order."""
    for event in reversed(events):
        if _is_unreachable(event):
            msg, code = _failure_reason(event)
            return "unreachable", msg, code
    if not events:
        return "failed", f"not run: {not_run_reason}", "not_run"
    if all(e.status == "skipped" for e in events):
        # The host ran and a `when:` excluded it on purpose: no failure, and
        # no evidence of compliance either.
        return "skipped", SKIPPED_REASON, "skipped"
    vs = _last(events, VS_ACTIONS)
    info = _last(events, INFO_ACTIONS)
    others = [e for e in events if e.status == "failed" and e.action not in VS_ACTIONS | INFO_ACTIONS]
    if vs is None:
        failed = [e for e in events if e.status == "failed"]
        if failed:
            return ("failed", *_failure_reason(failed[-1]))
        return "failed", "no result from mailops.iis_smtp.virtual_server", "no_result"
    if vs.status == "failed":
        msg, code = _failure_reason(vs)
        if code == "drift":
            return "non_compliant", msg, code
        return "failed", msg, code
    if vs.check_mode:
        if info is not None and info.status == "failed":
            return ("failed", *_failure_reason(info))
        if vs.result.get("changed") or vs.result.get("compliant") is False:
            # The predicted changes are the explanation; they are listed per host.
            return "non_compliant", None, "drift"
        # A transition the engine would only wait out is no change of ours,
        # but the instance does not serve mail yet: the host row must agree
        # with its instance rows.
        moving = _not_yet_desired(vs)
        if moving:
            return "non_compliant", "check mode: " + "; ".join(moving), "drift"
        return "compliant", None, None
    if info is not None and info.status == "failed":
        return ("failed", *_failure_reason(info))
    mismatches = _verify_mismatches(vs, _readback(events, vs))
    if mismatches:
        return "non_compliant", "; ".join(mismatches), "verify"
    if vs.result.get("compliant") is False:
        return "non_compliant", "the desired state was not reached", "verify"
    if others:
        return ("failed", *_failure_reason(others[-1]))
    return ("remediated" if vs.result.get("changed") else "compliant"), None, None


def host_report(host: str, play: str, events: Sequence[Event], not_run_reason: str) -> dict[str, Any]:
    """Everything the report says about one host."""
    status, reason, code = host_status(events, not_run_reason)
    vs = _last(events, VS_ACTIONS)
    info = _last(events, INFO_ACTIONS)
    readback = _readback(events, vs)
    source = info if info is not None and info.status != "failed" else vs
    host_facts = (source.result.get("host") if source else None) or {}
    findings_from = readback if readback is not None and readback.status != "failed" else vs
    if findings_from is not None and "findings" not in findings_from.result and info is not None \
            and info.status != "failed":
        # The task stopped before looking at the host; the earlier read still stands.
        findings_from = info
    findings = [
        {k: f.get(k) for k in ("rule", "severity", "instance", "message")}
        for f in ((findings_from.result.get("findings") if findings_from else None) or [])
        if isinstance(f, Mapping)
    ]
    check_mode = bool(vs.check_mode) if vs else any(e.check_mode for e in events)
    return {
        "host": host,
        "play": play,
        "status": status,
        "reason": reason,
        "reason_code": code,
        "check_mode": check_mode,
        "os": (host_facts.get("os") or {}).get("caption"),
        "computer_name": host_facts.get("computer_name"),
        "instances": _instances(vs, readback, status) if vs else [],
        "findings": findings,
        "changes": _change_lines(vs.result) if vs else [],
        "changes_predicted": check_mode,
        "operations": len(vs.result.get("operations") or []) if vs else 0,
    }


def build_report(
    targeted: Mapping[str, str],
    events: Sequence[Event],
    *,
    playbook: str,
    not_run_reason: str,
    started: float,
    finished: float,
    not_run_reasons: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole report: every targeted host exactly once, plus counts.

    ``targeted`` maps host name to the play that targeted it first; hosts that
    only appear in events (for example added at run time) are reported too.
    ``not_run_reasons`` gives, per host, why it may not have run when that
    differs from ``not_run_reason`` (a play the playbook never reached).
    """
    by_host: dict[str, list[Event]] = {}
    for event in events:
        by_host.setdefault(event.host, []).append(event)
    plays = dict(targeted)
    for name in by_host:
        plays.setdefault(name, "")
    reasons = not_run_reasons or {}
    hosts = [
        host_report(name, plays[name], by_host.get(name, []), reasons.get(name, not_run_reason))
        for name in sorted(plays)
    ]
    return {
        "report_version": REPORT_VERSION,
        "playbook": playbook,
        "started": _iso(started),
        "finished": _iso(finished),
        "check_mode": any(h["check_mode"] for h in hosts),
        "summary": summarize(hosts),
        "hosts": hosts,
    }


def summarize(hosts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts of hosts by status, instances by status and by final state."""
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
        "ok": host_counts["non_compliant"] + host_counts["failed"] + host_counts["unreachable"] == 0,
    }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def junit_cases(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One case per host x instance; a host-level case where instances do not explain its status."""
    cases = []
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
                          "skipped": None})
        host_bad = host["status"] in ("non_compliant", "failed", "unreachable")
        if not host["instances"] or (host_bad and not bad_instance):
            why = host["reason"] or "; ".join(host["changes"]) or "see the report"
            failure = f"{host['status']}: {why}" if host_bad else None
            skipped = host["reason"] if host["status"] == "skipped" else None
            cases.append({"classname": host["host"], "name": "host", "failure": failure, "status": host["status"],
                          "skipped": skipped})
    return cases


def render_junit(report: Mapping[str, Any]) -> str:
    cases = junit_cases(report)
    failures = sum(1 for c in cases if c["failure"])
    skipped = sum(1 for c in cases if c["skipped"])
    suites = ET.Element("testsuites", name="mailops.iis_smtp", tests=str(len(cases)), failures=str(failures),
                        skipped=str(skipped))
    suite = ET.SubElement(
        suites, "testsuite", name="iis_smtp_fleet", tests=str(len(cases)), failures=str(failures),
        errors="0", skipped=str(skipped), timestamp=str(report["finished"]),
    )
    for case in cases:
        node = ET.SubElement(suite, "testcase", classname=case["classname"], name=case["name"])
        if case["failure"]:
            fail = ET.SubElement(node, "failure", message=case["failure"], type=case["status"])
            fail.text = case["failure"]
        elif case["skipped"]:
            ET.SubElement(node, "skipped", message=case["skipped"])
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def render_console(report: Mapping[str, Any]) -> str:
    """A short fixed-width table: one line per host, then the counts."""
    rows = [("HOST", "STATUS", "INSTANCES", "DETAIL")]
    for host in report["hosts"]:
        insts = host["instances"]
        good = sum(1 for i in insts if i["status"] in ("compliant", "remediated"))
        detail = host["reason"] or "; ".join(host["changes"]) or ""
        if len(detail) > 70:
            detail = detail[:67] + "..."
        rows.append((host["host"], host["status"], f"{good}/{len(insts)}" if insts else "-", detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    counts = report["summary"]["hosts_by_status"]
    lines.append(
        f"{report['summary']['hosts']} hosts: " + ", ".join(f"{counts[s]} {s}" for s in HOST_STATUSES)
    )
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _bar_chart(title: str, chart_id: str, counts: Mapping[str, int], colors: Mapping[str, str]) -> str:
    """A horizontal bar chart as inline SVG; bars carry their count as data for readers and tests."""
    items = list(counts.items())
    top = max([count for _key, count in items] + [1])
    bar_h, gap, label_w, width = 22, 8, 130, 520
    height = len(items) * (bar_h + gap) + gap
    parts = [
        (
            f'<svg id="{chart_id}" role="img" aria-label="{html.escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        ),
        f"<title>{html.escape(title)}</title>",
    ]
    for i, (key, count) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = round((width - label_w - 50) * count / top)
        color = colors.get(key, "#757575")
        parts.append(
            f'<text x="0" y="{y + 16}" font-size="13">{html.escape(key)}</text>'
            f'<rect class="bar" data-key="{html.escape(key)}" data-count="{count}" x="{label_w}" y="{y}" '
            f'width="{w}" height="{bar_h}" fill="{color}"/>'
            f'<text x="{label_w + w + 6}" y="{y + 16}" font-size="13">{count}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#212121}
h1{font-size:1.5em}table{border-collapse:collapse;width:100%;margin-top:1em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:0.9em}
th{background:#f5f5f5}.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{border-radius:6px;padding:0.8em 1.2em;color:#fff;min-width:8em}
.card .n{font-size:2em;font-weight:bold;display:block}
.status{font-weight:bold}.charts{display:flex;gap:3em;flex-wrap:wrap;margin-top:1em}
ul{margin:0;padding-left:1.2em}figure{margin:0}
"""


def _list_html(items: Sequence[str]) -> str:
    if not items:
        return ""
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained page: no script, no external asset, everything inline."""
    summary = report["summary"]
    esc = html.escape
    cards = "".join(
        f'<div class="card" style="background:{STATUS_COLORS[s]}" data-status="{s}">'
        f'<span class="n" data-count="{s}">{n}</span>{esc(s.replace("_", " "))}</div>'
        for s, n in summary["hosts_by_status"].items()
    )
    rows = []
    for host in report["hosts"]:
        insts = [
            f"{i['id']} {i['name'] or ''}: {i['after']}"
            + (f", desired {i['desired']}" if i["after"] != i["desired"] else "")
            + (f" ({i['status'].replace('_', ' ')})" if i["status"] != "compliant" else "")
            for i in host["instances"]
        ]
        findings = [f"{f['severity']}: {f['message']}" for f in host["findings"]]
        if host["reason"]:
            findings.insert(0, host["reason"])
        changes = [("would: " if host["changes_predicted"] else "") + c for c in host["changes"]]
        rows.append(
            f'<tr data-host="{esc(host["host"])}" data-status="{host["status"]}">'
            f"<td>{esc(host['host'])}</td>"
            f'<td class="status" style="color:{STATUS_COLORS[host["status"]]}">{esc(host["status"])}</td>'
            f"<td>{esc(host['os'] or '')}</td><td>{_list_html(insts)}</td>"
            f"<td>{_list_html(findings)}</td><td>{_list_html(changes)}</td></tr>"
        )
    mode = "check mode (audit)" if report["check_mode"] else "remediation"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>IIS SMTP fleet report</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>IIS SMTP fleet report</h1>"
        f"<p>Playbook <code>{esc(str(report['playbook']))}</code>, {mode}, finished {esc(report['finished'])}. "
        f'<span id="total-hosts" data-count="{summary["hosts"]}">{summary["hosts"]}</span> hosts, '
        f'<span id="total-instances" data-count="{summary["instances"]}">{summary["instances"]}</span> instances.</p>'
        f'<div class="cards" id="summary">{cards}</div>'
        '<div class="charts"><figure>'
        + _bar_chart("Hosts by status", "chart-hosts", summary["hosts_by_status"], STATUS_COLORS)
        + "<figcaption>Hosts by status</figcaption></figure><figure>"
        + _bar_chart("Instances by state after the run", "chart-states", summary["instances_by_state"], STATE_COLORS)
        + "<figcaption>Instances by state</figcaption></figure></div>"
        '<table id="hosts"><thead><tr><th>Host</th><th>Status</th><th>OS</th><th>Instances</th>'
        "<th>Findings</th><th>Changes</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>\n"
    )
