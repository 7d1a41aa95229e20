# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet report callback: JSON, JUnit XML and HTML for the whole run.

A callback rather than a last play, because ansible-playbook skips later plays
when ``max_fail_percentage`` is breached or a whole serial batch fails, which
is exactly when the report matters. The decisions and rendering live in
``plugin_utils/_report.py``; this file gathers events, learns what became of
hosts that left none (a batch that never started or was cut short, tasks a
--tags or run_once left out), and writes the files: a report marked
incomplete as soon as the playbook starts, so an interrupted run never
leaves the previous run's report looking current, and the finished one at
the end.
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

import atexit
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ansible.executor.task_queue_manager import TaskQueueManager
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.playbook.block import Block
from ansible.plugins.callback import CallbackBase
from ansible.template import Templar

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

OUR_ACTIONS = _report.OUR_ACTIONS
OUR_ROLE_PREFIX = "mailops.iis_smtp."
OUR_ROLE = "mailops.iis_smtp.virtual_servers"
GATE_VARIABLE = "iis_smtp_fail_on_drift"
NOT_RUN_REASON = "the play ended before this host ran (max_fail_percentage reached or a serial batch failed)"
PLAY_NOT_STARTED_REASON = "the playbook stopped before this play ran"
IN_PROGRESS_REASON = "the run is in progress, or ended before it could write its report"
NOT_RUN_YET_REASON = "not run yet: the run is in progress, or ended first"
EXCLUDED_REASON = ("no task of this collection ran on this host: --tags, --skip-tags or --start-at-task "
                   "excluded them from its play")
RUN_ONCE_REASON = "the collection's task ran with run_once, on another host of this play only"
LEFT_OUT_REASON = "no task of this collection ran on this host (meta: end_host, or an include that left it out)"
REPORT_FILES = ("report.json", "report.junit.xml", "report.html")
# ansible-playbook's own exit code for an error that is not a host's; the
# report's absence is that: no verdict about the fleet.
EXIT_NO_REPORT = 1
EXIT_GATE = 2
_VALIDATE_ACTIONS = frozenset({"validate_argument_spec", "ansible.builtin.validate_argument_spec",
                               "ansible.legacy.validate_argument_spec"})
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


def _play_vars(play: Any) -> dict[str, Any]:
    return dict(play.get_variable_manager().get_vars(play=play))


def _play_pattern(play: Any) -> Any:
    """The play's host pattern with its variables applied, or None when it cannot be known yet.

    ansible-playbook templates ``hosts`` only when the play starts; this does
    the same earlier, with the variables a play sees without a host (extra
    vars, play vars, vars_files). A pattern that needs more than that is
    resolved when its play starts instead.
    """
    try:
        templar = Templar(loader=play.get_loader(), variables=_play_vars(play))
        return templar.template(play.hosts) if templar.is_template(play.hosts) else play.hosts
    except Exception:  # An undefined variable here is not an error of the run.
        return None


def _gate(play: Any) -> bool:
    """Whether the drift gate is on for the play, as far as it can be known without a host.

    Extra vars, play vars and vars_files, and the role's parameters: a gate
    set in host or group variables cannot be seen for a play that matched
    no host.
    """
    try:
        values = [_play_vars(play).get(GATE_VARIABLE)]
        values += [role._role_params.get(GATE_VARIABLE) for role in play.get_roles() if role.get_name() == OUR_ROLE]
        templar = Templar(loader=play.get_loader(), variables=_play_vars(play))
        return any(boolean(templar.template(v), strict=False) for v in values if v is not None)
    except Exception:  # An undefined variable: the gate is not known to be on.
        return False


def _hosts(play: Any, pattern: Any, batch: bool = False) -> list[str]:
    """The hosts the pattern names: the play's (--limit applied), or with `batch` only its serial batch."""
    inventory = getattr(play.get_variable_manager(), "_inventory", None)
    if inventory is None:
        return []
    return [h.name for h in inventory.get_hosts(pattern, ignore_restrictions=not batch)]


