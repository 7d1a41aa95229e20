"""The report for the playbook shapes users write: info only, several plays, hosts left out, runs cut short."""

from __future__ import annotations

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

from .reports import INFO, NOT_RUN, STOPPED, VS, audit_result, ev, info_result, status_of, vs_item, vs_result


def test_a_playbook_that_only_reads_is_judged_by_what_it_read() -> None:
    assert status_of([ev("h", INFO, "ok", info_result({1: "started"}))]) == ("compliant", None, None)
    status, reason, code = status_of([ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED]))])
    assert (status, code, reason) == ("non_compliant", "drift", "vs1 is stopped")
    read = ev("h", INFO, "ok", info_result({1: "stopped", 2: "stopped"}, [STOPPED], desired={2: "stopped"}))
    host = _report.host_report("h", "p", [read], NOT_RUN)
    assert [(i["id"], i["desired"], i["after"], i["status"]) for i in host["instances"]] == [
        (1, "started", "stopped", "non_compliant"), (2, "stopped", "stopped", "compliant")]
    assert host["os"] == "Microsoft Windows Server 2019 Standard" and host["changes"] == []


def test_remediated_in_one_play_and_audited_in_the_next_keeps_both() -> None:
    events = [
        ev("h", VS, "changed", audit_result([vs_item(1, "vs1", "stopped", "started")]), check=True, play="Audit"),
        ev("h", VS, "changed", vs_result([vs_item(1, "vs1", "stopped", "started")], operations=1), play="Fix"),
        ev("h", VS, "ok", audit_result([vs_item(1, "vs1", "started", "started")]), check=True, play="Check"),
    ]
    host = _report.host_report("h", "first", events, NOT_RUN)
    assert (host["status"], host["play"], host["check_mode"]) == ("remediated", "Check", True)
    assert [(i["before"], i["after"], i["status"], i["changed"]) for i in host["instances"]] == [
        ("stopped", "started", "remediated", True)]
    assert host["changes"] == ["instance 1 (vs1): stopped -> started (start)"] and host["changes_predicted"] is False
    assert [(r["play"], r["check_mode"], r["status"], r["changed"]) for r in host["runs"]] == [
        ("Audit", True, "non_compliant", False), ("Fix", False, "remediated", True), ("Check", True, "compliant", False)]
    assert host["operations"] == 1


def test_changes_of_several_plays_name_their_play() -> None:
    events = [
        ev("h", VS, "changed", vs_result([vs_item(1, "vs1", "stopped", "started")]), play="Wave 1"),
        ev("h", VS, "changed", vs_result([vs_item(2, "vs2", "paused", "started", actions=["continue"])]),
           play="Wave 2"),
    ]
    host = _report.host_report("h", "Wave 1", events, NOT_RUN)
    assert host["changes"] == ["Wave 1: instance 1 (vs1): stopped -> started (start)",
                               "Wave 2: instance 2 (vs2): paused -> started (continue)"]


def test_a_later_play_that_finds_drift_again_is_the_latest_word() -> None:
    events = [ev("h", VS, "changed", vs_result([vs_item(1, "vs1", "stopped", "started")]), play="Fix"),
              ev("h", INFO, "ok", info_result({1: "stopped"}, [STOPPED]), play="Read")]
    assert status_of(events)[0] == "non_compliant"


def test_a_host_without_results_takes_what_became_of_it() -> None:
    left_out = _report.Absent("skipped", "excluded by --tags", "skipped")
    report = _report.build_report({"a": "p", "b": "p"}, [], playbook="p", not_run_reason=NOT_RUN,
                                  absent={"a": left_out}, started=0, finished=0)
    assert [(h["host"], h["status"], h["reason"], h["reason_code"]) for h in report["hosts"]] == [
        ("a", "skipped", "excluded by --tags", "skipped"), ("b", "failed", f"not run: {NOT_RUN}", "not_run")]
    assert report["summary"]["ok"] is False


def test_an_incomplete_report_is_never_ok() -> None:
    events = [ev("h", VS, "ok", vs_result([vs_item(1, "a", "started", "started")]))]
    report = _report.build_report({"h": "p"}, events, playbook="p", not_run_reason=NOT_RUN, started=0, finished=1,
                                  complete=False, incomplete_reason="interrupted by SIGTERM")
    assert (report["complete"], report["incomplete_reason"], report["summary"]["ok"]) == (
        False, "interrupted by SIGTERM", False)
    assert report["hosts"][0]["status"] == "compliant", "what is known is kept"
    assert _report.render_console(report).splitlines()[-1] == "INCOMPLETE: interrupted by SIGTERM"


def test_a_problem_of_the_run_fails_it_without_a_host() -> None:
    problem = {"reason_code": "no_hosts_matched", "message": "play 'Audit': the hosts pattern 'nope' matched no host"}
    report = _report.build_report({}, [], playbook="p", not_run_reason=NOT_RUN, started=0, finished=0,
                                  problems=[problem])
    assert report["summary"]["hosts"] == 0 and report["summary"]["ok"] is False
    assert report["problems"] == [problem]


def test_custom_stats_carry_every_verdict_and_the_counts() -> None:
    events = [ev("a", VS, "ok", vs_result([vs_item(1, "x", "started", "started")])),
              ev("b", VS, "failed", {"failed": True, "reason": "drift", "msg": "drifted"}, check=True)]
    report = _report.build_report({"a": "p", "b": "p", "c": "p"}, events, playbook="p", not_run_reason=NOT_RUN,
                                  started=0, finished=0)
    stats = _report.custom_stats(_report.verdicts(report))
    assert stats["hosts"] == {"a": {"status": "compliant", "reason_code": None},
                              "b": {"status": "non_compliant", "reason_code": "drift"},
                              "c": {"status": "failed", "reason_code": "not_run"}}
    assert stats["hosts_by_status"]["non_compliant"] == 1 and stats["ok"] is False
    assert _report.custom_stats({"a": ("compliant", None)}, ["no_hosts_matched"])["ok"] is False
