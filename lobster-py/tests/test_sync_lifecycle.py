"""Lifecycle operations, blocking. Spawn refuses a host without guest images,
and a restore a bad archive, before making anything; suspend and resume
refuse tenants in the wrong state with the core's kinds (molt:
test_sync_health.py). Spawning, evicting, suspending and restoring for
real are covered by the T2 tests in a namespace."""

import pytest

import lobster


def test_spawn_without_images_is_not_found(temp_host):
    host = lobster.Host(temp_host.config)
    with pytest.raises(lobster.NotFoundError, match="kernel image") as info:
        host.spawn(lobster.TenantSpec("alice", vcpus=1, memory_mib=512))
    assert info.value.kind == "not_found"
    assert isinstance(info.value, LookupError)
    assert host.list() == [], "a failed spawn must leave no tenant behind"


@pytest.mark.parametrize(
    ("operation", "needs"), [("suspend", "running with a VM"), ("resume", "suspended")]
)
def test_suspend_or_resume_of_a_running_tenant_without_vm_is_invalid_state(
    temp_host, operation, needs
):
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)
    with pytest.raises(lobster.InvalidStateError, match=f"{operation} needs {needs}") as info:
        getattr(host, operation)("alice")
    assert info.value.kind == "invalid_state"
    assert [(t.name, t.status) for t in host.list()] == [("alice", "running")]


def test_restore_from_a_bad_archive_is_refused_before_anything_is_made(imaged_host, tmp_path):
    host = lobster.Host(imaged_host.config)
    missing = tmp_path / "absent.ext4.zst"
    with pytest.raises(lobster.NotFoundError, match="from_snap") as info:
        host.spawn(lobster.TenantSpec("alice", from_snap=missing))
    assert str(missing) in str(info.value)
    text = tmp_path / "notes.txt"
    text.write_text("not an archive")
    with pytest.raises(lobster.InvalidArgumentError, match="from_snap.*not a zstd stream"):
        host.spawn(lobster.TenantSpec("alice", from_snap=str(text)))
    assert host.list() == [], "a refused restore must leave no tenant behind"


@pytest.mark.parametrize("operation", ["evict", "suspend", "resume", "molt"])
def test_operation_on_missing_tenant_raises_not_found(temp_host, operation):
    with pytest.raises(lobster.NotFoundError):
        getattr(lobster.Host(temp_host.config), operation)("nobody")


def test_progress_must_be_callable_and_is_checked_before_anything(temp_host):
    temp_host.seed(["alice"])
    host = lobster.Host(temp_host.config)
    for call in (
        lambda: host.spawn(lobster.TenantSpec("carol"), progress=42),  # type: ignore[arg-type]
        lambda: host.suspend("alice", progress="no"),  # type: ignore[arg-type]
        lambda: host.resume("alice", progress=object()),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match="progress"):
            call()
    assert [t.name for t in host.list()] == ["alice"]


def test_watchdog_log_tail(temp_host):
    logs = temp_host.root / "logs"
    temp_host.write_config({"paths": {"state_dir": "state", "logs_dir": str(logs)}})
    host = lobster.Host(temp_host.config)
    with pytest.raises(lobster.NotFoundError, match="watchdog log"):
        host.watchdog_log()
    logs.mkdir()
    (logs / "watch.log").write_text("".join(f"tick {i}\n" for i in range(5)))
    assert host.watchdog_log(2) == ["tick 3", "tick 4"]


def test_rotate_tokens_of_a_missing_tenant_is_not_found(temp_host):
    with pytest.raises(lobster.NotFoundError, match="nobody"):
        lobster.Host(temp_host.config).rotate_tokens("nobody")
