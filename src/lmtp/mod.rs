//! The LMTP front door (RFC 2033): a sans-IO protocol `session` over
//! bounded byte `input` readers, and the socket [`server`] that drives it
//! (listeners in `listen`, connection `slots`, time limits in `clock`, the
//! configuration in force and its reload in `generation`). Delivery itself
//! is the core's (`deliver`); nothing here talks to GitLab. Only
//! [`server`] is used from outside.

mod clock;
mod connection;
mod generation;
pub(crate) mod input;
mod listen;
pub mod server;
pub(crate) mod session;
mod slots;

/// The `[lmtp]` settings. Defined beside their checker in `config`:
/// this front door reads the configuration, so the configuration must not
/// import from here.
pub use crate::config::LmtpSettings as Settings;
