"""Host.list(), blocking."""

import json

import pytest

import lobster


def test_list_empty_registry(temp_host):
    assert lobster.Host(temp_host.config).list() == []


def test_list_seeded_registry_sorted_with_fields(temp_host):
    temp_host.seed(["carol", "alice", "bob"])
    tenants = lobster.Host(temp_host.config).list()
    assert [t.name for t in tenants] == ["alice", "bob", "carol"]
    carol = tenants[2]
    assert carol.status == "running"
    assert carol.route == "carol.test.lobster"
    assert (carol.subnet, carol.host_ip, carol.guest_ip) == ("10.200.0.0", "10.200.0.1", "10.200.0.2")
    assert carol.mac == "06:00:0a:c8:00:02"
    assert (carol.vcpus, carol.memory_mib, carol.overlay_size_mib) == (2, 1024, 4096)
    assert (carol.host_port, carol.jail_uid, carol.backend, carol.vm_pid) == (20000, 10000, None, None)
    assert carol.created_at == temp_host.records["carol"]["created_at"]


def test_tenant_dict_and_json_hold_no_tokens(temp_host):
    temp_host.seed(["alice"])
    (alice,) = lobster.Host(temp_host.config).list()
    document = alice.to_dict()
    assert document["name"] == "alice"
    assert document["allocation"]["guest_ip"] == "10.200.0.2"
    assert json.loads(alice.to_json()) == document
    assert json.loads(alice.to_json(pretty=True)) == document
    text = alice.to_json()
    assert "token" not in text, text


def test_tenants_compare_by_value(temp_host):
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)
    assert host.list() == host.list()
    assert len({host.list()[0], host.list()[0]}) == 1
    assert "alice" in repr(host.list()[0])


def test_corrupt_registry_raises_corrupt_error_and_is_left_untouched(temp_host):
    temp_host.state_dir.mkdir()
    temp_host.registry.write_text('{"schema_version": 1, "tenants": {')
    with pytest.raises(lobster.CorruptError) as info:
        lobster.Host(temp_host.config).list()
    assert info.value.kind == "corrupt"
    assert str(temp_host.registry) in str(info.value)
    assert temp_host.registry.read_text() == '{"schema_version": 1, "tenants": {'


def test_newer_schema_version_is_corrupt(temp_host):
    temp_host.state_dir.mkdir()
    temp_host.registry.write_text('{"schema_version": 99, "tenants": {}}')
    with pytest.raises(lobster.CorruptError, match="schema version 99"):
        lobster.Host(temp_host.config).list()
