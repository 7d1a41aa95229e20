# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed, normalised view of one agent observation.

Internal to mailops.iis_smtp. The agent reports raw Windows values
(`Start Pending`, `Auto` plus a registry flag, an empty `ServerState`); every
other engine module reasons about the normalised names defined here, so the
quirks of Windows are translated in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ._protocol import IISADMIN_NOT_RUNNING_ERROR

SMTP_SERVICE = "SMTPSVC"
IISADMIN_SERVICE = "IISADMIN"
# Windows Server 2025 (build 26100) no longer ships the SMTP Server feature.
REMOVED_FROM_BUILD = 26100

STATE_NAMES: dict[int, str] = {
    1: "starting", 2: "started", 3: "stopping", 4: "stopped",
    5: "pausing", 6: "paused", 7: "continuing",
}
STATE_CODES: dict[str, int] = {name: code for code, name in STATE_NAMES.items()}
STABLE_STATES = frozenset({"started", "stopped", "paused"})
TRANSITIONAL_STATES = frozenset({"starting", "stopping", "pausing", "continuing"})
UNKNOWN = "unknown"
# Where a transitional state lands when it completes.
SETTLES_TO: dict[str, str] = {
    "starting": "started", "stopping": "stopped", "pausing": "paused", "continuing": "started",
}

_SERVICE_STATES: dict[str, str] = {
    "running": "running", "stopped": "stopped", "paused": "paused",
    "start pending": "starting", "stop pending": "stopping",
    "continue pending": "continuing", "pause pending": "pausing",
}
SERVICE_TRANSITIONAL = frozenset({"starting", "stopping", "continuing", "pausing"})
# What Windows calls the transitional states, for messages.
SERVICE_PENDING_NAMES: dict[str, str] = {
    "starting": "Start Pending", "stopping": "Stop Pending", "continuing": "Continue Pending", "pausing": "Pause Pending",
}

ACCESS_DENIED_HRESULT = "0x80070005"
# The same bound the transport puts on what it quotes of agent output.
MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class WinError:
    """An error object of the protocol, kept for messages."""

    message: str
    hresult: str | None = None
    type: str | None = None

    def describe(self) -> str:
        if self.hresult:
            return "Windows error %s (%s)" % (self.hresult, self.message)
        return self.message

    @property
    def access_denied(self) -> bool:
        return (self.hresult or "").lower() == ACCESS_DENIED_HRESULT or \
            self.type == "UnauthorizedAccessException"


@dataclass(frozen=True)
class Service:
    name: str
    installed: bool
    state: str | None
    start_mode: str | None
    error: WinError | None = None

    def summary(self) -> dict[str, Any]:
        return {"state": self.state, "start_mode": self.start_mode}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "installed": self.installed, "state": self.state,
                "start_mode": self.start_mode}


@dataclass(frozen=True)
class Instance:
    id: int
    comment: str
    bindings: tuple[str, ...]
    state: str
    state_code: int | None
    auto_start: bool | None
    error: WinError | None = None

    @property
    def name(self) -> str:
        """What the IIS 6 console shows: the comment, or a generated label when it is empty."""
        return self.comment or "[SMTP Virtual Server #%d]" % self.id

    @property
    def label(self) -> str:
        return "SMTP virtual server %d (%s)" % (self.id, self.name)

    def with_state(self, state: str) -> Instance:
        return replace(self, state=state, state_code=STATE_CODES.get(state))

    def summary(self) -> dict[str, Any]:
        return {"state": self.state, "state_code": self.state_code}

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "comment": self.comment,
                "bindings": list(self.bindings), "state": self.state,
                "state_code": self.state_code, "auto_start": self.auto_start}


@dataclass(frozen=True)
class Host:
    computer_name: str | None
    os_caption: str | None
    os_version: str | None
    os_build: int | None
    is_admin: bool | None
    smtp: Service
    iisadmin: Service
    metabase_ok: bool
    metabase_error: WinError | None
    instances: tuple[Instance, ...] = field(default_factory=tuple)

    @property
    def removed_from_os(self) -> bool:
        return self.os_build is not None and self.os_build >= REMOVED_FROM_BUILD

    @property
    def smtp_available(self) -> bool:
        return self.smtp.installed and self.metabase_ok and not self.removed_from_os

    @property
    def access_denied(self) -> bool:
        return bool(self.metabase_error and self.metabase_error.access_denied)

    @property
    def iisadmin_not_running(self) -> bool:
        """The metabase was not read because IISADMIN does not run: binding it would have started IISADMIN."""
        return self.metabase_error is not None and self.metabase_error.type == IISADMIN_NOT_RUNNING_ERROR

    def down(self, inst: Instance) -> bool:
        """An instance whose state is unknown only because SMTPSVC is stopped: it cannot be running."""
        return inst.state == UNKNOWN and self.smtp.state == "stopped"

    def instance(self, instance_id: int) -> Instance | None:
        for inst in self.instances:
            if inst.id == instance_id:
                return inst
        return None

    def host_dict(self) -> dict[str, Any]:
        return {"computer_name": self.computer_name,
                "os": {"caption": self.os_caption, "version": self.os_version, "build": self.os_build},
                "smtp_available": self.smtp_available}


