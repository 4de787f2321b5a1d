"""Opening a host: config selection and config errors."""

import pathlib

import pytest

import lobster


def test_config_path_and_domain(temp_host):
    host = lobster.Host(temp_host.config)
    assert host.config_path == pathlib.Path(temp_host.config)
    assert host.domain == "test.lobster"
    assert str(temp_host.config) in repr(host)


def test_accepts_str_and_pathlike(temp_host):
    assert lobster.Host(str(temp_host.config)).list() == []
    assert lobster.Host(pathlib.Path(temp_host.config)).list() == []


def test_env_var_names_the_config(temp_host, monkeypatch):
    temp_host.seed(["alice"])
    monkeypatch.setenv("LOBSTERD_CONFIG", str(temp_host.config))
    host = lobster.Host()
    assert host.config_path == pathlib.Path(temp_host.config)
    assert [t.name for t in host.list()] == ["alice"]


def test_missing_config_file_raises_not_found(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(lobster.NotFoundError, match="nope.json"):
        lobster.Host(missing)


def test_unknown_field_raises_invalid_argument_naming_it(temp_host):
    temp_host.write_config({"paths": {"state_dir": "state", "bogus_dir": "x"}})
    with pytest.raises(lobster.InvalidArgumentError) as info:
        lobster.Host(temp_host.config)
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "invalid_argument"
    assert "bogus_dir" in str(info.value)
    assert str(temp_host.config) in str(info.value)


def test_out_of_range_value_raises_invalid_argument_naming_the_field(temp_host):
    temp_host.write_config({"tenant_defaults": {"vcpus": 0}})
    with pytest.raises(ValueError, match="tenant_defaults.vcpus"):
        lobster.Host(temp_host.config)


def test_malformed_json_raises_invalid_argument(temp_host):
    temp_host.config.write_text("{")
    with pytest.raises(lobster.InvalidArgumentError, match="config.json"):
        lobster.Host(temp_host.config)
