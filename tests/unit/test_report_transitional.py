"""An audit of a host whose instance is still moving is not a clean bill of health.

The engine does not count waiting out a transition as a change of its own, so
in check mode such a host predicts no change and `compliant: true`; the
instance still serves no mail. The report's host row must say what its
instance row says.
"""

from __future__ import annotations

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._report import Event

VS = "mailops.iis_smtp.virtual_server"


def vs_event(before: str) -> Event:
    result = {
        "changed": False, "compliant": True, "operations": [], "findings": [],
        "virtual_servers": [
            {"id": 1, "name": "Relay", "desired": "started", "before": {"state": "started"},
             "after": {"state": "started"}, "changed": False, "actions": []},
            {"id": 2, "name": "Stuck", "desired": "started", "before": {"state": before},
             "after": {"state": "started"}, "changed": False, "actions": []},
        ],
    }
    return Event(host="h", task="t", action=VS, status="ok", check_mode=True,
                 result=_report.sanitize_result(result))


def test_an_instance_still_starting_makes_the_audit_non_compliant() -> None:
    report = _report.host_report("h", "p", [vs_event("starting")], "not run")
    assert (report["status"], report["reason_code"]) == ("non_compliant", "drift")
    assert report["reason"] == "check mode: instance 2 (Stuck) is starting, desired started"
    assert [i["status"] for i in report["instances"]] == ["compliant", "non_compliant"]


def test_every_instance_in_place_is_compliant() -> None:
    report = _report.host_report("h", "p", [vs_event("started")], "not run")
    assert (report["status"], report["reason"]) == ("compliant", None)
