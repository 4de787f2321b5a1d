"""Lifecycle operations, blocking. Spawn refuses a host without guest images
before making anything; suspend and resume refuse a tenant in the wrong
state, and so must the binding (molt: test_sync_health.py).
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
def test_operation_on_a_tenant_in_the_wrong_state_is_invalid_state(temp_host, operation):
    # The seeded tenant is `running` with no VM: nothing to suspend, nothing to resume.
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)
    with pytest.raises(lobster.InvalidStateError, match=f"{operation} needs"):
        getattr(host, operation)("alice")
    assert [t.name for t in host.list()] == ["alice"]


@pytest.mark.parametrize("operation", ["evict", "suspend", "resume", "molt"])
def test_operation_on_missing_tenant_raises_not_found(temp_host, operation):
    with pytest.raises(lobster.NotFoundError):
        getattr(lobster.Host(temp_host.config), operation)("nobody")
