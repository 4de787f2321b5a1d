"""TenantSpec: keyword construction validated by the core builder."""

import pytest

import lobster


def test_valid_spec_keeps_its_fields():
    spec = lobster.TenantSpec(
        "alice",
        vcpus=2,
        memory_mib=512,
        overlay_size_mib=2048,
        backend="qemu",
        env={"MODE": "dev"},
        secrets={"API_KEY": "sk-secret"},
    )
    assert (spec.name, spec.vcpus, spec.memory_mib, spec.overlay_size_mib) == ("alice", 2, 512, 2048)
    assert spec.backend == "qemu"
    assert spec.env == {"MODE": "dev"}
    assert spec.secret_names == ["API_KEY"]


def test_from_snap_round_trips_as_a_path():
    from pathlib import Path

    assert lobster.TenantSpec("alice").from_snap is None
    for given in ("/backups/alice.ext4.zst", Path("/backups/alice.ext4.zst")):
        spec = lobster.TenantSpec("alice", from_snap=given)
        assert spec.from_snap == Path("/backups/alice.ext4.zst")
        assert "from_snap=\"/backups/alice.ext4.zst\"" in repr(spec)


def test_unset_sizes_are_none():
    spec = lobster.TenantSpec("alice")
    assert (spec.vcpus, spec.memory_mib, spec.overlay_size_mib, spec.backend) == (None,) * 4


def test_repr_never_shows_secret_values():
    text = repr(lobster.TenantSpec("alice", secrets={"API_KEY": "sk-very-secret"}))
    assert "API_KEY" in text and "sk-very-secret" not in text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Alice"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": "../x"}, "name"),
        ({"name": "a", "vcpus": 0}, "vcpus"),
        ({"name": "a", "vcpus": 300}, "vcpus"),
        ({"name": "a", "vcpus": -1}, "vcpus"),
        ({"name": "a", "memory_mib": 64}, "memory_mib"),
        ({"name": "a", "memory_mib": 2**40}, "memory_mib"),
        ({"name": "a", "overlay_size_mib": 1}, "overlay_size_mib"),
        ({"name": "a", "backend": "vmware"}, "backend"),
        ({"name": "a", "env": {"1X": "v"}}, "env"),
        ({"name": "a", "secrets": {"A-B": "v"}}, "secrets"),
        ({"name": "a", "from_snap": ""}, "from_snap"),
    ],
)
def test_invalid_field_is_named(kwargs, field):
    with pytest.raises(lobster.InvalidArgumentError) as info:
        lobster.TenantSpec(**kwargs)
    assert isinstance(info.value, ValueError)
    assert f"field `{field}`" in str(info.value)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError):
        lobster.TenantSpec("a", vcpus="2")
    with pytest.raises(TypeError):
        lobster.TenantSpec("a", env={"A": 1})
    with pytest.raises(TypeError):
        lobster.TenantSpec("a", 2)  # sizes are keyword-only
