//! The LMTP front door (RFC 2033): a sans-IO protocol [`session`] and the
//! socket [`server`] that drives it.

pub mod server;
pub mod session;
