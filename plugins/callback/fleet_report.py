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
version_added: 1.0.0
author:
  - mailops maintainers (@mailops)
description:
  - Collects every result of C(mailops.iis_smtp.virtual_server) and C(mailops.iis_smtp.virtual_server_info),
    and every failure or unreachable host, for every host the plays target.
  - At the end of the run writes C(report.json), C(report.junit.xml) and C(report.html) to the report
    directory and prints a short summary table.
  - Every targeted host appears exactly once with a status, including hosts that never ran because the
    play stopped early, or because the playbook stopped before a later play that targets them (reported as
    C(failed) with a reason starting with C(not run)).
  - A host on which every task of this collection was skipped (a C(when) excluded it) is reported as
    C(skipped), which does not fail the run's summary.
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
from dataclasses import dataclass
from typing import Any

from ansible.playbook.block import Block
from ansible.plugins.callback import CallbackBase
from ansible.template import Templar

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

OUR_ACTIONS = _report.VS_ACTIONS | _report.INFO_ACTIONS
OUR_ROLE_PREFIX = "mailops.iis_smtp."
NOT_RUN_REASON = "the play ended before this host ran (max_fail_percentage reached or a serial batch failed)"
PLAY_NOT_STARTED_REASON = "the playbook stopped before this play ran"
_INCLUDE_ROLE_ACTIONS = frozenset({"include_role", "import_role", "ansible.builtin.include_role",
                                   "ansible.builtin.import_role", "ansible.legacy.include_role",
                                   "ansible.legacy.import_role"})


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


def _is_our_role_include(task: Any, action: str) -> bool:
    return action in _INCLUDE_ROLE_ACTIONS and str(getattr(task, "_role_name", None) or "").startswith(OUR_ROLE_PREFIX)


def _play_pattern(play: Any) -> Any:
    """The play's host pattern with its variables applied, or None when it cannot be known yet.

    ansible-playbook templates ``hosts`` only when the play starts; this does
    the same earlier, with the variables a play sees without a host (extra
    vars, play vars, vars_files). A pattern that needs more than that is
    resolved when its play starts instead.
    """
    try:
        templar = Templar(loader=play.get_loader(), variables=play.get_variable_manager().get_vars(play=play))
        return templar.template(play.hosts) if templar.is_template(play.hosts) else play.hosts
    except Exception:  # An undefined variable here is not an error of the run.
        return None


def _targeted_hosts(play: Any, pattern: Any) -> list[str]:
    # Serial batches restrict the inventory to the batch; --limit still applies.
    inventory = getattr(play.get_variable_manager(), "_inventory", None)
    if inventory is None:
        return []
    return [h.name for h in inventory.get_hosts(pattern, ignore_restrictions=True)]


@dataclass
class _Play:
    name: str
    hosts: list[str]
    uses_collection: bool
    started: bool
    order: int


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mailops.iis_smtp.fleet_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._plays: dict[str, _Play] = {}
        self._order: dict[str, int] = {}
        self._current: str | None = None
        self._events: list[tuple[str | None, _report.Event]] = []
        self._playbook = ""
        self._started = time.time()
        self._play_check_mode = False

    @staticmethod
    def _key(play: Any) -> str:
        # Each serial batch announces a copy of the play; copies keep its uuid.
        return str(getattr(play, "_uuid", "") or id(play))

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = os.path.basename(getattr(playbook, "_file_name", "") or "")
        # max_fail_percentage or a failed batch ends the playbook, and the
        # plays after it are never announced: learn their hosts now.
        try:
            plays = list(playbook.get_plays())
        except Exception:  # A callback must never break the run.
            return
        for order, play in enumerate(plays):
            key = self._key(play)
            self._order[key] = order
            if not _play_uses_collection(play):
                continue
            pattern = _play_pattern(play)
            if pattern is None:
                continue
            try:
                hosts = _targeted_hosts(play, pattern)
            except Exception:
                continue
            # get_name() would store the untemplated pattern as the play's name.
            name = str(play.name or (",".join(pattern) if isinstance(pattern, list) else pattern))
            self._plays[key] = _Play(name, hosts, True, started=False, order=order)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        key = self._key(play)
        self._current = key
        known = self._plays.get(key)
        if known is None or not known.started:
            # Resolved again now that ansible-playbook has templated the play.
            hosts = _targeted_hosts(play, play.hosts)
            uses = known.uses_collection if known else _play_uses_collection(play)
            self._plays[key] = _Play(play.get_name(), hosts, uses, started=True,
                                     order=self._order.get(key, len(self._order) + len(self._plays)))
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
        # A role of this collection skipped by a `when:` on include_role leaves
        # only that skip: it is what tells a skipped host from one never run.
        if not ours and status not in ("failed", "unreachable") and not (
                status == "skipped" and _is_our_role_include(task, action)):
            return
        # The worker sends the task's fields after templating; the task object
        # itself may still hold a template or inherit from the play.
        # `_task_fields` first: it exists on 2.19 and later without the
        # deprecation warning that `task_fields` prints from 2.21 on.
        fields = getattr(result, "_task_fields", None) or getattr(result, "task_fields", None) or {}
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
        counted = {key for key, play in self._plays.items() if play.uses_collection or key in ran}
        targeted: dict[str, str] = {}
        not_run: dict[str, str] = {}
        for key, play in sorted(self._plays.items(), key=lambda item: item[1].order):
            if key not in counted:
                continue
            for host in play.hosts:
                if host not in targeted:
                    targeted[host] = play.name
                    if not play.started:
                        not_run[host] = PLAY_NOT_STARTED_REASON
        events = [event for key, event in self._events if key in counted]
        report = _report.build_report(
            targeted, events, playbook=self._playbook, not_run_reason=NOT_RUN_REASON,
            not_run_reasons=not_run, started=self._started, finished=time.time(),
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
