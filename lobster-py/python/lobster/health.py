"""Types of the health documents: what :meth:`lobster.Host.molt` and
:meth:`lobster.Host.overview` return.

Both return plain dicts and lists (the documents ``lobsterd molt --json``
and ``lobsterd tank --json`` print); these ``TypedDict`` classes describe
them for type checkers and readers. They are ordinary dicts at runtime::

    from lobster.health import Overview

    def unhealthy(overview: Overview) -> list[str]:
        return [t["name"] for t in overview["tenants"] if t["health"] not in ("ok", "-")]

Keys marked ``total=False`` are left out when they have nothing to say.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional, TypedDict

__all__ = [
    "CheckName",
    "Verdict",
    "RepairName",
    "HealthState",
    "TenantStatus",
    "CheckResult",
    "RepairOutcome",
    "RepairCount",
    "Phase",
    "ProgressEvent",
    "ProgressCallback",
    "SnapReport",
    "MoltReport",
    "WatchdogInfo",
    "TenantOverview",
    "Overview",
]

#: The health checks, in dependency order.
CheckName = Literal[
    "disk.overlay",
    "net.tap",
    "net.firewall",
    "vm.process",
    "vm.api",
    "guest.agent",
    "guest.workload",
    "proxy.route",
]
#: A check's outcome (``skipped``: a check it depends on failed).
Verdict = Literal["ok", "failed", "skipped"]
#: The repair actions, in the order they run.
RepairName = Literal[
    "ensure_tap", "apply_firewall", "resume_vm", "restart_vm", "relaunch_workload", "put_route"
]
#: What the watchdog believes about a tenant.
HealthState = Literal["unknown", "healthy", "degraded", "recovering", "failed", "suspended"]
#: A tenant's lifecycle status in the registry.
TenantStatus = Literal["creating", "running", "suspended", "stopped", "failed", "evicting"]


class _CheckResultKeys(TypedDict):
    check: CheckName
    verdict: Verdict


class CheckResult(_CheckResultKeys, total=False):
    """One check's verdict."""

    #: What was wrong, or why the check was skipped.
    detail: str


class _RepairOutcomeKeys(TypedDict):
    repair: RepairName
    ok: bool
    elapsed_ms: int


class RepairOutcome(_RepairOutcomeKeys, total=False):
    """How one repair went."""

    #: The error, when it failed.
    error: str


class _MoltReportKeys(TypedDict):
    tenant: str
    status: TenantStatus
    checks: list[CheckResult]
    repairs: list[RepairOutcome]
    healthy: bool


class MoltReport(_MoltReportKeys, total=False):
    """What molt found and did for one tenant: ``status`` is its registry
    status afterwards, ``checks`` the checks before any repair, ``repairs``
    those carried out, ``healthy`` whether every check passes now."""

    #: The checks after the repairs (absent when none ran).
    after: list[CheckResult]
    #: Why the tenant was not checked, or why repairs cannot help.
    note: str


class SnapReport(TypedDict):
    """What :meth:`lobster.Host.snap` wrote: the archive's ``path`` (on the
    host that made it), the disk image's and the archive's sizes, and how
    long the VM was paused."""

    path: str
    disk_bytes: int
    archive_bytes: int
    paused_ms: int


class _PhaseKeys(TypedDict):
    phase: Literal["started", "done", "failed"]


class Phase(_PhaseKeys, total=False):
    """Where a step is; ``elapsed`` (microseconds) once it is done or failed."""

    elapsed: int


class ProgressEvent(TypedDict):
    """One step of a long operation, as ``progress=`` callbacks get it
    (:meth:`lobster.Host.spawn`, ``suspend``, ``resume``): the steps
    ``lobsterd`` prints (``allocate``, ``overlay``, ``network``, ``vm``,
    ``agent``, ``workload``, ``route``, ...)."""

    operation: str
    tenant: str
    step: str
    phase: Phase


#: A ``progress=`` callback.
ProgressCallback = Callable[[ProgressEvent], object]


class RepairCount(TypedDict):
    """How often one repair succeeded and failed."""

    ok: int
    failed: int


class WatchdogInfo(TypedDict):
    """The watchdog daemon as seen from outside (from its ``watch.json``);
    ``repairs`` counts its repairs since it started, by repair name."""

    pid: int
    alive: bool
    tick: int
    updated_ms: int
    repairs: dict[str, RepairCount]


class TenantOverview(TypedDict):
    """One dashboard row. ``state`` is None and ``health`` is ``"-"`` until a
    watchdog has checked the tenant; ``health`` is ``"ok"`` or the failing
    checks joined by commas. ``pid``, ``memory_used_mib`` and ``uptime_s``
    are None while no VM runs."""

    name: str
    status: TenantStatus
    state: Optional[HealthState]
    health: str
    ip: str
    pid: Optional[int]
    vcpus: int
    memory_mib: int
    memory_used_mib: Optional[int]
    uptime_s: Optional[int]
    last_event: Optional[str]
    last_event_ms: Optional[int]


class Overview(TypedDict):
    """Every tenant, sorted by name, with the watchdog's view."""

    #: When the snapshot was taken (ms since the Unix epoch).
    taken_ms: int
    #: None when no watchdog has written its status.
    watchdog: Optional[WatchdogInfo]
    tenants: list[TenantOverview]
