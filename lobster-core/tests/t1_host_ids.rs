//! T1: `init` refuses a tenant uid range that holds a real host user
//! (created with `useradd` for the test and removed on every path).

use std::process::Command;

use lobster_core::config::{Config, PathsConfig};
use lobster_core::machine::{init, InitOptions};

/// A host user that exists while this lives.
struct HostUser(&'static str);

impl HostUser {
    fn create(name: &'static str, uid: u32) -> HostUser {
        let _ = Command::new("userdel").arg(name).status(); // a leftover of a killed run
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", "--uid"])
            .arg(uid.to_string())
            .arg(name)
            .output()
            .expect("useradd runs");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        HostUser(name)
    }
}

impl Drop for HostUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.0).status();
    }
}

#[test]
#[ignore = "t1: needs root (useradd)"]
fn init_fails_naming_a_host_user_inside_the_tenant_uid_range() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.json");
    // A range far from every other test's (they use the default 10000).
    let mut config = Config {
        paths: PathsConfig::under(dir.path()),
        ..Config::default()
    };
    config.network.pool = "10.200.0.0/24".into();
    config.vmm.uid_base = 3_100_000;
    std::fs::write(&config_path, config.to_json_pretty()).unwrap();
    init(&config_path, &InitOptions::default()).expect("no user in 3100000..=3100063 yet");

    let user = HostUser::create("lobster-t1-uidclash", 3_100_042);
    let err = init(&config_path, &InitOptions::default()).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("vmm.uid_base")
            && text.contains("user lobster-t1-uidclash (uid 3100042) in /etc/passwd"),
        "{text}"
    );
    drop(user);
    init(&config_path, &InitOptions::default()).expect("the user is gone");
}
