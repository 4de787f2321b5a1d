//! TUN/TAP ioctls on `/dev/net/tun`: create a persistent TAP owned by a uid.
//!
//! rtnetlink cannot create TAP devices (the kernel refuses `RTM_NEWLINK` for
//! kind `tun`), so this is the one place that talks to the tun driver. The
//! file descriptor is owned by a [`File`] the moment `open` returns and is
//! closed when the function ends; the persist flag keeps the device alive.

use std::ffi::c_ulong;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

/// `_IOW('T', 202, int)`: attach to or create a TUN/TAP device.
const TUNSETIFF: c_ulong = 0x4004_54ca;
/// `_IOW('T', 203, int)`: keep the device after the last fd closes.
const TUNSETPERSIST: c_ulong = 0x4004_54cb;
/// `_IOW('T', 204, int)`: the only uid (besides CAP_NET_ADMIN) allowed to attach.
const TUNSETOWNER: c_ulong = 0x4004_54cc;
/// A TAP (Ethernet frames) device.
const IFF_TAP: libc::c_short = 0x0002;
/// No packet-information header in front of frames.
const IFF_NO_PI: libc::c_short = 0x1000;
/// The kernel's interface name limit, including the NUL.
const IFNAMSIZ: usize = 16;

/// `struct ifreq` with the union used as `ifr_flags` (40 bytes on Linux).
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates (or re-attaches to) the TAP `name`, sets its owner to `owner_uid`
/// and makes it persistent. Idempotent for an existing TAP.
pub(crate) fn create_persistent_tap(name: &str, owner_uid: u32) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name must be 1..=15 bytes without NUL",
        ));
    }
    let tun: File = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    let fd = tun.as_raw_fd();
    // SAFETY: `fd` is an open /dev/net/tun descriptor owned by `tun`, and
    // `req` is a properly sized, initialised `struct ifreq` that outlives the call.
    check(unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut IfReq) })?;
    // SAFETY: TUNSETOWNER takes the uid by value; `fd` is attached to the TAP.
    check(unsafe { libc::ioctl(fd, TUNSETOWNER, c_ulong::from(owner_uid)) })?;
    // SAFETY: TUNSETPERSIST takes a flag by value; `fd` is attached to the TAP.
    check(unsafe { libc::ioctl(fd, TUNSETPERSIST, 1 as c_ulong) })?;
    Ok(())
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn names_longer_than_ifnamsiz_are_refused_before_any_syscall() {
        let err = create_persistent_tap("a-name-that-is-too-long", 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
