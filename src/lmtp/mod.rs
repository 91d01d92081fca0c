//! The LMTP front door (RFC 2033): a sans-IO protocol `session` over
//! bounded byte `input` readers, and the socket [`server`] that drives it
//! (listeners in `listen`). Delivery itself is the core's (`deliver`);
//! nothing here talks to GitLab. Only [`server`] is used from outside.

pub(crate) mod input;
mod listen;
pub mod server;
pub(crate) mod session;
