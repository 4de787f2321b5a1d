//! Configuration files: good ones load, each kind of bad one is named.

use std::path::Path;

use lobster_core::config::{Backend, Config, ConfigError};
use lobster_core::error::Classify;
use lobster_core::ErrorKind;

fn load(text: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, text).unwrap();
    let result = Config::load(&path);
    (dir, result)
}

fn error_text(text: &str) -> String {
    let (_dir, result) = load(text);
    let err = result.expect_err("should be rejected");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    err.to_string()
}

#[test]
fn empty_object_gives_documented_defaults() {
    let (_dir, config) = load("{}");
    let config = config.unwrap();
    assert_eq!(config.domain, "lobster.local");
    assert_eq!(config.tenant_defaults.vcpus, 2);
    assert_eq!(config.tenant_defaults.memory_mib, 1024);
    assert_eq!(config.network.gateway_port, 9000);
    assert_eq!(
        config.proxy.admin_address,
        "/var/lib/lobster-caddy/admin.sock"
    );
    assert_eq!(config.proxy.user, "lobster-caddy");
    assert_eq!(config.proxy.listen, vec![":443"]);
    assert_eq!(config.vmm.backend, Backend::Auto);
    assert_eq!(config.paths.state_dir, Path::new("/var/lib/lobsterd"));
    assert_eq!(config.copy.max_bytes, 1 << 30);
}

