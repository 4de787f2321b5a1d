//! An `exec.start` request checked and resolved before anything runs: the
//! user (from `/etc/passwd` and `/etc/group`), the program (`argv[0]` in
//! `PATH`), the working directory and the environment. Every refusal is a
//! `bad_request` naming the field, except a program that is not there
//! (`not_found`, "command not found: X").

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lobster_agent_proto::methods::ExecParams;
use lobster_agent_proto::stream::WindowSize;
use lobster_agent_proto::ErrorCode;
use rustix::process::{Gid, Uid};

use super::sys::Identity;
use crate::secrets::valid_env_name;
use crate::workload::Failure;

/// The most bytes read from `/etc/passwd` or `/etc/group`.
const ACCOUNT_FILE_CAP: u64 = 4 * 1024 * 1024;
/// The longest user name or uid accepted.
const MAX_USER_LEN: usize = 256;

/// Everything needed to start the process.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The resolved program.
    pub program: PathBuf,
    /// `argv` as given (`argv[0]` included).
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The user to become; `None` keeps the agent's.
    pub identity: Option<Identity>,
    /// The terminal's size, for a PTY session.
    pub tty: Option<WindowSize>,
    /// When to kill the process group.
    pub timeout: Option<Duration>,
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// The guest's users and groups.
#[derive(Debug, Default)]
pub(crate) struct Accounts {
    users: Vec<User>,
    /// Group id and member names of each `/etc/group` entry.
    groups: Vec<(u32, Vec<String>)>,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group` (missing files: no entries).
    pub fn load() -> Accounts {
        let read = |path: &str| {
            use std::io::Read;
            let mut text = String::new();
            if let Ok(file) = std::fs::File::open(path) {
                let _ = file.take(ACCOUNT_FILE_CAP).read_to_string(&mut text);
            }
            text
        };
        Accounts::parse(&read("/etc/passwd"), &read("/etc/group"))
    }

    /// Parses the text of `/etc/passwd` and `/etc/group`; malformed lines
    /// are skipped.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let users = passwd
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let [name, _, uid, gid, _, home, shell] = f[..] else {
                    return None;
                };
                Some(User {
                    name: name.to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                    home: home.to_owned(),
                    shell: shell.to_owned(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let [_, _, gid, members] = f[..] else {
                    return None;
                };
                let members = members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                Some((gid.parse().ok()?, members))
            })
            .collect();
        Accounts { users, groups }
    }

    fn by_uid(&self, uid: u32) -> Option<&User> {
        self.users.iter().find(|u| u.uid == uid)
    }

    /// `user` as a name or a numeric uid; a uid without an entry runs with
    /// the same gid, home `/`.
    fn resolve(&self, user: &str) -> Result<User, Failure> {
        if user.is_empty() || user.len() > MAX_USER_LEN || user.contains('\0') {
            return Err(bad(format!(
                "user: `{}` is not a user name or uid",
                user.escape_debug()
            )));
        }
        if let Ok(uid) = user.parse::<u32>() {
            return Ok(self.by_uid(uid).cloned().unwrap_or_else(|| User {
                name: user.to_owned(),
                uid,
                gid: uid,
                home: "/".into(),
                shell: "/bin/sh".into(),
            }));
        }
        self.users
            .iter()
            .find(|u| u.name == user)
            .cloned()
            .ok_or_else(|| bad(format!("user: no user `{}`", user.escape_debug())))
    }

    /// The user's primary group and every group naming it as a member.
    fn groups_of(&self, user: &User) -> Vec<Gid> {
        let mut gids = vec![user.gid];
        for (gid, members) in &self.groups {
            if members.contains(&user.name) && !gids.contains(gid) {
                gids.push(*gid);
            }
        }
        gids.into_iter().map(Gid::from_raw).collect()
    }
}

fn bad(message: String) -> Failure {
    (ErrorCode::BadRequest, message)
}

/// Checks `params` and resolves them for an agent running as uid `me`,
/// with `command_path` as the session's `PATH`.
pub(crate) fn plan(
    params: ExecParams,
    accounts: &Accounts,
    me: u32,
    command_path: &str,
) -> Result<Plan, Failure> {
    let ExecParams {
        argv,
        env,
        cwd,
        user,
        tty,
        timeout_ms,
    } = params;
    let Some(argv0) = argv.first() else {
        return Err(bad("argv: must name a program".into()));
    };
    if argv0.is_empty() {
        return Err(bad("argv[0]: must not be empty".into()));
    }
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return Err(bad(format!("argv[{i}]: contains a NUL byte")));
    }
    if let Some(name) = env.keys().find(|k| !valid_env_name(k)) {
        return Err(bad(format!(
            "env: `{}` is not a variable name",
            name.escape_debug()
        )));
    }
    if let Some((name, _)) = env.iter().find(|(_, v)| v.contains('\0')) {
        return Err(bad(format!("env.{name}: contains a NUL byte")));
    }
    if let Some(size) = tty {
        if size.rows == 0 || size.cols == 0 {
            return Err(bad("tty: rows and cols must be positive".into()));
        }
    }
    if timeout_ms == Some(0) {
        return Err(bad("timeout_ms: must be positive".into()));
    }

    let account = match &user {
        Some(user) => accounts.resolve(user)?,
        None => accounts.by_uid(me).cloned().unwrap_or_else(|| User {
            name: if me == 0 {
                "root".into()
            } else {
                me.to_string()
            },
            uid: me,
            gid: rustix::process::getgid().as_raw(),
            home: "/".into(),
            shell: "/bin/sh".into(),
        }),
    };
    let identity = if account.uid == me && (user.is_none() || me != 0) {
        None
    } else if me != 0 {
        return Err(bad(format!(
            "user: the agent runs as uid {me} and cannot become uid {}",
            account.uid
        )));
    } else {
        Some(Identity {
            uid: Uid::from_raw(account.uid),
            gid: Gid::from_raw(account.gid),
            groups: accounts.groups_of(&account),
        })
    };

    let cwd = match cwd {
        Some(dir) => {
            if dir.contains('\0') || !dir.starts_with('/') {
                return Err(bad(format!(
                    "cwd: `{}` is not an absolute path",
                    dir.escape_debug()
                )));
            }
            if !Path::new(&dir).is_dir() {
                return Err(bad(format!(
                    "cwd: `{}` is not a directory",
                    dir.escape_debug()
                )));
            }
            PathBuf::from(dir)
        }
        None if Path::new(&account.home).is_dir() => PathBuf::from(&account.home),
        None => PathBuf::from("/"),
    };

    let shell = if account.shell.is_empty() {
        "/bin/sh"
    } else {
        &account.shell
    };
    let mut full_env: BTreeMap<String, String> = [
        ("PATH", command_path),
        ("HOME", account.home.as_str()),
        ("USER", account.name.as_str()),
        ("LOGNAME", account.name.as_str()),
        ("LANG", "C.UTF-8"),
        ("SHELL", shell),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if tty.is_some() {
        full_env.insert("TERM".into(), "xterm-256color".into());
    }
    full_env.extend(env);

    let program = find_program(argv0, &full_env["PATH"], &cwd)
        .ok_or_else(|| (ErrorCode::NotFound, format!("command not found: {argv0}")))?;
    Ok(Plan {
        program,
        argv,
        env: full_env,
        cwd,
        identity,
        tty,
        timeout: timeout_ms.map(Duration::from_millis),
    })
}

/// `name` as a program: a path if it holds a `/` (relative to `cwd`),
/// else the first executable file of that name in `path`.
fn find_program(name: &str, path: &str, cwd: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = cwd.join(name);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(name))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::COMMAND_PATH;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        broken line\n\
        app:x:1000:1000::/home/app:\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\ndocker:x:999:app\nbad\n";

    fn params(argv: &[&str]) -> ExecParams {
        ExecParams {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            ..ExecParams::default()
        }
    }

    fn refusal(p: ExecParams, me: u32) -> Failure {
        plan(p, &Accounts::parse(PASSWD, GROUP), me, COMMAND_PATH).unwrap_err()
    }

    #[test]
    fn the_command_path_is_the_sessions_path_and_finds_its_program() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("standin-only-here");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{COMMAND_PATH}", dir.path().display());
        let accounts = Accounts::parse(PASSWD, GROUP);
        let plan = plan(params(&["standin-only-here"]), &accounts, 0, &path).unwrap();
        assert_eq!(plan.program, program);
        assert_eq!(plan.env["PATH"], path);
        let err = refusal(params(&["standin-only-here"]), 0);
        assert_eq!(err.0, ErrorCode::NotFound, "{err:?}");
    }

    #[test]
    fn a_user_by_name_gets_its_ids_groups_home_and_environment() {
        let accounts = Accounts::parse(PASSWD, GROUP);
        let mut p = params(&["true"]);
        p.user = Some("app".into());
        p.env.insert("FOO".into(), "bar".into());
        p.env.insert("LANG".into(), "de_DE.UTF-8".into());
        let plan = plan(p, &accounts, 0, COMMAND_PATH).unwrap();
        let id = plan.identity.unwrap();
        assert_eq!(id.uid.as_raw(), 1000);
        assert_eq!(id.gid.as_raw(), 1000);
        let groups: Vec<u32> = id.groups.iter().map(|g| g.as_raw()).collect();
        assert_eq!(groups, [1000, 10, 999]);
        assert_eq!(plan.env["USER"], "app");
        assert_eq!(plan.env["HOME"], "/home/app");
        assert_eq!(plan.env["SHELL"], "/bin/sh", "an empty shell means /bin/sh");
        assert_eq!(plan.env["FOO"], "bar");
        assert_eq!(
            plan.env["LANG"], "de_DE.UTF-8",
            "the request overrides the base"
        );
        assert!(!plan.env.contains_key("TERM"));
        // /home/app does not exist here: the session starts in /.
        assert_eq!(plan.cwd, Path::new("/"));
        assert!(plan.program.ends_with("true"));
    }

    #[test]
    fn a_numeric_uid_resolves_with_or_without_an_entry() {
        let accounts = Accounts::parse(PASSWD, GROUP);
        let mut p = params(&["true"]);
        p.user = Some("65534".into());
        let id = plan(p.clone(), &accounts, 0, COMMAND_PATH)
            .unwrap()
            .identity
            .unwrap();
        assert_eq!((id.uid.as_raw(), id.gid.as_raw()), (65534, 65534));
        p.user = Some("4242".into());
        let id = plan(p, &accounts, 0, COMMAND_PATH)
            .unwrap()
            .identity
            .unwrap();
        assert_eq!((id.uid.as_raw(), id.gid.as_raw()), (4242, 4242));
    }

    #[test]
    fn the_default_user_is_the_agents_own_and_changes_nothing() {
        let plan = plan(
            params(&["true"]),
            &Accounts::parse(PASSWD, GROUP),
            0,
            COMMAND_PATH,
        )
        .unwrap();
        assert_eq!(plan.identity, None);
        assert_eq!(plan.env["USER"], "root");
    }

    #[test]
    fn bad_params_are_refused_naming_the_field() {
        let cases: Vec<(ExecParams, &str)> = vec![
            (params(&[]), "argv: must name a program"),
            (params(&[""]), "argv[0]: must not be empty"),
            (params(&["true", "a\0b"]), "argv[1]: contains a NUL byte"),
            (
                ExecParams {
                    user: Some("ghost".into()),
                    ..params(&["true"])
                },
                "user: no user `ghost`",
            ),
            (
                ExecParams {
                    cwd: Some("/etc/passwd".into()),
                    ..params(&["true"])
                },
                "cwd: `/etc/passwd` is not a directory",
            ),
            (
                ExecParams {
                    cwd: Some("relative".into()),
                    ..params(&["true"])
                },
                "cwd: `relative` is not an absolute path",
            ),
            (
                ExecParams {
                    tty: Some(WindowSize { rows: 0, cols: 80 }),
                    ..params(&["true"])
                },
                "tty: rows and cols must be positive",
            ),
            (
                ExecParams {
                    timeout_ms: Some(0),
                    ..params(&["true"])
                },
                "timeout_ms: must be positive",
            ),
            (
                ExecParams {
                    env: [("A=B".to_string(), "x".to_string())].into(),
                    ..params(&["true"])
                },
                "env: `A=B` is not a variable name",
            ),
            (
                ExecParams {
                    env: [("A".to_string(), "x\0".to_string())].into(),
                    ..params(&["true"])
                },
                "env.A: contains a NUL byte",
            ),
        ];
        for (p, message) in cases {
            assert_eq!(refusal(p, 0), (ErrorCode::BadRequest, message.to_owned()));
        }
    }

    #[test]
    fn an_unprivileged_agent_cannot_switch_users() {
        let p = ExecParams {
            user: Some("root".into()),
            ..params(&["true"])
        };
        assert_eq!(
            refusal(p, 1000),
            (
                ErrorCode::BadRequest,
                "user: the agent runs as uid 1000 and cannot become uid 0".into()
            )
        );
    }

    #[test]
    fn a_missing_program_is_not_found() {
        assert_eq!(
            refusal(params(&["no-such-program-xyz"]), 0),
            (
                ErrorCode::NotFound,
                "command not found: no-such-program-xyz".into()
            )
        );
        assert_eq!(refusal(params(&["./nope"]), 0).0, ErrorCode::NotFound);
    }

    #[test]
    fn a_tty_session_gets_a_term() {
        let p = ExecParams {
            tty: Some(WindowSize { rows: 24, cols: 80 }),
            ..params(&["true"])
        };
        let plan = plan(p, &Accounts::parse(PASSWD, GROUP), 0, COMMAND_PATH).unwrap();
        assert_eq!(plan.env["TERM"], "xterm-256color");
    }
}
