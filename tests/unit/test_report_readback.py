"""The report takes only a read made after the change as the read-back of a run."""

from __future__ import annotations

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

from .test_report import INFO, NOT_RUN, VS, ev, info_result, vs_item, vs_result

STOPPED = {"rule": "smtp_instance_stopped", "severity": "error", "instance": 1, "message": "vs1 is stopped"}


def test_a_read_before_the_run_is_not_its_read_back() -> None:
    events = [ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED])),
              ev("h", VS, "changed", vs_result([vs_item(1, "vs1", "stopped", "started")]))]
    assert _report.host_status(events, NOT_RUN) == ("remediated", None, None)
    host = _report.host_report("h", "p", events, NOT_RUN)
    assert [(i["after"], i["status"]) for i in host["instances"]] == [("started", "remediated")]
    assert host["findings"] == []
    assert host["os"] == "Microsoft Windows Server 2019 Standard"


def test_a_read_after_the_run_still_decides() -> None:
    events = [ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED])),
              ev("h", VS, "changed", vs_result([vs_item(1, "vs1", "stopped", "started")])),
              ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED]))]
    status, reason, code = _report.host_status(events, NOT_RUN)
    assert (status, code) == ("non_compliant", "verify") and "is stopped after the run" in str(reason)
    host = _report.host_report("h", "p", events, NOT_RUN)
    assert [f["rule"] for f in host["findings"]] == ["smtp_instance_stopped"]


def test_the_earlier_read_gives_the_findings_when_the_run_stopped_before_looking() -> None:
    events = [ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED])),
              ev("h", VS, "failed", {"changed": False, "failed": True, "reason": "access_denied", "msg": "denied"})]
    host = _report.host_report("h", "p", events, NOT_RUN)
    assert host["status"] == "failed" and [f["rule"] for f in host["findings"]] == ["smtp_instance_stopped"]
