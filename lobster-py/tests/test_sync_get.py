"""Host.get() and Host.token(), blocking."""

import pytest

import lobster


def test_get_existing_tenant(temp_host):
    temp_host.seed(["alice", "bob"])
    bob = lobster.Host(temp_host.config).get("bob")
    assert (bob.name, bob.guest_ip, bob.route) == ("bob", "10.200.0.6", "bob.test.lobster")


def test_get_missing_raises_not_found_which_is_a_lookup_error(temp_host):
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)
    with pytest.raises(lobster.NotFoundError) as info:
        host.get("nobody")
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, lobster.LobsterError)
    assert info.value.kind == "not_found"
    assert "nobody" in str(info.value)


def test_token_of_existing_tenant(temp_host):
    temp_host.seed(["alice"])
    assert lobster.Host(temp_host.config).token("alice") == temp_host.records["alice"]["gateway_token"]


def test_token_of_missing_tenant_raises_not_found(temp_host):
    with pytest.raises(LookupError):
        lobster.Host(temp_host.config).token("nobody")
