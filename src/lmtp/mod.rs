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

use std::time::Duration;

/// The `[lmtp]` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port`, `[v6]:port` or `unix:/path` entries.
    pub listen: Vec<String>,
    /// Mode of created unix sockets.
    pub socket_mode: u32,
    /// Connections served at once; a new one takes the slot of the one
    /// idle longest outside a transaction, or gets `421` when none is.
    pub max_connections: usize,
    /// Connections one TCP address may hold at once.
    pub max_connections_per_peer: usize,
    /// Recipients per transaction; more get `452`.
    pub max_recipients: usize,
    /// A client that completes no command and sends no message bytes
    /// this long is disconnected (trickling a command does not count).
    pub idle_timeout: Duration,
    /// A client must have completed LHLO this long after connecting.
    pub lhlo_timeout: Duration,
    /// The idle limit outside a transaction (after LHLO, before MAIL,
    /// between messages), when shorter than `idle_timeout`.
    pub between_messages_timeout: Duration,
    /// On SIGTERM, how long transactions in flight may take to finish.
    pub shutdown_grace: Duration,
}
