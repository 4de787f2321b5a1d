"""Host.list_async(): the same behaviour through an awaitable."""

import asyncio
import json

import pytest

import lobster


def test_list_empty_registry(temp_host):
    async def main():
        return await lobster.Host(temp_host.config).list_async()

    assert asyncio.run(main()) == []


def test_list_seeded_registry_sorted_with_fields(temp_host):
    temp_host.seed(["carol", "alice", "bob"])

    async def main():
        return await lobster.Host(temp_host.config).list_async()

    tenants = asyncio.run(main())
    assert [t.name for t in tenants] == ["alice", "bob", "carol"]
    assert tenants[2].route == "carol.test.lobster"
    assert tenants[2].guest_ip == "10.200.0.2"
    assert json.loads(tenants[0].to_json()) == tenants[0].to_dict()


def test_concurrent_lists_share_one_runtime(temp_host):
    temp_host.seed([f"t{i}" for i in range(10)])
    host = lobster.Host(temp_host.config)

    async def main():
        return await asyncio.gather(*(host.list_async() for _ in range(16)))

    results = asyncio.run(main())
    assert len(results) == 16
    assert all([t.name for t in r] == sorted(f"t{i}" for i in range(10)) for r in results)


def test_corrupt_registry_raises_corrupt_error(temp_host):
    temp_host.state_dir.mkdir()
    temp_host.registry.write_text("not json")

    async def main():
        return await lobster.Host(temp_host.config).list_async()

    with pytest.raises(lobster.CorruptError) as info:
        asyncio.run(main())
    assert info.value.kind == "corrupt"
