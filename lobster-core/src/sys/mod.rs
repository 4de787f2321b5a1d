//! The only place in lobster-core with `unsafe`: thin wrappers over Linux
//! system calls that no safe crate covers. Each block is tiny, carries a
//! `// SAFETY:` comment, and hands its result to an owning type at once.
#![allow(unsafe_code)]

pub mod cgroup;
pub mod confine;
pub mod file;
pub mod identity;
pub mod kvm;
pub mod log_keeper;
pub mod netns;
pub mod pidfd;
pub mod scm;
pub(crate) mod tun;
