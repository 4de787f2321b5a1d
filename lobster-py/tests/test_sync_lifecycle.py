"""Lifecycle operations, blocking. Spawn refuses a host without guest images
before making anything; operations whose machinery comes later answer
`unsupported` (after checking the tenant exists), and so must the binding
(molt: test_sync_health.py).
Spawning and evicting for real is covered by the T2 tests in a namespace."""

import pytest

import lobster


def test_spawn_without_images_is_not_found(temp_host):
    host = lobster.Host(temp_host.config)
    with pytest.raises(lobster.NotFoundError, match="kernel image") as info:
        host.spawn(lobster.TenantSpec("alice", vcpus=1, memory_mib=512))
    assert info.value.kind == "not_found"
    assert isinstance(info.value, LookupError)
    assert host.list() == [], "a failed spawn must leave no tenant behind"


@pytest.mark.parametrize("operation", ["suspend", "resume"])
def test_operation_on_existing_tenant_is_unsupported_for_now(temp_host, operation):
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)
    with pytest.raises(lobster.UnsupportedError, match=operation):
        getattr(host, operation)("alice")
    assert [t.name for t in host.list()] == ["alice"]


@pytest.mark.parametrize("operation", ["evict", "suspend", "resume", "molt"])
def test_operation_on_missing_tenant_raises_not_found(temp_host, operation):
    with pytest.raises(lobster.NotFoundError):
        getattr(lobster.Host(temp_host.config), operation)("nobody")
