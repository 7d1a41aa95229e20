"""Test-only callback: record every task result to a JSON file.

The end-to-end tests judge what ``ansible-playbook`` really returned, task by
task, without scraping the human-readable output. Enabled only by the test
harness (``tests/e2e/conftest.py``), which names the output file in
``MAILOPS_RECORD_FILE``.
"""

from __future__ import annotations

DOCUMENTATION = """
name: record_results
type: aggregate
short_description: Record task results to a JSON file (tests only)
description:
  - Writes every task result to the file named by C(MAILOPS_RECORD_FILE).
"""

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._records: list[dict[str, Any]] = []
        self._check_mode = False

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._check_mode = bool(play.check_mode)

    def _record(self, result: Any, status: str) -> None:
        task = result._task
        payload = dict(result._result)
        payload.pop("invocation", None)
        self._records.append({
            "host": result._host.get_name(),
            "task": task.get_name(),
            "action": task.action,
            "status": status,
            "result": payload,
        })

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, "unreachable")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = os.environ.get("MAILOPS_RECORD_FILE")
        if not path:
            return
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self._records, handle, default=str)
