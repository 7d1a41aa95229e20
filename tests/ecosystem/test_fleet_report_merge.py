"""Merging slice reports (plugins/plugin_utils/_merge.py), without Ansible.

The reports are built by the same code the fleet_report callback uses, so
what is merged here has the callback's exact format; test_awx.py merges real
slice reports through ansible-runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _merge, _report


def vs_event(host: str, state: str) -> _report.Event:
    return _report.Event(host=host, task="enforce", action="mailops.iis_smtp.virtual_server", status="ok",
                         check_mode=True, result={"changed": state != "started", "compliant": state == "started",
                                                  "virtual_servers": [{"id": 1, "name": "", "desired": "started",
                                                                       "before": {"state": state},
                                                                       "after": {"state": "started"},
                                                                       "changed": state != "started"}]})


def slice_report(states: dict[str, str], started: float, finished: float) -> dict[str, Any]:
    return _report.build_report({h: "Audit" for h in states}, [vs_event(h, s) for h, s in states.items()],
                                playbook="compliance.yml", not_run_reason="stopped", started=started,
                                finished=finished)


FLEET = {"a1": "started", "b2": "stopped", "c3": "started", "d4": "paused", "e5": "started"}


def test_merged_slices_equal_one_report_of_the_whole_fleet() -> None:
    whole = slice_report(FLEET, 100, 200)
    first = slice_report({h: FLEET[h] for h in ("a1", "d4")}, 120, 150)
    second = slice_report({h: FLEET[h] for h in ("b2", "c3", "e5")}, 100, 200)
    merged = _merge.merge([("s2", second), ("s1", first)])
    assert merged["hosts"] == whole["hosts"] and merged["summary"] == whole["summary"]
    assert (merged["started"], merged["finished"]) == (whole["started"], whole["finished"])
    assert merged["playbook"] == "compliance.yml" and merged["check_mode"] is True
    assert [(s["report"], s["hosts"]) for s in merged["slices"]] == [("s2", 3), ("s1", 2)]
    files = _merge.render(merged)
    assert sorted(files) == sorted(_merge.REPORT_FILES)
    assert json.loads(files["report.json"]) == merged
    assert files["report.junit.xml"] == _report.render_junit(merged)


def test_a_host_in_two_reports_is_refused() -> None:
    one = slice_report({"a1": "started"}, 1, 2)
    with pytest.raises(_merge.MergeError, match="host a1 is in s1 and in s2: the reports are not slices of one run"):
        _merge.merge([("s1", one), ("s2", one)])


def test_different_playbooks_are_all_named() -> None:
    one, two = slice_report({"a1": "started"}, 1, 2), slice_report({"b2": "started"}, 1, 2)
    two["playbook"] = "remediate.yml"
    assert _merge.merge([("s1", one), ("s2", two)])["playbook"] == "compliance.yml, remediate.yml"


def broken(change: Any) -> dict[str, Any]:
    report = slice_report({"a1": "stopped"}, 1, 2)
    change(report)
    return report


@pytest.mark.parametrize(("report", "message"), [
    ([], "not a fleet report"),
    (broken(lambda r: r.update(report_version=99)), "report_version 99, expected 1"),
    (broken(lambda r: r.pop("finished")), "lacks finished"),
    (broken(lambda r: r.update(hosts={})), "'hosts' is not a list"),
    (broken(lambda r: r["hosts"].append("x")), r"hosts\[1\] is not a mapping"),
    (broken(lambda r: r["hosts"][0].pop("findings")), r"hosts\[0\] lacks findings"),
    (broken(lambda r: r["hosts"][0].update(status="fine")), "unknown status 'fine'"),
    (broken(lambda r: r["hosts"][0].update(instances={})), "'instances' is not a list"),
    (broken(lambda r: r["hosts"][0]["instances"][0].pop("desired")), "is not an instance entry"),
    (broken(lambda r: r["hosts"][0]["instances"][0].update(status="odd")), "unknown status 'odd'"),
])
def test_what_is_not_a_fleet_report_is_refused_with_its_source(report: Any, message: str) -> None:
    with pytest.raises(_merge.MergeError, match=message) as caught:
        _merge.merge([("slice-7/report.json", report)])
    assert str(caught.value).startswith("slice-7/report.json")


def test_nothing_to_merge_is_refused() -> None:
    with pytest.raises(_merge.MergeError, match="no reports to merge"):
        _merge.merge([])


def write_slice(directory: Path, states: dict[str, str]) -> Path:
    directory.mkdir(parents=True)
    _merge.write(str(directory), _merge.render(slice_report(states, 1, 2)))
    return directory / "report.json"


def test_report_files_take_files_directories_and_globs_once_each(tmp_path: Path) -> None:
    one = write_slice(tmp_path / "slices" / "1", {"a1": "started"})
    two = write_slice(tmp_path / "slices" / "2", {"b2": "started"})
    dest = tmp_path / "slices" / "fleet"
    write_slice(dest, {"a1": "started", "b2": "started"})
    found = _merge.report_files([str(one), str(tmp_path / "slices" / "*"), str(two.parent)], str(dest))
    # The merged report in dest is never a source, even when a glob matches it.
    assert found == [str(one), str(two)]


@pytest.mark.parametrize(("pattern", "message"), [
    ("nowhere/report.json", "no such report: .*/nowhere/report.json"),
    ("nowhere/*", "matches no report.json"),
])
def test_report_files_refuse_what_is_not_there(tmp_path: Path, pattern: str, message: str) -> None:
    with pytest.raises(_merge.MergeError, match=message):
        _merge.report_files([str(tmp_path / pattern)], str(tmp_path / "fleet"))


def test_a_report_that_is_not_json_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text("{")
    with pytest.raises(_merge.MergeError, match="cannot be read as JSON"):
        _merge.load(str(bad))


def test_written_files_are_unchanged_until_the_report_changes(tmp_path: Path) -> None:
    files = _merge.render(slice_report({"a1": "started"}, 1, 2))
    assert not _merge.unchanged(str(tmp_path / "fleet"), files)
    _merge.write(str(tmp_path / "fleet"), files)
    assert _merge.unchanged(str(tmp_path / "fleet"), files)
    assert not _merge.unchanged(str(tmp_path / "fleet"), _merge.render(slice_report({"a1": "stopped"}, 1, 2)))


def test_remove_deletes_report_files_and_only_emptied_directories(tmp_path: Path) -> None:
    plain = write_slice(tmp_path / "1", {"a1": "started"})
    kept = write_slice(tmp_path / "2", {"b2": "started"})
    (kept.parent / "notes.txt").write_text("mine")
    removed = _merge.remove([str(plain), str(kept)])
    assert not plain.parent.exists()
    assert sorted(p.name for p in kept.parent.iterdir()) == ["notes.txt"]
    assert str(plain.parent) in removed and len(removed) == 7


def test_a_slice_that_did_not_finish_leaves_the_fleet_report_unfinished() -> None:
    done = slice_report({"a1": "started"}, 1, 2)
    cut = _report.build_report({"b2": "Audit"}, [], playbook="compliance.yml", not_run_reason="stopped",
                               started=1, finished=2, complete=False, incomplete_reason="interrupted by SIGTERM")
    merged = _merge.merge([("s1", done), ("s2", cut)])
    assert (merged["complete"], merged["incomplete_reason"]) == (False, "s2: interrupted by SIGTERM")
    assert merged["summary"]["ok"] is False
    assert _merge.merge([("s1", done)])["complete"] is True
