//! lobster-core: run isolated tenants, each a microVM with its own /30
//! network, writable overlay disk, in-guest agent, workload and proxy route.
//!
//! The entry point is [`Host`], opened from a configuration file. Every
//! operation is async (tokio) and returns [`Result`] with the one public
//! [`Error`], whose [`Error::kind`] is what bindings map on.
//!
//! Layers, each importing only from the ones below it (checked by
//! `tests/layers.rs`):
//!
//! 1. `base` (error kinds, runtime helpers), `sys` (system calls) and
//!    `store::name` (the rules for names);
//! 2. `config`;
//! 3. `network`, `overlay`, `vmm`, `agent`, `proxy`: act on the host
//!    through narrow seams;
//! 4. `store`: the registry of what they made for each tenant;
//! 5. `context` (configuration, registry and seams in one value) and
//!    `machine` (init, host setup, the watchdog's unit, uninit);
//! 6. `tenant`: lifecycle operations on a [`context::Context`];
//! 7. `health`: checks and repairs (`molt`, the `watch` daemon);
//! 8. [`Host`], the façade over them all.
//!
//! [`Error`] gathers every module's error; modules from layer 5 up return it.

pub mod agent;
mod base;
pub mod config;
pub mod context;
pub mod error;
pub mod health;
pub mod host;
pub mod machine;
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
pub use tenant::{RecoverReport, Tenant, TenantJson, TenantSpec};
