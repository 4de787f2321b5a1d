//! lobster-core: run isolated tenants, each a microVM with its own /30
//! network, writable overlay disk, in-guest agent, workload and proxy route.
//!
//! The entry point is [`Host`], opened from a configuration file. Every
//! operation is async (tokio) and returns [`Result`] with the one public
//! [`Error`], whose [`Error::kind`] is what bindings map on.
//!
//! Layout: `config` and `store` hold the desired state; `network`, `overlay`,
//! `vmm`, `agent` and `proxy` act on the host through narrow seams;
//! `tenant` composes them into lifecycle operations; `health` checks and
//! repairs tenants (`molt`, the `watch` daemon).

pub mod agent;
pub mod config;
pub mod error;
pub mod health;
pub mod host;
pub mod network;
pub mod overlay;
pub mod proxy;
pub mod store;
mod sys;
pub mod tenant;
pub mod vmm;

pub use error::{Error, ErrorKind, Result};
pub use host::Host;
pub use overlay::Overlay;
pub use tenant::{RecoverReport, Tenant, TenantSpec};
