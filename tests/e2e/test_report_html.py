"""The HTML fleet report, opened in a real headless chromium.

The report comes from a real run (ansible-playbook -> winrm -> simulator, with
the ``fleet_report`` callback enabled); the browser must render it, and the
numbers the rendered page shows must be the numbers of ``report.json``. At
1000 hosts the page must stay usable: problems first, compliant hosts folded,
filtering by status and searching by host or instance (started from the
address, as a link to the page would), loaded in well under two seconds.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO_ROOT, SimulatedFleet, start_simulator

SCENARIO: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2019", "transition_s": 0.05},
    "hosts": {
        "good01": {"instances": [{"id": 1, "state": "started"}]},
        "stopped01": {"instances": [
            {"id": 1, "state": "stopped"},
            {"id": 2, "comment": "App <relay> & co", "state": "paused"},
        ]},
        "broken01": {"instances": [{"id": 1, "state": "stopped", "start_error": "binding conflict"}]},
        "down01": {"unreachable": True},
    },
}

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


ENSURE_CHROMIUM = Path(__file__).resolve().parent / "ensure_chromium.sh"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium() -> str:
    """The browser, installed through ensure_chromium.sh when this machine lacks it."""
    path = find_chromium()
    if path is None:
        proc = subprocess.run(["bash", str(ENSURE_CHROMIUM)], capture_output=True, text=True, timeout=900,
                              check=False)
        path = find_chromium()
        if path is None:
            pytest.fail(f"chromium is missing and {ENSURE_CHROMIUM} could not install it "
                        f"(exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return path


def run_chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("html-report")
    fleet: SimulatedFleet = start_simulator(SCENARIO, work / "fleet")
    try:
        out = work / "report"
        run = fleet.play(str(REPO_ROOT / "playbooks" / "remediate.yml"), env={
            "ANSIBLE_CALLBACKS_ENABLED": "record_results,mailops.iis_smtp.fleet_report",
            "IIS_SMTP_REPORT_DIR": str(out),
        }, extra_vars={"iis_smtp_serial": "100%", "iis_smtp_max_fail_percentage": 100})
        assert (out / "report.html").exists(), run.stdout + run.stderr
        yield out
    finally:
        fleet.stop()


class _Dom(HTMLParser):
    """Collects the elements of the page that carry numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, str] = {}
        self.bars: dict[str, dict[str, int]] = {}
        self.rows: dict[str, str] = {}
        self.totals: dict[str, str] = {}
        self.tags: list[str] = []
        self.order: list[tuple[str, str, bool]] = []
        self.details_open: dict[str, bool] = {}
        self.body: dict[str, str] = {}
        self.scripts_with_src = 0
        self._svg: str | None = None
        self._capture: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "svg":
            self._svg = a.get("id") or ""
            self.bars[self._svg] = {}
        elif tag == "rect" and self._svg is not None and a.get("data-key"):
            self.bars[self._svg][str(a["data-key"])] = int(str(a["data-count"]))
        elif tag == "span" and a.get("class") == "n":
            self._capture = ("card", str(a["data-count"]))
        elif tag == "span" and a.get("id", "").startswith("total-"):  # type: ignore[union-attr]
            self._capture = ("total", str(a["id"]))
        elif tag == "tr" and a.get("data-host"):
            self.rows[str(a["data-host"])] = str(a["data-status"])
            self.order.append((str(a["data-host"]), str(a["data-status"]), "hidden" in a))
        elif tag == "details":
            self.details_open[str(a.get("id"))] = "open" in a
        elif tag == "body":
            self.body = {k: str(v) for k, v in a.items()}
        elif tag == "script" and a.get("src"):
            self.scripts_with_src += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None

    def handle_data(self, data: str) -> None:
        if self._capture:
            kind, key = self._capture
            (self.cards if kind == "card" else self.totals)[key] = data.strip()
            self._capture = None


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what chromium writes) into RGB bytes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6) and body[12] == 0
            channels = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    out = bytearray()
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            if ftype == 1:
                line[i] = (line[i] + left) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + up) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif ftype == 4:
                ul = prev[i - channels] if i >= channels else 0
                p = left + up - ul
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        if channels == 4:
            out += b"".join(bytes(line[x:x + 3]) for x in range(0, stride, 4))
        else:
            out += line
    return width, height, bytes(out)


def test_page_shows_the_numbers_of_the_json(report_dir: Path) -> None:
    report = json.loads((report_dir / "report.json").read_text())
    proc = run_chromium("--dump-dom", (report_dir / "report.html").as_uri())
    assert proc.returncode == 0, proc.stderr
    dom = _Dom()
    dom.feed(proc.stdout)
    summary = report["summary"]
    assert {k: int(v) for k, v in dom.cards.items()} == summary["hosts_by_status"]
    assert list(dom.cards) == ["compliant", "remediated", "non_compliant", "failed", "unreachable", "skipped"]
    assert dom.bars["chart-hosts"] == summary["hosts_by_status"]
    assert dom.bars["chart-states"] == summary["instances_by_state"]
    assert dom.totals == {"total-hosts": str(summary["hosts"]), "total-instances": str(summary["instances"])}
    assert dom.rows == {h["host"]: h["status"] for h in report["hosts"]}
    assert dom.rows == {"good01": "compliant", "stopped01": "remediated", "broken01": "failed",
                        "down01": "unreachable"}
    # Self-contained: one inline script, nothing fetched.
    assert dom.tags.count("script") == 1 and "link" not in dom.tags and "img" not in dom.tags
    assert dom.scripts_with_src == 0