def _bounded(text: str) -> str:
    """A host's error text as results quote it: a hung or chatty host cannot flood the output."""
    text = text.strip()
    return text[:MESSAGE_LIMIT] + ("..." if len(text) > MESSAGE_LIMIT else "")


def parse_error(raw: Any) -> WinError | None:
    if not raw:
        return None
    if isinstance(raw, dict):
        return WinError(message=_bounded(str(raw.get("message") or "unknown error")),
                        hresult=raw.get("hresult") or None, type=raw.get("type") or None)
    return WinError(message=_bounded(str(raw)))


def service_state(raw: Any) -> str | None:
    if raw is None:
        return None
    return _SERVICE_STATES.get(str(raw).strip().lower(), str(raw).strip().lower())


def start_mode(raw: Any, delayed: Any) -> str | None:
    """`Auto` with the DelayedAutostart flag is what services.msc calls Automatic (Delayed Start)."""
    if raw is None:
        return None
    mode = str(raw).strip().lower()
    if mode in ("auto", "automatic"):
        return "delayed" if delayed else "auto"
    if mode in ("manual", "demand"):
        return "manual"
    if mode == "disabled":
        return "disabled"
    # Boot and System start with the kernel: for the user they are automatic.
    return "auto"


def parse_service(name: str, raw: Any) -> Service:
    raw = raw if isinstance(raw, dict) else {}
    installed = bool(raw.get("installed"))
    return Service(
        name=name,
        installed=installed,
        state=service_state(raw.get("state")) if installed else None,
        start_mode=start_mode(raw.get("start_mode"), raw.get("delayed_auto_start")) if installed else None,
        error=parse_error(raw.get("error")),
    )


def instance_state(code: Any) -> tuple[str, int | None]:
    """Name and code of a ServerState; without one, unknown.

    The agent reports none while SMTPSVC is not running, because ServerState
    then reads empty or only what the service last wrote: not "stopped",
    which a stale 4 would claim. `Host.down` says when unknown means "cannot
    be running".
    """
    if isinstance(code, int) and not isinstance(code, bool) and code in STATE_NAMES:
        return STATE_NAMES[code], code
    return UNKNOWN, None


def parse_instance(raw: dict[str, Any]) -> Instance:
    state, code = instance_state(raw.get("server_state"))
    auto = raw.get("auto_start")
    return Instance(
        id=int(raw["id"]),
        comment=str(raw.get("server_comment") or ""),
        bindings=tuple(str(b) for b in (raw.get("bindings") or [])),
        state=state,
        state_code=code,
        auto_start=bool(auto) if auto is not None else None,
        error=parse_error(raw.get("error")),
    )


def parse_observation(obs: dict[str, Any]) -> Host:
    """The typed Host for the `observation` object of a response."""
    os_info = obs.get("os") or {}
    services = obs.get("services") or {}
    smtp = parse_service(SMTP_SERVICE, services.get(SMTP_SERVICE))
    metabase = obs.get("metabase") or {}
    build = os_info.get("build")
    try:
        build_no: int | None = int(build) if build is not None else None
    except (TypeError, ValueError):
        build_no = None
    instances = sorted((parse_instance(i) for i in obs.get("instances") or []), key=lambda i: i.id)
    return Host(
        computer_name=obs.get("computer_name"),
        os_caption=os_info.get("caption"),
        os_version=os_info.get("version"),
        os_build=build_no,
        is_admin=obs.get("is_admin"),
        smtp=smtp,
        iisadmin=parse_service(IISADMIN_SERVICE, services.get(IISADMIN_SERVICE)),
        metabase_ok=bool(metabase.get("ok")),
        metabase_error=parse_error(metabase.get("error")),
        instances=tuple(instances),
    )
