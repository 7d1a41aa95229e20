"""The fleet report's decisions, from results shaped like the actions' contract.

A host's status is the verdict of the last result of the collection's
actions on it; how it got there (a repair by an earlier play) is kept too.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._report import Event

from .reports import (
    INFO,
    NOT_RUN,
    STOPPED,
    VS,
    audit_result,
    ev,
    info_result,
    sample_report,
    skipped_events,
    status_of,
    vs_item,
    vs_result,
)


def test_unchanged_compliant_run_is_compliant() -> None:
    assert status_of([ev("h", VS, "ok", vs_result([vs_item(1, "a", "started", "started")]))]) == (
        "compliant", None, None)


def test_changed_compliant_run_is_remediated() -> None:
    events = [ev("h", VS, "changed", vs_result([vs_item(1, "a", "stopped", "started")], operations=1))]
    assert status_of(events)[0] == "remediated"
    report = _report.host_report("h", "p", events, NOT_RUN)
    assert report["instances"][0]["status"] == "remediated"
    assert report["changes"] == ["instance 1 (a): stopped -> started (start)"]
    assert report["changes_predicted"] is False and report["operations"] == 1


def test_a_run_whose_read_back_is_not_compliant_is_non_compliant_with_the_findings() -> None:
    result = vs_result([vs_item(1, "vs1", "stopped", "stopped")], changed=False, compliant=False, findings=[STOPPED])
    status, reason, code = status_of([ev("h", VS, "ok", result)])
    assert (status, code, reason) == ("non_compliant", "verify", "after the run: vs1 is stopped")


def test_instance_meant_to_stay_stopped_is_compliant_when_stopped() -> None:
    items = [vs_item(1, "a", "started", "started"), vs_item(2, "b", "stopped", "stopped", desired="stopped")]
    report = _report.host_report("h", "p", [ev("h", VS, "ok", vs_result(items))], NOT_RUN)
    assert report["status"] == "compliant"
    assert [i["status"] for i in report["instances"]] == ["compliant", "compliant"]


@pytest.mark.parametrize("before,expected", [("paused", "non_compliant"), ("started", "compliant")])
def test_check_mode_judges_the_host_as_found(before: str, expected: str) -> None:
    item = vs_item(2, "App relay", before, "started", actions=["continue"] if before != "started" else [])
    report = _report.host_report("h", "p", [ev("h", VS, "changed", audit_result([item]), check=True)], NOT_RUN)
    assert report["status"] == expected
    assert report["instances"][0]["status"] == expected
    assert report["instances"][0]["after"] == before, "check mode reports the state found, not the prediction"
    assert report["changes_predicted"] is (before != "started")


def test_drift_gate_failure_is_non_compliant_not_failed() -> None:
    result = vs_result([vs_item(1, "a", "stopped", "started")], failed=True, reason="drift",
                       msg="1 change would be made", compliant=False)
    assert status_of([ev("h", VS, "failed", result, check=True)]) == ("non_compliant", "1 change would be made",
                                                                      "drift")


def test_action_failure_carries_its_message_and_code() -> None:
    msg = "SMTP virtual server 3 (Broken) did not reach started within 60 s: last state stopped"
    result = vs_result([vs_item(3, "Broken", "stopped", "stopped")], failed=True, reason="instance_start_failed",
                       msg=msg, compliant=False)
    report = _report.host_report("h", "p", [ev("h", VS, "failed", result)], NOT_RUN)
    assert (report["status"], report["reason"], report["reason_code"]) == ("failed", msg, "instance_start_failed")
    assert report["instances"][0]["status"] == "failed"


@pytest.mark.parametrize("event,code", [
    (Event("h", "t", VS, "unreachable", False, {"msg": "Connection refused", "unreachable": True}), "unreachable"),
    (Event("h", "t", INFO, "failed", True, {"msg": "Connection refused", "reason": "connection_failed"}),
     "connection_failed"),
    (Event("h", "t", INFO, "unreachable", True, {"msg": "Latin-1 only", "reason": "credentials_unencodable"}),
     "credentials_unencodable"),
])
def test_connection_failures_are_unreachable_with_a_code(event: Event, code: str) -> None:
    assert status_of([event]) == ("unreachable", event.result["msg"], code)


def test_host_with_no_events_failed_with_not_run_reason() -> None:
    assert status_of([]) == ("failed", f"not run: {NOT_RUN}", "not_run")


def test_failure_of_another_task_fails_the_host_with_a_code() -> None:
    failed = ev("h", "ansible.builtin.setup", "failed", {"msg": "boom"})
    assert status_of([failed]) == ("failed", "boom", "task_failed")
    # The callback marks a failure of the role's argument validation.
    assert status_of([ev("h", "ansible.builtin.validate_argument_spec", "failed",
                         {"msg": "bad", "reason": "invalid_argument"})])[2] == "invalid_argument"


def test_a_failure_after_a_compliant_result_still_fails_the_host() -> None:
    events = [ev("h", VS, "ok", vs_result([vs_item(1, "a", "started", "started")])),
              ev("h", "ansible.builtin.assert", "failed", {"msg": "site check failed"})]
    assert status_of(events) == ("failed", "site check failed", "task_failed")


def test_sanitize_keeps_no_connection_settings_or_unknown_keys() -> None:
    raw = {"msg": "x", "changed": True, "ansible_password": "s3cret", "invocation": {"module_args": {"p": "s3cret"}},
           "host": {"computer_name": "R", "os": {"caption": "W", "build": 1, "secret": "s3cret"}, "extra": "s3cret"}}
    assert "s3cret" not in json.dumps(_report.sanitize_result(raw))


def test_every_targeted_host_appears_exactly_once_with_counts() -> None:
    report = sample_report()
    assert [h["host"] for h in report["hosts"]] == sorted(["ok1", "fix1", "bad1", "down1", "never1"])
    assert report["summary"]["hosts_by_status"] == {
        "compliant": 1, "remediated": 1, "non_compliant": 0, "failed": 2, "unreachable": 1, "skipped": 0}
    assert report["summary"]["instances_by_state"] == {"started": 3, "stopped": 1}
    assert report["summary"]["ok"] is False and report["complete"] is True
    assert json.loads(_report.render_json(report)) == report


def test_host_only_seen_in_events_is_still_reported() -> None:
    report = _report.build_report({}, [ev("late", VS, "ok", vs_result([]))], playbook="p", not_run_reason=NOT_RUN,
                                  started=0, finished=0)
    assert [h["host"] for h in report["hosts"]] == ["late"]


def test_host_whose_every_task_was_skipped_is_skipped_not_failed() -> None:
    assert status_of(skipped_events("h")) == ("skipped", _report.SKIPPED_REASON, "skipped")


def test_a_skipped_task_next_to_a_real_result_does_not_make_the_host_skipped() -> None:
    events = [*skipped_events("h"), ev("h", VS, "ok", vs_result([vs_item(1, "a", "started", "started")]))]
    assert status_of(events) == ("compliant", None, None)


def test_skipped_hosts_are_counted_and_do_not_fail_the_gate() -> None:
    events = [ev("ok1", VS, "ok", vs_result([vs_item(1, "a", "started", "started")])), *skipped_events("dr1")]
    report = _report.build_report({"ok1": "p", "dr1": "p"}, events, playbook="p", not_run_reason=NOT_RUN,
                                  started=0, finished=0)
    summary = report["summary"]
    assert summary["hosts_by_status"]["skipped"] == 1 and summary["hosts_by_status"]["failed"] == 0
    assert summary["ok"] is True


def test_per_host_not_run_reason_wins_over_the_default() -> None:
    report = _report.build_report({"a": "p1", "b": "p2"}, [], playbook="p", not_run_reason=NOT_RUN,
                                  not_run_reasons={"b": "the playbook stopped"}, started=0, finished=0)
    assert [(h["host"], h["status"], h["reason"]) for h in report["hosts"]] == [
        ("a", "failed", f"not run: {NOT_RUN}"), ("b", "failed", "not run: the playbook stopped")]


def test_an_unknown_instance_of_a_stopped_service_counts_as_stopped() -> None:
    # While SMTPSVC is stopped no ServerState can be read; such an instance cannot be running.
    down = {"name": "SMTPSVC", "before": {"state": "stopped", "start_mode": "manual"},
            "after": {"state": "stopped", "start_mode": "manual"}, "changed": False}
    item = vs_item(1, "a", "unknown", "unknown", desired="stopped")
    audit = [ev("h", VS, "ok", vs_result([item], service=down), check=True)]
    assert status_of(audit) == ("compliant", None, None)
    run = [ev("h", VS, "ok", vs_result([item], service=down))]
    assert _report.host_report("h", "p", run, NOT_RUN)["instances"][0]["status"] == "compliant"


def test_a_read_before_the_change_does_not_hide_the_change() -> None:
    # The README's pattern: read (and show) the findings, then enforce.
    events = [ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED])),
              ev("h", VS, "changed", vs_result([vs_item(1, "vs1", "stopped", "started")]))]
    host = _report.host_report("h", "p", events, NOT_RUN)
    assert host["status"] == "remediated" and host["findings"] == []
    assert [(i["before"], i["after"], i["status"]) for i in host["instances"]] == [
        ("stopped", "started", "remediated")]
    assert host["os"] == "Microsoft Windows Server 2019 Standard"


def test_a_task_that_stopped_before_looking_leaves_the_earlier_findings() -> None:
    events = [ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED])),
              ev("h", VS, "failed", {"changed": False, "failed": True, "reason": "access_denied", "msg": "denied"})]
    host = _report.host_report("h", "p", events, NOT_RUN)
    assert host["status"] == "failed" and [f["rule"] for f in host["findings"]] == ["smtp_instance_stopped"]


def test_a_result_without_compliant_is_judged_by_its_findings() -> None:
    # Results of an older virtual_server_info carry findings but no desired state.
    read = {"changed": False, "virtual_servers": [{"id": 1, "name": "vs1", "state": "stopped"}], "findings": [STOPPED]}
    host = _report.host_report("h", "p", [ev("h", INFO, "ok", read)], NOT_RUN)
    assert (host["status"], host["reason"]) == ("non_compliant", "vs1 is stopped")
    assert [(i["desired"], i["status"]) for i in host["instances"]] == [("started", "non_compliant")]