def test_page_renders_its_status_colors(report_dir: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    proc = run_chromium(f"--screenshot={shot}", "--window-size=900,500", (report_dir / "report.html").as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr
    width, height, rgb = png_pixels(shot)
    assert (width, height) == (900, 500)
    seen = {rgb[i:i + 3] for i in range(0, len(rgb), 3)}
    report = json.loads((report_dir / "report.json").read_text())
    from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._report import STATUS_COLORS

    for status, count in report["summary"]["hosts_by_status"].items():
        color = bytes.fromhex(STATUS_COLORS[status][1:])
        assert color in seen, f"the {status} card ({count} hosts) was not painted"


THOUSAND = {"compliant": 900, "remediated": 40, "non_compliant": 30, "failed": 15, "unreachable": 10, "skipped": 5}


def thousand_host_report() -> dict[str, Any]:
    """A 1000-host remediation report, built by the callback's own code from results of every kind."""
    from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

    vs = "mailops.iis_smtp.virtual_server"

    def item(iid: int, before: str, after: str) -> dict[str, Any]:
        return {"id": iid, "name": "Relay" if iid == 1 else f"App relay {iid}", "desired": "started",
                "before": {"state": before}, "after": {"state": after}, "changed": before != after,
                "actions": ["start"] if before != after else []}

    results: dict[str, tuple[str, dict[str, Any]]] = {
        "compliant": ("ok", {"changed": False, "compliant": True, "virtual_servers": [item(1, "started", "started"),
                                                                                      item(2, "started", "started")]}),
        "remediated": ("changed", {"changed": True, "compliant": True,
                                   "virtual_servers": [item(1, "stopped", "started"), item(2, "started", "started")]}),
        "non_compliant": ("ok", {"changed": False, "compliant": False,
                                 "findings": [{"rule": "instance_transitional", "severity": "warning", "instance": 2,
                                               "message": "App relay 2 is starting"}],
                                 "virtual_servers": [item(1, "started", "started"), item(2, "starting", "starting")]}),
        "failed": ("failed", {"changed": False, "failed": True, "reason": "instance_start_failed",
                              "msg": "SMTP virtual server 1 (Relay) did not reach started within 60 s",
                              "virtual_servers": [item(1, "stopped", "stopped")]}),
        "unreachable": ("unreachable", {"unreachable": True, "reason": "connection_failed",
                                        "msg": "could not talk to the host (connection refused)"}),
        "skipped": ("skipped", {"skipped": True}),
    }
    events, targeted, number = [], {}, 0
    for status, count in THOUSAND.items():
        for _copy in range(count):
            number += 1
            host = f"relay{number:04d}"
            targeted[host] = "Bring the IIS SMTP virtual servers to their desired state"
            kind, result = results[status]
            events.append(_report.Event(host=host, task="enforce", action=vs, status=kind, check_mode=False,
                                        result=_report.sanitize_result(result)))
    return _report.build_report(targeted, events, playbook="remediate.yml", not_run_reason="not run",
                                started=1_700_000_000.0, finished=1_700_000_600.0)


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _report

    page = tmp_path_factory.mktemp("thousand") / "report.html"
    page.write_text(_report.render_html(thousand_host_report()), encoding="utf-8")
    return page


def dump(page: Path, fragment: str = "") -> _Dom:
    proc = run_chromium("--dump-dom", page.as_uri() + fragment)
    assert proc.returncode == 0, proc.stderr
    dom = _Dom()
    dom.feed(proc.stdout)
    return dom


def test_a_thousand_hosts_problems_first_compliant_folded(thousand: Path) -> None:
    dom = dump(thousand)
    statuses = [status for _host, status, _hidden in dom.order]
    assert len(statuses) == 1000 and not any(hidden for _h, _s, hidden in dom.order)
    firsts = [statuses.index(s) for s in ("failed", "unreachable", "non_compliant", "remediated", "skipped",
                                          "compliant")]
    assert firsts == sorted(firsts) and statuses[:15] == ["failed"] * 15
    assert dom.details_open == {"compliant": False}
    assert {k: int(v) for k, v in dom.cards.items()} == THOUSAND
    # Loaded and scripted in well under two seconds, on a busy CI machine too (about 0.4 s on an idle one):
    # the page records when its script finished.
    assert int(dom.body["data-ready-ms"]) < 2000, dom.body
    assert thousand.stat().st_size < 2_000_000


def test_a_thousand_hosts_filtered_by_status_and_searched(thousand: Path) -> None:
    only = dump(thousand, "#status=failed,unreachable")
    shown = [(h, s) for h, s, hidden in only.order if not hidden]
    assert len(shown) == 25 and {s for _h, s in shown} == {"failed", "unreachable"}
    found = dump(thousand, "#q=relay0999")
    assert [(h, s) for h, s, hidden in found.order if not hidden] == [("relay0999", "skipped")]
    # A search by instance name; a compliant host found unfolds the compliant hosts.
    by_instance = dump(thousand, "#q=app%20relay%202&status=compliant")
    assert sum(1 for _h, _s, hidden in by_instance.order if not hidden) == 900
    assert by_instance.details_open == {"compliant": True}