#[test]
fn full_file_round_trips() {
    let config = Config::default();
    let (_dir, loaded) = load(&config.to_json_pretty());
    assert_eq!(loaded.unwrap(), config);
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let (dir, config) = load(r#"{"paths": {"state_dir": "state", "kernel": "/abs/vmlinux"}}"#);
    let config = config.unwrap();
    assert_eq!(config.paths.state_dir, dir.path().join("state"));
    assert_eq!(config.paths.kernel, Path::new("/abs/vmlinux"));
}

#[test]
fn partial_sections_keep_other_defaults() {
    let (_dir, config) = load(r#"{"vmm": {"backend": "qemu", "qemu": {"accel": "tcg"}}}"#);
    let config = config.unwrap();
    assert_eq!(config.vmm.backend, Backend::Qemu);
    assert_eq!(config.vmm.qemu.tcg_tb_size_mib, 32);
    assert_eq!(config.vmm.uid_base, 10000);
}

#[test]
fn each_kind_of_bad_file_names_file_field_and_reason() {
    let cases = [
        ("not json", "field `.`"),
        ("{\"domain\": \"a.local\",", "field `.`"),
        (r#"{"domian": "x"}"#, "unknown field `domian`"),
        (r#"{"network": {"pool": 5}}"#, "field `network.pool`"),
        (
            r#"{"network": {"gatway_port": 1}}"#,
            "field `network.gatway_port`",
        ),
        (r#"{"vmm": {"backend": "xen"}}"#, "field `vmm.backend`"),
        (
            r#"{"tenant_defaults": {"vcpus": 300}}"#,
            "field `tenant_defaults.vcpus`",
        ),
        (
            r#"{"tenant_defaults": {"vcpus": 0}}"#,
            "field `tenant_defaults.vcpus`: 0 is not in 1..=32",
        ),
        (
            r#"{"tenant_defaults": {"memory_mib": 64}}"#,
            "field `tenant_defaults.memory_mib`",
        ),
        (r#"{"network": {"pool": "10.0.0.0/31"}}"#, "holds no /30"),
        (r#"{"network": {"pool": "10.0.0.1/24"}}"#, "host bits set"),
        (
            r#"{"network": {"pool": "nonsense"}}"#,
            "field `network.pool`",
        ),
        (
            r#"{"network": {"agent_port": 0}}"#,
            "field `network.agent_port`",
        ),
        (r#"{"domain": "Bad_Domain"}"#, "field `domain`"),
        (
            r#"{"copy": {"max_bytes": 0}}"#,
            "field `copy.max_bytes`: must be at least 1",
        ),
        (
            r#"{"api": {"listen": "0.0.0.0:8443"}}"#,
            "field `api.tls_cert`: is required with api.listen",
        ),
        (
            r#"{"api": {"listen": "0.0.0.0:8443", "tls_cert": "/c.pem", "tls_key": "k.pem"}}"#,
            "field `api.tls_key`: k.pem is not an absolute path",
        ),
        (r#"{"api": {"socket": "api.sock"}}"#, "field `api.socket`"),
        (
            r#"{"api": {"socket": "/run/lobsterd/api.sock"}}"#,
            "field `api.socket`: /run/lobsterd/api.sock is in /run/lobsterd, a directory lobster uses",
        ),
        (r#"{"api": {"rate_burst": 0}}"#, "field `api.rate_burst`"),
        (r#"{"api": {"listen": "nowhere"}}"#, "field `api.listen`"),
        (
            r#"{"proxy": {"admin_address": "localhost"}}"#,
            "field `proxy.admin_address`",
        ),
        (
            r#"{"proxy": {"admin_address": "0.0.0.0:2019"}}"#,
            "neither an absolute socket path nor a loopback",
        ),
        (r#"{"proxy": {"user": "root"}}"#, "field `proxy.user`"),
        (
            r#"{"proxy": {"caddy_dir": "relative"}}"#,
            "field `proxy.caddy_dir`",
        ),
        (r#"{"vmm": {"uid_base": 0}}"#, "field `vmm.uid_base`"),
        (
            r#"{"network": {"egress_allow": ["192.0.2.0/24", "192.0.2.1/24"]}}"#,
            "field `network.egress_allow`: `192.0.2.1/24` has host bits set",
        ),
        (
            r#"{"network": {"egress_deny": ["example.com"]}}"#,
            "field `network.egress_deny`: `example.com` is not in a.b.c.d/n form",
        ),
        // A tenant's cgroup must stay below lobster's own parent.
        (
            r#"{"vmm": {"cgroup_parent": "../escape"}}"#,
            "field `vmm.cgroup_parent`",
        ),
        (
            r#"{"vmm": {"cgroup_parent": "/sys/fs/cgroup"}}"#,
            "field `vmm.cgroup_parent`",
        ),
        (
            r#"{"vmm": {"cgroup_parent": ""}}"#,
            "field `vmm.cgroup_parent`",
        ),
    ];
    for (text, needle) in cases {
        let message = error_text(text);
        assert!(message.contains("config.json"), "{text}: {message}");
        assert!(message.contains(needle), "{text}: {message}");
    }
}

#[test]
fn missing_file_is_not_found_and_named() {
    let err = Config::load(Path::new("/nonexistent/lobster/config.json")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/lobster/config.json"));
    assert_eq!(lobster_core::Error::from(err).kind(), ErrorKind::NotFound);
}

#[test]
fn a_host_user_group_or_subordinate_range_inside_the_tenant_ids_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = lobster_core::config::IdDatabases {
        passwd: dir.path().join("passwd"),
        group: dir.path().join("group"),
        subuid: dir.path().join("subuid"),
        subgid: dir.path().join("subgid"),
    };
    let mut config = Config::default();
    config.network.pool = "10.200.0.0/24".into(); // 64 tenants: uids 10000..=10063
    assert_eq!(config.tenant_id_range(), 10000..10064);
    std::fs::write(
        &dbs.passwd,
        "root:x:0:0::/root:/bin/sh\nbob:x:10064:10064::/:/bin/sh\n",
    )
    .unwrap();
    config
        .check_host_ids(&dbs)
        .expect("10064 is outside the range");
    for (file, line, named) in [
        (
            &dbs.passwd,
            "carol:x:10063:100::/:/bin/sh\n",
            "user carol (uid 10063)",
        ),
        (
            &dbs.group,
            "builders:x:10000:\n",
            "group builders (gid 10000)",
        ),
        (
            &dbs.subuid,
            "dave:9000:1001\n",
            "subordinate uids of dave (9000..=10000)",
        ),
        (
            &dbs.subgid,
            "erin:10050:65536\n",
            "subordinate gids of erin",
        ),
    ] {
        let before = std::fs::read_to_string(file).unwrap_or_default();
        std::fs::write(file, format!("{before}{line}")).unwrap();
        let err = config.check_host_ids(&dbs).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let text = err.to_string();
        assert!(
            text.contains("vmm.uid_base") && text.contains("10000..=10063") && text.contains(named),
            "{text}"
        );
        std::fs::write(file, before).unwrap();
    }
}
