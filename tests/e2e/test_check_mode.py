"""Check mode predicts the run exactly, including where IISADMIN is stopped or disabled.

The same fleet is audited with --check, then remediated for real; for every
host the audit said whether the run would change something, fail, and why,
and the run must do exactly that. The hosts cover the states of IISADMIN
and SMTPSVC a run cannot see through (no instance can be read while
IISADMIN does not run), with and without something meant to run.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import REPO_ROOT, operations
from tests.e2e.reporting import by_host, run_report

REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
ENFORCE = "mailops.iis_smtp.virtual_servers : Bring the SMTP virtual servers to their desired state"
ALL_AT_ONCE = {"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100}
DOWN = {"state": "stopped", "start_mode": "manual"}
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05,
                 "instances": [{"id": 1, "state": "started"}, {"id": 2, "state": "stopped"}]},
    "hosts": {
        "iis_stopped": {"service": DOWN, "iisadmin": DOWN},
        "iis_stopped_kept_down": {"service": DOWN, "iisadmin": DOWN},
        "iis_disabled": {"service": DOWN, "iisadmin": {"state": "stopped", "start_mode": "disabled"}},
        "iis_disabled_kept_down": {"service": DOWN, "iisadmin": {"state": "stopped", "start_mode": "disabled"}},
        "smtp_disabled": {"service": {"state": "stopped", "start_mode": "disabled"}, "iisadmin": DOWN},
        "smtp_disabled_enabled": {"service": {"state": "stopped", "start_mode": "disabled"}, "iisadmin": DOWN},
        "drift": {},
        "clean": {"instances": [{"id": 1, "state": "started"}]},
    },
}
HOST_VARS = {
    "iis_stopped_kept_down": {"iis_smtp_state": "stopped"},
    "iis_disabled_kept_down": {"iis_smtp_state": "stopped"},
    "smtp_disabled_enabled": {"iis_smtp_service_start_mode": "delayed"},
}
EXPECTED = {
    # host: (changed, reason of the failure or None)
    "iis_stopped": (True, None),
    "iis_stopped_kept_down": (False, None),
    "iis_disabled": (False, "iisadmin_disabled"),
    "iis_disabled_kept_down": (False, None),
    "smtp_disabled": (False, "service_disabled"),
    "smtp_disabled_enabled": (True, None),
    "drift": (True, None),
    "clean": (False, None),
}


def outcome(run: Any, host: str) -> tuple[bool, str | None]:
    result = run.result(host, ENFORCE)["result"]
    return bool(result["changed"]), result.get("reason")


def test_check_mode_predicts_the_run_where_iisadmin_does_not_run(sim: Any) -> None:
    fleet = sim(FLEET)
    site = fleet.site_playbook(REMEDIATE, HOST_VARS)
    audit, audit_report = run_report(fleet, site, "audit", check=True, extra_vars=ALL_AT_ONCE)
    predicted = {host: outcome(audit, host) for host in FLEET["hosts"]}
    assert predicted == EXPECTED
    run, report = run_report(fleet, site, "run", extra_vars=ALL_AT_ONCE)
    assert {host: outcome(run, host) for host in FLEET["hosts"]} == predicted
    state = fleet.stop()
    # What the audit predicted for the service is what the run left.
    for host in ("iis_stopped", "smtp_disabled_enabled"):
        want = audit.result(host, ENFORCE)["result"]["service"]["after"]
        assert run.result(host, ENFORCE)["result"]["service"]["after"] == want, host
    # A run refused is refused before anything: not even IISADMIN is started.
    for host in ("iis_disabled", "smtp_disabled", "iis_stopped_kept_down", "iis_disabled_kept_down", "clean"):
        assert operations(state, host) == [], host
    assert state["hosts"]["iis_stopped_kept_down"]["iisadmin"]["state"] == "Stopped"
    assert [op["target"] for op in operations(state, "iis_stopped")][0] == "IISADMIN"
    assert {h: r["status"] for h, r in by_host(audit_report).items()} == {
        "iis_stopped": "non_compliant", "iis_stopped_kept_down": "compliant", "iis_disabled": "failed",
        "iis_disabled_kept_down": "compliant", "smtp_disabled": "failed", "smtp_disabled_enabled": "non_compliant",
        "drift": "non_compliant", "clean": "compliant"}
    assert {h: r["status"] for h, r in by_host(report).items()} == {
        "iis_stopped": "remediated", "iis_stopped_kept_down": "compliant", "iis_disabled": "failed",
        "iis_disabled_kept_down": "compliant", "smtp_disabled": "failed", "smtp_disabled_enabled": "remediated",
        "drift": "remediated", "clean": "compliant"}
