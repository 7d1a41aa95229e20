"""A retried wait must not restart the settle time the engine budgeted for it."""

from __future__ import annotations

import base64
import json
import re

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _transport as t

from .hosts import observation, response
from .test_transport import AGENT, RecordingConnection, decoded_script, line


class SlowConnection(RecordingConnection):
    """Each command takes `cost` seconds of a shared clock, failed or not."""

    def __init__(self, outputs, cost):
        super().__init__(outputs)
        self.now = 0.0
        self.cost = cost

    def exec_command(self, cmd, in_data=None, sudoable=True):
        self.now += self.cost
        return super().exec_command(cmd, in_data, sudoable)


def sent_request(command):
    found = re.search(r"\} '([A-Za-z0-9+/=]+)'$", decoded_script(command))
    assert found is not None
    return json.loads(base64.b64decode(found.group(1)))


def test_a_retried_wait_keeps_only_the_settle_time_left():
    ok = (0, line(response(observation())), b"")
    conn = SlowConnection([ok, AnsibleConnectionFailure("connection reset by peer"), ok], cost=7.0)
    channel = t.Channel(conn, AGENT, clock=lambda: conn.now)
    channel({"protocol": 1, "action": "observe"})
    wait = {"protocol": 1, "action": "apply", "steps": [], "settle_timeout_s": 30, "poll_ms": 500}
    assert channel(wait)["ok"] is True
    assert [sent_request(c[0])["settle_timeout_s"] for c in conn.commands[1:]] == [30, 23]


def test_a_retried_wait_past_its_budget_only_looks():
    ok = (0, line(response(observation())), b"")
    conn = SlowConnection([ok, AnsibleConnectionFailure("connection reset by peer"), ok], cost=40.0)
    channel = t.Channel(conn, AGENT, clock=lambda: conn.now)
    channel({"protocol": 1, "action": "observe"})
    channel({"protocol": 1, "action": "apply", "steps": [], "settle_timeout_s": 30, "poll_ms": 500})
    assert sent_request(conn.commands[-1][0])["settle_timeout_s"] == 0
