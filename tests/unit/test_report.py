"""The fleet report's decisions and renderings, from results shaped like the actions' contract."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._report import Event

VS = "mailops.iis_smtp.virtual_server"
INFO = "mailops.iis_smtp.virtual_server_info"
NOT_RUN = "the play ended early"


def vs_item(iid: int, name: str, before: str, after: str, desired: str = "started",
            actions: list[str] | None = None) -> dict[str, Any]:
    return {"id": iid, "name": name, "desired": desired, "before": {"state": before}, "after": {"state": after},
            "changed": before != after, "actions": actions or ([] if before == after else ["start"])}


def vs_result(items: list[dict[str, Any]], *, changed: bool | None = None, compliant: bool = True,
              operations: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "changed": any(i["changed"] for i in items) if changed is None else changed,
        "virtual_servers": items,
        "service": {"name": "SMTPSVC", "before": {"state": "running", "start_mode": "auto"},
                    "after": {"state": "running", "start_mode": "auto"}, "changed": False},
        "operations": [{"op": "instance", "id": 1, "command": "start", "ok": True}] * operations,
        "compliant": compliant,
        "findings": [],
        **extra,
    }


def info_result(states: dict[int, str], findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "changed": False,
        "host": {"computer_name": "RELAY01", "smtp_available": True,
                 "os": {"caption": "Microsoft Windows Server 2019 Standard", "version": "10.0.17763", "build": 17763}},
        "virtual_servers": [{"id": i, "name": f"vs{i}", "state": s, "state_code": 2} for i, s in states.items()],
        "findings": findings or [],
        "compliant": all(s == "started" for s in states.values()),
    }


def ev(host: str, action: str, status: str, result: dict[str, Any], check: bool = False, task: str = "t") -> Event:
    return Event(host=host, task=task, action=action, status=status, check_mode=check,
                 result=_report.sanitize_result(result))


def status_of(events: list[Event]) -> tuple[str, str | None, str | None]:
    return _report.host_status(events, NOT_RUN)


def test_unchanged_run_that_reads_back_started_is_compliant() -> None:
    events = [ev("h", VS, "ok", vs_result([vs_item(1, "a", "started", "started")])),
              ev("h", INFO, "ok", info_result({1: "started"}))]
    assert status_of(events) == ("compliant", None, None)


def test_changed_run_that_reads_back_started_is_remediated() -> None:
    events = [ev("h", VS, "changed", vs_result([vs_item(1, "a", "stopped", "started")], operations=1)),
              ev("h", INFO, "ok", info_result({1: "started"}))]
    assert status_of(events)[0] == "remediated"
    report = _report.host_report("h", "p", events, NOT_RUN)
    assert report["instances"][0]["status"] == "remediated"
    assert report["changes"] == ["instance 1 (a): stopped -> started (start)"]
    assert report["changes_predicted"] is False


def test_readback_that_disagrees_with_desired_is_non_compliant_even_if_the_action_said_ok() -> None:
    events = [ev("h", VS, "changed", vs_result([vs_item(1, "a", "stopped", "started")], operations=1)),
              ev("h", INFO, "ok", info_result({1: "stopped"})),
              ev("h", "ansible.builtin.assert", "failed", {"msg": "One or more items failed"})]
    status, reason, code = status_of(events)
    assert (status, code) == ("non_compliant", "verify")
    assert "instance 1 (a) is stopped after the run, desired started" in str(reason)


def test_instance_meant_to_stay_stopped_is_compliant_when_stopped() -> None:
    items = [vs_item(1, "a", "started", "started"), vs_item(2, "b", "stopped", "stopped", desired="stopped")]
    events = [ev("h", VS, "ok", vs_result(items)), ev("h", INFO, "ok", info_result({1: "started", 2: "stopped"}))]
    report = _report.host_report("h", "p", events, NOT_RUN)
    assert report["status"] == "compliant"
    assert [i["status"] for i in report["instances"]] == ["compliant", "compliant"]


@pytest.mark.parametrize("changed,expected", [(True, "non_compliant"), (False, "compliant")])
def test_check_mode_prediction_decides(changed: bool, expected: str) -> None:
    before = "paused" if changed else "started"
    events = [ev("h", INFO, "ok", info_result({2: before}), check=True),
              ev("h", VS, "changed" if changed else "ok",
                 vs_result([vs_item(2, "App relay", before, "started", actions=["continue"] if changed else [])]),
                 check=True)]
    report = _report.host_report("h", "p", events, NOT_RUN)
    assert report["status"] == expected
    assert report["instances"][0]["status"] == expected
    assert report["instances"][0]["after"] == before, "check mode reports the state found, not the prediction"
    assert report["changes_predicted"] is True


def test_drift_gate_failure_is_non_compliant_not_failed() -> None:
    result = vs_result([vs_item(1, "a", "stopped", "started")], failed=True, reason="drift",
                       msg="1 change would be made")
    events = [ev("h", INFO, "ok", info_result({1: "stopped"}), check=True), ev("h", VS, "failed", result, check=True)]
    assert status_of(events) == ("non_compliant", "1 change would be made", "drift")


def test_action_failure_carries_its_message_and_code() -> None:
    msg = "SMTP virtual server 3 (Broken) did not reach started within 60 s: last state stopped"
    result = vs_result([vs_item(3, "Broken", "stopped", "stopped")], failed=True, reason="instance_start_failed",
                       msg=msg, compliant=False)
    report = _report.host_report("h", "p", [ev("h", VS, "failed", result)], NOT_RUN)
    assert (report["status"], report["reason"], report["reason_code"]) == ("failed", msg, "instance_start_failed")
    assert report["instances"][0]["status"] == "failed"


@pytest.mark.parametrize("event", [
    Event("h", "t", VS, "unreachable", False, {"msg": "Connection refused", "unreachable": True}),
    Event("h", "t", INFO, "failed", True, {"msg": "Connection refused", "reason": "connection_failed"}),
])
def test_connection_failures_are_unreachable(event: Event) -> None:
    assert status_of([event]) == ("unreachable", "Connection refused", event.result.get("reason"))


def test_host_with_no_events_failed_with_not_run_reason() -> None:
    assert status_of([]) == ("failed", f"not run: {NOT_RUN}", "not_run")


def test_failure_of_another_task_fails_the_host() -> None:
    assert status_of([ev("h", "ansible.builtin.setup", "failed", {"msg": "boom"})]) == ("failed", "boom", None)


def test_sanitize_keeps_no_connection_settings_or_unknown_keys() -> None:
    raw = {"msg": "x", "changed": True, "ansible_password": "s3cret", "invocation": {"module_args": {"p": "s3cret"}},
           "host": {"computer_name": "R", "os": {"caption": "W", "build": 1, "secret": "s3cret"}, "extra": "s3cret"}}
    assert "s3cret" not in json.dumps(_report.sanitize_result(raw))


def sample_report() -> dict[str, Any]:
    events = [
        ev("ok1", VS, "ok", vs_result([vs_item(1, "a", "started", "started")])),
        ev("ok1", INFO, "ok", info_result({1: "started"})),
        ev("fix1", VS, "changed", vs_result([vs_item(1, "a", "stopped", "started"),
                                             vs_item(2, "<b>&", "started", "started")], operations=1)),
        ev("fix1", INFO, "ok", info_result({1: "started", 2: "started"})),
        ev("bad1", VS, "failed", vs_result([vs_item(3, "Broken", "stopped", "stopped")], failed=True,
                                           reason="instance_start_failed", msg="did not start", compliant=False)),
        Event("down1", "t", VS, "unreachable", False, {"msg": "refused"}),
    ]
    targeted = {h: "play" for h in ("ok1", "fix1", "bad1", "down1", "never1")}
    return _report.build_report(targeted, events, playbook="remediate.yml", not_run_reason=NOT_RUN,
                                started=0.0, finished=60.0)


def test_every_targeted_host_appears_exactly_once_with_counts() -> None:
    report = sample_report()
    assert [h["host"] for h in report["hosts"]] == sorted(["ok1", "fix1", "bad1", "down1", "never1"])
    assert report["summary"]["hosts_by_status"] == {
        "compliant": 1, "remediated": 1, "non_compliant": 0, "failed": 2, "unreachable": 1, "skipped": 0}
    assert report["summary"]["instances_by_state"] == {"started": 3, "stopped": 1}
    assert report["summary"]["ok"] is False
    assert json.loads(_report.render_json(report)) == report


def test_host_only_seen_in_events_is_still_reported() -> None:
    report = _report.build_report({}, [ev("late", VS, "ok", vs_result([]))], playbook="p", not_run_reason=NOT_RUN,
                                  started=0, finished=0)
    assert [h["host"] for h in report["hosts"]] == ["late"]


def test_junit_has_a_case_per_host_instance_failing_for_bad_ones() -> None:
    root = ET.fromstring(_report.render_junit(sample_report()))
    cases = {(c.get("classname"), c.get("name")): c.find("failure") for c in root.iter("testcase")}
    assert set(cases) == {("ok1", "instance 1 (a)"), ("fix1", "instance 1 (a)"), ("fix1", "instance 2 (<b>&)"),
                          ("bad1", "instance 3 (Broken)"), ("down1", "host"), ("never1", "host")}
    failing = {k for k, f in cases.items() if f is not None}
    assert failing == {("bad1", "instance 3 (Broken)"), ("down1", "host"), ("never1", "host")}
    assert root.find("testsuite").get("failures") == "3"  # type: ignore[union-attr]


def test_junit_adds_host_case_when_only_the_service_is_off() -> None:
    result = vs_result([vs_item(1, "a", "started", "started")], changed=True)
    result["service"].update(changed=True, after={"state": "running", "start_mode": "delayed"})
    report = _report.build_report({"h": "p"}, [ev("h", VS, "changed", result, check=True)], playbook="p",
                                  not_run_reason=NOT_RUN, started=0, finished=0)
    cases = []
    for case in ET.fromstring(_report.render_junit(report)).iter("testcase"):
        failure = case.find("failure")
        cases.append((case.get("name"), None if failure is None else failure.get("message")))
    assert cases == [("instance 1 (a)", None), ("host", "non_compliant: service SMTPSVC: running/auto -> running/delayed")]


def test_html_is_self_contained_escaped_and_shows_the_counts() -> None:
    page = _report.render_html(sample_report())
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<b>&" not in page and "&lt;b&gt;&amp;" in page
    assert '<span class="n" data-count="failed">2</span>' in page
    assert page.count("<svg") == 2


def test_console_table_lists_every_host_and_the_totals() -> None:
    text = _report.render_console(sample_report())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["HOST", "STATUS", "INSTANCES"]
    assert {line.split()[0] for line in lines[1:6]} == {"ok1", "fix1", "bad1", "down1", "never1"}
    assert lines[-1] == "5 hosts: 1 compliant, 1 remediated, 0 non_compliant, 2 failed, 1 unreachable, 0 skipped"


def skipped_events(host: str) -> list[Event]:
    result = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    return [ev(host, INFO, "skipped", result, task="read"), ev(host, VS, "skipped", result, task="enforce")]


def test_host_whose_every_task_was_skipped_is_skipped_not_failed() -> None:
    assert status_of(skipped_events("h")) == ("skipped", _report.SKIPPED_REASON, "skipped")


def test_a_skipped_task_next_to_a_real_result_does_not_make_the_host_skipped() -> None:
    events = [*skipped_events("h"), ev("h", VS, "ok", vs_result([vs_item(1, "a", "started", "started")]))]
    assert status_of(events) == ("compliant", None, None)


def skipped_report() -> dict[str, Any]:
    events = [ev("ok1", VS, "ok", vs_result([vs_item(1, "a", "started", "started")])), *skipped_events("dr1")]
    return _report.build_report({"ok1": "p", "dr1": "p"}, events, playbook="p", not_run_reason=NOT_RUN,
                                started=0, finished=0)


def test_skipped_hosts_are_counted_and_do_not_fail_the_gate() -> None:
    report = skipped_report()
    summary = report["summary"]
    assert summary["hosts_by_status"]["skipped"] == 1 and summary["hosts_by_status"]["failed"] == 0
    assert summary["ok"] is True
    assert _report.render_console(report).splitlines()[-1] == (
        "2 hosts: 1 compliant, 0 remediated, 0 non_compliant, 0 failed, 0 unreachable, 1 skipped")
    page = _report.render_html(report)
    assert '<span class="n" data-count="skipped">1</span>' in page
    assert '<rect class="bar" data-key="skipped" data-count="1"' in page


def test_junit_reports_a_skipped_host_as_a_skipped_case() -> None:
    root = ET.fromstring(_report.render_junit(skipped_report()))
    case = next(c for c in root.iter("testcase") if c.get("classname") == "dr1")
    assert case.get("name") == "host" and case.find("failure") is None
    assert case.find("skipped").get("message") == _report.SKIPPED_REASON  # type: ignore[union-attr]
    suite = root.find("testsuite")
    assert (suite.get("skipped"), suite.get("failures")) == ("1", "0")  # type: ignore[union-attr]


def test_per_host_not_run_reason_wins_over_the_default() -> None:
    report = _report.build_report({"a": "p1", "b": "p2"}, [], playbook="p", not_run_reason=NOT_RUN,
                                  not_run_reasons={"b": "the playbook stopped"}, started=0, finished=0)
    assert [(h["host"], h["status"], h["reason"]) for h in report["hosts"]] == [
        ("a", "failed", f"not run: {NOT_RUN}"), ("b", "failed", "not run: the playbook stopped")]


def test_report_an_unknown_instance_of_a_stopped_service_counts_as_stopped() -> None:
    # While SMTPSVC is stopped no ServerState can be read; such an instance cannot be running.
    down = {"name": "SMTPSVC", "before": {"state": "stopped", "start_mode": "manual"},
            "after": {"state": "stopped", "start_mode": "manual"}, "changed": False}
    item = vs_item(1, "a", "unknown", "unknown", desired="stopped")
    info = {**info_result({1: "unknown"}), "service": {"name": "SMTPSVC", "state": "stopped"}}
    audit = [ev("h", VS, "ok", vs_result([item], service=down), check=True)]
    assert status_of(audit) == ("compliant", None, None)
    run = [ev("h", VS, "ok", vs_result([item], service=down)), ev("h", INFO, "ok", info)]
    assert status_of(run) == ("compliant", None, None)
    assert _report.host_report("h", "p", run, NOT_RUN)["instances"][0]["status"] == "compliant"
    running = {"name": "SMTPSVC", "before": {"state": "running"}, "after": {"state": "running"}, "changed": False}
    assert status_of([ev("h", VS, "ok", vs_result([item], service=running), check=True)])[0] == "non_compliant"
