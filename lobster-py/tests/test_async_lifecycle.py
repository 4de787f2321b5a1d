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


@pytest.mark.parametrize(
    ("operation", "needs"), [("suspend", "running with a VM"), ("resume", "suspended")]
)
def test_suspend_or_resume_of_a_running_tenant_without_vm_is_invalid_state(
    temp_host, operation, needs
):
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)

    async def main():
        return await getattr(host, f"{operation}_async")("alice")

    with pytest.raises(lobster.InvalidStateError, match=f"{operation} needs {needs}"):
        asyncio.run(main())
    assert [(t.name, t.status) for t in host.list()] == [("alice", "running")]


def test_restore_from_a_bad_archive_is_refused_before_anything_is_made(imaged_host, tmp_path):
    host = lobster.Host(imaged_host.config)
    text = tmp_path / "notes.txt"
    text.write_text("not an archive")

    async def main():
        return await host.spawn_async(lobster.TenantSpec("alice", from_snap=text))

    with pytest.raises(lobster.InvalidArgumentError, match="from_snap.*not a zstd stream"):
        asyncio.run(main())
    assert host.list() == []


@pytest.mark.parametrize("operation", ["evict", "suspend", "resume", "molt"])
def test_operation_on_missing_tenant_raises_not_found(temp_host, operation):
    host = lobster.Host(temp_host.config)

    async def main():
        return await getattr(host, f"{operation}_async")("nobody")

    with pytest.raises(lobster.NotFoundError):
        asyncio.run(main())
