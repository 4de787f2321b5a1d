//! Test support for lobster, written once for every test, bench and binding
//! fixture of the workspace (a dev-dependency only; never published).
//!
//! - [`netns`]: run a test body inside a network namespace it owns, and the
//!   guard that deletes such namespaces (T1/T2).
//! - [`mod@images`]: where the guest images are (`$LOBSTER_IMAGES`).
//! - [`vm`]: a [`VmConfig`](lobster_core::vmm::VmConfig) fixture.
//! - [`evidence`]: the guest console printed on failure, and the VMs a test
//!   started killed by PID.
//! - [`fake_agent`]: a scripted agent on loopback (real handshake and
//!   frames) for the host's agent client: exec sessions, hostile replies.
//! - [`poll`]: wait for a condition with a deadline instead of sleeping.
//! - [`registry`]: tenants through the real allocator, and records as spawn
//!   leaves them (also behind the `lobster-testkit seed` command the Python
//!   and Go fixtures call).
//! - [`mod@bench`]: sample statistics for the bench binaries.
//! - [`caddy`]: a real Caddy's surroundings: a directory its user can
//!   reach, a connect as `nobody`, the system trust store, `/proc` status.
//! - [`tree`]: a directory tree with modes and links, and a listing to
//!   compare trees (file-copy tests).
//! - [`tmux`]: a real terminal (a private tmux server) to drive and read
//!   interactive commands.
//! - `rig` (feature `fakes`): a `Host` over lobster-core's fakes, its
//!   guests recorded or booting the real agent, with armable faults and a
//!   host-state diff.

pub mod bench;
pub mod caddy;
pub mod cgroup;
pub mod evidence;
pub mod fake_agent;
pub mod images;
pub mod netns;
pub mod poll;
pub mod registry;
#[cfg(feature = "fakes")]
pub mod rig;
pub mod tmux;
pub mod tree;
pub mod vm;

pub use evidence::Evidence;
pub use images::images;
