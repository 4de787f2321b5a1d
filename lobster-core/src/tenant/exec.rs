//! Running a command in a tenant's guest: an [`ExecRequest`] checked before
//! anything is touched, then the session over the tenant's authenticated
//! agent channel ([`Agent::exec`](crate::agent::Agent::exec)). A suspended
//! tenant is resumed first and held awake ([`super::awake`]) for as long as
//! the session lives; a tenant in any other state than running or
//! suspended is refused, naming its state.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::agent::{ExecParams, ExecSession, WindowSize};
use crate::context::Context;
use crate::error::Result;
use crate::store::TenantStatus;

use super::{GuestHold, TenantError};

/// A validated command to run in a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    params: ExecParams,
}

/// Builds an [`ExecRequest`]; [`build`](Self::build) checks every field.
#[derive(Debug, Clone)]
pub struct ExecRequestBuilder {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    user: Option<String>,
    tty: Option<WindowSize>,
    timeout: Option<Duration>,
}

impl ExecRequest {
    /// A request to run `argv` (`argv[0]` is looked up in the guest's `PATH`).
    pub fn builder(argv: impl IntoIterator<Item = impl Into<String>>) -> ExecRequestBuilder {
        ExecRequestBuilder {
            argv: argv.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            tty: None,
            timeout: None,
        }
    }

    /// The protocol parameters this request sends.
    pub fn params(&self) -> &ExecParams {
        &self.params
    }
}

impl ExecRequestBuilder {
    /// Adds (or replaces) an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// The working directory (absolute; default: the user's home).
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The user name or numeric uid to run as (default: root).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Runs the command on a terminal of this size.
    pub fn tty(mut self, size: WindowSize) -> Self {
        self.tty = Some(size);
        self
    }

    /// Has the agent kill the command after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field: an empty command or argument
    /// with NUL, an environment key that is empty or holds `=` or NUL, a
    /// relative working directory, an empty user, a zero terminal size or
    /// timeout.
    pub fn build(self) -> Result<ExecRequest> {
        let invalid =
            |field: &'static str, reason: String| TenantError::InvalidExec { field, reason };
        match self.argv.first() {
            None => return Err(invalid("argv", "no command given".into()).into()),
            Some(program) if program.is_empty() => {
                return Err(invalid("argv", "the command is empty".into()).into())
            }
            _ => {}
        }
        if let Some(arg) = self.argv.iter().find(|a| a.contains('\0')) {
            return Err(invalid("argv", format!("argument {arg:?} contains NUL")).into());
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(invalid(
                    "env",
                    format!("key {key:?} must be non-empty, without '=' or NUL"),
                )
                .into());
            }
            if value.contains('\0') {
                return Err(invalid("env", format!("value of {key} contains NUL")).into());
            }
        }
        if let Some(cwd) = &self.cwd {
            if !cwd.starts_with('/') || cwd.contains('\0') {
                return Err(invalid("cwd", format!("{cwd:?} is not an absolute path")).into());
            }
        }
        if let Some(user) = &self.user {
            if user.is_empty() || user.contains(['\0', ':']) || user.contains(char::is_whitespace) {
                return Err(invalid("user", format!("{user:?} is not a user name or uid")).into());
            }
        }
        if let Some(size) = self.tty {
            if size.rows == 0 || size.cols == 0 {
                return Err(invalid(
                    "tty",
                    format!("a terminal of {}x{} cells", size.cols, size.rows),
                )
                .into());
            }
        }
        let timeout_ms = match self.timeout {
            Some(t) if t.as_millis() == 0 => {
                return Err(invalid("timeout", "must be at least 1 ms".into()).into())
            }
            Some(t) => Some(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            None => None,
        };
        Ok(ExecRequest {
            params: ExecParams {
                argv: self.argv,
                env: self.env,
                cwd: self.cwd,
                user: self.user,
                tty: self.tty,
                timeout_ms,
            },
        })
    }
}

/// Starts `request` in tenant `name`'s guest, resuming it if suspended and
/// holding it awake until the command ends (or the session is dropped).
pub(crate) async fn exec(
    context: &Context,
    name: &str,
    request: &ExecRequest,
) -> Result<ExecSession> {
    let hold = hold_for(context, name, "exec").await?;
    match hold.agent().exec(request.params()).await {
        Ok(session) => Ok(session.guarded_by(hold)),
        Err(e) => {
            hold.release().await;
            Err(e.into())
        }
    }
}

/// Resumes tenant `name` if suspended and holds it awake for `operation`
/// (which also names the hold); a tenant neither running nor suspended is
/// refused, naming its state.
pub(crate) async fn hold_for(
    context: &Context,
    name: &str,
    operation: &'static str,
) -> Result<GuestHold> {
    let record = context.record(name).await?;
    if !matches!(
        record.status,
        TenantStatus::Running | TenantStatus::Suspended
    ) {
        return Err(TenantError::InvalidState {
            name: name.to_owned(),
            status: record.status,
            operation,
            needs: "running or suspended",
        }
        .into());
    }
    // Boxed: resuming makes a large future, and callers nest this one.
    Box::pin(super::awake(context, name, operation)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn field_of(builder: ExecRequestBuilder) -> String {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        err.to_string()
    }

    #[test]
    fn a_plain_command_builds_into_its_params() {
        let request = ExecRequest::builder(["ls", "-l"])
            .env("A", "b=c")
            .cwd("/tmp")
            .user("1000")
            .tty(WindowSize { rows: 24, cols: 80 })
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let p = request.params();
        assert_eq!(p.argv, ["ls", "-l"]);
        assert_eq!(p.env["A"], "b=c");
        assert_eq!(p.timeout_ms, Some(2000));
        assert_eq!(p.tty, Some(WindowSize { rows: 24, cols: 80 }));
    }

    #[test]
    fn each_bad_field_is_named() {
        let none: [&str; 0] = [];
        assert!(field_of(ExecRequest::builder(none)).contains("`argv`"));
        assert!(field_of(ExecRequest::builder([""])).contains("`argv`"));
        assert!(field_of(ExecRequest::builder(["a", "b\0"])).contains("`argv`"));
        for key in ["", "A=B", "A\0"] {
            assert!(field_of(ExecRequest::builder(["sh"]).env(key, "v")).contains("`env`"));
        }
        assert!(field_of(ExecRequest::builder(["sh"]).env("K", "v\0")).contains("`env`"));
        assert!(field_of(ExecRequest::builder(["sh"]).cwd("tmp")).contains("`cwd`"));
        assert!(field_of(ExecRequest::builder(["sh"]).user("")).contains("`user`"));
        let flat = WindowSize { rows: 0, cols: 80 };
        assert!(field_of(ExecRequest::builder(["sh"]).tty(flat)).contains("`tty`"));
        let zero = Duration::from_micros(10);
        assert!(field_of(ExecRequest::builder(["sh"]).timeout(zero)).contains("`timeout`"));
    }
}
