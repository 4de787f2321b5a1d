"""Lifecycle operations through their awaitable twins."""

import asyncio

import pytest

import lobster


def test_spawn_without_images_is_not_found(temp_host):
    host = lobster.Host(temp_host.config)

    async def main():
        return await host.spawn_async(lobster.TenantSpec("alice"))

    with pytest.raises(lobster.NotFoundError, match="kernel image") as info:
        asyncio.run(main())
    assert info.value.kind == "not_found"


@pytest.mark.parametrize("operation", ["suspend", "resume"])
def test_operation_on_a_tenant_in_the_wrong_state_is_invalid_state(temp_host, operation):
    # The seeded tenant is `running` with no VM: nothing to suspend, nothing to resume.
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)

    async def main():
        return await getattr(host, f"{operation}_async")("alice")

    with pytest.raises(lobster.InvalidStateError, match=f"{operation} needs"):
        asyncio.run(main())


@pytest.mark.parametrize("operation", ["evict", "suspend", "resume", "molt"])
def test_operation_on_missing_tenant_raises_not_found(temp_host, operation):
    host = lobster.Host(temp_host.config)

    async def main():
        return await getattr(host, f"{operation}_async")("nobody")

    with pytest.raises(lobster.NotFoundError):
        asyncio.run(main())
