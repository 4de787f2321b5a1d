//! Users and dropping privileges: a system user's ids from the passwd
//! database, and a child that runs as that user holding one capability.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The capability to bind ports below 1024.
pub const CAP_NET_BIND_SERVICE: u32 = 10;

/// A user's uid and primary gid, or `None` when the passwd database (files,
/// or whatever NSS serves) has no such user.
pub fn lookup_user(name: &str) -> io::Result<Option<(u32, u32)>> {
    let Ok(c_name) = CString::new(name) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives it and
        // its length is passed; `result` is either null or `&mut pwd`.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some((pwd.pw_uid, pwd.pw_gid))),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            code => return Err(io::Error::from_raw_os_error(code)),
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Makes the calling process `uid`:`gid` for good: no supplementary
/// groups, real, effective and saved ids all changed, and `no_new_privs`
/// (no setuid binary or file capability can give it more). Only system
/// calls, no allocation: fit for a child between fork and exec.
pub fn become_for_good(uid: u32, gid: u32) -> io::Result<()> {
    let check = |rc: libc::c_int| match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    // SAFETY: plain system calls on integers and a null group list.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(gid, gid, gid))?;
        check(libc::setresuid(uid, uid, uid))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    }
}

/// Makes `command`'s child (started by root) run as `uid`:`gid` with no
/// supplementary groups, holding only capability `keep` (ambient, so it
/// survives the exec; every other one is also dropped from the bounding
/// set), with `no_new_privs` set: no setuid binary or file capability can
/// give it more.
pub fn run_unprivileged(command: &mut Command, uid: u32, gid: u32, keep: u32) {
    assert!(keep < 32, "only capabilities of the first word are kept");
    // SAFETY: the closure runs between fork and exec and makes only raw
    // system calls (prctl, setgroups, setresgid, setresuid, capset), which
    // are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let check = |rc: libc::c_long| {
                if rc < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            for cap in 0..64u64 {
                if cap != u64::from(keep)
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into())?;
            become_for_good(uid, gid)?;
            let header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let bit = 1u32 << keep;
            let data = [
                CapData {
                    effective: bit,
                    permitted: bit,
                    inheritable: bit,
                },
                CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                },
            ];
            check(libc::syscall(libc::SYS_capset, &header, data.as_ptr()))?;
            check(
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    u64::from(keep),
                    0,
                    0,
                )
                .into(),
            )?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_uid_zero_and_nonsense_is_nobody() {
        assert_eq!(lookup_user("root").unwrap(), Some((0, 0)));
        assert_eq!(lookup_user("no-such-user-lobster").unwrap(), None);
        assert_eq!(lookup_user("a\0b").unwrap(), None);
    }
}
