"""Host.get_async() and Host.token_async()."""

import asyncio

import pytest

import lobster


def test_get_existing_tenant(temp_host):
    temp_host.seed(["alice", "bob"])

    async def main():
        return await lobster.Host(temp_host.config).get_async("bob")

    bob = asyncio.run(main())
    assert (bob.name, bob.guest_ip) == ("bob", "10.200.0.6")


def test_get_missing_raises_not_found_which_is_a_lookup_error(temp_host):
    async def main():
        return await lobster.Host(temp_host.config).get_async("nobody")

    with pytest.raises(LookupError) as info:
        asyncio.run(main())
    assert isinstance(info.value, lobster.NotFoundError)
    assert info.value.kind == "not_found"


def test_token_of_existing_tenant(temp_host):
    temp_host.seed(["alice"])

    async def main():
        return await lobster.Host(temp_host.config).token_async("alice")

    assert asyncio.run(main()) == temp_host.records["alice"]["gateway_token"]


def test_token_of_missing_tenant_raises_not_found(temp_host):
    async def main():
        return await lobster.Host(temp_host.config).token_async("nobody")

    with pytest.raises(lobster.NotFoundError):
        asyncio.run(main())
