# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet report callback: JSON, JUnit XML and HTML for the whole run.

A callback rather than a last play, because ansible-playbook skips later plays
when ``max_fail_percentage`` is breached or a whole serial batch fails, which
is exactly when the report matters. The decisions and rendering live in
``plugin_utils/_report.py``; this file only gathers events.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_report
type: aggregate
short_description: Writes the IIS SMTP fleet report (JSON, JUnit XML, HTML)
description:
  - Collects every result of C(mailops.iis_smtp.virtual_server) and C(mailops.iis_smtp.virtual_server_info),
    and every failure or unreachable host, for every host the plays target.
  - At the end of the run writes C(report.json), C(report.junit.xml) and C(report.html) to the report
    directory and prints a short summary table.
  - Every targeted host appears exactly once with a status, including hosts that never ran because the
    play stopped early (reported as C(failed) with a reason starting with C(not run)).
  - Host variables and connection settings are never written to the report.
requirements:
  - enable in C(ansible.cfg) (C(callbacks_enabled = mailops.iis_smtp.fleet_report)) or with
    C(ANSIBLE_CALLBACKS_ENABLED=mailops.iis_smtp.fleet_report)
options:
  dir:
    description: Directory the report files are written to; created if missing.
    default: ./iis_smtp_report
    type: path
    env:
      - name: IIS_SMTP_REPORT_DIR
    ini:
      - section: iis_smtp_report
        key: dir
"""

import os
import time
from typing import Any

from ansible.playbook.block import Block
from ansible.plugins.callback import CallbackBase

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

OUR_ACTIONS = _report.VS_ACTIONS | _report.INFO_ACTIONS
OUR_ROLE_PREFIX = "mailops.iis_smtp."
NOT_RUN_REASON = "the play ended before this host ran (max_fail_percentage reached or a serial batch failed)"


def _tasks_use_collection(items: Any) -> bool:
    for item in items or []:
        if isinstance(item, Block):
            if _tasks_use_collection(item.block) or _tasks_use_collection(item.rescue) or _tasks_use_collection(item.always):
                return True
        elif (getattr(item, "resolved_action", None) or getattr(item, "action", None)) in OUR_ACTIONS:
            return True
        elif str(getattr(item, "_role_name", None) or "").startswith(OUR_ROLE_PREFIX):
            # include_role is resolved only when it runs: a play that stops
            # before then must still count, or its hosts vanish from the report.
            return True
    return False


def _play_uses_collection(play: Any) -> bool:
    """Whether the play's static tasks (roles included) call this collection's actions."""
    try:
        return _tasks_use_collection(play.compile())
    except Exception:  # A callback must never break the run; the results decide then.
        return False


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mailops.iis_smtp.fleet_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        # play key -> (play name, targeted host names, whether it uses this collection)
        self._plays: dict[str, tuple[str, list[str], bool]] = {}
        self._current: str | None = None
        self._events: list[tuple[str | None, _report.Event]] = []
        self._playbook = ""
        self._started = time.time()
        self._play_check_mode = False

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = os.path.basename(getattr(playbook, "_file_name", "") or "")

    def v2_playbook_on_play_start(self, play: Any) -> None:
        # Called once per serial batch with the inventory restricted to it, so
        # resolve the play's hosts ignoring that restriction (but not --limit).
        name = play.get_name()
        key = f"{getattr(play, '_uuid', '')}:{name}"
        self._current = key
        if key not in self._plays:
            inventory = getattr(play.get_variable_manager(), "_inventory", None)
            hosts = [h.name for h in inventory.get_hosts(play.hosts, ignore_restrictions=True)] if inventory else []
            self._plays[key] = (name, hosts, _play_uses_collection(play))
        check = play.check_mode
        self._play_check_mode = bool(check) if isinstance(check, bool) else bool(self._cli_check())

    @staticmethod
    def _cli_check() -> bool:
        from ansible import context

        return bool(context.CLIARGS.get("check", False))

    def _record(self, result: Any, status: str) -> None:
        task = result._task
        action = getattr(task, "resolved_action", None) or task.action
        raw = result._result if isinstance(result._result, dict) else {}
        ours = action in OUR_ACTIONS
        if not ours and status not in ("failed", "unreachable"):
            return
        # The worker sends the task's fields after templating; the task object
        # itself may still hold a template or inherit from the play.
        fields = getattr(result, "task_fields", None) or getattr(result, "_task_fields", None) or {}
        check = fields.get("check_mode")
        if not isinstance(check, bool):
            check = task.check_mode if isinstance(task.check_mode, bool) else self._play_check_mode
        self._events.append((self._current, _report.Event(
            host=result._host.get_name(),
            task=task.get_name(),
            action=action,
            status=status,
            check_mode=check,
            result=_report.sanitize_result(raw) if ours else {"msg": str(raw.get("msg", ""))},
        )))

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, "unreachable")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        # A play counts when it uses this collection's actions, seen in its
        # tasks or (for dynamic includes) in its results; other plays of the
        # same playbook (a localhost step, say) stay out of the report.
        ran = {key for key, event in self._events if event.action in OUR_ACTIONS}
        counted = {key for key, play in self._plays.items() if play[2] or key in ran}
        targeted: dict[str, str] = {}
        for key, (name, hosts, _uses) in self._plays.items():
            if key in counted:
                for host in hosts:
                    targeted.setdefault(host, name)
        events = [event for key, event in self._events if key in counted]
        report = _report.build_report(
            targeted, events, playbook=self._playbook, not_run_reason=NOT_RUN_REASON,
            started=self._started, finished=time.time(),
        )
        out = os.path.abspath(self.get_option("dir"))
        os.makedirs(out, exist_ok=True)
        files = {
            "report.json": _report.render_json(report),
            "report.junit.xml": _report.render_junit(report),
            "report.html": _report.render_html(report),
        }
        for name, text in files.items():
            tmp = os.path.join(out, f".{name}.tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, os.path.join(out, name))
        self._display.banner("IIS SMTP FLEET REPORT")
        self._display.display(_report.render_console(report))
        self._display.display(f"Reports: {out}/report.json, report.junit.xml, report.html")
