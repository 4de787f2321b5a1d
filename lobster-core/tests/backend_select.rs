//! T0: which VMM backend a host runs tenants on. `auto` (the default)
//! picks Firecracker wherever its binary exists and KVM really runs
//! guests, else QEMU; the KVM probe is injected, the binary is a stub.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lobster_core::config::{Backend, Config};
use lobster_core::vmm::{auto_backend, backend_for, BackendKind};

/// An executable (or, with `mode` 0o644, a non-executable) stub `firecracker` in `dir`.
fn stub(dir: &Path, mode: u32) -> PathBuf {
    let path = dir.join("firecracker");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn config_with_binary(binary: &Path) -> Config {
    let mut config = Config::default();
    config.vmm.firecracker.binary = binary.to_path_buf();
    config
}

fn kvm_works() -> Result<(), String> {
    Ok(())
}

fn kvm_broken() -> Result<(), String> {
    Err("KVM_RUN failed: nested virtualisation is off".into())
}

#[test]
fn auto_is_the_default() {
    assert_eq!(Config::default().vmm.backend, Backend::Auto);
}

#[test]
fn auto_picks_firecracker_only_where_its_binary_and_a_working_kvm_exist() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_binary(&stub(dir.path(), 0o755));
    assert_eq!(auto_backend(&config, kvm_works), BackendKind::Firecracker);
    assert_eq!(auto_backend(&config, kvm_broken), BackendKind::Qemu);
}

#[test]
fn without_a_firecracker_binary_auto_is_qemu_and_kvm_is_not_probed() {
    let dir = tempfile::tempdir().unwrap();
    let never =
        || -> Result<(), String> { panic!("the KVM probe ran without a firecracker binary") };
    let missing = config_with_binary(&dir.path().join("firecracker"));
    assert_eq!(auto_backend(&missing, never), BackendKind::Qemu);
    let not_executable = config_with_binary(&stub(dir.path(), 0o644));
    assert_eq!(auto_backend(&not_executable, never), BackendKind::Qemu);
}

#[test]
fn a_bare_binary_name_is_found_on_path() {
    let dir = tempfile::tempdir().unwrap();
    let bare = config_with_binary(Path::new("firecracker"));
    // The only test here that changes PATH (each test runs in its own process under nextest).
    std::env::set_var("PATH", dir.path());
    assert_eq!(
        auto_backend(&bare, kvm_works),
        BackendKind::Qemu,
        "empty PATH"
    );
    stub(dir.path(), 0o755);
    assert_eq!(auto_backend(&bare, kvm_works), BackendKind::Firecracker);
    assert_eq!(auto_backend(&bare, kvm_broken), BackendKind::Qemu);
}

#[test]
fn an_explicit_backend_is_taken_as_configured() {
    let mut config = config_with_binary(Path::new("/nonexistent/firecracker"));
    config.vmm.backend = Backend::Firecracker;
    assert_eq!(backend_for(&config).kind(), BackendKind::Firecracker);
    config.vmm.backend = Backend::Qemu;
    assert_eq!(backend_for(&config).kind(), BackendKind::Qemu);
}