def _run_stats() -> Any:
    """The run's AggregateStats, from the TaskQueueManager that called this callback.

    ansible-core hands callbacks the stats only in v2_playbook_on_stats, and
    the stdout callback gets that call first; under AWX that is awx_display,
    which reads the custom stats (the job's artifacts) there. Published any
    later, they would miss the job, so the callback keeps them current from
    the start, on the object the caller holds.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, TaskQueueManager):
            return owner._stats
        frame = frame.f_back
    return None


@dataclass
class _Batch:
    hosts: list[str]
    # A task of this collection was started in the batch (for some host).
    ours_started: bool = False
    run_once: bool = False
    # ansible-playbook ended the play during this batch (max_fail_percentage, any_errors_fatal, all failed).
    aborted: bool = False


@dataclass
class _Play:
    name: str
    hosts: list[str]
    uses_collection: bool
    started: bool
    order: int
    gate: bool = False
    pattern: str = ""
    batches: list[_Batch] = field(default_factory=list)


def _absent(plays: list[_Play], host: str, running: _Batch | None = None) -> _report.Absent | None:
    """What became of a host without a result, from the plays that targeted it; None: not run.

    `running` is a batch the run had not finished: its hosts may yet have run.
    """
    fates = []
    for play in plays:
        if host not in play.hosts:
            continue
        batch = next((b for b in play.batches if host in b.hosts), None)
        if batch is None or batch.aborted or batch is running:
            return None
        if batch.run_once:
            fates.append(RUN_ONCE_REASON)
        else:
            fates.append(LEFT_OUT_REASON if batch.ours_started else EXCLUDED_REASON)
    return _report.Absent(_report.SKIPPED, fates[0], _report.SKIPPED) if fates else None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mailops.iis_smtp.fleet_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._reset()
        self._pid = os.getpid()
        self._hooked = False

    def _reset(self) -> None:
        self._plays: dict[str, _Play] = {}
        self._order: dict[str, int] = {}
        self._current: str | None = None
        self._events: list[tuple[str | None, _report.Event]] = []
        # The same events by host: the custom stats are kept current one host at a time.
        self._by_host: dict[str, list[tuple[str | None, _report.Event]]] = {}
        self._ours: set[str | None] = set()
        self._playbook = ""
        self._started = time.time()
        self._play_check_mode = False
        # Whether this run is the collection's: only then is a report written (or replaced).
        self._active = False
        self._done = False
        self._stats: Any = None
        self._verdicts: dict[str, tuple[str, str | None]] = {}
        self._problems: list[str] = []

    @staticmethod
    def _key(play: Any) -> str:
        # Each serial batch announces a copy of the play; copies keep its uuid.
        return str(getattr(play, "_uuid", "") or id(play))

    # ------------------------------------------------------------ the report

    def _dir(self) -> str:
        return os.path.abspath(str(self.get_option("dir")))

    def _report(self, *, complete: bool, why: str | None = None) -> dict[str, Any]:
        # A play counts when it uses this collection's actions, seen in its
        # tasks or (for dynamic includes) in its results; other plays of the
        # same playbook (a localhost step, say) stay out of the report.
        counted = [(key, play) for key, play in sorted(self._plays.items(), key=lambda item: item[1].order)
                   if self._counts(key)]
        targeted: dict[str, str] = {}
        not_run: dict[str, str] = {}
        for _key, play in counted:
            for host in play.hosts:
                if host not in targeted:
                    targeted[host] = play.name
                    if not play.started:
                        not_run[host] = PLAY_NOT_STARTED_REASON
        plays = [play for _key, play in counted if play.started]
        # Written before the end, the batch under way is not over: its hosts without a result did not run (yet).
        running = None if complete else self._batch()
        absent = {host: fate for host in targeted if (fate := _absent(plays, host, running)) is not None}
        problems = [{"reason_code": _report.NO_HOSTS_MATCHED,
                     "message": f"play '{play.name}': the hosts pattern {play.pattern!r} matched no host, and the "
                                f"drift gate ({GATE_VARIABLE}) cannot pass on an empty fleet"}
                    for _key, play in counted if play.started and play.gate and not play.hosts]
        keys = {key for key, _play in counted}
        return _report.build_report(
            targeted, [event for key, event in self._events if key in keys], playbook=self._playbook,
            not_run_reason=NOT_RUN_REASON if complete else NOT_RUN_YET_REASON,
            not_run_reasons=not_run, absent=absent, started=self._started, finished=time.time(),
            complete=complete, incomplete_reason=why, problems=problems,
        )

    def _counts(self, key: str | None) -> bool:
        """Whether a play's results belong in the report: it uses the collection, statically or by its results."""
        play = self._plays.get(key or "")
        return (play is not None and play.uses_collection) or key in self._ours

    def _write(self, report: dict[str, Any]) -> None:
        """Write every file beside itself first, then rename them all.

        A disk that fills up leaves the report that was there (at worst the
        one marked incomplete) whole: a reader never sees half a report, nor
        a JUnit file of another run than its report.json.
        """
        out = self._dir()
        os.makedirs(out, exist_ok=True)
        texts = (_report.render_json(report), _report.render_junit(report), _report.render_html(report))
        written = []
        try:
            for name, text in zip(REPORT_FILES, texts, strict=True):
                tmp = os.path.join(out, f".{name}.tmp")
                written.append(tmp)
                with open(tmp, "w", encoding="utf-8") as handle:
                    handle.write(text)
            for name, tmp in zip(REPORT_FILES, written, strict=True):
                os.replace(tmp, os.path.join(out, name))
        finally:
            for tmp in written:
                if os.path.lexists(tmp):
                    os.unlink(tmp)

    def _write_or_exit(self, report: dict[str, Any], when: str) -> None:
        try:
            self._write(report)
        except OSError as exc:
            self._done = True
            self._display.error(
                f"IIS SMTP fleet report: cannot write the report to {self._dir()} {when}: "
                f"{exc.strerror or exc} ({exc.filename or self._dir()}). The run has no report.json, "
                "report.junit.xml or report.html: fix the report directory (IIS_SMTP_REPORT_DIR, "
                "[iis_smtp_report] dir) and run again.")
            raise SystemExit(EXIT_NO_REPORT) from None

    def _activate(self) -> None:
        """From here on the run is the collection's: replace any older report with one marked incomplete."""
        if self._active:
            return
        self._active = True
        self._hook()
        self._write_or_exit(self._report(complete=False, why=IN_PROGRESS_REASON), "before the run")

    def _interrupted(self, why: str) -> None:
        """Write what is known, marked incomplete; a callback must never raise from here."""
        if not self._active or self._done or os.getpid() != self._pid:
            return
        self._done = True
        try:
            self._write(self._report(complete=False, why=why))
        except Exception as exc:  # Raised from a signal handler or at exit, it would mask the interruption itself.
            self._display.error(f"IIS SMTP fleet report: cannot write the incomplete report to {self._dir()}: {exc}")

    def _hook(self) -> None:
        """Write what is known when the run is interrupted (SIGINT, SIGTERM) or ends in an error.

        ansible-playbook's own handlers stay in charge: SIGINT becomes a
        KeyboardInterrupt, SIGTERM ends the process. An error (a play keyword
        that cannot be templated, say) ends it without v2_playbook_on_stats.
        """
        if self._hooked:
            return
        self._hooked = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)

            def handler(number: int, frame: Any, previous: Any = previous) -> None:
                if os.getpid() == self._pid:
                    self._interrupted(f"interrupted by {signal.Signals(number).name}")
                if callable(previous):
                    previous(number, frame)
                else:
                    signal.signal(number, signal.SIG_DFL)
                    os.kill(os.getpid(), number)

            signal.signal(signum, handler)
        atexit.register(self._interrupted, "ansible-playbook stopped before the end of the playbook (see its errors)")

    def _publish(self, host: str | None = None) -> None:
        """Keep the custom stats current: every host's verdict and the counts, as the report would say now."""
        if self._stats is None or not self._active:
            return
        if host is None or host not in self._verdicts:
            report = self._report(complete=True)
            self._verdicts = _report.verdicts(report)
            self._problems = [p["reason_code"] for p in report["problems"]]
        else:
            events = [event for key, event in self._by_host.get(host, []) if self._counts(key)]
            status, _reason, code = _report.host_status(events, NOT_RUN_REASON)
            self._verdicts[host] = (status, code)
        stats = _report.custom_stats(self._verdicts, self._problems)
        self._stats.set_custom_stats(_report.STATS_KEY, {**stats, "report_dir": self._dir()})

    # ------------------------------------------------------------ events

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._reset()
        self._stats = _run_stats()
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
            hosts: list[str] = []
            if pattern is not None:
                try:
                    hosts = _hosts(play, pattern)
                except Exception:
                    hosts = []
            # get_name() would store the untemplated pattern as the play's name.
            name = str(play.name or (",".join(pattern) if isinstance(pattern, list) else pattern or play.hosts))
            self._plays[key] = _Play(name, hosts, True, started=False, order=order)
        if self._plays:
            self._activate()
        self._publish()

    def v2_playbook_on_play_start(self, play: Any) -> None:
        key = self._key(play)
        self._current = key
        known = self._plays.get(key)
        if known is None or not known.started:
            # Resolved again now that ansible-playbook has templated the play.
            uses = known.uses_collection if known else _play_uses_collection(play)
            pattern = ",".join(play.hosts) if isinstance(play.hosts, list) else str(play.hosts)
            known = _Play(play.get_name(), _hosts(play, play.hosts), uses, started=True,
                          order=self._order.get(key, len(self._order) + len(self._plays)),
                          gate=uses and _gate(play), pattern=pattern)
            self._plays[key] = known
        # Each serial batch announces the play again, the inventory restricted to the batch.
        known.batches.append(_Batch(_hosts(play, play.hosts, batch=True)))
        check = play.check_mode
        self._play_check_mode = bool(check) if isinstance(check, bool) else bool(self._cli_check())
        if known.uses_collection:
            self._activate()
        self._publish()

    def _batch(self) -> _Batch | None:
        play = self._plays.get(self._current or "")
        return play.batches[-1] if play is not None and play.batches else None

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        action = getattr(task, "resolved_action", None) or task.action
        batch = self._batch()
        if batch is not None and action in OUR_ACTIONS:
            batch.ours_started = True
            batch.run_once = batch.run_once or bool(task.run_once)

    def v2_playbook_on_no_hosts_remaining(self) -> None:
        batch = self._batch()
        if batch is not None:
            batch.aborted = True
        self._publish()

    @staticmethod
    def _cli_check() -> bool:
        from ansible import context

        return bool(context.CLIARGS.get("check", False))

    def _record(self, result: Any, status: str, ignore_errors: bool = False) -> None:
        task = result._task
        action = getattr(task, "resolved_action", None) or task.action
        raw = result._result if isinstance(result._result, dict) else {}
        ours = action in OUR_ACTIONS
        # A role of this collection skipped by a `when:` on include_role leaves
        # only that skip: it is what tells a skipped host from one never run.
        if not ours and status not in ("failed", "unreachable") and not (
                status == "skipped" and _is_our_role_include(task, action)):
            return
        # Another task's failure the play ignores is no failure of the host.
        if not ours and ignore_errors:
            return
        # The worker sends the task's fields after templating; the task object
        # itself may still hold a template or inherit from the play.
        # `_task_fields` first: it exists on 2.19 and later without the
        # deprecation warning that `task_fields` prints from 2.21 on.
        fields = getattr(result, "_task_fields", None) or getattr(result, "task_fields", None) or {}
        check = fields.get("check_mode")
        if not isinstance(check, bool):
            check = task.check_mode if isinstance(task.check_mode, bool) else self._play_check_mode
        if ours:
            kept = _report.sanitize_result(raw)
        else:
            kept = {"msg": str(raw.get("msg", ""))}
            role = getattr(task, "_role", None)
            if action in _VALIDATE_ACTIONS and role is not None and role.get_name() == OUR_ROLE:
                kept["reason"] = "invalid_argument"
        play = self._plays.get(self._current or "")
        host = result._host.get_name()
        event = _report.Event(host=host, task=task.get_name(), action=action, status=status, check_mode=check,
                              result=kept, play=play.name if play is not None else "")
        self._events.append((self._current, event))
        self._by_host.setdefault(host, []).append((self._current, event))
        if ours:
            self._ours.add(self._current)
        if ours:
            self._activate()
        self._publish(host)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed", ignore_errors)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, "unreachable")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self._active:
            # Nothing of this collection ran: no report, and none replaced.
            return
        report = self._report(complete=True)
        self._stats = stats
        self._publish()
        self._done = True
        self._write_or_exit(report, "at the end of the run")
        self._display.banner("IIS SMTP FLEET REPORT")
        self._display.display(_report.render_console(report))
        self._display.display(f"Reports: {self._dir()}/report.json, report.junit.xml, report.html")
        if report["problems"] and not (stats.failures or stats.dark):
            for problem in report["problems"]:
                self._display.error(f"IIS SMTP fleet report: {problem['message']}")
            raise SystemExit(EXIT_GATE)
