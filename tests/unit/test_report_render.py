"""The report's renderings: JUnit as CI systems read it, the console table, the HTML page."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
from junitparser import Error, Failure, Skipped

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

from .reports import NOT_RUN, VS, audit_result, ev, read_junit, sample_report, skipped_events, vs_item, vs_result

HOSTILE = "Relay\x07\x1b[31mred\x1b[0m\nsecond line\x00\x9b\ud800"


def hostile_report() -> dict[str, Any]:
    result = vs_result([vs_item(1, HOSTILE, "stopped", "stopped")], failed=True, reason="instance_start_failed",
                       msg="did not start:\r\n" + "x" * 300 + "\x1b]0;title\x07", compliant=False)
    return _report.build_report({"h\x1bx": "p"}, [ev("h\x1bx", VS, "failed", result)], playbook="p\x07.yml",
                                not_run_reason=NOT_RUN, started=0, finished=0)


def cases(text: str) -> dict[tuple[str, str], Any]:
    xml = read_junit(text)
    return {(case.classname, case.name): case for suite in xml for case in suite}


def test_junit_has_a_case_per_host_instance_failing_for_bad_ones() -> None:
    text = _report.render_junit(sample_report())
    found = cases(text)
    assert set(found) == {("ok1", "instance 1 (a)"), ("fix1", "instance 1 (a)"), ("fix1", "instance 2 (<b>&)"),
                          ("bad1", "instance 3 (Broken)"), ("down1", "host"), ("never1", "host")}
    failing = {k for k, case in found.items() if any(isinstance(r, Failure) for r in case.result)}
    assert failing == {("bad1", "instance 3 (Broken)"), ("down1", "host"), ("never1", "host")}
    suite = next(iter(read_junit(text)))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (6, 3, 0, 0)
    # The Ant schema's timestamp has no zone: the report's times are UTC.
    assert suite.timestamp == "1970-01-01T00:00:00" and suite.time == 60.0


def test_junit_adds_a_host_case_when_only_the_service_is_off() -> None:
    result = audit_result([vs_item(1, "a", "started", "started")])
    result.update(changed=True, compliant=False)
    result["service"].update(changed=True, after={"state": "running", "start_mode": "delayed"})
    report = _report.build_report({"h": "p"}, [ev("h", VS, "changed", result, check=True)], playbook="p",
                                  not_run_reason=NOT_RUN, started=0, finished=0)
    found = cases(_report.render_junit(report))
    assert [r.message for r in found[("h", "host")].result] == [
        "non_compliant: the host is not in its desired state"]
    assert found[("h", "instance 1 (a)")].result == []


def test_junit_reports_a_skipped_host_as_a_skipped_case() -> None:
    events = [ev("ok1", VS, "ok", vs_result([vs_item(1, "a", "started", "started")])), *skipped_events("dr1")]
    report = _report.build_report({"ok1": "p", "dr1": "p"}, events, playbook="p", not_run_reason=NOT_RUN,
                                  started=0, finished=0)
    found = cases(_report.render_junit(report))
    (skipped,) = found[("dr1", "host")].result
    assert isinstance(skipped, Skipped) and skipped.message == _report.SKIPPED_REASON


def test_an_incomplete_run_is_an_error_case_and_a_run_problem_a_failure() -> None:
    report = _report.build_report({}, [], playbook="p", not_run_reason=NOT_RUN, started=0, finished=0,
                                  complete=False, incomplete_reason="interrupted by SIGINT",
                                  problems=[{"reason_code": "no_hosts_matched", "message": "matched no host"}])
    text = _report.render_junit(report)
    found = cases(text)
    (error,) = found[("run", "complete")].result
    (failure,) = found[("run", "no_hosts_matched")].result
    assert isinstance(error, Error) and error.message == "incomplete: interrupted by SIGINT"
    assert isinstance(failure, Failure) and failure.message == "no_hosts_matched: matched no host"
    suite = next(iter(read_junit(text)))
    assert (suite.errors, suite.failures) == (1, 1)


def test_control_characters_never_break_the_junit_file() -> None:
    text = _report.render_junit(hostile_report())
    ET.fromstring(text)
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", text)
    found = cases(text)
    assert ("h\\x1bx", "instance 1 (Relay\\x07\\x1b[31mred\\x1b[0m second line\\x00\\x9b\\ud800)") in found


def test_console_keeps_one_row_per_host_and_no_terminal_escape() -> None:
    lines = _report.render_console(hostile_report()).splitlines()
    assert len(lines) == 3, lines
    assert lines[1].startswith("h\\x1bx  failed") and len(lines[1].split("  ")[-1]) <= _report.CONSOLE_DETAIL
    assert not re.search("[\x00-\x1f\x7f-\x9f]", "".join(lines))


def test_console_table_lists_every_host_and_the_totals() -> None:
    lines = _report.render_console(sample_report()).splitlines()
    assert lines[0].split()[:3] == ["HOST", "STATUS", "INSTANCES"]
    assert {line.split()[0] for line in lines[1:6]} == {"ok1", "fix1", "bad1", "down1", "never1"}
    assert lines[-1] == "5 hosts: 1 compliant, 1 remediated, 0 non_compliant, 2 failed, 1 unreachable, 0 skipped"


class _Page(HTMLParser):
    """The rows of the page, in order, with the table each sits in."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str, str]] = []
        self.tables: list[str] = []
        self.tags: list[str] = []
        self.details: dict[str, bool] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self.tables.append(str(a.get("id")))
        elif tag == "tr" and a.get("data-host") is not None:
            self.rows.append((self.tables[-1], str(a["data-host"]), str(a["data-status"])))
        elif tag == "details":
            self.details[str(a.get("id"))] = "open" in a


