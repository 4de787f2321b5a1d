"""Host.molt_async() and Host.overview_async(): the same behaviour through
awaitables (see test_sync_health.py for why molt only meets hosts where it
has nothing to repair)."""

import asyncio
import os

import pytest

import lobster


def test_molt_on_an_empty_host_reports_nothing(temp_host):
    async def main():
        return await lobster.Host(temp_host.config).molt_async()

    assert asyncio.run(main()) == []


def test_molt_of_a_missing_tenant_raises_not_found(temp_host):
    async def main():
        return await lobster.Host(temp_host.config).molt_async("nope")

    with pytest.raises(lobster.NotFoundError, match="nope"):
        asyncio.run(main())


def test_molt_of_a_stopped_tenant_is_invalid_state(temp_host):
    temp_host.seed(["alice"], status="stopped")

    async def main():
        return await lobster.Host(temp_host.config).molt_async(name="alice")

    with pytest.raises(lobster.InvalidStateError, match="molt"):
        asyncio.run(main())


def test_overview_shows_tenants_and_the_watchdog(temp_host):
    temp_host.seed(["alice", "bob"])
    temp_host.write_watch(os.getpid(), {"bob": {"state": "recovering", "attempts": 1, "checks": []}})
    host = lobster.Host(temp_host.config)

    async def main():
        return await asyncio.gather(host.overview_async(), host.overview_async())

    first, second = asyncio.run(main())
    assert [t["name"] for t in first["tenants"]] == ["alice", "bob"]
    assert [t["state"] for t in first["tenants"]] == [None, "recovering"]
    assert [t["health"] for t in first["tenants"]] == ["-", "-"], "no checks yet"
    assert first["watchdog"]["pid"] == os.getpid()
    assert second["tenants"] == first["tenants"]
