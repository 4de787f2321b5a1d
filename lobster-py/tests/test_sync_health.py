"""Host.molt() and Host.overview(), blocking.

Molt is only exercised where it repairs nothing: an empty host, a missing
tenant, tenants that should not run. Molting a seeded running tenant would
try real repairs (TAP, firewall, VM) on this host; the T2 tests do that
inside a namespace. Overview only reads, so it runs on seeded registries
with and without a watchdog status file."""

import os

import pytest

import lobster


def test_molt_on_an_empty_host_reports_nothing(temp_host):
    assert lobster.Host(temp_host.config).molt() == []


def test_molt_of_a_missing_tenant_raises_not_found(temp_host):
    temp_host.seed(["alice"])
    with pytest.raises(lobster.NotFoundError, match="nope") as info:
        lobster.Host(temp_host.config).molt("nope")
    assert info.value.kind == "not_found"


def test_molt_of_a_stopped_tenant_is_invalid_state_and_changes_nothing(temp_host):
    temp_host.seed(["alice"], status="stopped")
    host = lobster.Host(temp_host.config)
    before = temp_host.registry.read_text()
    with pytest.raises(lobster.InvalidStateError, match="molt"):
        host.molt("alice")
    assert temp_host.registry.read_text() == before


def test_molt_of_all_skips_tenants_that_should_not_run(temp_host):
    temp_host.seed(["alice", "bob"], status="stopped")
    assert lobster.Host(temp_host.config).molt() == []


def test_overview_of_an_empty_host(temp_host):
    overview = lobster.Host(temp_host.config).overview()
    assert overview["tenants"] == []
    assert overview["watchdog"] is None
    assert overview["taken_ms"] > 1_700_000_000_000


def test_overview_without_a_watchdog_lists_tenants_unchecked(temp_host):
    temp_host.seed(["bob", "alice"])
    overview = lobster.Host(temp_host.config).overview()
    assert overview["watchdog"] is None
    assert [t["name"] for t in overview["tenants"]] == ["alice", "bob"]
    alice = overview["tenants"][0]
    assert alice == {
        "name": "alice",
        "status": "running",
        "state": None,
        "health": "-",
        "ip": "10.200.0.6",
        "pid": None,
        "vcpus": 2,
        "memory_mib": 1024,
        "memory_used_mib": None,
        "uptime_s": None,
        "last_event": None,
        "last_event_ms": None,
    }


def test_overview_shows_what_the_watchdog_wrote(temp_host):
    temp_host.seed(["alice", "bob", "carol"])
    temp_host.write_watch(
        os.getpid(),
        {
            "alice": {
                "state": "degraded",
                "attempts": 2,
                "checks": [
                    {"check": "disk.overlay", "verdict": "ok"},
                    {"check": "vm.process", "verdict": "failed", "detail": "the VM process is gone"},
                    {"check": "vm.api", "verdict": "skipped", "detail": "vm.process failed"},
                    {"check": "proxy.route", "verdict": "failed", "detail": "route missing"},
                ],
                "last_event": "repair restart_vm failed",
                "last_event_ms": 1_700_000_050_000,
            },
            "bob": {"state": "healthy", "attempts": 0, "checks": [{"check": "disk.overlay", "verdict": "ok"}]},
        },
    )
    overview = lobster.Host(temp_host.config).overview()
    assert overview["watchdog"] == {
        "pid": os.getpid(), "alive": True, "tick": 12, "updated_ms": 1_700_000_060_000, "repairs": {},
    }
    alice, bob, carol = overview["tenants"]
    assert (alice["state"], alice["health"]) == ("degraded", "vm.process,proxy.route")
    assert (alice["last_event"], alice["last_event_ms"]) == ("repair restart_vm failed", 1_700_000_050_000)
    assert (bob["state"], bob["health"], bob["last_event"]) == ("healthy", "ok", None)
    assert (carol["state"], carol["health"]) == (None, "-"), "a tenant the watchdog never saw"


def test_overview_of_a_corrupt_registry_raises_corrupt_error(temp_host):
    temp_host.state_dir.mkdir()
    temp_host.registry.write_text("{")
    with pytest.raises(lobster.CorruptError):
        lobster.Host(temp_host.config).overview()
