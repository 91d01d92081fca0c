//! The LMTP front door (RFC 2033): a sans-IO protocol `session` over
//! bounded byte `input` readers, and the socket [`server`] that drives it
//! (listeners in `listen`). Delivery itself is the core's (`deliver`);
//! nothing here talks to GitLab. Only [`server`] is used from outside.

pub(crate) mod input;
mod listen;
pub mod server;
pub(crate) mod session;

use std::time::Duration;

/// The `[lmtp]` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port`, `[v6]:port` or `unix:/path` entries.
    pub listen: Vec<String>,
    /// Mode of created unix sockets.
    pub socket_mode: u32,
    /// Connections served at once; more get `421`.
    pub max_connections: usize,
    /// Recipients per transaction; more get `452`.
    pub max_recipients: usize,
    /// A client that completes no command and sends no message bytes
    /// this long is disconnected (trickling a command does not count).
    pub idle_timeout: Duration,
    /// On SIGTERM, how long transactions in flight may take to finish.
    pub shutdown_grace: Duration,
}
