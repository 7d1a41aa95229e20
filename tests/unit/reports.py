"""Builders for the task results the fleet report reads, in the shape of the actions' contract.

A test writes `ev("h", VS, "changed", vs_result([vs_item(1, "a", "stopped", "started")]))`
and gets the Event the callback would have recorded for that result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xmlschema
from junitparser import JUnitXml

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._report import Event

VS = "mailops.iis_smtp.virtual_server"
INFO = "mailops.iis_smtp.virtual_server_info"
NOT_RUN = "the play ended early"
STOPPED = {"rule": "smtp_instance_stopped", "severity": "error", "instance": 1, "message": "vs1 is stopped"}


def vs_item(iid: int, name: str, before: str, after: str, desired: str = "started",
            actions: list[str] | None = None) -> dict[str, Any]:
    return {"id": iid, "name": name, "desired": desired, "before": {"state": before}, "after": {"state": after},
            "changed": before != after, "actions": actions or ([] if before == after else ["start"])}


def vs_result(items: list[dict[str, Any]], *, changed: bool | None = None, compliant: bool = True,
              operations: int = 0, findings: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "changed": any(i["changed"] for i in items) if changed is None else changed,
        "virtual_servers": items,
        "service": {"name": "SMTPSVC", "before": {"state": "running", "start_mode": "auto"},
                    "after": {"state": "running", "start_mode": "auto"}, "changed": False},
        "operations": [{"op": "instance", "id": 1, "command": "start", "ok": True}] * operations,
        "compliant": compliant,
        "findings": findings or [],
        **extra,
    }


def audit_result(items: list[dict[str, Any]], findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A check-mode virtual_server result: compliant is the host as found, the items the prediction."""
    drifted = [i for i in items if i["before"]["state"] != i["desired"]]
    return vs_result(items, changed=bool(drifted), compliant=not drifted, findings=findings)


def info_result(states: dict[int, str], findings: list[dict[str, Any]] | None = None,
                desired: dict[int, str] | None = None) -> dict[str, Any]:
    wanted = desired or {}
    return {
        "changed": False,
        "host": {"computer_name": "RELAY01", "smtp_available": True,
                 "os": {"caption": "Microsoft Windows Server 2019 Standard", "version": "10.0.17763", "build": 17763}},
        "service": {"name": "SMTPSVC", "state": "running", "start_mode": "auto"},
        "virtual_servers": [{"id": i, "name": f"vs{i}", "state": s, "state_code": 2,
                             "desired": wanted.get(i, "started")} for i, s in states.items()],
        "findings": findings or [],
        "compliant": all(s == wanted.get(i, "started") for i, s in states.items()),
    }


def ev(host: str, action: str, status: str, result: dict[str, Any], check: bool = False, task: str = "t",
       play: str = "") -> Event:
    return Event(host=host, task=task, action=action, status=status, check_mode=check,
                 result=_report.sanitize_result(result), play=play)


def status_of(events: list[Event]) -> tuple[str, str | None, str | None]:
    return _report.host_status(events, NOT_RUN)


def skipped_events(host: str) -> list[Event]:
    result = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    return [ev(host, INFO, "skipped", result, task="read"), ev(host, VS, "skipped", result, task="enforce")]


def sample_report() -> dict[str, Any]:
    events = [
        ev("ok1", VS, "ok", vs_result([vs_item(1, "a", "started", "started")])),
        ev("fix1", VS, "changed", vs_result([vs_item(1, "a", "stopped", "started"),
                                             vs_item(2, "<b>&", "started", "started")], operations=1)),
        ev("bad1", VS, "failed", vs_result([vs_item(3, "Broken", "stopped", "stopped")], failed=True,
                                           reason="instance_start_failed", msg="did not start", compliant=False)),
        Event("down1", "t", VS, "unreachable", False, {"msg": "refused"}),
    ]
    targeted = {h: "play" for h in ("ok1", "fix1", "bad1", "down1", "never1")}
    return _report.build_report(targeted, events, playbook="remediate.yml", not_run_reason=NOT_RUN,
                                started=0.0, finished=60.0)


JUNIT_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "junit.xsd"


def read_junit(text: str) -> JUnitXml:
    """The JUnit file as a CI system takes it: valid against the Ant JUnit schema, then parsed by junitparser."""
    xmlschema.XMLSchema(str(JUNIT_SCHEMA)).validate(text)
    xml = JUnitXml.fromstring(text)
    assert isinstance(xml, JUnitXml)
    return xml