def page(report: dict[str, Any]) -> _Page:
    parsed = _Page()
    parsed.feed(_report.render_html(report))
    return parsed


def test_html_puts_problems_first_and_folds_compliant_hosts() -> None:
    parsed = page(sample_report())
    assert parsed.rows == [("hosts", "bad1", "failed"), ("hosts", "never1", "failed"),
                           ("hosts", "down1", "unreachable"), ("hosts", "fix1", "remediated"),
                           ("compliant-hosts", "ok1", "compliant")]
    assert parsed.details == {"compliant": False}
    assert parsed.tags.count("script") == 1 and "link" not in parsed.tags and "img" not in parsed.tags


def test_html_is_self_contained_escaped_and_shows_the_counts() -> None:
    text = _report.render_html(sample_report())
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert "<b>&" not in text and "&lt;b&gt;&amp;" in text
    assert '<span class="n" data-count="failed">2</span>' in text
    assert text.count("<svg") == 2
    assert '<rect class="bar" data-key="failed" data-count="2"' in text


@pytest.mark.parametrize("name", ["</script><script>alert(1)</script>", "\" onmouseover=\"alert(1)", HOSTILE])
def test_html_escapes_what_windows_sends(name: str) -> None:
    events = [ev("h", VS, "ok", vs_result([vs_item(1, name, "started", "started")]))]
    text = _report.render_html(_report.build_report({"h": "p"}, events, playbook="p", not_run_reason=NOT_RUN,
                                                    started=0, finished=0))
    assert name not in text and text.count("<script>") == 1
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", text)


def test_html_says_when_the_run_is_incomplete() -> None:
    report = _report.build_report({"h": "p"}, [], playbook="p", not_run_reason=NOT_RUN, started=0, finished=0,
                                  complete=False, incomplete_reason="interrupted by SIGTERM")
    text = _report.render_html(report)
    assert 'id="incomplete"' in text and "interrupted by SIGTERM" in text and 'data-complete="false"' in text


def test_junit_of_a_report_without_readable_times_still_validates() -> None:
    report = {**sample_report(), "started": "2024-01-01T00:00:00Z", "finished": "later"}
    suite = next(iter(read_junit(_report.render_junit(report))))
    assert suite.time == 0.0 and suite.timestamp == "2024-01-01T00:00:00"
